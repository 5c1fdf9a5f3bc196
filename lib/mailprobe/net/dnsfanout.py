"""Many DNS questions at once over one UDP socket: the DNSBL fan-out engine.

A DNSBL check asks dozens or hundreds of questions that are all independent. Instead of an
event loop and a resolver object per question (asyncio and dnspython's asyncio resolver cost
about 30 ms of start-up, a third of a plugin run), every question is written to one
non-blocking UDP socket per address family and the answers are matched back by query id and
question; a selector waits for whichever comes first. Each question is retransmitted (to the
next nameserver, if several) after ``per_try`` seconds and given up at its own ``until``; the
check's deadline bounds everything. A truncated answer is asked again over TCP.

Outcomes are plain: the record texts, ``None`` for NXDOMAIN/NODATA, or a :class:`Failure`
with the reason in a postmaster's words.
"""

from __future__ import annotations

import random
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver

MAX_CNAME_CHAIN = 16


@dataclass(frozen=True)
class Failure:
    """No usable answer: the reason in plain words, and in brief for the status line."""

    reason: str
    brief: str


Outcome = list[str] | None | Failure


@dataclass
class _Question:
    index: int
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    until: float
    started: float = 0.0
    query_id: int = 0
    wire: bytes = b""
    tries: int = 0
    next_send: float = 0.0
    errors: list[Failure] = field(default_factory=list)


def system_nameservers() -> list[Nameserver]:
    """The system resolver's addresses (only used when no --nameserver is given)."""
    import dns.resolver  # only on this path: it is a heavy import

    resolver = dns.resolver.Resolver()
    return [Nameserver(str(ns), resolver.port) for ns in resolver.nameservers]


def ask(questions: Sequence[tuple[str, str]], nameservers: Sequence[Nameserver] | None,
        deadline: Deadline, *, timeout: float, per_try: float, max_in_flight: int = 200,
        transcript: list[str] | None = None,
        durations: list[float] | None = None) -> list[Outcome]:
    """Ask every (qname, rdtype) question; one outcome per question, in order.

    Each question gets ``timeout`` seconds from the moment it is first sent, and nothing
    outlives ``deadline``. ``durations``, when given, receives the seconds each question took.
    """
    servers = list(nameservers or system_nameservers())
    if not servers:
        if durations is not None:
            durations.extend([0.0] * len(questions))
        return [Failure("no resolver is configured", "no resolver")] * len(questions)
    fanout = _FanOut(servers, deadline, timeout, per_try, max_in_flight,
                     transcript if transcript is not None else [])
    outcomes = fanout.run(questions)
    if durations is not None:
        durations.extend(fanout.durations)
    return outcomes


class _FanOut:
    def __init__(self, servers: list[Nameserver], deadline: Deadline, timeout: float,
                 per_try: float, max_in_flight: int, transcript: list[str]) -> None:
        self.servers = servers
        self.deadline = deadline
        self.timeout = timeout
        self.per_try = max(0.05, per_try)
        self.max_in_flight = max(1, max_in_flight)
        self.transcript = transcript
        self.selector = selectors.DefaultSelector()
        self.sockets: dict[int, socket.socket] = {}
        self.in_flight: dict[int, _Question] = {}  # query id -> question
        self.outcomes: list[Outcome] = []
        self.durations: list[float] = []

    def run(self, questions: Sequence[tuple[str, str]]) -> list[Outcome]:
        self.outcomes = [Failure("not asked", "not asked")] * len(questions)
        self.durations = [0.0] * len(questions)
        waiting: list[_Question] = []
        for index, (qname, rdtype) in enumerate(questions):
            try:
                name = dns.name.from_text(qname)
            except dns.exception.DNSException as exc:
                self.outcomes[index] = Failure(f"{qname} is not a valid DNS name ({exc})",
                                               "bad name")
                continue
            waiting.append(_Question(index, name, dns.rdatatype.from_text(rdtype), 0.0))
        waiting.reverse()  # pop() from the end keeps the order of the questions
        try:
            while waiting or self.in_flight:
                while waiting and len(self.in_flight) < self.max_in_flight:
                    self._start(waiting.pop())
                if self.deadline.expired():
                    break
                self._wait_and_read()
                self._retransmit_or_give_up()
        finally:
            for sock in self.sockets.values():
                sock.close()
            self.selector.close()
        for question in [*self.in_flight.values(), *waiting]:
            self._finish(question, Failure("the check's time budget (-t) ran out", "timed out"))
        return self.outcomes

    # -- sending ------------------------------------------------------------------------
    def _start(self, question: _Question) -> None:
        question.started = time.monotonic()
        question.until = min(question.started + self.timeout, self.deadline.expires)
        question.query_id = self._free_id()
        message = dns.message.make_query(question.qname, question.rdtype)
        message.id = question.query_id
        question.wire = message.to_wire()
        self.in_flight[question.query_id] = question
        self._send(question)

    def _free_id(self) -> int:
        while True:
            query_id = random.randrange(1, 65536)
            if query_id not in self.in_flight:
                return query_id

    def _send(self, question: _Question) -> None:
        server = self.servers[question.tries % len(self.servers)]
        question.tries += 1
        question.next_send = time.monotonic() + self.per_try
        try:
            self._socket(server).sendto(question.wire, (server.address, server.port))
        except OSError as exc:
            question.errors.append(Failure(f"cannot send to {server}: {exc.strerror or exc}",
                                           "resolver error"))

    def _socket(self, server: Nameserver) -> socket.socket:
        family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
        sock = self.sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self.sockets[family] = sock
            self.selector.register(sock, selectors.EVENT_READ)
        return sock

    # -- receiving ----------------------------------------------------------------------
    def _wait_and_read(self) -> None:
        now = time.monotonic()
        wake = min([q.next_send for q in self.in_flight.values()]
                   + [q.until for q in self.in_flight.values()] + [self.deadline.expires])
        for key, _ in self.selector.select(max(0.0, wake - now)):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data, source = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ICMP port unreachable reported on the socket
                self._receive(data, source[0])

    def _receive(self, data: bytes, source: str) -> None:
        if len(data) < 2:
            return
        question = self.in_flight.get(int.from_bytes(data[:2], "big"))
        if question is None or not any(_same_address(source, s.address) for s in self.servers):
            return  # not ours: a late answer, a wrong id, a spoof
        try:
            response = dns.message.from_wire(data, ignore_trailing=True)
        except dns.exception.DNSException:
            question.errors.append(Failure("the resolver sent an answer that is not DNS",
                                           "unusable answer"))
            return
        if not response.question or response.question[0].name != question.qname \
                or response.question[0].rdtype != question.rdtype:
            return  # an answer to another question: keep waiting for ours
        if response.flags & dns.flags.TC:
            whole = self._over_tcp(question)
            if whole is None:
                return
            response = whole
        self._conclude(question, response)

    def _over_tcp(self, question: _Question) -> dns.message.Message | None:
        """The whole answer over TCP (the UDP one was truncated); None after a failure."""
        import dns.query  # only for truncated answers

        server = self.servers[(question.tries - 1) % len(self.servers)]
        left = question.until - time.monotonic()
        try:
            if left <= 0:
                raise dns.exception.Timeout
            return dns.query.tcp(dns.message.from_wire(question.wire), server.address,
                                 timeout=left, port=server.port)
        except (EOFError, ConnectionError) as exc:
            failure = Failure("the server closed the connection over TCP without an answer",
                              "resolver error") if isinstance(exc, EOFError) else Failure(
                f"the truncated answer could not be fetched over TCP: {exc}", "resolver error")
        except dns.exception.Timeout:
            failure = Failure("no answer over TCP in time (the UDP answer was truncated)",
                              "timed out")
        except (OSError, dns.exception.DNSException) as exc:
            failure = Failure(f"the truncated answer could not be fetched over TCP: {exc}",
                              "resolver error")
        self._finish(question, failure)
        return None

    def _conclude(self, question: _Question, response: dns.message.Message) -> None:
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            self._finish(question, None)
        elif rcode == dns.rcode.NOERROR:
            self._finish(question, _records(response, question))
        elif question.tries < len(self.servers):
            question.errors.append(_rcode_failure(rcode))
            self._send(question)  # another resolver may do better
        else:
            self._finish(question, _rcode_failure(rcode))

    # -- time -----------------------------------------------------------------------------
    def _retransmit_or_give_up(self) -> None:
        now = time.monotonic()
        for question in list(self.in_flight.values()):
            if now >= question.until:
                waited = now - question.started
                failure = question.errors[-1] if question.errors else Failure(
                    f"no answer within {waited:.1f}s", "timed out")
                self._finish(question, failure)
            elif now >= question.next_send:
                self._send(question)

    def _finish(self, question: _Question, outcome: Outcome) -> None:
        self.in_flight.pop(question.query_id, None)
        self.outcomes[question.index] = outcome
        took = (time.monotonic() - question.started) * 1000 if question.started else 0.0
        self.durations[question.index] = took / 1000
        if isinstance(outcome, Failure):
            text = f"failed: {outcome.brief}"
        else:
            text = " ".join(outcome) if outcome else "NXDOMAIN/NODATA"
        name = question.qname.to_text(omit_final_dot=True)
        self.transcript.append(f"{name} {dns.rdatatype.to_text(question.rdtype)} -> {text} "
                               f"({took:.0f} ms, {question.tries} sent)")


def _records(response: dns.message.Message, question: _Question) -> list[str] | Failure | None:
    """The answer's records for the question, following CNAMEs inside the answer."""
    name = question.qname
    for _ in range(MAX_CNAME_CHAIN):
        try:
            rrset = response.find_rrset(response.answer, name, dns.rdataclass.IN,
                                        question.rdtype)
        except KeyError:
            try:
                cname = response.find_rrset(response.answer, name, dns.rdataclass.IN,
                                            dns.rdatatype.CNAME)
            except KeyError:
                return None  # NODATA
            name = cname[0].target
            continue
        if question.rdtype == dns.rdatatype.TXT:
            return [b"".join(rr.strings).decode("utf-8", "replace") for rr in rrset]
        return [rr.to_text() for rr in rrset]
    return Failure("the resolver's answer is unusable: the CNAME chain is too long",
                   "unusable answer")


def _rcode_failure(rcode: dns.rcode.Rcode) -> Failure:
    if rcode == dns.rcode.REFUSED:
        return Failure("the resolver REFUSED the query (it neither serves the zone nor "
                       "recurses for us)", "REFUSED")
    if rcode == dns.rcode.SERVFAIL:
        return Failure("the resolver answered SERVFAIL (it could not get an answer from the "
                       "list's servers)", "SERVFAIL")
    text = dns.rcode.to_text(rcode)
    return Failure(f"the resolver answered {text}", text)


def _same_address(a: str, b: str) -> bool:
    return a == b or a.removeprefix("::ffff:") == b.removeprefix("::ffff:")
