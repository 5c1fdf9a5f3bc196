"""The mailer's identity as a receiving MTA sees it: reverse DNS, FCrDNS, banner, EHLO.

:func:`probe` gathers the facts (addresses of ``-H``, PTR names, their A/AAAA records, the
banner, the EHLO reply, STARTTLS and optionally the certificate); :func:`assess` turns them into
:class:`Finding` objects with a level. Nothing here knows about Nagios.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from mailprobe.deadline import BudgetExhausted, Deadline
from mailprobe.dns import DNSFailure, Lookup, is_ip_address, resolve_target
from mailprobe.findings import Finding, Level
from mailprobe.smtp import (
    ConnectError,
    Reply,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    TLSError,
    Transcript,
    greeting_name,
    ip_literal,
)
from mailprobe.tlscert import CertificateError, CertificateInfo, parse_certificate

# -- names ---------------------------------------------------------------------------------

def normalise_name(name: str) -> str:
    """Lower case, no trailing dot, IDNA (A-label) form where the name is Unicode."""
    name = name.strip().rstrip(".")
    with contextlib.suppress(UnicodeError):
        name = name.encode("idna").decode("ascii")
    return name.lower()


def names_match(first: str, second: str) -> bool:
    """Whether two host names are the same name (case, trailing dot and IDNA ignored)."""
    a, b = normalise_name(first), normalise_name(second)
    return bool(a) and a == b


def matches_any(name: str, candidates: list[str]) -> bool:
    return any(names_match(name, other) for other in candidates)


# -- generic / dynamic PTR heuristics ------------------------------------------------------------

# Words ISPs use in the reverse names of access lines and address pools (compared with whole
# tokens: a label split at dots, dashes and letter/digit boundaries, so "adsl123" has "adsl").
GENERIC_WORDS = frozenset({
    "dynamic", "dyn", "dynip", "dip", "dsl", "adsl", "vdsl", "xdsl", "sdsl", "dhcp", "pool",
    "pools", "cable", "ppp", "pppoe", "pppoa", "dial", "dialup", "dialin", "modem", "broadband",
    "client", "clients", "customer", "cust", "subscriber", "residential", "dyndsl", "unassigned",
    "nat", "cpe", "ftth", "fttx", "wireless", "wifi", "mobile", "lte", "hsd", "dslam",
    "catv", "resnet", "noptr", "nxdomain",
})


@lru_cache(maxsize=1)
def _public_suffixes() -> object | None:
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError:  # pragma: no cover - it is a declared dependency
        return None
    return PublicSuffixList()


def host_part(name: str) -> str:
    """The labels left of the registrable domain (``c-1-2-3-4.hsd1`` of ``…comcast.net``).

    Falls back to everything but the last two labels; a bare registrable domain yields ''.
    """
    name = normalise_name(name)
    psl = _public_suffixes()
    registrable = psl.privatesuffix(name) if psl is not None else None  # type: ignore[attr-defined]
    if not registrable:
        labels = name.split(".")
        registrable = ".".join(labels[-2:]) if len(labels) > 2 else ""
    if registrable and name.endswith("." + registrable):
        return name[: -len(registrable) - 1]
    return "" if registrable else name.split(".")[0]


def _contiguous(needle: list[int], haystack: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _embeds_ipv4(host: str, address: ipaddress.IPv4Address) -> str | None:
    octets = list(address.packed)
    numbers = [int(run) for run in re.findall(r"\d+", host) if len(run) <= 3]
    for size in (4, 3):
        for start in range(0, 5 - size):
            part = octets[start : start + size]
            if _contiguous(part, numbers) or _contiguous(part[::-1], numbers):
                return "-".join(str(o) for o in part)
    compact = re.sub(r"[^0-9a-z]", "", host)
    padded = "".join(f"{o:03d}" for o in octets)
    if padded in compact or padded in re.sub(r"\D", "", host):
        return padded
    hexform = address.packed.hex()
    if hexform in compact:
        return hexform
    decimal = str(int(address))
    if len(decimal) >= 8 and decimal in re.findall(r"\d+", host):
        return decimal
    return None


def _embeds_ipv6(host: str, address: ipaddress.IPv6Address) -> str | None:
    compact = re.sub(r"[^0-9a-f]", "", host)
    full = address.exploded.replace(":", "")
    if full in compact:
        return address.compressed
    dashed = address.compressed.replace(":", "-")
    if len(dashed) >= 6 and dashed in host:
        return dashed
    groups = [int(g, 16) for g in address.exploded.split(":")]
    tokens = [int(t, 16) for t in re.findall(r"[0-9a-f]+", host) if len(t) <= 4]
    for start in range(0, 5):
        part = groups[start : start + 4]
        if any(part) and _contiguous(part, tokens):
            return ":".join(f"{g:x}" for g in part)
    return None


def generic_reason(name: str, address: str) -> str | None:
    """Why ``name`` looks like a generic/dynamic reverse name for ``address``, or None."""
    host = host_part(name)
    if not host:
        return None
    ip = ipaddress.ip_address(address)
    embedded = _embeds_ipv4(host, ip) if isinstance(ip, ipaddress.IPv4Address) \
        else _embeds_ipv6(host, ip)
    reasons = []
    if embedded:
        reasons.append(f"embeds the address ({embedded})")
    tokens = [tok for label in re.split(r"[^0-9a-z]+", host) for tok in
              re.findall(r"[a-z]+|[0-9]+", label)]
    words = sorted({tok for tok in tokens if tok in GENERIC_WORDS})
    if words:
        reasons.append("contains " + ", ".join(f"'{w}'" for w in words))
    return " and ".join(reasons) if reasons else None


# -- the facts -----------------------------------------------------------------------------------

@dataclass
class PTRName:
    """One PTR name of an address and what its forward look-up says."""

    name: str
    forward: list[str] = field(default_factory=list)
    confirmed: bool = False
    generic: str | None = None
    looked_up: bool = False


@dataclass
class ReverseDNS:
    """PTR names of one address, forward-confirmed (FCrDNS) or not."""

    address: str
    names: list[PTRName] = field(default_factory=list)
    error: str | None = None  # the DNS could not answer
    looked_up: bool = False

    @property
    def confirmed_names(self) -> list[str]:
        return [p.name for p in self.names if p.confirmed]

    @property
    def ptr_names(self) -> list[str]:
        return [p.name for p in self.names]


@dataclass
class TLSFacts:
    version: str | None = None
    error: str | None = None
    certificate: CertificateInfo | None = None


@dataclass
class SMTPFacts:
    """What one SMTP connection showed."""

    address: str
    port: int
    error: str | None = None
    error_code: str = ""  # connect-failed | banner-timeout | timeout | dropped | protocol
    banner: Reply | None = None
    banner_time: float | None = None
    ehlo_sent: str = ""
    ehlo: Reply | None = None
    ehlo_verb: str = ""
    ehlo_time: float | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    tls: TLSFacts | None = None
    elapsed: float = 0.0

    @property
    def banner_name(self) -> str:
        return greeting_name(self.banner) if self.banner and self.banner.code == 220 else ""

    @property
    def ehlo_name(self) -> str:
        return greeting_name(self.ehlo) if self.ehlo and self.ehlo.positive else ""

    @property
    def starttls_offered(self) -> bool:
        return "STARTTLS" in self.extensions


@dataclass
class AddressIdentity:
    address: str
    rdns: ReverseDNS
    smtp: SMTPFacts | None = None

    def line(self) -> str:
        """``127.0.0.1 -> mx.example.test -> 127.0.0.1, banner mx.example.test``."""
        text = self.address
        if self.rdns.error:
            text += " -> (PTR unknown: DNS failed)"
        elif not self.rdns.looked_up:
            text += " -> (PTR not looked up)"
        elif not self.rdns.names:
            text += " -> (no PTR)"
        else:
            text += " -> " + ",".join(self.rdns.ptr_names)
            first = next((p for p in self.rdns.names if p.confirmed), self.rdns.names[0])
            if first.confirmed:
                text += f" -> {self.address}"
            elif first.looked_up:
                text += " -> " + (",".join(first.forward) if first.forward else "(no address)")
        smtp = self.smtp
        if smtp is None:
            return text
        if smtp.banner is None:
            return text + ", no banner"
        if smtp.banner.code != 220:
            return text + f", banner {smtp.banner.code}"
        text += f", banner {smtp.banner_name or '(no name)'}"
        if smtp.ehlo_name and not names_match(smtp.ehlo_name, smtp.banner_name):
            text += f", {smtp.ehlo_verb or 'EHLO'} {smtp.ehlo_name}"
        return text


@dataclass
class IdentityReport:
    target: str
    port: int
    addresses: list[AddressIdentity] = field(default_factory=list)
    resolve_error: str | None = None
    elapsed: float = 0.0
    dns_queries: int = 0
    transcript: Transcript = field(default_factory=Transcript)

    def line(self) -> str:
        return "; ".join(a.line() for a in self.addresses) or self.target


# -- the probe -----------------------------------------------------------------------------------

class TargetError(ValueError):
    """The target contradicts the options (e.g. an IPv4 address with -6)."""


@dataclass
class ProbeOptions:
    port: int = 25
    family: int = 0  # 4, 6 or 0
    source_address: str | None = None
    ehlo_name: str | None = None  # default: our address literal
    starttls_certificate: bool = False  # STARTTLS and read the certificate
    smtp: bool = True


def _family_of(address: str) -> int:
    return 6 if ":" in address else 4


def reverse_dns(address: str, lookup: Lookup) -> ReverseDNS:
    """PTR names of ``address`` and the forward look-up of each (raises DNSFailure)."""
    result = ReverseDNS(address)
    ip = ipaddress.ip_address(address)
    names = lookup.ptr(address)
    result.looked_up = True
    for name in names:
        ptr = PTRName(name, generic=generic_reason(name, address))
        result.names.append(ptr)
    for ptr in result.names:
        ptr.forward = lookup.addresses(ptr.name, _family_of(address))
        ptr.looked_up = True
        ptr.confirmed = any(_same_ip(ip, other) for other in ptr.forward)
    return result


def _same_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


def smtp_identity(address: str, options: ProbeOptions, deadline: Deadline,
                  transcript: Transcript, sni: str | None = None) -> SMTPFacts:
    """Connect, read the banner, EHLO (HELO fallback), optionally STARTTLS; never raises for
    server behaviour (it is recorded in the result)."""
    facts = SMTPFacts(address, options.port)
    session = SMTPSession(address, options.port, deadline=deadline,
                          source_address=options.source_address, transcript=transcript)
    started = time.monotonic()
    try:
        try:
            facts.banner = session.connect()
        except ConnectError as exc:
            facts.error, facts.error_code = str(exc), "connect-failed"
            return facts
        except (SMTPTimeout, BudgetExhausted) as exc:
            facts.banner_time = time.monotonic() - started
            facts.error, facts.error_code = _why(exc), "banner-timeout"
            return facts
        facts.banner_time = session.banner_time
        if facts.banner.code != 220:
            session.quit()
            return facts
        facts.ehlo_sent = options.ehlo_name or ip_literal(_local_address(session) or address)
        ehlo_started = time.monotonic()
        facts.ehlo = session.hello(facts.ehlo_sent)
        facts.ehlo_time = time.monotonic() - ehlo_started
        facts.ehlo_verb = session.greeting_verb
        facts.extensions = dict(session.esmtp)
        if options.starttls_certificate and facts.starttls_offered and facts.ehlo.positive:
            facts.tls = _starttls(session, sni)
        session.quit()
    except (SMTPTimeout, BudgetExhausted) as exc:
        facts.error, facts.error_code = _why(exc), "timeout"
    except SMTPError as exc:
        facts.error = str(exc)
        facts.error_code = "dropped" if "connection" in str(exc) else "protocol"
    finally:
        session.close()
        facts.elapsed = time.monotonic() - started
    return facts


def _why(exc: Exception) -> str:
    if isinstance(exc, BudgetExhausted):
        return f"timed out while {exc.stage}"
    return str(exc)


def _local_address(session: SMTPSession) -> str | None:
    try:
        return session.sock.getsockname()[0] if session.sock else None
    except OSError:
        return None


def _starttls(session: SMTPSession, sni: str | None) -> TLSFacts:
    tls = TLSFacts()
    try:
        reply = session.starttls(server_hostname=sni)
    except TLSError as exc:
        tls.error = str(exc)
        return tls
    if not reply.positive:
        tls.error = f"STARTTLS refused: {reply}"
        return tls
    sock = session.sock
    tls.version = sock.version() if sock is not None and hasattr(sock, "version") else None
    der = session.peer_certificate
    if der is None:
        tls.error = "the server sent no certificate"
        return tls
    try:
        tls.certificate = parse_certificate(der)
    except CertificateError as exc:
        tls.error = str(exc)
    return tls


def probe(target: str, lookup: Lookup, deadline: Deadline,
          options: ProbeOptions | None = None) -> IdentityReport:
    """Gather every fact about ``target`` (a host name or an IP address).

    ``lookup`` may run on a shorter deadline than ``deadline`` (the check gives DNS a share of
    the budget): when its deadline runs out while the check's has not, the DNS server counts as
    not answering and the SMTP part still runs.
    """
    options = options or ProbeOptions()
    started = time.monotonic()
    report = IdentityReport(target, options.port)
    dns_error: str | None = None
    try:
        addresses = resolve_target(target, lookup, options.family)
    except (DNSFailure, BudgetExhausted) as exc:
        _reraise_if_ours(exc, deadline)
        report.resolve_error = _dns_reason(exc, lookup)
        addresses = []
    if is_ip_address(target) and options.family and _family_of(addresses[0]) != options.family:
        raise TargetError(f"-H {target} is not an IPv{options.family} address")
    for address in addresses:
        rdns = ReverseDNS(address)
        if dns_error is None:
            try:
                rdns = reverse_dns(address, lookup)
            except (DNSFailure, BudgetExhausted) as exc:
                _reraise_if_ours(exc, deadline)
                dns_error = _dns_reason(exc, lookup)
        if dns_error is not None:
            rdns.error = dns_error
        report.addresses.append(AddressIdentity(address, rdns))
    if options.smtp:
        for identity in report.addresses:
            sni = identity.rdns.confirmed_names[:1] or identity.rdns.ptr_names[:1]
            if not sni and not is_ip_address(target):
                sni = [target]
            identity.smtp = smtp_identity(identity.address, options, deadline, report.transcript,
                                          sni[0] if sni else None)
    report.dns_queries = lookup.queries
    report.elapsed = time.monotonic() - started
    return report


def _reraise_if_ours(exc: Exception, deadline: Deadline) -> None:
    """A BudgetExhausted of the whole check is not a DNS problem: let the plugin report it."""
    if isinstance(exc, BudgetExhausted) and deadline.expired():
        raise exc


def _dns_reason(exc: Exception, lookup: Lookup) -> str:
    if isinstance(exc, BudgetExhausted):
        servers = ", ".join(lookup.resolver.nameservers) or "the resolver"  # type: ignore[arg-type]
        port = lookup.resolver.port
        where = servers if port == 53 else f"{servers} port {port}"
        return f"DNS server {where} did not answer within {exc.budget:.1f}s ({exc.stage})"
    return str(exc)


# -- the assessment ------------------------------------------------------------------------------

Adder = Callable[[Level, str, str], None]


@dataclass
class Policy:
    """What the check demands (from the plugin's options)."""

    strict: bool = False  # name mismatches are CRITICAL instead of WARNING
    expect_name: str | None = None
    starttls_required: bool = True
    cert_days: tuple[float, float] | None = None  # warn, critical: days before expiry

    @property
    def mismatch(self) -> Level:
        return Level.CRITICAL if self.strict else Level.WARNING


def assess(report: IdentityReport, policy: Policy) -> list[Finding]:
    """Every finding, worst first within each address (OK findings are information)."""
    findings: list[Finding] = []
    if report.resolve_error:
        findings.append(Finding(Level.UNKNOWN, "dns-failure",
                                f"cannot resolve {report.target}: {report.resolve_error}"))
    elif not report.addresses:
        findings.append(Finding(Level.UNKNOWN, "no-address",
                                f"{report.target} has no address (A/AAAA)"))
    for identity in report.addresses:
        findings.extend(assess_address(identity, policy))
    return findings


def assess_address(identity: AddressIdentity, policy: Policy) -> list[Finding]:
    found: list[Finding] = []
    address = identity.address

    def add(level: Level, code: str, text: str) -> None:
        found.append(Finding(level, code, text, subject=address))

    rdns = identity.rdns
    if rdns.error:
        add(Level.UNKNOWN, "dns-failure", rdns.error)
    elif rdns.looked_up:
        _assess_rdns(rdns, policy, add)
    smtp = identity.smtp
    if smtp is not None:
        _assess_smtp(identity, policy, add)
    return found


def _assess_rdns(rdns: ReverseDNS, policy: Policy, add: Adder) -> None:
    address = rdns.address
    if not rdns.names:
        add(Level.CRITICAL, "no-ptr", f"{address} has no PTR record")
        return
    if len(rdns.names) > 1:
        add(Level.OK, "several-ptr", f"{address} has {len(rdns.names)} PTR names: "
            + ", ".join(rdns.ptr_names))
    confirmed = rdns.confirmed_names
    for ptr in rdns.names:
        if ptr.confirmed:
            add(Level.OK, "fcrdns", f"PTR {ptr.name} resolves back to {address} (FCrDNS)")
        else:
            where = ", ".join(ptr.forward) if ptr.forward else "no address"
            level = Level.OK if confirmed else Level.CRITICAL
            add(level, "fcrdns-failed",
                f"PTR {ptr.name} does not resolve back to {address} ({where})")
        if ptr.generic:
            add(Level.WARNING, "generic-ptr", f"PTR {ptr.name} looks generic/dynamic: "
                f"{ptr.generic}")
    if policy.expect_name and not matches_any(policy.expect_name, rdns.ptr_names):
        add(policy.mismatch, "ptr-unexpected",
            f"PTR {', '.join(rdns.ptr_names)} is not the expected name {policy.expect_name}")


def _expected_names(identity: AddressIdentity, policy: Policy) -> tuple[list[str], str]:
    if policy.expect_name:
        return [policy.expect_name], "the expected name"
    rdns = identity.rdns
    if rdns.confirmed_names:
        return rdns.confirmed_names, "PTR"
    return rdns.ptr_names, "PTR"


def _assess_smtp(identity: AddressIdentity, policy: Policy, add: Adder) -> None:
    smtp = identity.smtp
    assert smtp is not None
    where = f"{smtp.address}:{smtp.port}" if ":" not in smtp.address \
        else f"[{smtp.address}]:{smtp.port}"
    if smtp.error_code == "connect-failed":
        add(Level.CRITICAL, "connect-failed", f"mail service down: {smtp.error}")
        return
    if smtp.error_code == "banner-timeout":
        add(Level.UNKNOWN, "banner-timeout",
            f"no banner from {where} within {smtp.banner_time or 0:.1f}s")
        return
    banner = smtp.banner
    if banner is None:
        reason = smtp.error or "no reply"
        text = f"no banner: {reason}" if where in reason else f"no banner from {where}: {reason}"
        add(Level.CRITICAL, smtp.error_code or "no-banner", text)
        return
    if banner.code != 220:
        add(Level.CRITICAL, "bad-banner",
            f"banner is not 220: {banner.code} {banner.text}".rstrip())
        return
    add(Level.OK, "banner", f"banner {banner.code} {banner.text} ({smtp.banner_time or 0:.3f}s)")
    expected, what = _expected_names(identity, policy)
    banner_ok = bool(smtp.banner_name) and matches_any(smtp.banner_name, expected)
    ehlo = smtp.ehlo
    ehlo_ok = bool(smtp.ehlo_name) and matches_any(smtp.ehlo_name, expected)
    verb = smtp.ehlo_verb or "EHLO"
    if expected:
        shown = ", ".join(expected)
        same = names_match(smtp.banner_name, smtp.ehlo_name)
        if not banner_ok and ehlo is not None and ehlo.positive and not ehlo_ok and same:
            add(policy.mismatch, "name-mismatch",
                f"banner and {verb} name {smtp.banner_name} do not match {what} {shown}")
        else:
            if not banner_ok:
                name = smtp.banner_name or "(none)"
                add(policy.mismatch, "banner-mismatch",
                    f"banner name {name} does not match {what} {shown}")
            if ehlo is not None and ehlo.positive and not ehlo_ok:
                add(policy.mismatch, "ehlo-mismatch",
                    f"{verb} name {smtp.ehlo_name or '(none)'} does not match {what} {shown}")
    if smtp.error_code:
        level = Level.UNKNOWN if smtp.error_code == "timeout" else Level.CRITICAL
        add(level, smtp.error_code, f"{where}: {smtp.error}")
        return
    if ehlo is None:
        return
    if not ehlo.positive:
        add(Level.WARNING, "ehlo-refused",
            f"EHLO and HELO {smtp.ehlo_sent} refused: {ehlo.code} {ehlo.text}".rstrip())
        return
    add(Level.OK, "ehlo", f"{verb} reply {ehlo.code} {ehlo.lines[0] if ehlo.lines else ''}"
        f" ({smtp.ehlo_time or 0:.3f}s)")
    if smtp.ehlo_verb == "HELO":
        add(Level.OK, "helo-only", "EHLO refused, HELO accepted (no ESMTP)")
    if smtp.starttls_offered:
        add(Level.OK, "starttls", "STARTTLS offered")
    else:
        add(Level.WARNING if policy.starttls_required else Level.OK, "no-starttls",
            "no STARTTLS offered")
    if policy.cert_days is not None and smtp.starttls_offered:
        _assess_tls(identity, policy, add)


def _assess_tls(identity: AddressIdentity, policy: Policy, add: Adder) -> None:
    smtp = identity.smtp
    assert smtp is not None and policy.cert_days is not None
    tls = smtp.tls
    if tls is None:
        return
    if tls.error or tls.certificate is None:
        add(Level.CRITICAL, "tls-failed", tls.error or "no certificate")
        return
    cert = tls.certificate
    warn_days, crit_days = policy.cert_days
    days = cert.days_left
    expires = cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if cert.expired:
        add(Level.CRITICAL, "cert-expired", f"certificate expired on {expires}")
    elif days < crit_days:
        add(Level.CRITICAL, "cert-expiry", f"certificate expires in {days:.1f} days ({expires})")
    elif days < warn_days:
        add(Level.WARNING, "cert-expiry", f"certificate expires in {days:.1f} days ({expires})")
    else:
        add(Level.OK, "cert-expiry", f"certificate valid for {days:.0f} more days ({expires})")
    if cert.not_yet_valid:
        add(Level.CRITICAL, "cert-not-yet-valid",
            f"certificate not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC")
    names = ", ".join(cert.names) or "(no names)"
    ptr = identity.rdns.confirmed_names or identity.rdns.ptr_names
    if ptr:
        covered = [n for n in ptr if cert.covers(n)]
        verdict = f"covers PTR {covered[0]}" if covered else f"does not cover PTR {ptr[0]}"
    else:
        verdict = "no PTR name to compare"
    signed = ", self-signed" if cert.self_signed else ""
    add(Level.OK, "cert-names", f"certificate ({tls.version or 'TLS'}{signed}) for {names}: "
        f"{verdict}")
