"""What an exposure report means (pure functions, no network).

* an unsanctioned SMTP listener is the finding of the check (its state comes from the
  ``-w``/``-c`` ranges on their count, applied by the plugin; :func:`unsanctioned_text` says it);
* any open NetBIOS/SMB port (139, 445) is CRITICAL, whatever else;
* a listener that relays (``--relay-check``) is CRITICAL;
* a sanctioned mailer that answers on none of the SMTP ports is WARNING ("down or filtered");
* ports that could not be probed (the time budget, errors) and relay series that prove nothing
  are UNKNOWN: nothing is called closed that was not seen closed.
"""

from __future__ import annotations

from collections import Counter

from mailprobe.findings import CRITICAL, UNKNOWN, WARNING, Finding
from mailprobe.probes.exposure.model import (
    ExposureReport,
    Listener,
    PortResult,
    PortState,
    Service,
)

NAMED = 3  # listeners or addresses named on the status line; the long output has them all


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:NAMED])
    return shown + (f", +{len(items) - NAMED} more" if len(items) > NAMED else "")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def unsanctioned_text(report: ExposureReport) -> str:
    """``2 unsanctioned SMTP listeners: 127.0.0.6:25 (220 printer.example.org ESMTP), ...``."""
    listeners = report.unsanctioned
    named = [f"{x.endpoint} ({x.greeting.brief if x.greeting else 'greeting not read'})"
             for x in listeners]
    return (f"{_plural(len(listeners), 'unsanctioned SMTP listener')}: {_named(named)}"
            if listeners else "no unsanctioned SMTP listener")


def netbios_label(listener: Listener) -> str:
    if listener.smb is not None and listener.smb.smb1:
        return f"{listener.endpoint} (SMBv1 offered)"
    return str(listener.endpoint)


def assess(report: ExposureReport) -> list[Finding]:
    """The findings of a report, besides the count of unsanctioned listeners."""
    findings: list[Finding] = []
    netbios = report.netbios
    if netbios:
        findings.append(Finding(
            CRITICAL, "netbios-open",
            f"{_plural(len(netbios), 'NetBIOS/SMB port')} open: "
            f"{_named([netbios_label(x) for x in netbios])}"))
    series = [(x, x.relay) for x in report.unsanctioned if x.relay is not None]
    relaying = [f"{x.endpoint} ({len(r.relayed)} of {r.attempts} attempts accepted)"
                for x, r in series if r.relayed]
    if relaying:
        findings.append(Finding(CRITICAL, "relays", f"open relay: {_named(relaying)}"))
    doubtful = [f"{x.endpoint} ({r.inconclusive})" for x, r in series
                if r.inconclusive and not r.relayed]
    if doubtful:
        findings.append(Finding(UNKNOWN, "relay-inconclusive",
                                f"relay series inconclusive on {_named(doubtful)}"))
    findings.extend(_unjudged(report))
    if report.sanctioned_down:
        findings.append(Finding(
            WARNING, "sanctioned-down",
            "sanctioned mailer down or filtered: " + _named(
                [f"{address} ({how_closed(results)})"
                 for address, results in report.sanctioned_down.items()])))
    return findings


def _unjudged(report: ExposureReport) -> list[Finding]:
    """UNKNOWN for the ports whose state could not be seen."""
    findings = []
    not_probed = report.count(PortState.NOT_PROBED)
    if not_probed:
        findings.append(Finding(
            UNKNOWN, "not-probed",
            f"{not_probed} of {report.probes} ports not probed: the time budget ran out "
            "(raise -t or --max-in-flight, or lower --connect-timeout)"))
    errors = report.with_state(PortState.ERROR)
    if errors:
        reasons = Counter(r.detail for r in errors).most_common()
        why = "; ".join(f"{reason} ({count})" if len(reasons) > 1 else reason
                        for reason, count in reasons[:NAMED])
        findings.append(Finding(
            UNKNOWN, "probe-error",
            f"{_plural(len(errors), 'port')} could not be probed: {why}"))
    return findings


def how_closed(results: list[PortResult]) -> str:
    """``refused on 25, no answer on 587`` for a sanctioned mailer's SMTP ports."""
    words = {PortState.REFUSED: "refused", PortState.FILTERED: "no answer",
             PortState.UNREACHABLE: "unreachable"}
    return ", ".join(f"{words.get(r.state, r.state.value)} on {r.endpoint.port}"
                     for r in results)


def ok_text(report: ExposureReport) -> str:
    """The status line when nothing is wrong."""
    hosts = _plural(report.hosts, "host")
    netbios = any(Service.of_port(p) in (Service.NETBIOS, Service.SMB) for p in report.ports)
    parts = [f"no unsanctioned SMTP listener on {hosts}"
             + (", no NetBIOS/SMB port open" if netbios else "")]
    if report.sanctioned_up:
        parts.append(f"{_plural(len(report.sanctioned_up), 'sanctioned mailer')} "
                     f"{'answers' if len(report.sanctioned_up) == 1 else 'answer'}")
    if not report.open_ports:
        parts[0] = f"nothing open on {hosts} (ports {', '.join(map(str, report.ports))})"
    return "; ".join(parts)
