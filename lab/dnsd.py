"""A scripted DNS server on loopback (UDP and TCP, one port): the tests' misbehaving resolver.

Real servers (Knot, rbldnsd) answer correctly; this one exists for what they never do on
request: never answer, SERVFAIL/REFUSED, truncated UDP answers that need TCP, answers with the
wrong query id, garbage, delays, CNAME loops, huge answers, answers outside 127/8 for DNSBL
names, the query reflected back (QR clear), UDP answers from another port or address. It is an
authoritative-style server for whatever records it is given (no recursion).

Usage::

    records = '''
    1.0.0.127.in-addr.arpa. PTR mx.lab.test.
    mx.lab.test.            A   127.0.0.1
    lab.test.               TXT "v=spf1 " "ip4:127.0.0.1 -all"
    *.bl.lab.test.          A   127.0.0.2
    '''
    with ScriptedDNSServer(DNSBehaviour(records, faults={"bl.lab.test": Fault(rcode="SERVFAIL")})
                           ) as dns:
        run("--nameserver", dns.nameserver)   # "127.0.0.1:PORT"

Records are lines ``NAME [TTL] TYPE RDATA`` with absolute names (a trailing dot is optional);
``*.`` names are wildcards. A :class:`Fault` changes how the queries for one name (and every
name below it) are answered, of every type or only of the types in its ``rdtypes``;
``DNSBehaviour.fault`` applies to every other name. For anything else, subclass
:class:`DNSBehaviour` and override :meth:`DNSBehaviour.respond`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

POLL = 0.05  # how often blocked reads look at the stop flag
UDP_PAYLOAD = 512  # answers larger than this (or the client's EDNS size) go out truncated
MAX_CNAME_CHAIN = 16  # hops followed inside our own data before giving up (loops end here)


@dataclass(frozen=True)
class Fault:
    """How to misbehave for the names it applies to (all off: answer correctly)."""

    silent: bool = False  # never answer (UDP dropped, TCP connection held open, no reply)
    rcode: str | None = None  # answer this rcode with no records (SERVFAIL, REFUSED, NOTIMP...)
    truncate: bool = False  # UDP: always TC=1 with no records (the client must retry by TCP)
    no_tcp: bool = False  # TCP connections are closed at once without an answer
    wrong_id: bool = False  # UDP answers carry another query id (a spoofing attempt)
    garbage: bool = False  # answer random bytes instead of a DNS message
    delay: float = 0.0  # seconds before answering
    wrong_name: bool = False  # answer records for another name than the one asked
    reflect: bool = False  # send the query back as it came, QR clear (a reflecting box, a loop);
    #                        with ``truncate``, only over TCP
    other_port: bool = False  # UDP answers come from another port of the server's address
    other_address: str = ""  # UDP answers come from this (loopback) address, same port if free
    rdtypes: tuple[str, ...] = ()  # the fault applies to these query types only (empty: all)


def parse_records(text: str) -> dict[tuple[dns.name.Name, int], dns.rrset.RRset]:
    """``NAME [TTL] TYPE RDATA`` lines (``#``/``;`` comments) -> {(name, type): rrset}."""
    table: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"bad record line {raw!r}: give NAME [TTL] TYPE RDATA")
        name_text, second, rest = parts
        ttl = 300
        if second.isdigit():
            ttl = int(second)
            rtype_text, _, rdata = rest.partition(" ")
        else:
            rtype_text, rdata = second, rest
        name = dns.name.from_text(name_text)
        rdtype = dns.rdatatype.from_text(rtype_text)
        key = (name, rdtype)
        if key not in table:
            table[key] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        table[key].add(
            dns.rrset.from_text(name, ttl, "IN", rdtype, rdata.strip())[0], ttl)
    return table


@dataclass
class DNSBehaviour:
    """The data served and the faults; shared by every query."""

    records: str | Mapping[tuple[dns.name.Name, int], dns.rrset.RRset] = ""
    fault: Fault = field(default_factory=Fault)  # for names no entry of ``faults`` covers
    faults: Mapping[str, Fault] = field(default_factory=dict)  # name (and below) -> fault
    udp_payload: int = UDP_PAYLOAD

    def __post_init__(self) -> None:
        self.table = parse_records(self.records) if isinstance(self.records, str) \
            else dict(self.records)
        self._names = {name for name, _ in self.table}

    # -- hooks -------------------------------------------------------------------------
    def fault_for(self, qname: dns.name.Name, rdtype: int | None = None) -> Fault:
        """The fault for ``qname``: the entry of :attr:`faults` nearest above it, else
        :attr:`fault`. An entry limited to some query types (``Fault.rdtypes``) applies only
        when ``rdtype`` is one of them."""
        best: tuple[int, Fault] | None = None
        for name_text, fault in self.faults.items():
            name = dns.name.from_text(name_text)
            if fault.rdtypes and (rdtype is None or dns.rdatatype.to_text(rdtype)
                                  not in fault.rdtypes):
                continue
            if qname.is_subdomain(name) and (best is None or len(name) > best[0]):
                best = (len(name), fault)
        chosen = best[1] if best else self.fault
        if chosen.rdtypes and rdtype is not None \
                and dns.rdatatype.to_text(rdtype) not in chosen.rdtypes:
            return Fault()
        return chosen

    def respond(self, query: dns.message.Message, tcp: bool) -> dns.message.Message | bytes | None:
        """The answer to one query (None: say nothing). Applies the fault for its name."""
        question = query.question[0] if query.question else None
        fault = self.fault_for(question.name, question.rdtype) if question is not None \
            else self.fault
        if fault.silent:
            return None
        if fault.garbage:
            return os.urandom(3) + b"\x00garbage, not DNS\x00" + os.urandom(8)
        if fault.reflect and (tcp or not fault.truncate):
            return query
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if fault.rcode:
            response.set_rcode(dns.rcode.from_text(fault.rcode))
            return response
        if question is None:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        if fault.truncate and not tcp:
            response.flags |= dns.flags.TC
            return response
        self.answer(question.name, question.rdtype, response)
        if fault.wrong_name:
            other = dns.name.from_text("elsewhere.invalid.")
            for rrset in response.answer:
                rrset.name = other
        if fault.wrong_id and not tcp:
            response.id = (query.id + 1) & 0xFFFF
        return response

    def answer(self, qname: dns.name.Name, rdtype: int, response: dns.message.Message) -> None:
        """Fill ``response`` from the records: CNAMEs are followed inside our data (a loop is
        answered as far as :data:`MAX_CNAME_CHAIN` hops), wildcards apply, NXDOMAIN/NODATA."""
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            rrset = self.lookup(name, rdtype)
            if rrset is not None:
                response.answer.append(rrset)
                return
            cname = self.lookup(name, dns.rdatatype.CNAME) \
                if rdtype != dns.rdatatype.CNAME else None
            if cname is None:
                break
            if cname not in response.answer:
                response.answer.append(cname)
            name = cname[0].target
        else:
            return
        if not self.exists(name):
            response.set_rcode(dns.rcode.NXDOMAIN)

    def lookup(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """The rrset for (name, type), from a wildcard when no exact name exists."""
        found = self.table.get((name, rdtype))
        if found is not None:
            return found
        if self._owned(name):
            return None
        parent = name
        while len(parent) > 1:
            parent = parent.parent()
            wildcard = self.table.get((dns.name.Name(("*", *parent.labels)), rdtype))
            if wildcard is not None:
                copy = dns.rrset.RRset(name, wildcard.rdclass, wildcard.rdtype)
                copy.update(wildcard)
                return copy
            if self._owned(parent):
                break
        return None

    def _owned(self, name: dns.name.Name) -> bool:
        """Whether ``name`` owns records or is an empty non-terminal above some."""
        return any(other.is_subdomain(name) for other in self._names)

    def exists(self, name: dns.name.Name) -> bool:
        """Whether ``name`` exists: owned, or covered by a wildcard."""
        if self._owned(name):
            return True
        parent = name
        while len(parent) > 1:
            parent = parent.parent()
            if any(n == dns.name.Name(("*", *parent.labels)) for n in self._names):
                return True
        return False


@dataclass(frozen=True)
class QueryLog:
    qname: str
    rdtype: str
    transport: str  # "udp" or "tcp"


class ScriptedDNSServer:
    """UDP and TCP on the same loopback port; use as a context manager (or start/stop)."""

    def __init__(self, behaviour: DNSBehaviour | None = None, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour if behaviour is not None else DNSBehaviour()
        self.host = host
        self.port = 0
        self.queries: list[QueryLog] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._senders: dict[tuple[str, bool], socket.socket] = {}  # other_address/other_port

    @property
    def nameserver(self) -> str:
        """The ``--nameserver`` value: ``127.0.0.1:PORT`` (``[::1]:PORT`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> ScriptedDNSServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(50):  # a free port on both UDP and TCP
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:  # pragma: no cover - a machine out of ports
            raise OSError("no free port for UDP and TCP")
        tcp.listen(32)
        udp.settimeout(POLL)
        tcp.settimeout(POLL)
        self._udp, self._tcp, self.port = udp, tcp, port
        self._stopping.clear()
        for target, name in ((self._serve_udp, "udp"), (self._serve_tcp, "tcp")):
            thread = threading.Thread(target=target, name=f"dnsd-{port}-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for sock in (self._udp, self._tcp, *list(self._conns), *self._senders.values()):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in list(self._threads):
            thread.join(timeout)
        self._udp = self._tcp = None

    def __enter__(self) -> ScriptedDNSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------
    def _handle(self, wire: bytes, tcp: bool) -> tuple[bytes | None, Fault]:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None, Fault()
        question = query.question[0] if query.question else None
        if question is not None:
            with self._lock:
                self.queries.append(QueryLog(question.name.to_text(),
                                             dns.rdatatype.to_text(question.rdtype),
                                             "tcp" if tcp else "udp"))
        fault = self.behaviour.fault_for(question.name, question.rdtype) \
            if question is not None else self.behaviour.fault
        response = self.behaviour.respond(query, tcp)
        if response is None or isinstance(response, bytes):
            return response, fault
        if tcp:
            return response.to_wire(), fault
        limit = max(self.behaviour.udp_payload, query.payload if query.edns >= 0 else 0)
        try:
            return response.to_wire(max_size=limit), fault
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(), fault

    def _serve_udp(self) -> None:
        assert self._udp is not None
        udp = self._udp
        while not self._stopping.is_set():
            try:
                wire, peer = udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            answer, fault = self._handle(wire, tcp=False)
            if answer is None:
                continue
            sender = self._sender(fault) or udp
            if fault.delay:
                threading.Thread(target=self._later, args=(fault.delay, sender, answer, peer),
                                 daemon=True).start()
                continue
            with contextlib.suppress(OSError):
                sender.sendto(answer, peer)

    def _sender(self, fault: Fault) -> socket.socket | None:
        """The socket a UDP answer leaves from when the fault wants another address or port
        (None: the server's own socket)."""
        if not (fault.other_address or fault.other_port):
            return None
        key = (fault.other_address, fault.other_port)
        if key not in self._senders:
            host = fault.other_address or self.host
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            port = 0 if fault.other_port else self.port
            try:
                sock.bind((host, port))
            except OSError:
                sock.bind((host, 0))
            self._senders[key] = sock
        return self._senders[key]

    def _later(self, delay: float, udp: socket.socket, answer: bytes, peer: object) -> None:
        if not self._stopping.wait(delay):
            with contextlib.suppress(OSError):
                udp.sendto(answer, peer)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _tcp_conn(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(POLL)
            buffer = b""
            while not self._stopping.is_set():
                while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack("!H", buffer[:2])[0]:
                    size = struct.unpack("!H", buffer[:2])[0]
                    wire, buffer = buffer[2:2 + size], buffer[2 + size:]
                    if self._tcp_query(conn, wire) is False:
                        return
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock, contextlib.suppress(ValueError):
                self._conns.remove(conn)

    def _tcp_query(self, conn: socket.socket, wire: bytes) -> bool:
        """Answer one query on a TCP connection; False when the connection must end."""
        answer, fault = self._handle(wire, tcp=True)
        if fault.no_tcp:
            return False
        if answer is None:
            return True  # silent: hold the connection, say nothing
        if fault.delay and self._stopping.wait(fault.delay):
            return False
        try:
            conn.settimeout(10)
            conn.sendall(struct.pack("!H", len(answer)) + answer)
        except OSError:
            return False
        return True
