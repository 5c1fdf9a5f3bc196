"""One finding of a probe: a severity and a sentence a postmaster understands.

Probes return findings; the plugin layer (``checks/``) turns severities into Nagios states.
The numbers are the Nagios exit codes, so no probe needs to import nagiosplugin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """How bad a finding is: the Nagios exit codes, without depending on Nagios."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


OK, WARNING, CRITICAL, UNKNOWN = Level.OK, Level.WARNING, Level.CRITICAL, Level.UNKNOWN
LEVEL_NAMES: dict[int, str] = {level: level.name for level in Level}

# The one ranking rule (Icinga's severity order), for plugins and reports alike: a proven
# problem (CRITICAL) outranks "could not determine" (UNKNOWN), which outranks WARNING. Ranking
# by exit code would let an UNKNOWN (3) hide a proven CRITICAL (2).
SEVERITY: dict[int, int] = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}


def worst_level(levels: Iterable[int], empty: Level = UNKNOWN) -> Level:
    """The most severe of ``levels`` under the one ranking rule (``empty`` when there are none)."""
    ranked = list(levels)
    return Level(max(ranked, key=SEVERITY.__getitem__)) if ranked else empty


@dataclass(frozen=True)
class Finding:
    """``level`` (OK..UNKNOWN), a stable ``code`` (e.g. ``spf-plus-all``), the text for the
    status line, an optional ``detail`` for the long output only, and the ``subject`` it is
    about when a check looks at several (e.g. one of the host's addresses)."""

    level: int
    code: str
    text: str
    detail: str = ""
    subject: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{LEVEL_NAMES[self.level]}: {self.text}{detail}"
