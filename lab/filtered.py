"""A loopback port that looks "filtered" to a connect scanner: SYNs go unanswered.

A firewall DROP rule would do it, but the lab adds no firewall rules to the machine (and
``nft``/``iptables`` are not installed here). Linux gives the same thing on loopback without
one: a listening socket whose accept queue is full drops every further SYN (it does not
answer RST; ``tcp_abort_on_overflow`` is 0 by default), so the client retransmits and its
connect times out, exactly as against a dropping firewall. ``listen(0)`` leaves room for one
connection, which this class makes itself and never accepts.

Verified on the lab's kernel by ``tests/test_exposure_unit.py`` (the scan sees FILTERED) and by
the integration tests of check_port_exposure.
"""

from __future__ import annotations

import contextlib
import socket

from lab.process import LabServer


class FilteredPort(LabServer):
    """``with FilteredPort("127.77.0.8", port) as f:`` connects to f.host:f.port time out."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._filler: socket.socket | None = None

    def start(self) -> FilteredPort:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(0)
        self.port = listener.getsockname()[1]
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.settimeout(5)
        filler.connect((self.host, self.port))  # fills the accept queue: it is never accepted
        self._listener, self._filler = listener, filler
        return self

    def stop(self) -> None:
        for sock in (self._filler, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._listener = self._filler = None
