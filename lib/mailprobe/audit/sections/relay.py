"""Section "relay": the relay series (probes.relay), from outside, stopping at RCPT."""

from __future__ import annotations

import socket

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.deadline import BudgetExhausted
from mailprobe.net.smtp import Transcript, ip_literal
from mailprobe.probes.relay.catalogue import CATALOGUE, Targets
from mailprobe.probes.relay.runner import (
    Depth,
    RelayOptions,
    RelayReport,
    RelayRunner,
    ServerRefusesUs,
    ServiceDown,
    StartTLS,
)
from mailprobe.probes.relay.verdict import (
    AttemptResult,
    Outcome,
    Tally,
    control_finding,
    incomplete_finding,
)

KEY = "relay"
MAX_TRANSCRIPT = 400  # lines kept as evidence


def run(ctx: MailerContext) -> Section:
    title = TITLES[KEY]
    if ctx.address is None:
        return Section(KEY, title, UNKNOWN, "no address to probe")
    domain = ctx.mail_domain()
    if domain.name is None:
        finding = Finding(UNKNOWN, "mail-domain", f"the mail domain {domain.source}")
        return Section(KEY, title, UNKNOWN, finding.text, [finding])
    options = ctx.options
    targets = Targets(ext=options.external_domain, user=options.external_user,
                      dom=domain.name, ip=ip_literal(ctx.address))
    relay_options = RelayOptions(
        address=ctx.address, port=options.port, targets=targets,
        helo_name=options.helo or socket.gethostname() or "mailprobe.invalid",
        source_address=options.source_address, starttls=StartTLS.TRY, depth=Depth.RCPT)
    transcript = Transcript()
    runner = RelayRunner(relay_options, ctx.deadline, transcript)
    where = f"{ctx.address} port {options.port}"
    try:
        report = runner.run(list(CATALOGUE))
        findings = judge(report, relay_options.command_timeout)
    except ServiceDown as exc:
        findings = [Finding(CRITICAL, "service-down", f"mail service down: {exc}")]
        report = runner.report
    except ServerRefusesUs as exc:
        findings = [Finding(UNKNOWN, "refused-at-banner", f"inconclusive: {where} refuses this "
                            f"vantage point at the banner ({exc.reply})")]
        report = runner.report
    except BudgetExhausted as exc:
        findings = [Finding(UNKNOWN, "time", str(exc))]
        report = runner.report
    finally:
        runner.close()
    state = section_state(findings)
    summary = next((f.text for f in findings if f.level == state), findings[0].text)
    return Section(KEY, title, state, summary, findings, evidence=evidence(report, transcript,
                                                                        domain.name))


def judge(report: RelayReport, command_timeout: float = 20.0) -> list[Finding]:
    """The relay verdict as findings (the rules of check_open_relay: any relayed attempt is
    CRITICAL, a 4xx is not a proper refusal, a refused control makes it inconclusive)."""
    tally = Tally.of(report.results)
    findings: list[Finding] = []
    relayed = [r.attempt.id for r in report.results if r.outcome is Outcome.RELAYED]
    if relayed:
        shown = ", ".join(relayed[:6]) + (f", +{len(relayed) - 6} more" if len(relayed) > 6
                                          else "")
        findings.append(Finding(CRITICAL, "relayed", f"open relay: {len(relayed)} of "
                                f"{tally.attempts} relay attempts accepted ({shown})"))
    if tally.tempfailed:
        findings.append(Finding(WARNING, "tempfailed", f"{tally.tempfailed} of {tally.attempts} "
                                "relay attempts answered 4xx (a temporary refusal is not a "
                                "proper relay refusal)"))
    findings.append(_control(report.control))
    incomplete = incomplete_finding(report.results, command_timeout)
    if incomplete is not None:
        findings.append(incomplete)
    if not relayed and not tally.tempfailed:
        findings.insert(0, Finding(OK, "closed", f"0 of {tally.attempts} relay attempts "
                                   "accepted"))
    return findings


def _control(control: AttemptResult | None) -> Finding:
    """check_open_relay's control finding, naming the command when it was accepted."""
    if control is None:
        return Finding(UNKNOWN, "control", "inconclusive: the control was not played")
    finding = control_finding(control)
    if finding.level == OK:
        return Finding(OK, "control", f"control {control.rcpt_command} accepted")
    return finding


def evidence(report: RelayReport, transcript: Transcript, domain: str) -> dict[str, object]:
    """The raw evidence: banner, every attempt as played, the SMTP transcript."""
    tally = Tally.of(report.results)
    attempts = [_attempt(r) for r in ([report.control] if report.control else [])
                + report.results]
    lines = [f"{line.direction} {line.text}" for line in transcript.lines]
    return {
        "mail_domain": domain,
        "banner": str(report.banner) if report.banner else None,
        "attempts": attempts,
        "counts": {"attempts": tally.attempts, "relayed": tally.relayed,
                   "tempfailed": tally.tempfailed, "refused": tally.refused,
                   "timeouts": tally.timeouts, "errors": tally.errors,
                   "not_run": tally.not_run},
        "connections": report.connections,
        "round_trips": report.round_trips,
        "tls": report.tls,
        "notes": list(report.notes),
        "transcript": lines[:MAX_TRANSCRIPT],
        "transcript_cut": max(0, len(lines) - MAX_TRANSCRIPT),
    }


def _attempt(result: AttemptResult) -> dict[str, object]:
    reply = result.deciding_reply
    return {"id": result.attempt.id, "description": result.attempt.description,
            "outcome": result.outcome.value, "mail_from": result.mail_command,
            "rcpt_to": result.rcpt_command, "reply": str(reply) if reply else "",
            "detail": result.detail}
