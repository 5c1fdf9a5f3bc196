"""Fault injection for the tests (a documented test hook, inert unless its variable is set).

``MAILPROBE_RELAYTEST_FAULT`` holds comma-separated ``POINT=ACTION`` pairs; ACTION is
``kill`` (SIGKILL this process: a crash) or ``fail`` (raise :class:`InjectedFault`, an internal
error). With ``MAILPROBE_RELAYTEST_FAULT_ONCE=DIR`` each pair fires only once: a marker file in
DIR remembers that it did. Points: ``receive:before-commit``, ``receive:after-commit``,
``run:after-play``, ``run:after-record``, ``mail:after-send``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

VARIABLE = "MAILPROBE_RELAYTEST_FAULT"
ONCE = "MAILPROBE_RELAYTEST_FAULT_ONCE"


class InjectedFault(RuntimeError):
    """An internal error injected by the test hook."""


def point(name: str) -> None:
    spec = os.environ.get(VARIABLE, "")
    if not spec:
        return
    for pair in spec.split(","):
        where, _, action = pair.strip().partition("=")
        if where != name:
            continue
        once = os.environ.get(ONCE)
        if once:
            marker = Path(once) / f"{where.replace(':', '_')}.fired"
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault at {name}")
