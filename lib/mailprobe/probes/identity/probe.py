"""The mailer's identity as a receiving MTA sees it: reverse DNS, FCrDNS, banner, EHLO.

:func:`probe` gathers the facts (addresses of ``-H``, PTR names, their A/AAAA records, the
banner, the EHLO reply, STARTTLS and optionally the certificate); :func:`assess` turns them into
:class:`Finding` objects with a level. Nothing here knows about Nagios.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import DNSFailure, Lookup, is_ip_address, resolve_target
from mailprobe.net.smtp import (
    ConnectError,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    TLSError,
    Transcript,
    ip_literal,
)
from mailprobe.net.tlscert import CertificateError, parse_certificate
from mailprobe.probes.identity.model import (
    AddressIdentity,
    IdentityReport,
    PTRName,
    ReverseDNS,
    SMTPFacts,
    TLSFacts,
)
from mailprobe.probes.identity.names import generic_reason


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


