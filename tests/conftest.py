"""Shared test configuration: fixture modules for each real server, and plugin runners."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"

pytest_plugins = [
    "tests.fixtures.postfix",
    "tests.fixtures.exim",
    "tests.fixtures.knot",
    "tests.fixtures.rbldnsd",
    "tests.fixtures.installed",
    "tests.fixtures.mailbox",
]


@dataclass
class PluginRun:
    """What a plugin printed and returned, as Icinga would see it."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def status_line(self) -> str:
        return self.stdout.splitlines()[0] if self.stdout else ""

    @property
    def summary(self) -> str:
        return self.status_line.split(" | ")[0]

    @property
    def perfdata(self) -> dict[str, str]:
        """label -> the whole perfdata value field (value[UOM];warn;crit;min;max)."""
        if " | " not in self.status_line:
            return {}
        fields: dict[str, str] = {}
        for item in self.status_line.split(" | ", 1)[1].split():
            label, _, value = item.partition("=")
            fields[label.strip("'")] = value
        return fields

    def perf_value(self, label: str) -> float:
        raw = self.perfdata[label].split(";")[0]
        return float(raw.rstrip("smunc%KMGTB"))

    @property
    def long_output(self) -> list[str]:
        return self.stdout.splitlines()[1:]


def run_plugin(name: str, *args: str, timeout: float = 120) -> PluginRun:
    """Run ``plugins/<name>`` as Icinga would: a fresh process, stdout/stderr, exit code."""
    argv = [sys.executable, str(PLUGINS / name), *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    run = PluginRun(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    assert "Traceback" not in proc.stdout, f"traceback on stdout:\n{proc.stdout}"
    return run


@pytest.fixture
def plugin():
    """``plugin("check_dnsbl", "-H", ...)`` -> PluginRun."""
    return run_plugin
