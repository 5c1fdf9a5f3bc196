"""Fault injection on the Postfix integration: the mail server dies (or freezes) in the middle of
a relay run. The plugin must report it correctly, end within -t + 1 s, and leave no process or
socket behind.

Postfix is slowed down with ``sleep 1`` in its relay restrictions (every RCPT TO takes a
second), so that the run is still going when the fault is injected.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.postfix import LAB_DOMAIN, PostfixServer, _pids_of_config
from tests.conftest import PLUGINS, ROOT, PluginRun

OUTSIDE = "127.0.0.2"
SLOW_RCPT = {"smtpd_relay_restrictions": "sleep 1, permit_mynetworks, reject_unauth_destination",
             # log accepted recipients too ("NOQUEUE: warn: RCPT ..."), to know where the run is
             "smtpd_recipient_restrictions": "check_recipient_access static:WARN",
             # one reply per command: Postfix holds the replies to a pipelined batch until it
             # has read the whole batch, so a server killed mid-batch would leave no verdict
             # to keep, and these tests are about the verdicts seen before the crash
             "smtpd_discard_ehlo_keywords": "pipelining"}
TIMEOUT = 20
FROZEN_TIMEOUT = 6
# TCP states in /proc/net/tcp that mean a socket is still open at one end (not TIME_WAIT/CLOSE).
OPEN_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
               "0B": "CLOSING"}


def sockets_on(port: int) -> list[str]:
    """Open TCP sockets with ``port`` at either end (any state but TIME_WAIT/CLOSE)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                if port in ports and state in OPEN_STATES:
                    found.append(f"{local} {remote} {OPEN_STATES[state]}")
    return found


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def start_plugin(server: PostfixServer, *extra: str,
                 timeout: float = TIMEOUT) -> subprocess.Popen[str]:
    argv = [sys.executable, str(PLUGINS / "check_open_relay"), "-H", server.host,
            "-p", str(server.port), "--source-address", OUTSIDE, "--mail-domain", LAB_DOMAIN,
            "-t", f"{timeout:g}", "--command-timeout", "5", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[str], started: float) -> PluginRun:
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the plugin hung:\n{stdout}\n{stderr}")
    run = PluginRun(list(proc.args), proc.returncode, stdout, stderr,  # type: ignore[arg-type]
                    time.monotonic() - started)
    assert "Traceback" not in stdout + stderr, stdout + stderr
    return run


def wait_for_rcpts(server: PostfixServer, count: int, timeout: float = 15) -> None:
    """Until ``count`` RCPT TO have been answered (each takes 1 s): the run is under way."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if len(re.findall(r"NOQUEUE: (reject|warn): RCPT", server.maillog())) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"the relay run did not get going:\n{server.maillog()}")


@pytest.fixture
def slow_postfix(postfix_factory: Callable[..., PostfixServer]) -> Iterator[
        Callable[..., PostfixServer]]:
    def make(name: str, preset: str | None = None) -> PostfixServer:
        return postfix_factory(f"fault-{name}-{os.getpid()}-{time.monotonic_ns()}", SLOW_RCPT,
                               preset=preset)
    yield make


def assert_clean(proc: subprocess.Popen[str], server: PostfixServer, config_dir: Path) -> None:
    assert proc.poll() is not None, "the plugin is still running"
    assert not children_of(proc.pid), "the plugin left child processes"
    assert not _pids_of_config(config_dir), "Postfix processes left behind"
    until = time.monotonic() + 3  # the kernel needs a moment to finish closing both ends
    while sockets_on(server.port) and time.monotonic() < until:
        time.sleep(0.05)
    assert not sockets_on(server.port), f"sockets left open: {sockets_on(server.port)}"


def test_postfix_stopped_mid_run_closed_server(slow_postfix: Callable[..., PostfixServer]) -> None:
    """A closed server dies after a few attempts: nothing relayed, series incomplete -> UNKNOWN."""
    server = slow_postfix("closed")
    config_dir = server.config_dir
    started = time.monotonic()
    proc = start_plugin(server)
    wait_for_rcpts(server, 3)
    stopped = time.monotonic()
    server.stop()
    run = finish(proc, started)
    assert run.returncode == 3, run.stdout
    # the reconnect meets either the closed port or a listener being torn down
    assert re.match(r"OPEN_RELAY UNKNOWN - only \d+ of \d+ attempts could be played \(server "
                    r"unreachable mid-series: (cannot connect to 127\.0\.0\.1:\d+: Connection "
                    r"refused|no usable banner .*(reset|closed) the connection)", run.summary), \
        run.stdout
    assert run.perf_value("relayed") == 0
    assert time.monotonic() - stopped < 5 + 1, "slow to notice the server is gone"
    assert run.seconds <= TIMEOUT + 1
    assert any(line.startswith("[REFUSED]") for line in run.long_output), run.stdout
    assert any(line.startswith("[ERROR]") for line in run.long_output), run.stdout
    assert_clean(proc, server, config_dir)


def test_postfix_stopped_mid_run_open_server(slow_postfix: Callable[..., PostfixServer]) -> None:
    """An open relay dies mid-run: what was seen relaying still makes it CRITICAL."""
    server = slow_postfix("open", preset="open")
    config_dir = server.config_dir
    started = time.monotonic()
    proc = start_plugin(server)
    wait_for_rcpts(server, 3)  # the control and two relayed attempts
    server.stop()
    run = finish(proc, started)
    assert run.returncode == 2, run.stdout
    assert re.match(r"OPEN_RELAY CRITICAL - \d+ of \d+ relay attempts accepted \(plain",
                    run.summary), run.stdout
    assert "only " in run.summary and "server unreachable mid-series" in run.summary
    assert run.seconds <= TIMEOUT + 1
    assert_clean(proc, server, config_dir)


def test_postfix_frozen_mid_run(slow_postfix: Callable[..., PostfixServer]) -> None:
    """Postfix stops answering (SIGSTOP) mid-run: the plugin ends within -t + 1 s, UNKNOWN."""
    server = slow_postfix("frozen")
    config_dir = server.config_dir
    started = time.monotonic()
    proc = start_plugin(server, "--command-timeout", "20", timeout=FROZEN_TIMEOUT)
    wait_for_rcpts(server, 2)
    frozen = _pids_of_config(config_dir)
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        run = finish(proc, started)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.stop()
    assert run.returncode == 3, run.stdout
    assert re.match(r"OPEN_RELAY UNKNOWN - .*time budget ran out", run.summary), run.stdout
    assert run.seconds <= FROZEN_TIMEOUT + 1, f"{run.seconds:.1f}s"
    assert_clean(proc, server, config_dir)
