"""RFC 5782 section 5 test entries: does a list answer the way a working list must?

Every list must list its test entry (127.0.0.2 for address lists, TEST for domain lists, or the
test point the list documents) and must never list 127.0.0.1 / INVALID. Both are asked in the
same round as the real questions; :func:`judge` reads their answers:

* the never-listed entry is listed: the list lists everything (dead, hijacked, misconfigured),
  so none of its answers can be trusted, listings included;
* the test entry is not listed (NXDOMAIN), gets an error answer or no answer at all: the path
  to the list answers "not listed" whatever is asked (a dead list, or a filtering or broken
  resolver), so its "not listed" proves nothing. A listing still stands: it is an answer no
  NXDOMAIN-for-everything path can give.

Pure rules, no network: the answers come in as :mod:`mailprobe.net.dnsfanout` outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.net.dnsfanout import Failure, Outcome
from mailprobe.probes.dnsbl.decode import AnswerError, decode_answers
from mailprobe.probes.dnsbl.zones import Zone

ERROR, FAILED = "error", "failed"  # the statuses of lookup.ZoneResult


@dataclass(frozen=True)
class Doubt:
    """Why some answers of a zone cannot be trusted: the status they get and why."""

    status: str  # ERROR (the list answered wrongly) or FAILED (no usable answer)
    reason: str
    brief: str


@dataclass(frozen=True)
class Health:
    """What a zone's test entries say about its answers."""

    all_answers: Doubt | None = None  # no answer of the zone can be trusted
    not_listed: Doubt | None = None  # its "not listed" answers cannot be trusted
    note: str = ""  # what the test entries answered, for -v


LISTED_ENTRY, NEVER_LISTED_ENTRY = "listed", "never listed"


def judge(zone: Zone, answers: dict[str, Outcome]) -> Health:
    """The health of ``zone`` from the answers for its test entries: ``answers`` maps
    :data:`LISTED_ENTRY` (must be listed) and :data:`NEVER_LISTED_ENTRY` to the outcomes of
    the entries that were asked."""
    notes = []
    all_answers = not_listed = None
    test_entry = zone.listed_test_entry
    if test_entry and LISTED_ENTRY in answers:
        listed = answers[LISTED_ENTRY]
        notes.append(f"{_shown(test_entry)} {_said(listed)}")
        not_listed = _not_listed_doubt(zone, test_entry, listed)
    entry = zone.never_listed_entry
    if NEVER_LISTED_ENTRY in answers:
        never_listed = answers[NEVER_LISTED_ENTRY]
        notes.append(f"{_shown(entry)} {_said(never_listed)}")
        code = _listing_code(zone, never_listed)
        if code:
            all_answers = Doubt(ERROR, f"the list also answers {code} for the RFC 5782 test "
                                f"entry {_shown(entry)}, which must never be listed: it lists "
                                "everything (dead, hijacked or misconfigured list)",
                                "lists everything")
    return Health(all_answers, not_listed, ", ".join(notes))


def _not_listed_doubt(zone: Zone, entry: str, outcome: Outcome) -> Doubt | None:
    shown = _shown(entry)
    untrusted = "so its \"not listed\" proves nothing"
    if isinstance(outcome, Failure):
        return Doubt(FAILED, f"its RFC 5782 test entry {shown} could not be asked "
                     f"({outcome.reason}), {untrusted}", f"test entry {outcome.brief}")
    if not outcome:
        return Doubt(ERROR, f"the list does not list its RFC 5782 test entry {shown}, which "
                     "every working list lists: the resolver answers NXDOMAIN for everything "
                     f"(filtering or broken) or the list is dead, {untrusted}",
                     "test entry not listed")
    try:
        listings, errors = decode_answers(zone, outcome)
    except AnswerError as exc:
        return Doubt(ERROR, f"its RFC 5782 test entry {shown} got an unusable answer ({exc}), "
                     f"{untrusted}", "test entry bad answer")
    if errors or not listings:
        codes = ", ".join(e.code for e in errors)
        meaning = "; ".join(e.meaning for e in errors)
        return Doubt(ERROR, f"its RFC 5782 test entry {shown} got the error answer {codes} "
                     f"({meaning}), {untrusted}", f"test entry answered {codes}")
    return None


def _listing_code(zone: Zone, outcome: Outcome) -> str | None:
    """The first listing code of an answer (None when it lists nothing)."""
    if isinstance(outcome, Failure) or not outcome:
        return None
    try:
        listings, _ = decode_answers(zone, outcome)
    except AnswerError:
        return None
    return listings[0].code if listings else None


def _shown(entry: str) -> str:
    """RFC 5782 spells its domain entries in capitals (TEST, INVALID)."""
    return entry.upper() if entry in ("test", "invalid") else entry


def _said(outcome: Outcome) -> str:
    if isinstance(outcome, Failure):
        return f"failed ({outcome.brief})"
    return f"answered {' '.join(outcome)}" if outcome else "not listed"
