"""What a hostile-server case expects of one plugin run, and the checks every run must pass."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.conftest import PluginRun

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
STATUS_LINE = re.compile(r"^[A-Z_]+ (OK|WARNING|CRITICAL|UNKNOWN)\b")
# Margin on top of -t: the bound (the plugin must end within -t + 1 s).
OVERRUN = 1.0
# A status line a postmaster (and Icinga's UI) can still read: the guidelines want < 80
# characters; lists of attempts or addresses make ours longer, but never kilobytes.
MAX_STATUS = 1000


@dataclass(frozen=True)
class Expect:
    """One plugin run of a case: extra options, -t, the documented state and reason.

    ``reason`` is a regular expression searched in the summary (the status line before ``|``).
    """

    state: int
    reason: str
    args: tuple[str, ...] = ()
    timeout: float = 4.0
    detail: str = ""  # a regular expression that must match one line of the long output

    def describe(self) -> str:
        return f"{STATE[self.state]} ({self.reason})"


def as_tuple(expect: Expect | tuple[Expect, ...]) -> tuple[Expect, ...]:
    return (expect,) if isinstance(expect, Expect) else tuple(expect)


def assert_run(run: PluginRun, name: str, expect: Expect) -> None:
    """The contract of every hostile case: state, one readable status line, within -t + 1 s."""
    shown = f"\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr[-2000:]}"
    assert run.stdout, f"no output at all{shown}"
    status = run.status_line
    assert status.startswith(f"{name} {STATE[expect.state]}"), (
        f"expected {name} {STATE[expect.state]}, got: {status}{shown}")
    assert run.returncode == expect.state, f"exit {run.returncode} for: {status}{shown}"
    assert re.search(expect.reason, run.summary), (
        f"reason /{expect.reason}/ not in: {run.summary}{shown}")
    if expect.detail:
        assert any(re.search(expect.detail, line) for line in run.long_output), (
            f"/{expect.detail}/ not in the long output{shown}")
    others = [line for line in run.long_output if STATUS_LINE.match(line)]
    assert not others, f"more than one status line: {others}{shown}"
    assert " - " in status and len(run.summary.split(" - ", 1)[1]) > 10, (
        f"no reason given: {status}")
    assert not any(ch in run.stdout for ch in "\x00\r\x1b"), f"control bytes on stdout{shown}"
    assert len(status) <= MAX_STATUS, f"status line of {len(status)} characters{shown[:3000]}"
    assert "Traceback" not in run.stderr, f"traceback on stderr{shown}"
    assert run.seconds <= expect.timeout + OVERRUN, (
        f"took {run.seconds:.2f}s with -t {expect.timeout:g}{shown}")
