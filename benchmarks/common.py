"""Shared helpers for the benchmarks: run a command and measure it, alternate tools, medians.

Every measurement is one child process: wall time (perf_counter around spawn..reap), CPU time
(user + system of the child and of any children it waited for, from ``wait4``) and peak RSS
(``ru_maxrss``, KiB). Tools are run alternately (A B A B ...) so a burst of load from elsewhere
hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
RESULTS_DIR = ROOT / "benchmarks" / "results"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() \
    else sys.executable
NETNS_ENV = "MAILPROBE_BENCH_NETNS"

sys.path.insert(0, str(ROOT))  # the lab/ package (mailprobe itself is installed in .venv)


@dataclass
class Run:
    """One measured process."""

    wall: float
    cpu: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def first_line(self) -> str:
        return self.stdout.split("\n", 1)[0]


def plugin(name: str) -> list[str]:
    """argv prefix for one of our plugins, run by the project's interpreter."""
    return [PYTHON, str(PLUGINS / f"check_{name}")]


def child_env() -> dict[str, str]:
    """The environment of measured runs: bytecode caching on, as on an installed system."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def prepare() -> None:
    """Compile the project's modules once, so no run pays for compiling them."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "lib")], env=child_env(),
                   check=False, stdout=subprocess.DEVNULL)


def run(argv: Sequence[str], timeout: float = 300, env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` to completion; measure wall, CPU (user+sys) and peak RSS of the child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env or child_env())
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Run(wall=wall, cpu=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss,
                   returncode=proc.returncode, stdout=out.read().decode("utf-8", "replace"),
                   stderr=err.read().decode("utf-8", "replace"))


@dataclass
class Series:
    """All runs of one contender."""

    name: str
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def spread(self, attr: str) -> tuple[float, float]:
        values = [getattr(r, attr) for r in self.runs]
        return min(values), max(values)


def alternate(contenders: dict[str, Callable[[], Run]], rounds: int, warmup: int = 1,
              check: Callable[[str, Run], None] | None = None) -> dict[str, Series]:
    """Run every contender once per round, rotating the order; ``warmup`` rounds are dropped."""
    names = list(contenders)
    series = {name: Series(name) for name in names}
    for number in range(warmup + rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for name in order:
            result = contenders[name]()
            if check is not None:
                check(name, result)
            if number >= warmup:
                series[name].runs.append(result)
    return series


def expect(name: str, result: Run, codes: Sequence[int], needle: str = "") -> None:
    """Fail loudly when a contender did not do the work (wrong exit code or output)."""
    if result.returncode not in codes or needle not in result.stdout:
        raise SystemExit(f"{name}: unexpected result (exit {result.returncode}):\n"
                         f"{result.stdout[:2000]}\n{result.stderr[:2000]}")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub-flavoured Markdown table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())


def save(name: str, data: dict) -> Path:
    """Write the figures to benchmarks/results/NAME.json (RESULTS.md is written from them)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    about = machine()
    about["load"] = f"{LOAD_AT_START} at the start, {about['load']} at the end"
    data = {"machine": about, **data}
    path.write_text(json.dumps(data, indent=2, default=lambda o: asdict(o)) + "\n")
    return path


def base_parser(description: str, rounds: int = 7) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds, help="measured rounds per tool")
    parser.add_argument("--no-netns", action="store_true",
                        help="run in the current network namespace (default: a private one)")
    return parser


def in_private_netns(argv: Sequence[str] | None = None) -> None:
    """Re-run this script inside a fresh network namespace (own loopback, port 53 free) and exit.

    Needs root and ``ip``; does nothing when already inside, or with --no-netns. The namespace
    isolates the benchmark from other work on the machine's loopback and lets a DNS server
    listen on 127.0.0.1:53 (check_rbl's -n takes no port).
    """
    argv = list(sys.argv if argv is None else argv)
    if os.environ.get(NETNS_ENV) or "--no-netns" in argv or "-h" in argv or "--help" in argv:
        return
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise SystemExit("the benchmarks need root and `ip` for a private network namespace "
                         "(or give --no-netns; then port 53 must be free for check_rbl)")
    name = f"mpbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        env = dict(os.environ, **{NETNS_ENV: name})
        code = subprocess.run(["ip", "netns", "exec", name, sys.executable, *argv],
                              env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    raise SystemExit(code)
