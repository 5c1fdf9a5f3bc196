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
from mailprobe.net.dns import (
    DNSFailure,
    Lookup,
    describe_nameservers,
    is_ip_address,
    no_address_reason,
    resolve_target_partly,
)
from mailprobe.net.smtp import (
    ConnectError,
    Reply,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    TLSError,
    Transcript,
    ip_literal,
    parse_ehlo_extensions,
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
from mailprobe.probes.identity.names import generic_reason, host_name_problem


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
    """PTR names of ``address`` and the forward look-up of each.

    A failed PTR look-up raises (DNSFailure, or BudgetExhausted for the DNS share of the
    budget): nothing is known then. A failed forward look-up of one PTR name is recorded on
    that name and the others are still looked up: one confirmed name is enough for FCrDNS, so
    a broken name beside a confirmed one must not throw the confirmation away.
    """
    result = ReverseDNS(address)
    ip = ipaddress.ip_address(address)
    names = lookup.ptr(address)
    result.looked_up = True
    for name in names:
        ptr = PTRName(name, generic=generic_reason(name, address),
                      invalid=host_name_problem(name))
        result.names.append(ptr)
    for ptr in result.names:
        if ptr.invalid:
            continue  # never a confirmed name, whatever its A/AAAA say
        try:
            ptr.forward = lookup.addresses(ptr.name, _family_of(address))
        except (DNSFailure, BudgetExhausted) as exc:
            ptr.error = _dns_reason(exc, lookup)
            continue
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
        facts.ehlo = _greet(session, facts)
        facts.ehlo_time = time.monotonic() - ehlo_started
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


def _greet(session: SMTPSession, facts: SMTPFacts) -> Reply:
    """EHLO, and HELO when EHLO is refused for good (5xx) on a connection still open.

    Records which greeting was accepted and whether HELO was tried at all: a 421 to EHLO is
    not "EHLO and HELO refused".
    """
    reply = facts.ehlo = session.command(f"EHLO {facts.ehlo_sent}",
                                         stage="waiting for the reply to EHLO")
    if reply.positive:
        facts.ehlo_verb = "EHLO"
        facts.extensions = parse_ehlo_extensions(reply)
        return reply
    if not reply.permanent or not session.connected:
        return reply
    facts.helo_sent = True
    reply = session.command(f"HELO {facts.ehlo_sent}", stage="waiting for the reply to HELO")
    facts.ehlo_verb = "HELO" if reply.positive else ""
    return reply


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
    except ValueError as exc:  # a name the ssl module refuses as SNI (UnicodeError is one)
        tls.error = f"STARTTLS not completed: the name {sni} cannot be sent as SNI ({exc})"
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
    the budget). A DNS failure, or that share running out, is recorded where it happened and
    never raised: what DNS did establish is kept, and the SMTP part still runs, so a proven
    problem is never lost behind one that could not be determined.
    """
    options = options or ProbeOptions()
    started = time.monotonic()
    report = IdentityReport(target, options.port)
    try:
        addresses, failure = resolve_target_partly(target, lookup, options.family)
    except (DNSFailure, BudgetExhausted) as exc:  # an unusable address in the answer
        addresses, failure = [], exc
    if failure is not None:  # the addresses that could be had are still checked
        report.resolve_error = _dns_reason(failure, lookup)
    elif not addresses:
        report.no_address = no_address_reason(target, lookup, options.family)
    if is_ip_address(target) and options.family and _family_of(addresses[0]) != options.family:
        raise TargetError(f"-H {target} is not an IPv{options.family} address")
    for address in addresses:
        rdns = ReverseDNS(address)
        try:
            rdns = reverse_dns(address, lookup)
        except (DNSFailure, BudgetExhausted) as exc:
            rdns.error = _dns_reason(exc, lookup)
        report.addresses.append(AddressIdentity(address, rdns))
    if options.smtp:
        for identity in report.addresses:
            identity.smtp = smtp_identity(identity.address, options, deadline, report.transcript,
                                          sni_name(identity, target))
    report.dns_queries = lookup.queries
    report.elapsed = time.monotonic() - started
    return report


def sni_name(identity: AddressIdentity, target: str) -> str | None:
    """The name to send as TLS SNI: a confirmed PTR name, else any PTR name, else ``-H``;
    only a valid host name (RFC 6066 3: never an address, never a malformed name)."""
    rdns = identity.rdns
    for name in (*rdns.confirmed_names, *rdns.ptr_names, target):
        if host_name_problem(name) is None:
            return name.rstrip(".")
    return None


def _dns_reason(exc: Exception, lookup: Lookup) -> str:
    """A DNS failure in words; the look-ups run on a share of the budget (``lookup.deadline``),
    and a share spent means the DNS server did not answer in time."""
    if isinstance(exc, BudgetExhausted):
        return (f"DNS server {describe_nameservers(lookup.resolver)} did not answer within "
                f"{exc.budget:.1f}s ({exc.stage})")
    return str(exc)
