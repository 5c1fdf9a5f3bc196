"""DNS blacklist probe: which lists name an address or a domain, and what their answers mean.

Every (target, zone) pair is asked concurrently with dnspython's asyncio resolver, pointed at an
explicit resolver (``--nameserver``, any port), each query capped by ``query_timeout`` and all of
them by the check's :class:`Deadline`. Answers are decoded strictly (RFC 5782 and the lists'
own codes): error answers and anything outside 127.0.0.0/8 are never listings, and a query that
got no usable answer is "could not check", never clean.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.resolver

from mailprobe.deadline import Deadline
from mailprobe.dns import Nameserver
from mailprobe.dnsbl_zones import DOMAIN, IP, Zone

LISTED, CLEAN, ERROR, FAILED = "listed", "clean", "error", "failed"
MAX_CONCURRENCY = 200  # queries in flight at once (pydnsbl's default concurrency)

# Answers that are never listings, whatever the list (Spamhaus documents these codes; other
# lists reuse them). Everything outside 127.0.0.0/8 is an error too (see decode_answer).
ERROR_CODES = {
    "127.0.0.1": "the list answered 127.0.0.1, which RFC 5782 reserves for 'not listed' "
                 "(URIBL and SURBL answer it when they refuse your resolver)",
    "127.255.255.252": "the list says the query had a typing error in the zone name",
    "127.255.255.254": "the list refuses queries sent through a public or open resolver: "
                       "ask it through your own resolver (or a registered key)",
    "127.255.255.255": "the list rate-limits this resolver (too many queries)",
}


class AnswerError(ValueError):
    """An answer that cannot be decoded at all (not an IPv4 address)."""


@dataclass(frozen=True)
class Decoded:
    """What one A record of a DNSBL answer means."""

    code: str
    listed: bool
    meaning: str
    category: str = ""


def decode_answer(zone: Zone, text: str) -> Decoded:
    """Decode one A record; raises only :class:`AnswerError` (for non-IPv4 text)."""
    if not isinstance(text, str):
        raise AnswerError(f"answer {text!r} is not text")
    try:
        address = ipaddress.IPv4Address(text.strip())
    except (ValueError, TypeError) as exc:
        raise AnswerError(f"answer {text!r} is not an IPv4 address") from exc
    code = str(address)
    if address not in _LOOPBACK:
        return Decoded(code, False, f"the answer {code} is outside 127.0.0.0/8: the resolver "
                       "rewrites negative answers (ad blocking, captive portal) or the zone "
                       "is not a DNS blacklist")
    if code in zone.errors:
        return Decoded(code, False, zone.errors[code])
    if code in ERROR_CODES:
        return Decoded(code, False, ERROR_CODES[code])
    if zone.bitmask:
        return _decode_bitmask(zone, address)
    if code in zone.codes:
        meaning, category = zone.codes[code]
        return Decoded(code, True, meaning, category)
    if zone.codes:
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    return Decoded(code, True, "listed", "unknown")


_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def _decode_bitmask(zone: Zone, address: ipaddress.IPv4Address) -> Decoded:
    code = str(address)
    if code.rsplit(".", 1)[0] != "127.0.0":
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    bits = int(code.rsplit(".", 1)[1])
    meanings, categories, unknown = [], [], 0
    for bit in (1 << n for n in range(8)):
        if bits & bit:
            if str(bit) in zone.codes:
                meaning, category = zone.codes[str(bit)]
                meanings.append(meaning)
                categories.append(category)
            else:
                unknown |= bit
    if unknown:
        meanings.append(f"undocumented bits {unknown}")
    if not categories:
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    return Decoded(code, True, ", ".join(meanings), categories[0])


def decode_answers(zone: Zone, texts: Iterable[str]) -> tuple[list[Decoded], list[Decoded]]:
    """(listings, errors) of a whole answer; raises only :class:`AnswerError`."""
    listings, errors = [], []
    for text in texts:
        decoded = decode_answer(zone, text)
        (listings if decoded.listed else errors).append(decoded)
    return listings, errors


@dataclass(frozen=True)
class Target:
    """Something to look up: an IP address (for IP lists) or a domain (for domain lists)."""

    text: str
    kind: str  # IP or DOMAIN
    family: int = 0  # 4 or 6 for addresses

    @classmethod
    def address(cls, text: str) -> Target:
        ip = ipaddress.ip_address(text.strip())
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return cls(str(ip), IP, ip.version)

    @classmethod
    def domain(cls, text: str) -> Target:
        """A domain, IDNA-encoded, lower case, without the final dot; ValueError if bad."""
        try:
            name = dns.name.from_unicode(text.strip().rstrip("."))
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"bad domain {text!r}: {exc}") from exc
        value = name.to_text(omit_final_dot=True).lower()
        if value in ("", ".", "@") or len(value) > 200:
            raise ValueError(f"bad domain {text!r}")
        return cls(value, DOMAIN)

    def query_name(self, zone: str) -> str:
        """The DNS name asking ``zone`` about this target (IPv6 in nibble format)."""
        if self.kind == DOMAIN:
            return f"{self.text}.{zone}"
        pointer = ipaddress.ip_address(self.text).reverse_pointer
        return pointer.rsplit(".", 2)[0] + "." + zone

    def test_name(self, zone: str) -> str:
        """RFC 5782 section 5: an entry every working list of this kind must NOT list."""
        return f"invalid.{zone}" if self.kind == DOMAIN else f"1.0.0.127.{zone}"


@dataclass
class ZoneResult:
    """The outcome of asking one zone about one target."""

    target: Target
    zone: Zone
    status: str  # LISTED, CLEAN, ERROR (an error answer) or FAILED (no usable answer)
    listings: list[Decoded] = field(default_factory=list)
    reason: str = ""  # for ERROR/FAILED, plain words
    brief: str = ""  # for ERROR/FAILED, a few words for the status line
    txt: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def could_not_check(self) -> bool:
        return self.status in (ERROR, FAILED)


@dataclass
class DnsblReport:
    """Everything one run found."""

    host: str | None
    targets: list[Target]
    zones: list[Zone]
    results: list[ZoneResult]
    skipped: list[tuple[Target, Zone, str]] = field(default_factory=list)
    seconds: float = 0.0
    transcript: list[str] = field(default_factory=list)  # one line per DNS query

    def by_status(self, *statuses: str) -> list[ZoneResult]:
        return [r for r in self.results if r.status in statuses]

    @property
    def listed(self) -> list[ZoneResult]:
        return self.by_status(LISTED)

    @property
    def checked(self) -> list[ZoneResult]:
        return self.by_status(LISTED, CLEAN)

    @property
    def failed(self) -> list[ZoneResult]:
        return self.by_status(ERROR, FAILED)

    @property
    def weight(self) -> float:
        return sum(r.zone.weight for r in self.listed)


def make_async_resolver(nameservers: Sequence[Nameserver] | None,
                        timeout: float) -> dns.asyncresolver.Resolver:
    """An asyncio resolver asking exactly ``nameservers`` (each with its own port)."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.address, ns.port)
                                for ns in nameservers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.cache = None
    return resolver


def plan(targets: Sequence[Target], zones: Sequence[Zone]
         ) -> tuple[list[tuple[Target, Zone]], list[tuple[Target, Zone, str]]]:
    """The (target, zone) pairs to ask, and the pairs skipped with the reason."""
    jobs, skipped = [], []
    for target in targets:
        for zone in zones:
            if zone.kind != target.kind:
                continue
            if target.family == 6 and not zone.ipv6:
                skipped.append((target, zone, "the list does not list IPv6 addresses"))
                continue
            jobs.append((target, zone))
    return jobs, skipped


class _Asker:
    """Runs the queries of one check against one resolver, inside one deadline."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, deadline: Deadline,
                 query_timeout: float, want_txt: bool, sanity: bool) -> None:
        self.resolver = resolver
        self.deadline = deadline
        self.query_timeout = query_timeout
        self.want_txt = want_txt
        self.sanity = sanity
        self.limit = asyncio.Semaphore(MAX_CONCURRENCY)
        self.transcript: list[str] = []

    async def ask(self, target: Target, zone: Zone) -> ZoneResult:
        started = time.monotonic()
        until = started + min(self.query_timeout, self.deadline.remaining())
        async with self.limit:
            result = await self._ask(target, zone, until)
        result.seconds = time.monotonic() - started
        return result

    async def _query(self, qname: str, rdtype: str, until: float) -> list[str] | None:
        """Record texts; None for NXDOMAIN/NODATA; raises _Failed otherwise."""
        started = time.monotonic()
        outcome = "?"
        try:
            records = await self._query_once(qname, rdtype, until)
            outcome = " ".join(records) if records else "NXDOMAIN/NODATA"
            return records
        except _Failed as exc:
            outcome = f"failed: {exc.brief}"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled: the check's time budget ran out"
            raise
        finally:
            ms = (time.monotonic() - started) * 1000
            self.transcript.append(f"{qname} {rdtype} -> {outcome} ({ms:.0f} ms)")

    async def _query_once(self, qname: str, rdtype: str, until: float) -> list[str] | None:
        lifetime = until - time.monotonic()
        if lifetime <= 0:
            raise _Failed(f"no time left for the query ({self.query_timeout:g}s per list)",
                          "timed out")
        return await _resolve(self.resolver, qname, rdtype, lifetime)

    async def _ask(self, target: Target, zone: Zone, until: float) -> ZoneResult:
        qname = target.query_name(zone.host)
        try:
            records = await self._query(qname, "A", until)
        except _Failed as exc:
            return ZoneResult(target, zone, FAILED, reason=exc.reason, brief=exc.brief)
        if not records:
            return ZoneResult(target, zone, CLEAN)
        try:
            listings, errors = decode_answers(zone, records)
        except AnswerError as exc:
            return ZoneResult(target, zone, ERROR, reason=str(exc), brief="bad answer")
        if errors:
            reason = "; ".join(f"answer {e.code}: {e.meaning}" for e in errors)
            brief = "answered " + ", ".join(e.code for e in errors)
            return ZoneResult(target, zone, ERROR, listings, reason=reason, brief=brief)
        extra = [self._txt(qname, until)]
        if self.sanity:
            extra.append(self._lists_everything(target, zone, until))
        txt, broken = (await asyncio.gather(*extra)) + [None] * (2 - len(extra))
        if broken:
            return ZoneResult(target, zone, ERROR, listings, reason=broken, txt=txt,
                              brief="lists everything")
        return ZoneResult(target, zone, LISTED, listings, txt=txt)

    async def _txt(self, qname: str, until: float) -> list[str]:
        if not self.want_txt:
            return []
        try:
            return await self._query(qname, "TXT", until) or []
        except _Failed:
            return []

    async def _lists_everything(self, target: Target, zone: Zone, until: float) -> str | None:
        """A reason when the zone also lists RFC 5782's never-listed test entry."""
        name = target.test_name(zone.host)
        try:
            records = await self._query(name, "A", until)
        except _Failed:
            return None
        try:
            listings, _ = decode_answers(zone, records or [])
        except AnswerError:
            return None
        if not listings:
            return None
        entry = "INVALID" if target.kind == DOMAIN else "127.0.0.1"
        return (f"the list also answers {listings[0].code} for the RFC 5782 test entry "
                f"{entry}, which must never be listed: it lists everything (dead, hijacked "
                "or misconfigured list)")


async def _resolve(resolver: dns.asyncresolver.Resolver, qname: str, rdtype: str,
                   lifetime: float) -> list[str] | None:
    """Record texts; None for NXDOMAIN/NODATA; _Failed otherwise; never longer than lifetime.

    dnspython can overshoot its own ``lifetime`` by its retry back-off (up to 2 s), so the
    call is also capped with asyncio.
    """
    try:
        answer = await asyncio.wait_for(
            resolver.resolve(qname, rdtype, lifetime=lifetime, search=False,
                             raise_on_no_answer=True), lifetime)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except (dns.resolver.LifetimeTimeout, TimeoutError) as exc:
        raise _Failed(f"no answer within {lifetime:.1f}s", "timed out") from exc
    except dns.resolver.NoNameservers as exc:
        raise _Failed(*_server_failure(exc)) from exc
    except dns.exception.DNSException as exc:
        raise _Failed(str(exc) or type(exc).__name__, "DNS error") from exc
    if rdtype == "TXT":
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]
    return [rr.to_text() for rr in answer]


class HostLookupError(Exception):
    """The addresses of -H could not be looked up (the reason in plain words)."""


def resolve_host(name: str, deadline: Deadline, *, family: int = 0,
                 nameservers: Sequence[Nameserver] | None = None,
                 query_timeout: float = 5.0) -> list[str]:
    """The A and/or AAAA addresses of ``name`` (asked at once); [] when it has none."""
    resolver = make_async_resolver(nameservers, max(0.2, query_timeout / 2))
    rdtypes = [t for t, f in (("A", 4), ("AAAA", 6)) if family in (0, f)]
    lifetime = min(query_timeout, deadline.remaining())

    async def main() -> list[list[str] | BaseException | None]:
        return await asyncio.gather(*(_resolve(resolver, name, t, lifetime) for t in rdtypes),
                                    return_exceptions=True)

    if lifetime <= 0:
        raise HostLookupError(f"no time left to look up {name}")
    addresses: list[str] = []
    for rdtype, outcome in zip(rdtypes, asyncio.run(main()), strict=True):
        if isinstance(outcome, _Failed):
            raise HostLookupError(f"could not look up {name} {rdtype}: {outcome.reason}")
        if isinstance(outcome, BaseException):
            raise outcome
        addresses.extend(outcome or [])
    return addresses


class _Failed(Exception):
    """A query that got no usable answer (the reason in plain words, and in brief)."""

    def __init__(self, reason: str, brief: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.brief = brief


def _server_failure(exc: dns.resolver.NoNameservers) -> tuple[str, str]:
    """(reason, brief) for a query every resolver failed."""
    errors = exc.kwargs.get("errors") or []
    for _server, _tcp, _port, err, response in errors:
        if isinstance(response, dns.message.Message):
            rcode = dns.rcode.to_text(response.rcode())
            if rcode == "REFUSED":
                return ("the resolver REFUSED the query (it neither serves the zone nor "
                        "recurses for us)", "REFUSED")
            if rcode == "SERVFAIL":
                return ("the resolver answered SERVFAIL (it could not get an answer from "
                        "the list's servers)", "SERVFAIL")
            if rcode == "NOERROR" and err is not None:  # e.g. a CNAME loop dnspython refused
                return f"the resolver's answer is unusable: {err}", "unusable answer"
            return f"the resolver answered {rcode}", rcode
    for _server, tcp, _port, err, _response in reversed(errors):  # the last attempt first
        if err is not None:
            if isinstance(err, EOFError):
                how = "over TCP" if tcp else "over UDP"
                return (f"the server closed the connection {how} without an answer",
                        "resolver error")
            return f"the resolver failed: {str(err) or type(err).__name__}", "resolver error"
    return "no resolver answered", "no answer"


async def _ask_all(asker: _Asker, jobs: list[tuple[Target, Zone]]) -> list[ZoneResult]:
    tasks = [asyncio.ensure_future(asker.ask(t, z)) for t, z in jobs]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=asker.deadline.remaining())
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    results = []
    for task, (target, zone) in zip(tasks, jobs, strict=True):
        if task in done and not task.cancelled() and task.exception() is None:
            results.append(task.result())
        elif task in done and not task.cancelled():
            exc = task.exception()
            results.append(ZoneResult(target, zone, FAILED, brief="internal error",
                                      reason=f"internal error: {type(exc).__name__}: {exc}"))
        else:
            results.append(ZoneResult(target, zone, FAILED, brief="timed out",
                                      reason="the check's time budget (-t) ran out"))
    return results


def probe(targets: Sequence[Target], zones: Sequence[Zone], deadline: Deadline, *,
          nameservers: Sequence[Nameserver] | None = None, query_timeout: float = 5.0,
          want_txt: bool = True, sanity: bool = True, host: str | None = None) -> DnsblReport:
    """Ask every zone about every target of its kind, concurrently, within ``deadline``."""
    started = time.monotonic()
    jobs, skipped = plan(targets, zones)
    per_try = max(0.2, query_timeout / 2)  # one retransmission inside the per-list timeout
    resolver = make_async_resolver(nameservers, per_try)
    asker_args = (resolver, deadline, query_timeout, want_txt, sanity)

    transcript: list[str] = []

    async def main() -> list[ZoneResult]:
        asker = _Asker(*asker_args)
        try:
            return await _ask_all(asker, jobs)
        finally:
            transcript.extend(asker.transcript)

    results = asyncio.run(main())
    return DnsblReport(host, list(targets), list(zones), results, skipped,
                       time.monotonic() - started, transcript)
