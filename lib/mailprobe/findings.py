"""One finding of a probe: a severity and a sentence a postmaster understands.

Probes return findings; the plugin layer (``checks/``) turns severities into Nagios states.
The numbers are the Nagios exit codes, so no probe needs to import nagiosplugin.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True)
class Finding:
    """``level`` (OK..UNKNOWN), a stable ``code`` (e.g. ``spf-plus-all``), the text for the
    status line and an optional ``detail`` for the long output only."""

    level: int
    code: str
    text: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{LEVEL_NAMES[self.level]}: {self.text}{detail}"
