"""DNS blacklist probe: which lists name an address or a domain, and what their answers mean.

Every question is asked in one round through :mod:`mailprobe.net.dnsfanout` (one UDP socket,
answers matched by source, id and question): the A question of every (target, zone) pair, its
TXT reason, and each zone's RFC 5782 test entries (:mod:`.testpoints`), at an explicit resolver
(``--nameserver``, any port), each question capped by ``query_timeout`` and all of them by the
check's :class:`Deadline`. Answers are decoded strictly (RFC 5782 and the lists' own codes):
error answers and anything outside 127.0.0.0/8 are never listings, a query that got no usable
answer is "could not check", and so is a "not listed" from a list that does not list its own
test entry: never clean.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailprobe.net import dnsfanout, dnswire
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver
from mailprobe.probes.dnsbl import testpoints
from mailprobe.probes.dnsbl.decode import AnswerError, Decoded, decode_answers
from mailprobe.probes.dnsbl.zones import DOMAIN, IP, Zone

LISTED, CLEAN, ERROR, FAILED = "listed", "clean", testpoints.ERROR, testpoints.FAILED
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
            value = dnswire.name_text(dnswire.to_name(text))
        except dnswire.WireError as exc:
            raise ValueError(f"bad domain {text!r}: {exc}") from exc
        if value == "@" or len(value) > 200:
            raise ValueError(f"bad domain {text!r}")
        return cls(value, DOMAIN)

    def query_name(self, zone: str) -> str:
        """The DNS name asking ``zone`` about this target (IPv6 in nibble format)."""
        if self.kind == DOMAIN:
            return f"{self.text}.{zone}"
        pointer = ipaddress.ip_address(self.text).reverse_pointer
        return pointer.rsplit(".", 2)[0] + "." + zone


def entry_query_name(zone: Zone, entry: str) -> str:
    """The DNS name asking ``zone`` about one of its test entries (an address or a name)."""
    if zone.kind == IP:
        return Target.address(entry).query_name(zone.host)
    return f"{entry}.{zone.host}"


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


@dataclass(frozen=True)
class Unchecked:
    """A part of ``-H`` that could not be checked: a family whose look-up failed, or an address
    the DNS answered that cannot be a mail server."""

    reason: str  # for the long output
    brief: str  # for the status line


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
    unchecked: list[Unchecked] = field(default_factory=list)  # parts of -H not checked
    test_entries: dict[str, str] = field(default_factory=dict)  # zone -> what they answered
    queries: int = 0  # DNS queries asked (each distinct question once)
    rounds: int = 0  # rounds of queries, each waiting for the one before

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
    """The verdict on one (target, zone) pair from its A answer alone."""
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


def _doubt(result: ZoneResult, health: testpoints.Health) -> None:
    """Apply what the zone's test entries said to one pair's verdict."""
    doubt = health.all_answers
    if doubt is None and result.status == CLEAN:
        doubt = health.not_listed
    if doubt is not None and not result.could_not_check:
        result.status, result.reason, result.brief = doubt.status, doubt.reason, doubt.brief


class HostLookupError(Exception):
    """Nothing of -H could be checked: the reason in plain words."""


@dataclass
class HostAddresses:
    """What ``-H NAME`` resolved to: the addresses to check, and what could not be checked."""

    addresses: list[str]
    unchecked: list[Unchecked] = field(default_factory=list)


FAMILY = {"A": "IPv4", "AAAA": "IPv6"}


def resolve_host(name: str, deadline: Deadline, *, family: int = 0,
                 nameservers: Sequence[Nameserver] | None = None,
                 query_timeout: float = 5.0) -> HostAddresses:
    """The A and/or AAAA addresses of ``name`` (asked at once).

    A family whose look-up failed, and an address that cannot be a mail server (0.0.0.0,
    multicast, ...), are returned as :class:`Unchecked`, never dropped in silence. Raises
    :class:`HostLookupError` when nothing is left to check.
    """
    rdtypes = [t for t, f in (("A", 4), ("AAAA", 6)) if family in (0, f)]
    if deadline.remaining() <= 0:
        raise HostLookupError(f"no time left to look up {name}")
    outcomes = dnsfanout.ask([(name, t) for t in rdtypes], nameservers, deadline,
                             timeout=query_timeout, per_try=max(0.2, query_timeout / 2))
    found = HostAddresses([])
    failed: list[str] = []
    bad: list[str] = []
    empty: list[str] = []
    for rdtype, outcome in zip(rdtypes, outcomes, strict=True):
        if isinstance(outcome, dnsfanout.Failure):
            failed.append(f"{rdtype}: {outcome.reason}")
            found.unchecked.append(Unchecked(
                f"{name} {rdtype} could not be looked up: {outcome.reason}; its "
                f"{FAMILY[rdtype]} addresses, if it has any, were not checked",
                f"{name} {rdtype} could not be looked up ({outcome.brief}): "
                f"{FAMILY[rdtype]} not checked"))
            continue
        if not outcome:
            empty.append(rdtype)
        for address in outcome or []:
            why = unusable_reason(address)
            if why is None:
                found.addresses.append(address)
                continue
            bad.append(f"{name} {rdtype} answered {address}, which cannot be a mail server "
                       f"({why})")
            found.unchecked.append(Unchecked(
                f"{bad[-1]}: a bad DNS answer, not checked (fix the DNS)",
                f"{name} {rdtype} answered {address}: bad DNS answer, not checked"))
    if not found.addresses:
        raise HostLookupError(_nothing_to_check(name, rdtypes, failed, bad, empty))
    return found


def _nothing_to_check(name: str, rdtypes: list[str], failed: list[str], bad: list[str],
                      empty: list[str]) -> str:
    parts = []
    if failed:
        parts.append(f"could not look up {name} " + "; ".join(failed))
    if bad:
        parts.append("; ".join(bad) + ": a bad DNS answer")
    if not parts:
        which = " or ".join(rdtypes)
        return f"{name} has no {which} address: nothing to check"
    if empty:
        parts.append(f"it has no {' or '.join(empty)} address")
    return "; ".join(parts) + "; nothing was checked"


def probe(targets: Sequence[Target], zones: Sequence[Zone], deadline: Deadline, *,
          nameservers: Sequence[Nameserver] | None = None, query_timeout: float = 5.0,
          want_txt: bool = True, sanity: bool = True, host: str | None = None,
          unchecked: Sequence[Unchecked] = ()) -> DnsblReport:
    """Ask every zone about every target of its kind within ``deadline``, in one round.

    One round holds the A question of every pair, its TXT reason and each zone's RFC 5782 test
    entries (``sanity``). Only when that would not fit in the :data:`MAX_CONCURRENCY` queries in
    flight (a fleet with ``--hosts``) are the TXT reasons asked after, for the listings alone:
    asking them of every clean pair too would double a long run for nothing.
    """
    started = time.monotonic()
    jobs, skipped = plan(targets, zones)
    transcript: list[str] = []
    ask = functools.partial(dnsfanout.ask, nameservers=nameservers, deadline=deadline,
                            timeout=query_timeout, per_try=max(0.2, query_timeout / 2),
                            max_in_flight=MAX_CONCURRENCY, transcript=transcript)
    asked = list(dict.fromkeys(zone for _, zone in jobs))
    names = [target.query_name(zone.host) for target, zone in jobs]
    tests = _test_questions(asked) if sanity else []
    txt_now = want_txt and 2 * len(jobs) + len(tests) <= MAX_CONCURRENCY
    # A questions first, then the test entries, then the TXT reasons, each wanted only if its A
    # question finds records: a clean answer does not wait for its TXT.
    questions = ([(n, "A") for n in names] + [question for _, _, question in tests]
                 + [(n, "TXT") for n in names if txt_now])
    first_txt = len(jobs) + len(tests)
    durations: list[float] = []
    answers = ask(questions, durations=durations,
                  wanted_if_found={first_txt + i: i for i in range(len(jobs)) if txt_now}
                  ) if questions else []
    report = DnsblReport(host, list(targets), list(zones), [], skipped,
                         transcript=transcript, unchecked=list(unchecked),
                         rounds=1 if questions else 0)
    report.results = [_judge(job, outcome)
                      for job, outcome in zip(jobs, answers[:len(jobs)], strict=True)]
    for result, seconds in zip(report.results, durations[:len(jobs)], strict=True):
        result.seconds = seconds
    txts = iter(answers[first_txt:] if txt_now else [])
    _apply_tests(report, tests, answers[len(jobs):first_txt])
    listed = [r for r in report.results if r.status == LISTED]
    if want_txt and not txt_now and listed:
        txts = iter(ask([(r.target.query_name(r.zone.host), "TXT") for r in listed]))
        report.rounds += 1
        txt_for = listed
    else:
        txt_for = report.results if txt_now else []
    for result in txt_for:
        txt = next(txts)
        if result.status == LISTED and not isinstance(txt, dnsfanout.Failure):
            result.txt = txt or []
    report.queries = len(transcript)
    report.seconds = time.monotonic() - started
    return report


def _test_questions(zones: Sequence[Zone]) -> list[tuple[Zone, str, tuple[str, str]]]:
    """(zone, which entry, question) for the RFC 5782 test entries of ``zones``."""
    tests = []
    for zone in zones:
        entry = zone.listed_test_entry
        if entry:
            tests.append((zone, testpoints.LISTED_ENTRY, (entry_query_name(zone, entry), "A")))
        tests.append((zone, testpoints.NEVER_LISTED_ENTRY,
                      (entry_query_name(zone, zone.never_listed_entry), "A")))
    return tests


def _apply_tests(report: DnsblReport, tests: list[tuple[Zone, str, tuple[str, str]]],
                 outcomes: Sequence[dnsfanout.Outcome]) -> None:
    """Judge each zone by its test entries and apply the verdict to its pairs."""
    answers: dict[int, dict[str, dnsfanout.Outcome]] = {}
    zones: dict[int, Zone] = {}
    for (zone, which, _), outcome in zip(tests, outcomes, strict=True):
        answers.setdefault(id(zone), {})[which] = outcome
        zones[id(zone)] = zone
    health: dict[int, testpoints.Health] = {}
    for key, zone in zones.items():
        health[key] = judged = testpoints.judge(zone, answers[key])
        report.test_entries[zone.host] = judged.note
    for result in report.results:
        if id(result.zone) in health:
            _doubt(result, health[id(result.zone)])
