"""DNS blacklist probe: which lists name an address or a domain, and what their answers mean.

Every (target, zone) pair is asked at once through :mod:`mailprobe.net.dnsfanout` (one UDP socket,
answers matched by id), at an explicit resolver (``--nameserver``, any port), each question
capped by ``query_timeout`` and all of them by the check's :class:`Deadline`. Answers are
decoded strictly (RFC 5782 and the lists' own codes): error answers and anything outside
127.0.0.0/8 are never listings, and a query that got no usable answer is "could not check",
never clean.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.name

from mailprobe.net import dnsfanout
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver
from mailprobe.probes.dnsbl.decode import AnswerError, Decoded, decode_answers
from mailprobe.probes.dnsbl.zones import DOMAIN, IP, Zone

LISTED, CLEAN, ERROR, FAILED = "listed", "clean", "error", "failed"
MAX_CONCURRENCY = 200  # queries in flight at once (pydnsbl's default concurrency)

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


def _judge(job: tuple[Target, Zone], outcome: dnsfanout.Outcome) -> ZoneResult:
    """The verdict on one (target, zone) pair from its A answer (before TXT and sanity)."""
    target, zone = job
    if isinstance(outcome, dnsfanout.Failure):
        return ZoneResult(target, zone, FAILED, reason=outcome.reason, brief=outcome.brief)
    if not outcome:
        return ZoneResult(target, zone, CLEAN)
    try:
        listings, errors = decode_answers(zone, outcome)
    except AnswerError as exc:
        return ZoneResult(target, zone, ERROR, reason=str(exc), brief="bad answer")
    if errors:
        reason = "; ".join(f"answer {e.code}: {e.meaning}" for e in errors)
        brief = "answered " + ", ".join(e.code for e in errors)
        return ZoneResult(target, zone, ERROR, listings, reason=reason, brief=brief)
    return ZoneResult(target, zone, LISTED, listings)


def _lists_everything(result: ZoneResult, outcome: dnsfanout.Outcome) -> str | None:
    """A reason when the zone also lists RFC 5782's never-listed test entry."""
    if isinstance(outcome, dnsfanout.Failure) or not outcome:
        return None
    try:
        listings, _ = decode_answers(result.zone, outcome)
    except AnswerError:
        return None
    if not listings:
        return None
    entry = "INVALID" if result.target.kind == DOMAIN else "127.0.0.1"
    return (f"the list also answers {listings[0].code} for the RFC 5782 test entry "
            f"{entry}, which must never be listed: it lists everything (dead, hijacked "
            "or misconfigured list)")


class HostLookupError(Exception):
    """The addresses of -H could not be looked up (the reason in plain words)."""


def resolve_host(name: str, deadline: Deadline, *, family: int = 0,
                 nameservers: Sequence[Nameserver] | None = None,
                 query_timeout: float = 5.0) -> list[str]:
    """The A and/or AAAA addresses of ``name`` (asked at once); [] when it has none."""
    rdtypes = [t for t, f in (("A", 4), ("AAAA", 6)) if family in (0, f)]
    if deadline.remaining() <= 0:
        raise HostLookupError(f"no time left to look up {name}")
    outcomes = dnsfanout.ask([(name, t) for t in rdtypes], nameservers, deadline,
                             timeout=query_timeout, per_try=max(0.2, query_timeout / 2))
    addresses: list[str] = []
    for rdtype, outcome in zip(rdtypes, outcomes, strict=True):
        if isinstance(outcome, dnsfanout.Failure):
            raise HostLookupError(f"could not look up {name} {rdtype}: {outcome.reason}")
        addresses.extend(outcome or [])
    return addresses


def probe(targets: Sequence[Target], zones: Sequence[Zone], deadline: Deadline, *,
          nameservers: Sequence[Nameserver] | None = None, query_timeout: float = 5.0,
          want_txt: bool = True, sanity: bool = True, host: str | None = None) -> DnsblReport:
    """Ask every zone about every target of its kind, all at once, within ``deadline``.

    First the A question of every pair; then, for the listings only, the TXT reason and the
    RFC 5782 sanity question, again all at once.
    """
    started = time.monotonic()
    jobs, skipped = plan(targets, zones)
    transcript: list[str] = []
    ask = functools.partial(dnsfanout.ask, nameservers=nameservers, deadline=deadline,
                            timeout=query_timeout, per_try=max(0.2, query_timeout / 2),
                            max_in_flight=MAX_CONCURRENCY, transcript=transcript)
    durations: list[float] = []
    answers = ask([(t.query_name(z.host), "A") for t, z in jobs], durations=durations)
    results = [_judge(job, outcome) for job, outcome in zip(jobs, answers, strict=True)]
    for result, seconds in zip(results, durations, strict=True):
        result.seconds = seconds
    listed = [r for r in results if r.status == LISTED]
    followups: list[tuple[str, str]] = []
    for result in listed:
        if want_txt:
            followups.append((result.target.query_name(result.zone.host), "TXT"))
        if sanity:
            followups.append((result.target.test_name(result.zone.host), "A"))
    outcomes = iter(ask(followups) if followups else [])
    for result in listed:
        if want_txt:
            txt = next(outcomes)
            result.txt = [] if isinstance(txt, dnsfanout.Failure) else (txt or [])
        if sanity:
            broken = _lists_everything(result, next(outcomes))
            if broken:
                result.status, result.reason, result.brief = ERROR, broken, "lists everything"
    return DnsblReport(host, list(targets), list(zones), results, skipped,
                       time.monotonic() - started, transcript)
