"""Section "identity": PTR, forward confirmation, banner, EHLO, STARTTLS and the certificate
(probes.identity), for every address of the mailer."""

from __future__ import annotations

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import UNKNOWN, Finding
from mailprobe.net.deadline import BudgetExhausted
from mailprobe.probes.identity.assess import Policy, assess
from mailprobe.probes.identity.model import IdentityReport
from mailprobe.probes.identity.probe import ProbeOptions, probe

KEY = "identity"
DNS_SHARE = 0.5  # DNS may use half the budget, so a dead DNS server leaves time for SMTP


def run(ctx: MailerContext) -> Section:
    """Probe every address (already resolved: never resolved again), then publish the facts
    for the mail-domain guess."""
    report: IdentityReport | None = None
    try:
        report = gather(ctx)
    finally:
        ctx.identity_known(report)
    findings = assess(report, Policy(starttls_required=True,
                                     cert_days=ctx.options.certificate_days))
    if not findings:
        findings = [Finding(UNKNOWN, "no-address", "no address to probe")]
    several = len(report.addresses) > 1
    for index, finding in enumerate(findings):
        if several and finding.subject and finding.subject not in finding.text:
            findings[index] = Finding(finding.level, finding.code,
                                      f"{finding.subject}: {finding.text}", finding.detail,
                                      finding.subject)
    state = section_state(findings)
    problems = [f.text for f in findings if f.level == state and state != 0]
    summary = "; ".join(problems[:2]) if problems else report.line()
    return Section(KEY, TITLES[KEY], state, summary, findings,
                   evidence=evidence(report))


def gather(ctx: MailerContext) -> IdentityReport:
    options = ctx.options
    probe_options = ProbeOptions(port=options.port, family=options.family,
                                 source_address=options.source_address,
                                 starttls_certificate=options.certificate_days is not None)
    dns_deadline = ctx.deadline.sub(max(1.0, ctx.deadline.remaining() * DNS_SHARE))
    merged = IdentityReport(ctx.label, options.port)
    for address in ctx.addresses:
        lookup = ctx.lookup(dns_deadline)
        try:
            one = probe(address, lookup, ctx.deadline, probe_options)
        except BudgetExhausted as exc:
            merged.resolve_error = str(exc)
            break
        merged.addresses.extend(one.addresses)
        merged.transcript.lines.extend(one.transcript.lines)
        merged.dns_queries += one.dns_queries
        merged.elapsed += one.elapsed
    return merged


def evidence(report: IdentityReport) -> dict[str, object]:
    addresses = []
    for facts in report.addresses:
        smtp = facts.smtp
        tls = smtp.tls if smtp is not None else None
        cert = tls.certificate if tls is not None else None
        addresses.append({
            "address": facts.address,
            "ptr": [{"name": p.name, "forward": list(p.forward), "confirmed": p.confirmed,
                     "generic": p.generic or ""} for p in facts.rdns.names],
            "dns_error": facts.rdns.error or "",
            "banner": str(smtp.banner) if smtp and smtp.banner else None,
            "banner_name": smtp.banner_name if smtp else "",
            "ehlo": str(smtp.ehlo) if smtp and smtp.ehlo else None,
            "ehlo_name": smtp.ehlo_name if smtp else "",
            "extensions": sorted(smtp.extensions) if smtp else [],
            "starttls": bool(smtp and smtp.starttls_offered),
            "tls_version": tls.version if tls else None,
            "certificate": {"names": list(cert.names), "not_after": cert.not_after.isoformat(),
                            "self_signed": cert.self_signed} if cert else None,
            "smtp_error": smtp.error if smtp and smtp.error else "",
            "line": facts.line(),
        })
    return {
        "addresses": addresses,
        "dns_queries": report.dns_queries,
        "transcript": [f"{line.direction} {line.text}" for line in report.transcript.lines],
    }
