"""What the web page may test, and how often: the safety rules of ``mailprobe serve``.

* Only addresses inside ``--allow`` networks are ever probed; a name is resolved first (through
  the server's ``--nameserver``) and every one of its addresses must be allowed, else nothing
  is touched. The audit then probes those vetted addresses, never the name again (no DNS
  rebinding between the check and the probe).
* One audit per client at a time, and at most ``rate`` audits per client per minute.
* The input is a host name or an IP address, checked before anything else; it never reaches a
  shell or a file name.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from mailprobe.audit.options import AuditOptions
from mailprobe.checks.plugin import host_name_problem
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import DNSFailure, Lookup, is_ip_address, make_resolver, resolve_target

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RESOLVE_SECONDS = 5.0
MAX_HOST_LENGTH = 253


class Refused(Exception):
    """The request is refused: ``status`` (400, 403, 429, 502, 503) and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_networks(texts: Sequence[str]) -> list[Network]:
    """``--allow`` values as networks; ValueError names a bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"--allow {text!r}: {exc}") from exc
    return networks


def allowed(address: str, networks: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def host_problem(host: str) -> str | None:
    """Why ``host`` is not something to test (None when it is a name or an address)."""
    if not host:
        return "give a host name or an IP address"
    if len(host) > MAX_HOST_LENGTH or not host.isprintable():
        return "not a host name or an IP address"
    problem = host_name_problem(host)
    if problem:
        return problem
    if is_ip_address(host) and unusable_reason(host):
        return f"cannot be a mail server ({unusable_reason(host)})"
    return None


def vet(host: str, options: AuditOptions, networks: Sequence[Network]) -> list[str]:
    """The addresses of ``host`` if every one is allowed; :class:`Refused` otherwise."""
    problem = host_problem(host)
    if problem:
        raise Refused(400, f"{host[:80]!r}: {problem}")
    if is_ip_address(host):
        addresses = [str(ipaddress.ip_address(host))]
    else:
        deadline = Deadline(RESOLVE_SECONDS)
        resolver = make_resolver(options.nameservers, timeout=RESOLVE_SECONDS)
        try:
            addresses = resolve_target(host.rstrip("."), Lookup(resolver, deadline),
                                       options.family)
        except (DNSFailure, BudgetExhausted) as exc:
            raise Refused(502, f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise Refused(400, f"{host} has no address (A/AAAA): nothing to test")
    refused = [a for a in addresses if not allowed(a, networks)]
    if refused:
        nets = ", ".join(str(n) for n in networks) or "none"
        raise Refused(403, f"{host} ({', '.join(addresses)}) is not inside the networks this "
                           f"page may test ({nets}): nothing was sent to it")
    return addresses


@dataclass
class ClientLimits:
    """One audit per client at a time, ``rate`` per minute, ``jobs`` at once in all."""

    rate: int = 10
    jobs: int = 4

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # client -> job id
        self._recent: dict[str, deque[float]] = {}

    def admit(self, client: str, job_id: str) -> None:
        """Count a new audit for ``client``; :class:`Refused` (429/503) when over a limit."""
        now = time.monotonic()
        with self._lock:
            if client in self._running:
                raise Refused(429, "an audit you started is still running: one at a time")
            recent = self._recent.setdefault(client, deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= self.rate:
                raise Refused(429, f"at most {self.rate} audits a minute: wait a little")
            if len(self._running) >= self.jobs:
                raise Refused(503, "the page is busy with other audits: try again shortly")
            recent.append(now)
            self._running[client] = job_id

    def finished(self, client: str) -> None:
        with self._lock:
            self._running.pop(client, None)
