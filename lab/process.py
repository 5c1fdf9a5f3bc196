"""What every lab server launcher shares: free ports, readiness, clean stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


class LabError(RuntimeError):
    """A lab server could not be set up or did not come up."""


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on ``host`` for both TCP and UDP right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, kind) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            try:
                with socket.socket(family, other) as second:
                    second.bind((host, port))
            except OSError:
                continue
            return port
    raise LabError(f"no free port on {host}")


def wait_for_tcp(host: str, port: int, timeout: float = 10.0, banner: bool = False) -> None:
    """Wait until something accepts on host:port (and, with ``banner``, says something)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    until = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < until:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(max(0.1, until - time.monotonic()))
                sock.connect((host, port))
                if banner and not sock.recv(512):
                    raise LabError("closed without a banner")
                return
        except (OSError, LabError) as exc:
            last = exc
            time.sleep(0.05)
    raise LabError(f"nothing answered on {host}:{port} within {timeout:g}s ({last})")


def wait_for_dns(host: str, port: int, qname: str, timeout: float = 10.0) -> None:
    """Wait until a DNS server on host:port answers a UDP query for ``qname`` (any rcode)."""
    import dns.message
    import dns.query

    until = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < until:
        try:
            dns.query.udp(dns.message.make_query(qname, "SOA"), host, port=port, timeout=0.3)
            return
        except Exception as exc:  # any failure means "not yet"
            last = exc
            time.sleep(0.05)
    raise LabError(f"no DNS answer from {host}:{port} within {timeout:g}s ({last})")


def require_binary(*candidates: str) -> str:
    """The first of ``candidates`` found on PATH (or as a path), else LabError."""
    for name in candidates:
        found = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if found:
            return found
    raise LabError(f"{candidates[0]} is not installed (run ./dev setup)")


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM a process, then SIGKILL it if it is still there after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # reap it if it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def read_pidfile(path: Path, timeout: float = 5.0) -> int:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().split()[0])
        time.sleep(0.05)
    raise LabError(f"no pid file {path}")


class LabServer:
    """A server of the lab: started on entering a ``with`` block, stopped on leaving it."""

    host: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_dns_or_fail(self, process: ManagedProcess, qname: str, what: str) -> None:
        """Wait until the server answers DNS; if it never does, stop it and say why."""
        try:
            wait_for_dns(self.host, self.port, qname, timeout=10)
        except LabError as exc:
            output = process.output()
            self.stop()
            raise LabError(f"{what} did not come up: {exc}\n{output}") from exc

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets): the plugins' ``--nameserver`` form."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ManagedProcess:
    """A foreground child process with its own temporary directory, stopped on exit."""

    def __init__(self, name: str, workdir: Path | None = None) -> None:
        self.name = name
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"mailprobe-{name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{self.name}.out", "wb")  # noqa: SIM115 (kept for the child)
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **kwargs,  # type: ignore[arg-type]
        )
        log.close()
        return self.proc

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / f"{self.name}.out").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
