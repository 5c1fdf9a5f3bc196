"""The connect scan: many TCP connects at once on non-blocking sockets, inside one deadline.

Like ``nmap -sT``, each probe is a full TCP connect from an unprivileged process, closed as soon
as it completes. The close is an ordinary one (FIN): nmap resets instead, but a server that
looks at the peer of a connection it accepts late finds a reset one gone (the lab's scripted
server does), and only open ports ever reach that state, so the TIME-WAIT they leave is small.

Up to ``max_in_flight`` connects are pending at once; one selector waits for whichever
finishes first. A connect gets ``connect_timeout`` seconds (the kernel resends the SYN after
1 s, so a timeout of 3 s gives a silent port two chances) and nothing waits past the deadline:
what was not started in time is NOT_PROBED.

The outcome of a connect, from the socket's error:

* completed: OPEN; ECONNREFUSED (an RST): REFUSED; no answer in time: FILTERED;
* EHOSTUNREACH (ICMP host unreachable, or no neighbour answers on the link): UNREACHABLE;
* anything else (ENETUNREACH: no route from here; EADDRNOTAVAIL: a bad --source-address;
  EACCES/EPERM: a local firewall; EMFILE ...): ERROR, i.e. the port could not be judged.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import resource
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailprobe.net.deadline import Deadline
from mailprobe.probes.exposure.model import Endpoint, PortResult, PortState

DEFAULT_IN_FLIGHT = 256
DEFAULT_CONNECT_TIMEOUT = 3.0
FD_RESERVE = 64  # descriptors kept free for everything else the check opens


def classify_errno(code: int) -> tuple[PortState, str]:
    """The state of a connect that ended with ``code`` (0: it completed), and why."""
    if code == 0:
        return PortState.OPEN, ""
    if code == errno.ECONNREFUSED:
        return PortState.REFUSED, ""
    if code == errno.ETIMEDOUT:
        return PortState.FILTERED, "the kernel gave up waiting for an answer"
    if code == errno.EHOSTUNREACH:
        return PortState.UNREACHABLE, "host unreachable"
    reason = os.strerror(code)
    if code == errno.ENETUNREACH:
        reason = "no route from this host (network unreachable)"
    elif code == errno.EADDRNOTAVAIL:
        reason = f"cannot connect from the source address ({reason})"
    elif code in (errno.EACCES, errno.EPERM):
        reason = f"refused by this host's own firewall or policy ({reason})"
    return PortState.ERROR, reason


def usable_in_flight(wanted: int) -> int:
    """``wanted`` connects at once, within the descriptor limit (raising the soft limit up to
    the hard limit when that allows more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return max(1, wanted)
    return max(1, min(wanted, soft - FD_RESERVE))


@dataclass
class _Pending:
    endpoint: Endpoint
    sock: socket.socket
    started: float
    until: float
    done: bool = False


class ConnectScan:
    """One scan: ``ConnectScan(deadline, ...).run(endpoints, record)``."""

    def __init__(self, deadline: Deadline, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_in_flight: int = DEFAULT_IN_FLIGHT, source_address: str | None = None,
                 transcript: list[str] | None = None) -> None:
        self.deadline = deadline
        self.connect_timeout = connect_timeout
        self.max_in_flight = usable_in_flight(max_in_flight)
        self.source_address = source_address
        self.transcript = transcript
        self.selector = selectors.DefaultSelector()
        self.pending: dict[int, _Pending] = {}
        self.by_expiry: collections.deque[_Pending] = collections.deque()

    def run(self, endpoints: Iterable[Endpoint], record: Callable[[PortResult], None]) -> bool:
        """Connect to every endpoint; ``record`` gets each result as it is known.

        A connect the deadline cuts short is recorded as NOT_PROBED; the endpoints never
        started are not recorded at all (a forced /8 must not cost a walk through millions of
        them after the budget is spent). Returns whether every endpoint was started.
        """
        queue = iter(endpoints)
        exhausted = False
        try:
            while True:
                while not exhausted and len(self.pending) < self.max_in_flight:
                    if self.deadline.expired():
                        break
                    endpoint = next(queue, None)
                    if endpoint is None:
                        exhausted = True
                        break
                    self._start(endpoint, record)
                if not self.pending and (exhausted or self.deadline.expired()):
                    break
                self._wait(record)
                self._expire(record, time.monotonic())
        finally:
            for pending in list(self.pending.values()):
                self._finish(pending, record, PortState.NOT_PROBED,
                             "the time budget ran out while connecting")
            self.selector.close()
        return exhausted

    # -- one connect ------------------------------------------------------------------------
    def _start(self, endpoint: Endpoint, record: Callable[[PortResult], None]) -> None:
        family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            record(PortResult(endpoint, *classify_errno(exc.errno or errno.EIO)))
            return
        sock.setblocking(False)
        now = time.monotonic()
        pending = _Pending(endpoint, sock, now,
                           min(now + self.connect_timeout, self.deadline.expires))
        try:
            if self.source_address:
                sock.bind((self.source_address, 0))
            code = sock.connect_ex((endpoint.address, endpoint.port))
        except OSError as exc:
            code = exc.errno or errno.EIO
        if code in (errno.EINPROGRESS, errno.EAGAIN):
            self.pending[sock.fileno()] = pending
            self.by_expiry.append(pending)  # same timeout for all: expiry order = start order
            self.selector.register(sock, selectors.EVENT_WRITE)
            return
        self._finish(pending, record, *classify_errno(code))

    def _wait(self, record: Callable[[PortResult], None]) -> None:
        wake = self.by_expiry[0].until if self.by_expiry else self.deadline.expires
        timeout = max(0.0, min(wake, self.deadline.expires) - time.monotonic())
        for key, _ in self.selector.select(timeout):
            pending = self.pending.get(key.fd)
            if pending is None:
                continue
            code = pending.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._finish(pending, record, *classify_errno(code))

    def _expire(self, record: Callable[[PortResult], None], now: float) -> None:
        while self.by_expiry and (self.by_expiry[0].done or self.by_expiry[0].until <= now):
            pending = self.by_expiry.popleft()
            if pending.done:
                continue
            waited = now - pending.started
            if pending.until < pending.started + self.connect_timeout:  # cut by the deadline
                self._finish(pending, record, PortState.NOT_PROBED,
                             f"the time budget ran out after {waited:.1f}s of waiting")
            else:
                self._finish(pending, record, PortState.FILTERED,
                             f"no answer within {self.connect_timeout:g}s")

    def _finish(self, pending: _Pending, record: Callable[[PortResult], None],
                state: PortState, detail: str) -> None:
        pending.done = True
        fd = pending.sock.fileno()
        if self.pending.pop(fd, None) is not None:
            self.selector.unregister(pending.sock)
        pending.sock.close()
        if self.transcript is not None:
            took = (time.monotonic() - pending.started) * 1000
            self.transcript.append(f"connect {pending.endpoint} -> {state.value}"
                                   + (f" ({detail})" if detail else "") + f" {took:.0f} ms")
        record(PortResult(pending.endpoint, state, detail))
