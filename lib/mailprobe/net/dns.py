"""The one place resolvers are made, and typed look-ups that return plain results.

A look-up either answers (possibly with nothing: NXDOMAIN and NODATA are answers) or raises
:class:`DNSFailure` (timeout, SERVFAIL, REFUSED, malformed answers): callers must never
confuse "could not ask" with "nothing there".
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import BudgetExhausted, Deadline

if TYPE_CHECKING:
    import dns.resolver


def _dnspython() -> types.ModuleType:
    """dnspython's modules this one uses, imported on first use: a run that never asks DNS
    (the relay check of an IP address) is spared their ~30 ms."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.nameserver
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
    import dns.reversename

    return dns


DEFAULT_DNS_PORT = 53


class DNSFailure(Exception):
    """The question could not be answered (as opposed to a negative answer)."""

    def __init__(self, qname: str, rdtype: str, reason: str) -> None:
        super().__init__(f"DNS look-up {qname} {rdtype} failed: {reason}")
        self.qname = qname
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True)
class Nameserver:
    """A resolver to ask, from ``--nameserver HOST[:PORT]`` (IPv6 as ``[addr]:port``)."""

    address: str
    port: int = DEFAULT_DNS_PORT

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        """Parse ``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353``; ValueError otherwise."""
        text = text.strip()
        host, port = text, DEFAULT_DNS_PORT
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep:
                raise ValueError(f"bad nameserver {text!r}: missing ']'")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"bad nameserver {text!r}")
                port = _port(rest[1:], text)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _port(port_text, text)
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise ValueError(f"bad nameserver {text!r}: give an IP address") from exc
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return host if self.port == DEFAULT_DNS_PORT else f"{host}:{self.port}"

    def with_port(self) -> str:
        """``HOST:PORT`` even for port 53 (``[::1]:53`` for IPv6)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad nameserver {whole!r}: port must be 1-65535")
    return int(text)


class NameserverRefused(ConnectionRefusedError):
    """The resolver's port is closed (ICMP port unreachable, or a TCP reset)."""

    def __init__(self, where: str, tcp: bool) -> None:
        how = " over TCP" if tcp else ""
        super().__init__(f"the resolver at {where} refused the connection{how} (port closed)")


@functools.cache
def _refusal_aware_class() -> type:
    """dnspython's Do53 nameserver, asking over a *connected* UDP socket.

    dnspython's own UDP socket is unconnected, so the kernel never reports the ICMP "port
    unreachable" of a closed resolver port and the look-up waits for its whole lifetime. On a
    connected socket the refusal arrives as ConnectionRefusedError at once; the nameserver then
    stays refused for the rest of the run (every later question fails without traffic).
    dnspython takes a nameserver that raises an OSError out of the resolution, so a refused
    nameserver ends its look-up at once (NoNameservers) unless another one answers.
    """
    dns = _dnspython()
    do53: Any = dns.nameserver.Do53Nameserver

    class RefusalAwareNameserver(do53):
        refused_over: str | None = None  # "udp" or "tcp" once the port was found closed

        def where(self) -> str:
            return Nameserver(self.address, self.port).with_port()

        def query(self, request: Any, timeout: float, source: str | None, source_port: int,
                  max_size: bool, one_rr_per_rrset: bool = False,
                  ignore_trailing: bool = False) -> Any:
            if self.refused_over is not None:
                raise NameserverRefused(self.where(), tcp=self.refused_over == "tcp")
            try:
                if max_size:
                    return super().query(request, timeout, source, source_port, max_size,
                                         one_rr_per_rrset, ignore_trailing)
                return self._udp(request, timeout, source, source_port, one_rr_per_rrset,
                                 ignore_trailing)
            except ConnectionRefusedError as exc:
                self.refused_over = "tcp" if max_size else "udp"
                raise NameserverRefused(self.where(), tcp=max_size) from exc

        def _udp(self, request: Any, timeout: float, source: str | None, source_port: int,
                 one_rr_per_rrset: bool, ignore_trailing: bool) -> Any:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                if source or source_port:
                    sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                               source_port))
                sock.connect((self.address, self.port))
                return dns.query.udp(request, self.address, timeout=timeout, port=self.port,
                                     raise_on_truncation=True, one_rr_per_rrset=one_rr_per_rrset,
                                     ignore_trailing=ignore_trailing, ignore_errors=True,
                                     ignore_unexpected=True, sock=sock)

    return RefusalAwareNameserver


def make_resolver(
    nameservers: list[Nameserver] | None = None, timeout: float = 5.0
) -> dns.resolver.Resolver:
    """A resolver asking ``nameservers`` (each on its own port), or the system's when None.

    The system configuration is only read when no nameserver is given, so tests and the lab
    never touch /etc/resolv.conf. Either way a nameserver whose port is closed fails at once
    (:class:`NameserverRefused`) instead of using up the time budget.
    """
    dns = _dnspython()
    refusal_aware = _refusal_aware_class()
    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.port = nameservers[0].port
        resolver.nameservers = [refusal_aware(ns.address, ns.port) for ns in nameservers]
    else:
        resolver = dns.resolver.Resolver()
        resolver.nameservers = [
            refusal_aware(ns, resolver.nameserver_ports.get(ns, resolver.port))
            if isinstance(ns, str) and is_ip_address(ns) else ns
            for ns in resolver.nameservers]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.search = []
    resolver.use_search_by_default = False
    return resolver


def describe_nameservers(resolver: dns.resolver.Resolver) -> str:
    """The resolver's servers for a message: ``127.0.0.1``, ``127.0.0.1 port 5353``."""
    names = []
    for ns in resolver.nameservers:
        address = getattr(ns, "address", ns)
        port = getattr(ns, "port", resolver.port)
        names.append(str(address) if port == DEFAULT_DNS_PORT else f"{address} port {port}")
    return ", ".join(names) or "the resolver"


class Lookup:
    """Typed look-ups through one resolver, every one bounded by the check's deadline."""

    def __init__(self, resolver: dns.resolver.Resolver, deadline: Deadline) -> None:
        self.resolver = resolver
        self.deadline = deadline
        self.try_timeout = getattr(resolver, "timeout", 5.0)  # per try, as the resolver was made
        self.queries = 0
        self.log: list[str] = []

    def query(self, qname: str, rdtype: str) -> dns.resolver.Answer | None:
        """The answer, or None for NXDOMAIN/NODATA; DNSFailure for anything else.

        Every question and its outcome go to :attr:`log` (the ``-vvv`` DNS transcript).
        """
        started = time.monotonic()
        try:
            answer = self._ask(qname, rdtype)
        except DNSFailure as exc:
            self._note(started, qname, rdtype, f"FAILED: {exc.reason}")
            raise
        except BudgetExhausted:
            self._note(started, qname, rdtype, "not answered before the time budget ran out")
            raise
        text = "NXDOMAIN/NODATA" if answer is None else " ".join(rr.to_text() for rr in answer)
        self._note(started, qname, rdtype, text)
        return answer

    @property
    def unreachable(self) -> bool:
        """Whether every nameserver refused (its port is closed): asking more is pointless."""
        servers = self.resolver.nameservers
        return bool(servers) and all(getattr(ns, "refused_over", None) for ns in servers)

    def _note(self, started: float, qname: str, rdtype: str, outcome: str) -> None:
        took = (time.monotonic() - started) * 1000
        line = f"{qname} {rdtype} -> {outcome}"
        self.log.append(f"{took:6.1f} ms  {line[:300]}")

    def _ask(self, qname: str, rdtype: str) -> dns.resolver.Answer | None:
        dns = _dnspython()
        stage = f"looking up {qname} {rdtype}"
        lifetime, per_try = self._budget(stage)
        self.queries += 1
        try:
            return self._resolver(per_try).resolve(
                qname, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=True
            )
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer as exc:
            stray = _stray_records(exc.kwargs.get("response"))
            if stray:
                raise DNSFailure(qname, rdtype, f"the answer holds records for another name "
                                 f"({stray}): a broken or spoofed answer") from exc
            return None
        except dns.resolver.LifetimeTimeout as exc:
            if self.deadline.expired():
                raise BudgetExhausted(stage, self.deadline.budget) from exc
            raise DNSFailure(qname, rdtype, "timed out") from exc
        except dns.resolver.NoNameservers as exc:
            raise DNSFailure(qname, rdtype, _no_nameservers_reason(exc)) from exc
        except dns.resolver.YXDOMAIN as exc:
            raise DNSFailure(qname, rdtype, "name too long after DNAME") from exc
        except dns.exception.DNSException as exc:
            raise DNSFailure(qname, rdtype, str(exc) or type(exc).__name__) from exc

    def _budget(self, stage: str) -> tuple[float, float]:
        """(lifetime, per-try timeout) that cannot overrun the deadline.

        dnspython sleeps a back-off of up to 2 s between rounds of tries without looking at
        the lifetime, so a lifetime long enough for several tries keeps 2 s in hand, and a
        short one gets a single try.
        """
        left = self.deadline.timeout(stage)
        if left <= self.try_timeout + 2.0:
            return left, left
        return left - 2.0, self.try_timeout

    def _resolver(self, per_try: float) -> dns.resolver.Resolver:
        self.resolver.timeout = per_try
        return self.resolver

    def addresses(self, name: str, family: int = 0) -> list[str]:
        """A and/or AAAA addresses of ``name`` (family 4, 6 or 0 for both)."""
        found: list[str] = []
        for rdtype, fam in (("A", 4), ("AAAA", 6)):
            if family in (0, fam):
                answer = self.query(name, rdtype)
                if answer is not None:
                    found.extend(rr.to_text() for rr in answer)
        return found

    def ptr(self, address: str) -> list[str]:
        """PTR names of an IP address, without the trailing dot."""
        answer = self.query(_dnspython().reversename.from_address(address).to_text(), "PTR")
        return [rr.target.to_text(omit_final_dot=True) for rr in answer] if answer else []

    def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs sorted by preference; exchange '.' for null MX."""
        answer = self.query(domain, "MX")
        if answer is None:
            return []
        pairs = [(rr.preference, rr.exchange.to_text(omit_final_dot=True) or ".") for rr in answer]
        return sorted(pairs)

    def txt(self, name: str) -> list[str]:
        """TXT records, each with its strings joined (as SPF requires)."""
        answer = self.query(name, "TXT")
        if answer is None:
            return []
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]

    def cname(self, name: str) -> str | None:
        answer = self.query(name, "CNAME")
        return answer[0].target.to_text(omit_final_dot=True) if answer else None


def _stray_records(response: object) -> str:
    """The owner of answer records that belong neither to the question nor to its CNAME chain
    ('' when there are none): such an answer is not "no data", it is broken."""
    dns = _dnspython()
    if not isinstance(response, dns.message.QueryMessage) or not response.answer:
        return ""
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException:
        return ""
    ours = {response.question[0].name, chain.canonical_name,
            *(rrset.name for rrset in chain.cnames)} if response.question else set()
    stray = [rrset.name.to_text() for rrset in response.answer if rrset.name not in ours]
    return stray[0] if stray else ""


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    dns = _dnspython()
    errors = exc.kwargs.get("errors") or []
    refused = [err for _server, _tcp, _port, err, _response in errors
               if isinstance(err, NameserverRefused)]
    if refused and len(refused) == len(errors):
        return "; ".join(dict.fromkeys(str(err) for err in refused))
    for _server, _tcp, _port, err, response in errors:
        if isinstance(response, dns.message.Message):
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR and err is not None:
                # an answer dnspython rejected (CNAME loop, malformed records)
                return f"the resolver's answer is unusable: {err}"
            return f"the resolver answered {dns.rcode.to_text(rcode)}"
    for _server, tcp, _port, err, _response in reversed(errors):  # the last attempt
        if err is not None:
            how = "over TCP" if tcp else "over UDP"
            if isinstance(err, EOFError):
                return f"the server closed the connection {how} without an answer"
            return f"no usable answer {how}: {str(err) or type(err).__name__}"
    return "no resolver answered"


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class UnusableAddress(DNSFailure):
    """The DNS answered with an address that cannot be a mail server (e.g. 0.0.0.0)."""


def resolve_target(host: str, lookup: Lookup, family: int = 0) -> list[str]:
    """The IP addresses to probe for ``-H``: the address itself, or the name's A/AAAA.

    Raises :class:`UnusableAddress` when the name resolves to an address that cannot be a mail
    server (0.0.0.0, multicast, ...): probing it would audit the wrong host.
    """
    if is_ip_address(host):
        return [str(ipaddress.ip_address(host))]
    addresses = lookup.addresses(host, family)
    for address in addresses:
        why = unusable_reason(address)
        if why:
            rdtype = "AAAA" if ":" in address else "A"
            raise UnusableAddress(host, rdtype, f"the answer {address} cannot be a mail server "
                                  f"({why}): fix the DNS or give -H an address")
    return addresses


def resolve_target_partly(host: str, lookup: Lookup,
                          family: int = 0) -> tuple[list[str], DNSFailure | BudgetExhausted | None]:
    """:func:`resolve_target` family by family: the addresses that could be had, and the
    failure of the family that could not be asked (None when every look-up answered).

    A SERVFAIL for the AAAA question then still leaves the IPv4 addresses to check, with the
    failure reported beside them, instead of nothing checked at all. Asks the same questions as
    :func:`resolve_target`; :class:`UnusableAddress` still raises.
    """
    families = [family] if family or is_ip_address(host) else [4, 6]
    found: list[str] = []
    failure: DNSFailure | BudgetExhausted | None = None
    for each in families:
        try:
            found += resolve_target(host, lookup, each)
        except UnusableAddress:
            raise
        except (DNSFailure, BudgetExhausted) as exc:
            failure = failure or exc
    return found, failure


FAMILY_RECORDS = {4: "A", 6: "AAAA"}


def no_address_reason(host: str, lookup: Lookup, family: int = 0) -> str:
    """Why :func:`resolve_target` found no address for ``host``, in a postmaster's words.

    With ``-4``/``-6`` (``family``) it asks for the other family too, so an IPv6-only name
    checked with ``-4`` says so instead of "has no address". Never raises: a failure of that
    second look-up leaves the plain sentence.
    """
    if family not in FAMILY_RECORDS:
        return f"{host} has no address (A/AAAA)"
    plain = f"{host} has no IPv{family} address ({FAMILY_RECORDS[family]})"
    other = 10 - family
    try:
        others = lookup.addresses(host, other)
    except (DNSFailure, BudgetExhausted):
        return plain
    if not others:
        return f"{host} has no address (A/AAAA)"
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    return f"{plain}, only IPv{other} ({shown}): -{family} excludes it"

