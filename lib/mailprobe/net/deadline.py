"""One time budget shared by every network step of a check (the plugin's ``-t``)."""

from __future__ import annotations

import time


class BudgetExhausted(Exception):
    """The check's time budget ran out while doing ``stage``."""

    def __init__(self, stage: str, budget: float) -> None:
        super().__init__(f"the {budget:g}s time budget ran out while {stage}")
        self.stage = stage
        self.budget = budget


class Deadline:
    """A point in monotonic time by which the whole check must be done."""

    def __init__(self, seconds: float, announced: float | None = None) -> None:
        """``announced`` is the budget as the user gave it (``-t``), for messages."""
        self.budget = float(announced if announced is not None else seconds)
        self.started = time.monotonic()
        self.expires = self.started + float(seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def timeout(self, stage: str, cap: float | None = None) -> float:
        """The socket timeout for the next step: what is left, optionally capped.

        Raises :class:`BudgetExhausted` when nothing is left.
        """
        left = self.remaining()
        if left <= 0.0:
            raise BudgetExhausted(stage, self.budget)
        return min(left, cap) if cap else left

    def sub(self, seconds: float) -> Deadline:
        """A shorter deadline inside this one (for one step with its own cap)."""
        return Deadline(min(seconds, self.remaining()))
