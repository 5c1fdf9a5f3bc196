"""The MX probe: can the mail domain receive mail, and is the mailer one of its MX hosts?

Checks (RFC 5321 5.1, RFC 2181 10.3, RFC 7505): MX present, else the implicit MX (the domain's
own A/AAAA); null MX (``0 .``); every MX host a name (not an IP literal), not a CNAME, with an
address. Findings carry a severity; the decisions are documented in docs/check_spf_mx.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.dns import DNSFailure, Lookup, is_ip_address


@dataclass
class MXHost:
    preference: int
    name: str
    addresses: list[str] = field(default_factory=list)
    cname: str | None = None
    error: str | None = None  # its look-up failed: its addresses are unknown


@dataclass
class MXReport:
    domain: str
    hosts: list[MXHost] = field(default_factory=list)  # null MX excluded
    null_mx: bool = False
    implicit_addresses: list[str] = field(default_factory=list)  # no MX: the domain's A/AAAA
    mailer_is_mx: bool | None = None  # None when no mailer was given
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: int, code: str, text: str) -> None:
        self.findings.append(Finding(level, code, text))


def probe_mx(domain: str, lookup: Lookup, *, allow_null_mx: bool = False,
             mailer: str | None = None, mailer_addresses: list[str] | None = None,
             expect_mx: bool = False) -> MXReport:
    """Look up and judge ``domain``'s MX records.

    A DNS failure on the domain's own MX or address look-up propagates (:class:`DNSFailure`);
    failures on an MX host's records become UNKNOWN findings.
    """
    domain = domain.rstrip(".").lower()
    report = MXReport(domain)
    pairs = lookup.mx(domain)
    real = [(pref, name) for pref, name in pairs if name != "."]
    if len(real) < len(pairs):
        report.null_mx = not real
        if real:
            report.add(WARNING, "mx-null-mixed",
                       f"null MX mixed with other MX records at {domain} "
                       "(RFC 7505 3: a null MX must be the only MX)")
        else:
            level = OK if allow_null_mx else CRITICAL
            report.add(level, "mx-null", f"{domain} accepts no mail (null MX, RFC 7505)")
            return report
    if not real:
        report.implicit_addresses = lookup.addresses(domain)
        if not report.implicit_addresses:
            report.add(CRITICAL, "mx-none", f"{domain} has no MX and no address: it cannot "
                       "receive mail")
        else:
            report.add(WARNING, "mx-implicit",
                       f"{domain} has no MX record: mail falls back to its own address "
                       f"{', '.join(report.implicit_addresses)} (implicit MX)")
    for preference, name in real:
        report.hosts.append(_probe_host(report, preference, name, lookup))
    if report.hosts and not any(f.level > OK and f.code.startswith("mx-host")
                                for f in report.findings):
        count = len(report.hosts)
        report.add(OK, "mx-ok", f"{count} MX host{'' if count == 1 else 's'}: " + ", ".join(
            f"{h.preference} {h.name}" for h in report.hosts))
    if mailer_addresses is not None:
        _judge_mailer(report, mailer, mailer_addresses, expect_mx)
    return report


def _probe_host(report: MXReport, preference: int, name: str, lookup: Lookup) -> MXHost:
    host = MXHost(preference, name)
    if is_ip_address(name):
        report.add(CRITICAL, "mx-host-ip-literal",
                   f"MX host {name} is an IP address, not a host name (RFC 5321 5.1): "
                   "senders will not deliver to it")
        return host
    try:
        host.cname = lookup.cname(name)
        host.addresses = lookup.addresses(name)
    except DNSFailure as exc:
        host.error = exc.reason
        report.add(UNKNOWN, "mx-host-dns", f"MX host {name}: DNS look-up failed ({exc.reason})")
        return host
    if host.cname:
        report.add(WARNING, "mx-host-cname",
                   f"MX host {name} is a CNAME to {host.cname} (RFC 2181 10.3: must not be)")
    if not host.addresses:
        report.add(CRITICAL, "mx-host-no-address", f"MX host {name} has no address (A/AAAA)")
    return host


def _judge_mailer(report: MXReport, mailer: str | None, addresses: list[str],
                  expect_mx: bool) -> None:
    name = (mailer or "").rstrip(".").lower()
    targets = report.hosts or ([MXHost(0, report.domain, report.implicit_addresses)]
                               if report.implicit_addresses else [])
    matches = [h.name for h in targets
               if h.name.lower() == name or set(h.addresses) & set(addresses)]
    report.mailer_is_mx = bool(matches)
    shown = mailer or ", ".join(addresses)
    unknown = [h.name for h in targets if h.error]
    if matches:
        report.add(OK, "mx-mailer", f"mailer {shown} is MX host {matches[0]}")
    elif unknown:  # the mailer may be the MX host whose addresses could not be looked up
        report.mailer_is_mx = None
        report.add(UNKNOWN if expect_mx else OK, "mx-mailer-unknown",
                   f"cannot tell whether mailer {shown} is an MX host of {report.domain}: "
                   f"the look-up of MX host {unknown[0]} failed")
    else:
        report.add(WARNING if expect_mx else OK, "mx-mailer-not-mx",
                   f"mailer {shown} is not among the MX hosts of {report.domain}")
