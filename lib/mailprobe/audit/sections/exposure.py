"""Section "exposure" (``--portscan``): what else the mailer's addresses answer on, by the
exposure probe (probes.exposure): NetBIOS/SMB (139, 445) must never face the Internet; the
submission ports (465, 587) are reported with their greeting. Port 25 is the mailer itself
(sanctioned): the other sections judge it."""

from __future__ import annotations

import ipaddress

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import OK, Finding
from mailprobe.probes.exposure.model import ExposureReport, PortState
from mailprobe.probes.exposure.probe import ExposureOptions, probe
from mailprobe.probes.exposure.targets import AllowList, TargetError, build_targets
from mailprobe.probes.exposure.verdict import assess, netbios_label, ok_text

KEY = "exposure"
PORTS = (139, 445, 465, 587)
CONNECT_TIMEOUT = 3.0


def run(ctx: MailerContext) -> Section:
    title = TITLES[KEY]
    if not ctx.options.portscan:
        return Section.not_judged(KEY, title, "not asked for (--portscan)")
    addresses = [ipaddress.ip_address(a) for a in ctx.addresses]
    try:
        targets = build_targets([], addresses)
    except TargetError as exc:
        text = f"not scanned: {exc}"
        return Section(KEY, title, None, text, skipped=text)
    allow = AllowList()
    for address in addresses:
        allow.add(address)  # the mailer: its submission ports are sanctioned SMTP listeners
    options = ExposureOptions(ports=PORTS, connect_timeout=CONNECT_TIMEOUT,
                              source_address=ctx.options.source_address)
    report = probe(targets, allow, options, ctx.deadline)
    findings = assess(report)
    findings = [f for f in findings if f.code != "sanctioned-down"]  # 465/587 are optional
    findings.append(Finding(OK, "scanned", _open_text(report)))
    state = section_state(findings)
    summary = next((f.text for f in findings if f.level == state), ok_text(report))
    return Section(KEY, title, state, summary, findings, evidence=evidence(report))


def _open_text(report: ExposureReport) -> str:
    opened = [str(x.endpoint) + (f" ({x.greeting.brief})" if x.greeting else "")
              for x in report.listeners if x.endpoint.port not in (139, 445)]
    closed = ", ".join(f"{count} {state.value}" for state, count in report.counts.items()
                       if state is not PortState.OPEN and count)
    text = f"ports {', '.join(map(str, report.ports))} scanned"
    if opened:
        text += f"; open: {', '.join(opened)}"
    if closed:
        text += f"; not open: {closed}"
    return text


def evidence(report: ExposureReport) -> dict[str, object]:
    return {
        "ports": list(report.ports),
        "open": [str(x.endpoint) for x in report.listeners],
        "netbios_open": [netbios_label(x) for x in report.netbios],
        "states": {state.value: count for state, count in report.counts.items()},
        "seconds": round(report.seconds, 3),
    }
