"""The exposure probe: the connect scan, then what every open port of interest says.

1. Every (address, port) of the targets is connected to (``scan``), all inside the deadline.
2. For each open SMTP port of an address that is not sanctioned, the banner and EHLO reply are
   read (``greeting``), and with ``relay_check`` the relay series is played (``relaycheck``);
   for each open port 445 the SMB dialects are read (``smb``). These run on a few worker
   threads at once, each step bounded by the same deadline.
3. A sanctioned mailer among the targets whose SMTP ports all answered "not open" is down or
   filtered.

Nothing is contacted that is not one of the targets.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mailprobe.net.deadline import Deadline
from mailprobe.probes.exposure.model import (
    Endpoint,
    ExposureReport,
    Listener,
    PortResult,
    PortState,
    RelayResult,
    Service,
)
from mailprobe.probes.exposure.scan import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IN_FLIGHT, ConnectScan
from mailprobe.probes.exposure.targets import AllowList, Targets

MAX_WORKERS = 16  # listeners spoken to at once after the scan


@dataclass
class ExposureOptions:
    """How to probe: ports, concurrency, timeouts, vantage point, what to do with listeners."""

    ports: Sequence[int] = (25,)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_in_flight: int = DEFAULT_IN_FLIGHT
    command_timeout: float = 10.0
    source_address: str | None = None
    helo: str = "mailprobe.invalid"
    relay_check: bool = False
    mail_domain: str | None = None
    guess_domain: Callable[[str], str | None] = lambda name: None
    transcript: bool = False  # keep every connect and SMTP line (-vvv)


def endpoints(targets: Targets, ports: Sequence[int]) -> Iterator[Endpoint]:
    """Every (address, port) to connect to, address by address."""
    for address in targets:
        for port in ports:
            yield Endpoint(address, port)


def probe(targets: Targets, allow: AllowList, options: ExposureOptions,
          deadline: Deadline) -> ExposureReport:
    """Scan ``targets`` on ``options.ports`` and learn what the open ports of interest say."""
    started = time.monotonic()
    ports = tuple(dict.fromkeys(options.ports))
    report = ExposureReport(hosts=len(targets), ports=ports)
    report.probes = report.hosts * len(ports)
    mailers = {m for m in allow.mailers() if m in targets}
    mailer_results: dict[str, list[PortResult]] = {m: [] for m in mailers}

    def record(result: PortResult) -> None:
        report.counts[result.state] = report.counts.get(result.state, 0) + 1
        address = result.endpoint.address
        if address in mailer_results and result.endpoint.service.is_smtp:
            mailer_results[address].append(result)
        if result.state is not PortState.REFUSED:
            report.results.append(result)
        if result.state is PortState.OPEN:
            report.listeners.append(Listener(
                result.endpoint,
                sanctioned=result.endpoint.service.is_smtp and allow.sanctions(address)))

    scan = ConnectScan(deadline, connect_timeout=options.connect_timeout,
                       max_in_flight=options.max_in_flight,
                       source_address=options.source_address,
                       transcript=report.transcript if options.transcript else None)
    report.in_flight = scan.max_in_flight
    if not scan.run(endpoints(targets, ports), record):  # the budget ran out first
        unstarted = report.probes - sum(report.counts.values())
        report.counts[PortState.NOT_PROBED] = report.count(PortState.NOT_PROBED) + unstarted
        report.notes.append(f"{unstarted} ports were not reached before the time budget ran "
                            "out")
    report.scan_seconds = time.monotonic() - started
    report.results.sort(key=lambda r: r.endpoint.sort_key())
    report.listeners.sort(key=lambda x: x.endpoint.sort_key())
    _judge_mailers(report, mailer_results)
    report.sanctioned_outside = [allow.label(m) for m in allow.mailers() if m not in mailers]
    _learn(report, options, deadline)
    report.seconds = time.monotonic() - started
    return report


def _judge_mailers(report: ExposureReport, results: dict[str, list[PortResult]]) -> None:
    """A sanctioned mailer is up when one of its SMTP ports is open, down when every one of
    them was judged and none is open; otherwise it could not be told (left out of both)."""
    for address, mine in sorted(results.items()):
        if any(r.state is PortState.OPEN for r in mine):
            report.sanctioned_up.append(address)
        elif mine and all(r.state.judged for r in mine):
            report.sanctioned_down[address] = sorted(mine, key=lambda r: r.endpoint.port)


def _learn(report: ExposureReport, options: ExposureOptions, deadline: Deadline) -> None:
    """Banner/EHLO (and relay series) of unsanctioned SMTP listeners, dialects of SMB ports."""
    work: queue.SimpleQueue[Listener] = queue.SimpleQueue()
    jobs = [x for x in report.listeners
            if (x.service.is_smtp and not x.sanctioned) or x.service is Service.SMB]
    for listener in jobs:
        work.put(listener)

    def worker() -> None:
        while not deadline.expired():
            try:
                listener = work.get_nowait()
            except queue.Empty:
                return
            _learn_one(listener, options, deadline)

    threads = [threading.Thread(target=worker, daemon=True, name=f"exposure-{n}")
               for n in range(min(MAX_WORKERS, len(jobs)))]
    for thread in threads:
        thread.start()
    until = deadline.expires + 0.2  # every step of a worker is bounded by the deadline
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    if options.relay_check:  # asked for, and not played: say so, never stay silent
        for listener in report.unsanctioned:
            if listener.relay is None:
                listener.relay = RelayResult(inconclusive="not played: the time budget ran out")


def _learn_one(listener: Listener, options: ExposureOptions, deadline: Deadline) -> None:
    # imported only when something is open (ssl, the relay catalogue): most runs find nothing
    from mailprobe.net.smtp import Transcript
    from mailprobe.probes.exposure.greeting import read_greeting
    from mailprobe.probes.exposure.relaycheck import relay_check
    from mailprobe.probes.exposure.smb import probe_smb

    endpoint = listener.endpoint
    transcript = Transcript() if options.transcript else None
    if listener.service is Service.SMB:
        listener.smb = probe_smb(endpoint, deadline, source_address=options.source_address,
                                 step_timeout=options.command_timeout)
        return
    greeting = read_greeting(endpoint, options.helo, deadline,
                             source_address=options.source_address,
                             step_timeout=options.command_timeout, transcript=transcript)
    listener.greeting = greeting
    if options.relay_check:
        if endpoint.service is Service.SMTPS:
            listener.relay = RelayResult(inconclusive="the relay series is not played over "
                                         "implicit TLS (port 465)")
        elif greeting.banner_code != 220:
            listener.relay = RelayResult(inconclusive="no 220 banner: the relay series was "
                                         "not played")
        else:
            listener.relay = relay_check(
                endpoint, deadline, helo=options.helo, mail_domain=options.mail_domain,
                guess_domain=options.guess_domain, server_name=greeting_name_of(greeting.banner),
                source_address=options.source_address, command_timeout=options.command_timeout,
                transcript=transcript)
    if transcript is not None:
        listener.transcript = transcript.render()


def greeting_name_of(banner: str) -> str:
    """The host name of a banner line "220 name ESMTP ..." ('' when there is none)."""
    words = banner.split(maxsplit=2)
    return words[1] if len(words) > 1 else ""
