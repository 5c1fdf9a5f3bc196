"""Many DNS questions at once over one UDP socket: the DNSBL fan-out engine.

A DNSBL check asks dozens or hundreds of questions that are all independent. Instead of an
event loop and a resolver object per question, every question is written to one non-blocking
UDP socket per address family and the answers are matched back; a selector waits for whichever
comes first. Each question is retransmitted (to the next nameserver, if several) after
``per_try`` seconds and given up at its own ``until``; the check's deadline bounds everything.
A truncated answer is asked again over TCP. The same question asked twice is sent once. A
question can be wanted only if another one finds records (a listing's TXT reason): when that
one ends with nothing, the first is no longer waited for.

A reply is taken as the answer to a question only when it is one, as dnspython checks it: it
comes from the address *and port* the question was sent to, carries the question's id, has the
QR flag set (a reflected query has it clear), opcode QUERY, and repeats the question (name, type,
class IN). Anything else is not the answer: it is ignored, and when it came from the right
server with the right id, its fault is remembered as the reason if no real answer follows.
An answer whose records belong to another name or type than asked is unusable, never "no data".

The messages are built and read by :mod:`mailprobe.net.dnswire` (dnspython is not imported:
it would cost every run about 40 ms). Outcomes are plain: the record texts, ``None`` for
NXDOMAIN/NODATA, or a :class:`Failure` with the reason in a postmaster's words.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailprobe.net import dnswire
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver

MAX_CNAME_CHAIN = 16
_CHAIN_TYPES = (dnswire.CNAME, dnswire.DNAME, dnswire.RRSIG)  # may accompany any answer


@dataclass(frozen=True)
class Failure:
    """No usable answer: the reason in plain words, and in brief for the status line."""

    reason: str
    brief: str


Outcome = list[str] | None | Failure


@dataclass(eq=False)
class _Question:
    indexes: list[int]  # where its outcome goes in the caller's list (a question is asked once)
    qname: dnswire.Name
    rdtype: int
    until: float = 0.0
    started: float = 0.0
    query_id: int = 0
    wire: bytes = b""
    tries: int = 0
    next_send: float = 0.0
    sent_to: set[tuple[str, int]] = field(default_factory=set)
    errors: list[Failure] = field(default_factory=list)
    done: bool = False
    parents: list[_Question] = field(default_factory=list)  # wanted only if one finds records
    dependents: list[_Question] = field(default_factory=list)


RESOLV_CONF = "/etc/resolv.conf"


def system_nameservers(path: str = RESOLV_CONF) -> list[Nameserver]:
    """The system resolver's addresses (only used when no --nameserver is given): the
    ``nameserver`` lines of resolv.conf, or 127.0.0.1 when it names none (as the C library
    does). Read here rather than through dnspython, whose import costs a run about 40 ms."""
    servers = []
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                ipaddress.ip_address(words[1].split("%", 1)[0])
            except ValueError:
                continue  # not an address: the C library skips it too
            servers.append(Nameserver(words[1]))
    return servers or [Nameserver("127.0.0.1")]


def ask(questions: Sequence[tuple[str, str]], nameservers: Sequence[Nameserver] | None,
        deadline: Deadline, *, timeout: float, per_try: float, max_in_flight: int = 200,
        transcript: list[str] | None = None, durations: list[float] | None = None,
        wanted_if_found: Mapping[int, int] | None = None) -> list[Outcome]:
    """Ask every (qname, rdtype) question; one outcome per question, in order.

    Each question gets ``timeout`` seconds from the moment it is first sent, and nothing
    outlives ``deadline``. ``durations``, when given, receives the seconds each question took.
    ``wanted_if_found`` maps the index of a question to the index of the question whose records
    it is about: when that one ends without records, the first is dropped (outcome None, no
    longer waited for; not sent at all if it had not been yet).
    """
    servers = list(nameservers or system_nameservers())
    if not servers:
        if durations is not None:
            durations.extend([0.0] * len(questions))
        return [Failure("no resolver is configured", "no resolver")] * len(questions)
    fanout = _FanOut(servers, deadline, timeout, per_try, max_in_flight,
                     transcript if transcript is not None else [])
    outcomes = fanout.run(questions, wanted_if_found or {})
    if durations is not None:
        durations.extend(fanout.durations)
    return outcomes


class _FanOut:
    def __init__(self, servers: list[Nameserver], deadline: Deadline, timeout: float,
                 per_try: float, max_in_flight: int, transcript: list[str]) -> None:
        self.servers = servers
        self.addresses = {server: _canonical(server.address) for server in servers}
        self.deadline = deadline
        self.timeout = timeout
        self.per_try = max(0.05, per_try)
        self.max_in_flight = max(1, max_in_flight)
        self.transcript = transcript
        self.selector = selectors.DefaultSelector()
        self.sockets: dict[int, socket.socket] = {}
        self.in_flight: dict[int, _Question] = {}  # query id -> question
        self.next_timer = 0.0  # no retransmission or give-up is due before this
        self.outcomes: list[Outcome] = []
        self.durations: list[float] = []

    def run(self, questions: Sequence[tuple[str, str]],
            wanted_if_found: Mapping[int, int]) -> list[Outcome]:
        self.outcomes = [Failure("not asked", "not asked")] * len(questions)
        self.durations = [0.0] * len(questions)
        waiting = self._unique(questions, wanted_if_found)
        waiting.reverse()  # pop() from the end keeps the order of the questions
        try:
            while waiting or self.in_flight:
                while waiting and len(self.in_flight) < self.max_in_flight:
                    question = waiting.pop()
                    if not question.done:  # else dropped before it was sent
                        self._start(question)
                if self.deadline.expired():
                    break
                self._wait_and_read()
                self._retransmit_or_give_up()
        finally:
            for sock in self.sockets.values():
                sock.close()
            self.selector.close()
        for question in [*self.in_flight.values(), *waiting]:
            if not question.done:
                self._finish(question, Failure("the check's time budget (-t) ran out",
                                               "timed out"))
        return self.outcomes

    def _unique(self, questions: Sequence[tuple[str, str]],
                wanted_if_found: Mapping[int, int]) -> list[_Question]:
        """One :class:`_Question` per distinct question, linked to the questions it depends on;
        bad names fail at once."""
        unique: dict[tuple[dnswire.Name, int], _Question] = {}
        by_index: dict[int, _Question] = {}
        for index, (qname, rdtype) in enumerate(questions):
            try:
                name = dnswire.to_name(qname)
            except dnswire.WireError as exc:
                self.outcomes[index] = Failure(f"{qname} is not a valid DNS name ({exc})",
                                               "bad name")
                continue
            key = (name, dnswire.TYPES[rdtype])
            if key in unique:
                unique[key].indexes.append(index)
            else:
                unique[key] = _Question([index], name, key[1])
            by_index[index] = unique[key]
        for question in unique.values():
            parents = [by_index.get(wanted_if_found.get(i, -1)) for i in question.indexes]
            if all(parent is not None and parent is not question for parent in parents):
                # wanted only for the records of others (never for its own sake)
                for parent in parents:
                    if parent is not None and all(p is not parent for p in question.parents):
                        question.parents.append(parent)
                        parent.dependents.append(question)
        return list(unique.values())

    # -- sending ------------------------------------------------------------------------
    def _start(self, question: _Question) -> None:
        question.started = time.monotonic()
        question.until = min(question.started + self.timeout, self.deadline.expires)
        question.query_id = self._free_id()
        question.wire = dnswire.make_query(question.query_id, question.qname, question.rdtype)
        self.in_flight[question.query_id] = question
        self._send(question)

    def _free_id(self) -> int:
        while True:
            query_id = int.from_bytes(os.urandom(2), "big")
            if query_id not in self.in_flight:
                return query_id

    def _send(self, question: _Question) -> None:
        server = self.servers[question.tries % len(self.servers)]
        question.tries += 1
        question.next_send = time.monotonic() + self.per_try
        self.next_timer = min(self.next_timer, question.next_send, question.until)
        question.sent_to.add((self.addresses[server], server.port))
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
        wake = min(self.next_timer, self.deadline.expires)
        for key, _ in self.selector.select(max(0.0, wake - time.monotonic())):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data, source = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ICMP port unreachable reported on the socket
                self._receive(data, (_plain(source[0]), source[1]))

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 2:
            return
        question = self.in_flight.get(int.from_bytes(data[:2], "big"))
        if question is None or source not in question.sent_to:
            return  # not ours: a late answer, a wrong id, another address or port (a spoof)
        try:
            message = dnswire.parse(data)
        except dnswire.WireError as exc:
            question.errors.append(Failure(f"the resolver sent a reply that is not a DNS "
                                           f"message ({exc})", "unusable answer"))
            return
        mismatch = _mismatch(message, question)
        if mismatch:
            question.errors.append(Failure(mismatch, "unusable answer"))
            return  # keep waiting for the real answer
        if message.truncated:
            whole = self._over_tcp(question, source)
            if whole is None:
                return
            message = whole
        self._conclude(question, message)

    def _over_tcp(self, question: _Question, source: tuple[str, int]) -> dnswire.Message | None:
        """The whole answer over TCP from the server whose UDP answer was truncated (``source``);
        None after a failure."""
        server = next(s for s in self.servers if (self.addresses[s], s.port) == source)
        try:
            message = _tcp_exchange(server, question.wire, question.until)
        except EOFError:
            failure = Failure("the server closed the connection over TCP without an answer",
                              "resolver error")
        except TimeoutError:
            failure = Failure("no answer over TCP in time (the UDP answer was truncated)",
                              "timed out")
        except OSError as exc:
            failure = Failure(f"the truncated answer could not be fetched over TCP: "
                              f"{exc.strerror or exc}", "resolver error")
        except dnswire.WireError as exc:
            failure = Failure(f"the answer over TCP is not a DNS message ({exc})",
                              "unusable answer")
        else:
            mismatch = _mismatch(message, question)
            if mismatch is None and message.truncated:
                mismatch = "the answer over TCP is truncated too"
            if mismatch is None:
                return message
            failure = Failure(f"{mismatch} (over TCP)", "unusable answer")
        self._finish(question, failure)
        return None

    def _conclude(self, question: _Question, message: dnswire.Message) -> None:
        rcode = message.rcode
        if rcode == dnswire.NXDOMAIN:
            stray = _stray_records(message, question, _chain(message, question)[1])
            self._finish(question, stray or None)
        elif rcode == dnswire.NOERROR:
            self._finish(question, _records(message, question))
        elif question.tries < len(self.servers):
            question.errors.append(_rcode_failure(rcode))
            self._send(question)  # another resolver may do better
        else:
            self._finish(question, _rcode_failure(rcode))

    # -- time -----------------------------------------------------------------------------
    def _retransmit_or_give_up(self) -> None:
        now = time.monotonic()
        if now < self.next_timer:
            return
        self.next_timer = float("inf")
        for question in list(self.in_flight.values()):
            if now >= question.until:
                waited = now - question.started
                failure = question.errors[-1] if question.errors else Failure(
                    f"no answer within {waited:.1f}s", "timed out")
                self._finish(question, failure)
                continue
            if now >= question.next_send:
                self._send(question)
            self.next_timer = min(self.next_timer, question.next_send, question.until)

    def _finish(self, question: _Question, outcome: Outcome, note: str = "") -> None:
        question.done = True
        self.in_flight.pop(question.query_id, None)
        took = (time.monotonic() - question.started) if question.started else 0.0
        for index in question.indexes:
            self.outcomes[index] = outcome
            self.durations[index] = took
        if note:
            text = note
        elif isinstance(outcome, Failure):
            text = f"failed: {outcome.brief}"
        else:
            text = " ".join(outcome) if outcome else "NXDOMAIN/NODATA"
        if question.tries:
            self.transcript.append(f"{dnswire.name_text(question.qname)} "
                                   f"{dnswire.type_name(question.rdtype)} -> {text} "
                                   f"({took * 1000:.0f} ms, {question.tries} sent)")
        for dependent in question.dependents:
            if not dependent.done and all(p.done and not _found(p, self.outcomes)
                                          for p in dependent.parents):
                self._finish(dependent, None, "not waited for (nothing found for it)")


def _found(question: _Question, outcomes: list[Outcome]) -> bool:
    """Whether ``question`` ended with records."""
    outcome = outcomes[question.indexes[0]]
    return isinstance(outcome, list) and bool(outcome)

def _mismatch(message: dnswire.Message, question: _Question) -> str | None:
    """Why ``message`` is not the answer to ``question`` (None when it is)."""
    if not message.is_response:
        return ("the reply was a query, not an answer (QR flag clear): a reflected or looped "
                "query, not the resolver's answer")
    if message.opcode != dnswire.OPCODE_QUERY:
        return f"the reply has opcode {message.opcode}, not QUERY"
    if message.question != ((question.qname, question.rdtype, dnswire.CLASS_IN),):
        asked = (f"{dnswire.name_text(question.qname)} "
                 f"{dnswire.type_name(question.rdtype)}")
        if not message.question:
            return f"the reply does not repeat the question ({asked})"
        name, rdtype, _ = message.question[0]
        return (f"the reply answers another question ({dnswire.name_text(name)} "
                f"{dnswire.type_name(rdtype)}) than asked ({asked})")
    return None


def _chain(message: dnswire.Message, question: _Question
           ) -> tuple[list[dnswire.Record] | None, set[dnswire.Name]]:
    """The records answering the question, following CNAMEs inside the answer (None: there are
    none), and the names of the chain; raises nothing, a too long chain gives (None, names)."""
    name = question.qname
    names = {name}
    for _ in range(MAX_CNAME_CHAIN):
        found = [r for r in message.answer if r.name == name and r.rdtype == question.rdtype
                 and r.rdclass == dnswire.CLASS_IN]
        if found:
            return found, names
        cname = next((r for r in message.answer if r.name == name
                      and r.rdtype == dnswire.CNAME and r.rdclass == dnswire.CLASS_IN), None)
        if cname is None or cname.target is None:
            return None, names
        name = cname.target
        names.add(name)
    return None, set()  # too long: no name is in a usable chain


def _records(message: dnswire.Message, question: _Question) -> list[str] | Failure | None:
    """The answer's records for the question, following CNAMEs inside the answer."""
    found, names = _chain(message, question)
    if not names:
        return Failure("the resolver's answer is unusable: the CNAME chain is too long",
                       "unusable answer")
    if found is not None:
        return [record.text() for record in found]
    return _stray_records(message, question, names)  # NODATA, unless records were misplaced


def _stray_records(message: dnswire.Message, question: _Question,
                   names: set[dnswire.Name]) -> Failure | None:
    """A failure when a negative answer holds records that answer nothing we asked."""
    stray = [r for r in message.answer
             if not (r.rdtype in _CHAIN_TYPES and (r.rdtype != dnswire.CNAME or r.name in names))]
    if not stray:
        return None
    if not names:
        return Failure("the resolver's answer is unusable: the CNAME chain is too long",
                       "unusable answer")
    record = stray[0]
    return Failure(f"the resolver's answer is unusable: it holds records for "
                   f"{dnswire.name_text(record.name) or '.'} {dnswire.type_name(record.rdtype)}"
                   f" but none for the question ({dnswire.name_text(question.qname)} "
                   f"{dnswire.type_name(question.rdtype)})", "unusable answer")


def _rcode_failure(rcode: int) -> Failure:
    if rcode == dnswire.REFUSED:
        return Failure("the resolver REFUSED the query (it neither serves the zone nor "
                       "recurses for us)", "REFUSED")
    if rcode == dnswire.SERVFAIL:
        return Failure("the resolver answered SERVFAIL (it could not get an answer from the "
                       "name's own servers)", "SERVFAIL")
    text = dnswire.rcode_name(rcode)
    return Failure(f"the resolver answered {text}", text)


def _tcp_exchange(server: Nameserver, wire: bytes, until: float) -> dnswire.Message:
    """Send ``wire`` over TCP and read one message back, all before ``until`` (monotonic).

    Raises TimeoutError, EOFError (closed without a whole answer), OSError, WireError.
    """
    def left() -> float:
        remaining = until - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    with socket.create_connection((server.address, server.port), timeout=left()) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)

        def read(size: int) -> bytes:
            data = b""
            while len(data) < size:
                sock.settimeout(left())
                chunk = sock.recv(size - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return data

        return dnswire.parse(read(int.from_bytes(read(2), "big")))


def _plain(address: str) -> str:
    """A source address as the kernel gives it, comparable with :func:`_canonical`: IPv4-mapped
    IPv6 as IPv4, no scope."""
    return address.split("%", 1)[0].removeprefix("::ffff:")


def _canonical(address: str) -> str:
    """A nameserver's address in the kernel's spelling (compressed, lower case, IPv4 for an
    IPv4-mapped IPv6 address), to compare with the source of a reply."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
