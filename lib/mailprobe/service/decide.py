"""What happens after a try, and the verdict of a finished test (pure rules, no I/O).

Seed 000: a mailer that cannot be reached is retried for up to two days (``unreachable_window``,
back-off from ``retry_initial`` doubling up to ``retry_max``); attempts answered 4xx are
requeued (every ``requeue_interval``) for up to 12 hours (``tempfail_window``); then the test
ends as timed out, which is a pass for the attempts that were only ever deferred (and says so).
A proven relay ends the test at once: the report goes out without waiting for deferred
attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.service.relayseries import (
    ALL_IDS,
    DEFERRED_BANNER,
    NO_DOMAIN,
    NOT_APPLICABLE,
    NOT_JUDGED,
    PLAYED,
    REFUSED_BANNER,
    RELAYED,
    TEMPFAILED,
    UNREACHABLE,
)

# Why a test ended.
COMPLETE = "complete"                      # every attempt judged
RELAY_PROVEN = "relayed"                   # at least one attempt relayed
TEMPFAIL_TIMEOUT = "tempfail-timeout"      # still 4xx when tempfail_window closed
UNREACHABLE_TIMEOUT = "unreachable-timeout"  # still unreachable when unreachable_window closed
INCONCLUSIVE = "inconclusive"              # control refused, 5xx banner, no mail domain
CANCELLED = "cancelled"

# Verdicts (first word of the report's top line).
OPEN_RELAY, CLOSED, TIMED_OUT, NOT_TESTED, UNDECIDED = (
    "open-relay", "closed", "timed-out", "not-tested", "inconclusive")
VERDICT_TITLES = {
    OPEN_RELAY: "OPEN RELAY",
    CLOSED: "NOT AN OPEN RELAY",
    TIMED_OUT: "NO RELAYING SEEN (TIMED OUT)",
    NOT_TESTED: "NOT TESTED",
    UNDECIDED: "INCONCLUSIVE",
    CANCELLED: "CANCELLED",
}


@dataclass(frozen=True)
class Windows:
    retry_initial: float
    retry_max: float
    unreachable_window: float
    tempfail_window: float
    requeue_interval: float


@dataclass(frozen=True)
class TestClock:
    """The timing facts of a test before this try."""

    first_unreachable_at: float | None
    first_tempfail_at: float | None


@dataclass(frozen=True)
class Plan:
    finished: bool
    end_reason: str = ""
    next_try_at: float | None = None
    first_unreachable_at: float | None = None
    first_tempfail_at: float | None = None
    why: str = ""                        # one line for status and the report's history


def to_play(latest: dict[str, str]) -> list[str]:
    """The attempts the next try plays: never played, deferred (4xx), or not judged."""
    return [i for i in ALL_IDS if latest.get(i) in (None, TEMPFAILED, *NOT_JUDGED)]


def _unreachable(clock: TestClock, now: float, windows: Windows, why: str) -> Plan:
    first = clock.first_unreachable_at if clock.first_unreachable_at is not None else now
    ends = first + windows.unreachable_window
    if now >= ends:
        return Plan(True, UNREACHABLE_TIMEOUT, None, first, clock.first_tempfail_at,
                    f"{why}; still failing after the {_span(windows.unreachable_window)} "
                    "window")
    delay = min(max(windows.retry_initial, now - first), windows.retry_max)
    at = min(now + delay, ends)
    return Plan(False, "", at, first, clock.first_tempfail_at,
                f"{why}; next try in {_span(at - now)}")


def _deferred(clock: TestClock, now: float, windows: Windows, why: str) -> Plan:
    first = clock.first_tempfail_at if clock.first_tempfail_at is not None else now
    ends = first + windows.tempfail_window
    if now >= ends:
        return Plan(True, TEMPFAIL_TIMEOUT, None, None, first,
                    f"{why}; still deferred after the {_span(windows.tempfail_window)} window")
    at = min(now + windows.requeue_interval, ends)
    return Plan(False, "", at, None, first, f"{why}; requeued, next try in {_span(at - now)}")


def after_try(kind: str, reason: str, control: str | None, latest: dict[str, str],
              clock: TestClock, now: float, windows: Windows) -> Plan:
    """The plan once a try is recorded; ``latest`` = last outcome of every attempt so far."""
    if kind == UNREACHABLE:
        return _unreachable(clock, now, windows, f"unreachable: {reason}")
    if kind == DEFERRED_BANNER:
        return _deferred(TestClock(None, clock.first_tempfail_at), now, windows, reason)
    if kind in (REFUSED_BANNER, NO_DOMAIN):
        return Plan(True, INCONCLUSIVE, why=reason)
    assert kind == PLAYED
    if any(outcome == RELAYED for outcome in latest.values()):
        relayed = sum(1 for o in latest.values() if o == RELAYED)
        return Plan(True, RELAY_PROVEN, why=f"{relayed} attempt(s) relayed")
    if control in NOT_JUDGED or control is None:
        return _unreachable(clock, now, windows, "the control could not be played")
    if control == TEMPFAILED:
        return _deferred(TestClock(None, clock.first_tempfail_at), now, windows,
                         "even the control recipient was deferred (4xx)")
    if control != RELAYED:
        return Plan(True, INCONCLUSIVE, why=f"the control recipient was not accepted "
                    f"({control})")
    cleared = TestClock(None, clock.first_tempfail_at)
    unjudged = [i for i in ALL_IDS if latest.get(i) in (None, *NOT_JUDGED)]
    if unjudged:
        return _unreachable(clock, now, windows,
                            f"{len(unjudged)} attempt(s) could not be played")
    deferred = [i for i in ALL_IDS if latest.get(i) == TEMPFAILED]
    if deferred:
        return _deferred(cleared, now, windows, f"{len(deferred)} attempt(s) deferred (4xx)")
    return Plan(True, COMPLETE, None, None, clock.first_tempfail_at,
                "every attempt was judged")


@dataclass(frozen=True)
class Verdict:
    code: str
    line: str

    @property
    def title(self) -> str:
        return VERDICT_TITLES[self.code]


def verdict(end_reason: str, latest: dict[str, str], why: str, windows: Windows) -> Verdict:
    """The one-line verdict of a finished test."""
    total = len(ALL_IDS)
    relayed = [i for i in ALL_IDS if latest.get(i) == RELAYED]
    deferred = [i for i in ALL_IDS if latest.get(i) == TEMPFAILED]
    judged = [i for i in ALL_IDS if latest.get(i) not in (None, *NOT_JUDGED)]
    if end_reason == CANCELLED:
        return Verdict(CANCELLED, "CANCELLED: the test was cancelled before it finished")
    if relayed:
        shown = ", ".join(relayed[:6]) + (f", +{len(relayed) - 6} more" if len(relayed) > 6
                                          else "")
        return Verdict(OPEN_RELAY, f"OPEN RELAY: {len(relayed)} of {total} relay attempts were "
                       f"accepted ({shown})")
    if end_reason == COMPLETE:
        inapplicable = [i for i in ALL_IDS if latest.get(i) == NOT_APPLICABLE]
        if not inapplicable:
            return Verdict(CLOSED, f"NOT AN OPEN RELAY: all {total} relay attempts were refused")
        return Verdict(CLOSED, f"NOT AN OPEN RELAY: all {total - len(inapplicable)} relay "
                       f"attempts that apply were refused ({len(inapplicable)} do not apply to "
                       f"this mailer: {', '.join(inapplicable[:4])}"
                       f"{', ...' if len(inapplicable) > 4 else ''})")
    if end_reason == TEMPFAIL_TIMEOUT:
        return Verdict(TIMED_OUT, f"NO RELAYING SEEN (TIMED OUT): none of {total} relay "
                       f"attempts was accepted; {len(deferred)} were only ever deferred (4xx) "
                       f"until the test timed out after {_span(windows.tempfail_window)}: "
                       "timing out passes those, but a 4xx is not a proper refusal")
    if end_reason == UNREACHABLE_TIMEOUT:
        if not judged:
            return Verdict(NOT_TESTED, f"NOT TESTED: the mailer could not be reached for "
                           f"{_span(windows.unreachable_window)} ({why})")
        return Verdict(UNDECIDED, f"INCONCLUSIVE: only {len(judged)} of {total} attempts could "
                       f"be played before the mailer became unreachable; none was accepted")
    return Verdict(UNDECIDED, f"INCONCLUSIVE: {why}")


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s"


span = _span
