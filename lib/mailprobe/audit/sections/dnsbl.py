"""Section "dnsbl": the mailer's addresses (and the mail domain, on domain lists) on DNS
blacklists (probes.dnsbl), each listing with its reason and its removal or lookup page."""

from __future__ import annotations

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Link, Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.probes.dnsbl.lookup import CLEAN, DnsblReport, Target, ZoneResult, probe
from mailprobe.probes.dnsbl.zones import DOMAIN, Zone, default_zones

KEY = "dnsbl"
# check_dnsbl's default thresholds on the summed weight: WARNING above 0, CRITICAL above 1
WARNING_ABOVE, CRITICAL_ABOVE = 0.0, 1.0
QUERY_TIMEOUT = 5.0


def run(ctx: MailerContext) -> Section:
    title = TITLES[KEY]
    zones: list[Zone] = ctx.options.zones if ctx.options.zones is not None else default_zones()
    targets = [Target.address(a) for a in ctx.addresses]
    notes: list[str] = []
    domain = ctx.options.mail_domain  # given only, as check_dnsbl: a guess is not listed
    if domain and any(z.kind == DOMAIN for z in zones):
        try:
            targets.append(Target.domain(domain))
        except ValueError as exc:
            notes.append(f"the mail domain is not asked: {exc}")
    if not targets:
        return Section(KEY, title, UNKNOWN, "nothing to look up: the mailer has no address")
    report = probe(targets, zones, ctx.deadline, nameservers=ctx.options.nameservers,
                   query_timeout=QUERY_TIMEOUT, host=ctx.label)
    findings = judge(report)
    state = section_state(findings)
    summary = next((f.text for f in findings if f.level == state), findings[0].text)
    links = [Link(f"{r.zone.host}: lookup and removal of {r.target.text}",
                  r.zone.lookup_url(r.target.text))
             for r in report.listed if r.zone.url]
    return Section(KEY, title, state, summary, findings, links,
                   evidence=evidence(report, notes))


def judge(report: DnsblReport) -> list[Finding]:
    """One finding per listing and per list that could not be checked, then the verdict on the
    summed weight (check_dnsbl's default thresholds)."""
    findings: list[Finding] = []
    if not report.results:
        return [Finding(UNKNOWN, "no-lists", "no selected list applies to the targets")]
    weight = report.weight
    level = CRITICAL if weight > CRITICAL_ABOVE else WARNING if weight > WARNING_ABOVE else OK
    for result in report.listed:
        findings.append(Finding(level, "listed", f"{result.target.text} is listed on "
                                f"{result.zone.host}", _reason(result), result.target.text))
    for result in report.failed:
        findings.append(Finding(UNKNOWN, "not-checked", f"{result.zone.host} could not be "
                                f"checked for {result.target.text}", result.reason,
                                result.target.text))
    if not report.checked:
        findings.append(Finding(UNKNOWN, "none-checked", "no list could be checked"))
    elif report.listed:
        lists = len({r.zone.host for r in report.listed})
        findings.insert(0, Finding(level, "weight", f"listed on {lists} of "
                                   f"{len(report.zones)} lists (weight {weight:g})"))
    else:
        clean = len([r for r in report.results if r.status == CLEAN])
        findings.insert(0, Finding(OK, "clean", f"not listed on {clean} of "
                                   f"{len(report.results)} look-ups"))
    return findings


def _reason(result: ZoneResult) -> str:
    codes = "; ".join(f"{d.code}: {d.meaning}" for d in result.listings)
    txt = " / ".join(t.strip() for t in result.txt)
    return f"{codes}" + (f"; reason: {txt}" if txt else "")


def evidence(report: DnsblReport, notes: list[str]) -> dict[str, object]:
    return {
        "targets": [t.text for t in report.targets],
        "zones": [{"zone": z.host, "kind": z.kind, "weight": z.weight} for z in report.zones],
        "results": [{
            "target": r.target.text, "zone": r.zone.host, "status": r.status,
            "codes": [{"code": d.code, "meaning": d.meaning} for d in r.listings],
            "txt": list(r.txt), "reason": r.reason,
            "lookup_url": r.zone.lookup_url(r.target.text) if r.zone.url else "",
        } for r in report.results],
        "weight": report.weight,
        "skipped": [f"{t.text} on {z.host}: {why}" for t, z, why in report.skipped],
        "notes": notes,
        "dns_transcript": list(report.transcript),
    }

