"""Booked test dates as a small schedule language (seed 000's "the third Thursday of each
February, May, August and November").

Grammar (case-insensitive, commas or "and" between months)::

    <ordinal> <weekday> of [each|every] <month>[, <month> ...] [at HH:MM]
    <ordinal> <weekday> of every month [at HH:MM]

ordinal: first second third fourth fifth last (or 1st 2nd 3rd 4th 5th); weekday and month in
full or in three letters. Times are the service machine's local time (default 09:00).
"""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass


class ScheduleError(ValueError):
    """The schedule expression cannot be read."""


ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
            "4th": 4, "fifth": 5, "5th": 5, "last": -1}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")

_EXPRESSION = re.compile(
    r"^\s*(?:the\s+)?(?P<ordinal>\w+)\s+(?P<weekday>\w+)\s+of\s+(?:each\s+|every\s+)?"
    r"(?P<months>.+?)(?:\s+at\s+(?P<hour>\d{1,2}):(?P<minute>\d{2}))?\s*$", re.IGNORECASE)


def _lookup(word: str, names: tuple[str, ...], what: str) -> int:
    word = word.lower().strip(" .")
    for index, name in enumerate(names):
        if word == name or (len(word) >= 3 and name.startswith(word)):
            return index
    raise ScheduleError(f"{word!r} is not a {what}")


@dataclass(frozen=True)
class Schedule:
    """The n-th (or last) weekday of some months, at a time of day."""

    ordinal: int             # 1..5, or -1 for the last
    weekday: int             # 0 = Monday
    months: tuple[int, ...]  # 1..12
    at: datetime.time = datetime.time(9, 0)
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Schedule:
        match = _EXPRESSION.match(text)
        if not match:
            raise ScheduleError(f"{text!r}: expected e.g. \"third thursday of february, may, "
                                "august, november at 09:00\"")
        ordinal = ORDINALS.get(match["ordinal"].lower())
        if ordinal is None:
            raise ScheduleError(f"{match['ordinal']!r} is not an ordinal (first ... fifth, last)")
        weekday = _lookup(match["weekday"], WEEKDAYS, "weekday")
        words = [w for w in re.split(r"[,\s]+|\band\b", match["months"].lower()) if w]
        if words == ["month"]:
            months = tuple(range(1, 13))
        else:
            months = tuple(sorted({_lookup(w, MONTHS, "month") + 1 for w in words}))
        if not months:
            raise ScheduleError(f"{text!r}: no month")
        at = datetime.time(9, 0)
        if match["hour"] is not None:
            hour, minute = int(match["hour"]), int(match["minute"])
            if hour > 23 or minute > 59:
                raise ScheduleError(f"{match['hour']}:{match['minute']} is not a time of day")
            at = datetime.time(hour, minute)
        return cls(ordinal, weekday, months, at, text.strip())

    def day_in(self, year: int, month: int) -> datetime.date | None:
        """The booked day of that month, or None (no fifth Thursday, or not a booked month)."""
        if month not in self.months:
            return None
        days = [week[self.weekday] for week in calendar.monthcalendar(year, month)
                if week[self.weekday]]
        if self.ordinal == -1:
            return datetime.date(year, month, days[-1])
        if self.ordinal > len(days):
            return None
        return datetime.date(year, month, days[self.ordinal - 1])

    def latest(self, now: datetime.datetime) -> datetime.datetime | None:
        """The most recent booked time at or before ``now`` (naive local times)."""
        year, month = now.year, now.month
        for _ in range(25):
            day = self.day_in(year, month)
            if day is not None:
                when = datetime.datetime.combine(day, self.at)
                if when <= now:
                    return when
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return None

    def next(self, now: datetime.datetime) -> datetime.datetime | None:
        """The first booked time after ``now``."""
        year, month = now.year, now.month
        for _ in range(25):
            day = self.day_in(year, month)
            if day is not None:
                when = datetime.datetime.combine(day, self.at)
                if when > now:
                    return when
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        return None
