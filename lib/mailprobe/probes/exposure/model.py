"""The facts of an exposure scan, as data: endpoints, port states, listeners, the report."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

#: Ports of the NetBIOS session service (139) and SMB over TCP (445): never to face the Internet.
NETBIOS_PORTS = (139, 445)
#: SMTP over implicit TLS (RFC 8314): the banner comes after the TLS handshake.
SMTPS_PORT = 465
SUBMISSION_PORTS = (465, 587)


class Service(Enum):
    """What a port is probed as."""

    SMTP = "SMTP"
    SMTPS = "SMTP over TLS"
    NETBIOS = "NetBIOS session service"
    SMB = "SMB"

    @classmethod
    def of_port(cls, port: int) -> Service:
        """139 and 445 are NetBIOS/SMB, 465 is SMTP over TLS, every other port is SMTP."""
        return {139: cls.NETBIOS, 445: cls.SMB, SMTPS_PORT: cls.SMTPS}.get(port, cls.SMTP)

    @property
    def is_smtp(self) -> bool:
        return self in (Service.SMTP, Service.SMTPS)


class PortState(Enum):
    """What a TCP connect to one port showed."""

    OPEN = "open"  # the handshake completed
    REFUSED = "refused"  # RST: the host is there, nothing listens
    FILTERED = "filtered"  # no answer within the connect timeout (dropped by a firewall)
    UNREACHABLE = "unreachable"  # "host unreachable" (ICMP, or no neighbour on the link)
    ERROR = "error"  # could not be probed from here (no route, bad source address, ...)
    NOT_PROBED = "not probed"  # the time budget ran out before its turn

    @property
    def judged(self) -> bool:
        """Whether the state says something about the port (else: could not tell)."""
        return self not in (PortState.ERROR, PortState.NOT_PROBED)


@dataclass(frozen=True, order=True)
class Endpoint:
    """One address and port."""

    address: str
    port: int

    @property
    def service(self) -> Service:
        return Service.of_port(self.port)

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def sort_key(self) -> tuple[int, int, int]:
        ip = ipaddress.ip_address(self.address)
        return (ip.version, int(ip), self.port)


@dataclass(frozen=True)
class PortResult:
    """The outcome of one connect: state, and in plain words what happened (errors, waits)."""

    endpoint: Endpoint
    state: PortState
    detail: str = ""


@dataclass
class SMTPGreeting:
    """What an open SMTP port said: its banner and EHLO reply, or why they were not read."""

    banner: str = ""  # "220 printer.example.org ESMTP" (first line)
    banner_code: int = 0
    ehlo: str = ""  # "250 printer.example.org" (first line)
    extensions: list[str] = field(default_factory=list)
    tls: bool = False  # spoken over implicit TLS (port 465)
    problem: str = ""  # why the banner or EHLO could not be read

    def describe(self) -> str:
        """``answers 220 printer.example.org ESMTP; EHLO 250 ... (PIPELINING, STARTTLS)``."""
        parts = []
        if self.banner:
            parts.append(f"answers {self.banner}" + (" (over TLS)" if self.tls else ""))
        if self.ehlo:
            offered = f" ({', '.join(self.extensions)})" if self.extensions else ""
            parts.append(f"EHLO {self.ehlo}{offered}")
        if self.problem:
            parts.append(self.problem)
        return "; ".join(parts) or "no greeting read"

    @property
    def brief(self) -> str:
        """For the status line: the banner text, or the problem."""
        return self.banner or self.problem or "no greeting read"


@dataclass
class RelayResult:
    """The relay series played on an unsanctioned listener (``--relay-check``)."""

    attempts: int = 0
    relayed: list[str] = field(default_factory=list)  # ids of the relayed attempts
    inconclusive: str = ""  # why the series proves nothing (control refused, budget, ...)
    mail_domain: str = ""


@dataclass
class SMBFacts:
    """What an SMB server offers to a client without credentials.

    ``smb1`` is True only when the server answered an SMB1 NEGOTIATE by choosing the
    "NT LM 0.12" dialect; False when it declined SMB1 in a reply; None when it could not be told.
    """

    smb1: bool | None = None
    smb1_detail: str = ""
    smb2_dialect: str = ""  # e.g. "3.1.1", when the SMB2 NEGOTIATE was answered
    smb2_detail: str = ""

    def describe(self) -> str:
        if self.smb1:
            first = "SMBv1 offered (chose NT LM 0.12 without credentials)"
        elif self.smb1 is False:
            first = "SMBv1 not offered" + (f" ({self.smb1_detail})" if self.smb1_detail else "")
        else:
            first = "SMBv1 could not be told" + (f" ({self.smb1_detail})"
                                                 if self.smb1_detail else "")
        second = (f"SMB2 dialect {self.smb2_dialect}" if self.smb2_dialect
                  else f"SMB2: {self.smb2_detail or 'not answered'}")
        return f"{first}; {second}"


@dataclass
class Listener:
    """An open SMTP or NetBIOS/SMB port, with what was learnt about it."""

    endpoint: Endpoint
    sanctioned: bool = False
    greeting: SMTPGreeting | None = None
    relay: RelayResult | None = None
    smb: SMBFacts | None = None
    transcript: list[str] = field(default_factory=list)  # its SMTP lines (-vvv)

    @property
    def service(self) -> Service:
        return self.endpoint.service


@dataclass
class ExposureReport:
    """The whole scan."""

    hosts: int = 0  # target addresses
    ports: tuple[int, ...] = ()
    probes: int = 0  # address x port connects planned
    counts: dict[PortState, int] = field(default_factory=dict)
    #: every result that is not REFUSED (refused ports are only counted, except on sanctioned
    #: mailers): open, filtered, unreachable, errors, not probed.
    results: list[PortResult] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    #: sanctioned mailer address -> the results of its SMTP ports (it answers on none of them)
    sanctioned_down: dict[str, list[PortResult]] = field(default_factory=dict)
    sanctioned_up: list[str] = field(default_factory=list)
    sanctioned_outside: list[str] = field(default_factory=list)  # allowed, not among targets
    seconds: float = 0.0
    scan_seconds: float = 0.0
    in_flight: int = 0  # the concurrency the scan ran with
    notes: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def count(self, state: PortState) -> int:
        return self.counts.get(state, 0)

    @property
    def open_ports(self) -> int:
        return self.count(PortState.OPEN)

    @property
    def unsanctioned(self) -> list[Listener]:
        return [x for x in self.listeners if x.service.is_smtp and not x.sanctioned]

    @property
    def netbios(self) -> list[Listener]:
        return [x for x in self.listeners if not x.service.is_smtp]

    def with_state(self, *states: PortState) -> list[PortResult]:
        return [r for r in self.results if r.state in states]
