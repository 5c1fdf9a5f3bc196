"""Section "backscatter": NST's bounce test, passive (probes.backscatter): RCPT to a random
local part at the mail domain from an outside sender. Refused (5xx) is good news; accepted
means any bounce later goes to a forged sender (backscatter). Nothing is sent past RCPT."""

from __future__ import annotations

import socket

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import CRITICAL, UNKNOWN, Finding
from mailprobe.probes.backscatter import (
    BackscatterOptions,
    BackscatterProbe,
    BackscatterReport,
    RefusedAtBanner,
    ServiceDown,
    assess,
    random_local_part,
)

KEY = "backscatter"


def run(ctx: MailerContext) -> Section:
    title = TITLES[KEY]
    if ctx.address is None:
        return Section(KEY, title, UNKNOWN, "no address to probe")
    domain = ctx.mail_domain()
    if domain.name is None:
        finding = Finding(UNKNOWN, "mail-domain", f"the mail domain {domain.source}")
        return Section(KEY, title, UNKNOWN, finding.text, [finding])
    options = ctx.options
    probe_options = BackscatterOptions(
        address=ctx.address, port=options.port,
        helo=options.helo or socket.gethostname() or "mailprobe.invalid",
        sender=f"{options.external_user}@{options.external_domain}",
        control=f"postmaster@{domain.name}", unknown=f"{random_local_part()}@{domain.name}",
        source_address=options.source_address, server=ctx.label)
    probe = BackscatterProbe(probe_options, ctx.deadline)
    try:
        report = probe.run()  # no proof from the report: nothing past RCPT
        findings = assess(report)
    except ServiceDown as exc:
        report = probe.report
        findings = [Finding(CRITICAL, "service-down", f"mail service down: {exc}")]
    except RefusedAtBanner as exc:
        report = probe.report
        findings = [Finding(UNKNOWN, "refused-at-banner", f"inconclusive: {ctx.address} refuses "
                            f"this vantage point at the banner ({exc.reply})")]
    if not findings:
        findings = [Finding(UNKNOWN, "nothing", "the RCPT test gave no answer to judge")]
    state = section_state(findings)
    summary = next((f.text for f in findings if f.level == state), findings[0].text)
    return Section(KEY, title, state, summary, findings,
                   evidence=evidence(report, probe_options))


def evidence(report: BackscatterReport, options: BackscatterOptions) -> dict[str, object]:
    def text(reply: object) -> str | None:
        return None if reply is None else str(reply)

    return {
        "mail_from": options.sender, "control": options.control, "unknown": options.unknown,
        "banner": text(report.banner), "mail": text(report.mail),
        "control_reply": text(report.control), "unknown_reply": text(report.unknown),
        "error": report.error, "transcript": report.transcript.render(),
    }
