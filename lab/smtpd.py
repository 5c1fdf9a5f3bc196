"""A scripted SMTP server on loopback: the demo's misconfigured mailer, and the tests' villain.

Real servers (Postfix, Exim) cover correct and classically misconfigured behaviour; this one
exists for what no real server does on request: tarpits, dripped banners, garbage, resets,
endless replies, out-of-order pipelining. It never delivers anything: DATA is read and thrown
away.

Usage::

    with ScriptedSMTPServer(Behaviour(banner_delay=2.0)) as srv:
        probe(srv.host, srv.port)
        assert srv.commands[0].startswith("EHLO")

A :class:`Behaviour` holds the knobs (banner, delays, extensions, relay policy); subclass it and
override :meth:`Behaviour.greeting`, :meth:`Behaviour.handle`, one ``smtp_<VERB>`` method,
:meth:`Behaviour.tls_started` or :meth:`Behaviour.message` for custom misbehaviour. Hooks get
the connection's :class:`Session`, which can send raw bytes, sleep (interrupted by stop), and
close.

Replies returned by hooks may be ``None`` (send nothing), ``str`` (one reply; CRLF added to each
line, several lines allowed separated by ``\\n``), a list/tuple of lines, or ``bytes`` (sent
exactly as given: no CRLF added).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.process import LabServer
from mailprobe.net.dns import is_ip_address

ReplyValue = str | bytes | Sequence[str] | None

MAX_COMMAND_LINE = 1000  # RFC 5321 4.5.3.1.4 (including CRLF)
MAX_BUFFER = 1024 * 1024  # a client sending more than this without a newline is dropped
POLL = 0.05  # how often blocked reads and accepts look at the stop flag
SEND_TIMEOUT = 10.0  # a client that reads nothing for this long is dropped


# -- relay policy ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RelayPolicy:
    """Which recipients a server accepts besides plain ``user@local-domain``.

    The default is a correctly closed server. Each flag opens one classic hole.
    """

    open_relay: bool = False  # accepts every recipient
    percent_hack: bool = False  # user%external@local (and unqualified user%external)
    bang_path: bool = False  # external!user, external!user@local
    trust_local_sender: bool = False  # relays when MAIL FROM is in a local domain
    quoted_local_part: bool = False  # "user@external"@local, "user%external"@local
    double_at: bool = False  # user@external@local
    source_route: bool = False  # @local:user@external

    @classmethod
    def closed(cls) -> RelayPolicy:
        return cls()

    @classmethod
    def open(cls) -> RelayPolicy:
        return cls(open_relay=True)

    @classmethod
    def sloppy(cls) -> RelayPolicy:
        """The demo's misconfigured MTA: the holes of a sloppy hand-written configuration."""
        return cls(percent_hack=True, bang_path=True, trust_local_sender=True,
                   quoted_local_part=True)


@dataclass(frozen=True)
class Address:
    """An envelope address split the way a simple MTA would: local part and domain."""

    raw: str  # what was between the brackets (or the whole argument without them)
    route: str  # "@a,@b" source route, or ""
    local: str  # local part, quotes kept
    domain: str  # "" when unqualified

    @property
    def quoted(self) -> bool:
        return self.local.startswith('"')

    @property
    def unquoted_local(self) -> str:
        return self.local[1:-1] if self.quoted and len(self.local) >= 2 else self.local


def parse_path(argument: str) -> Address | None:
    """Parse the argument after ``MAIL FROM:`` / ``RCPT TO:``; None when it is not a path.

    Accepts a missing pair of angle brackets (as lenient servers do) and drops ESMTP
    parameters after the path.
    """
    text = argument.strip()
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            return None
        raw = text[1:end]
    else:
        raw = text.split(" ")[0] if text else ""
    route = ""
    rest = raw
    if rest.startswith("@") and ":" in rest:
        route, _, rest = rest.partition(":")
    # the domain is what follows the last @ outside a quoted string
    in_quote = False
    split_at = -1
    for index, char in enumerate(rest):
        if char == '"':
            in_quote = not in_quote
        elif char == "@" and not in_quote:
            split_at = index
    if split_at < 0:
        return Address(raw, route, rest, "")
    return Address(raw, route, rest[:split_at], rest[split_at + 1:])


# -- behaviour ------------------------------------------------------------------------------
@dataclass
class Behaviour:
    """How the scripted server behaves. Subclass and override hooks for misbehaviour.

    Shared by every connection of a server: per-connection state belongs in :class:`Session`.
    """

    hostname: str = "mx.lab.test"
    banner: str | bytes | None = None  # None -> f"220 {hostname} ESMTP mailprobe-lab"
    banner_delay: float = 0.0  # seconds before the banner
    drip: float = 0.0  # seconds between the bytes of every reply (0 = off)
    reply_delay: float = 0.0  # seconds before every reply to a command (a tarpit)
    ehlo_extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
    starttls: bool = False  # advertise and perform STARTTLS (self-signed certificate)
    certificate_names: tuple[str, ...] = ()  # the certificate's subjectAltNames (default hostname)
    certificate_files: tuple[str, str] | None = None  # (cert, key) PEM files to use instead
    local_domains: tuple[str, ...] = ("lab.test",)
    relay: RelayPolicy = field(default_factory=RelayPolicy)
    helo_required: bool = True  # 503 for MAIL before HELO/EHLO
    command_limit: int | None = None  # after this many commands: command_limit_reply, close
    command_limit_reply: ReplyValue = "421 4.7.0 Too many commands, closing connection"
    replies: Mapping[str, ReplyValue] = field(default_factory=dict)  # verb (or "*") -> reply
    line_end: str = "\r\n"  # what ends each reply line ("\n" for a sloppy server)
    idle_timeout: float = 60.0  # close a connection silent for this long
    # A bare LF in message text: "line-end" ends a line there (so <LF>.<LF> ends DATA, as in
    # Postfix < 3.9); "close" drops the connection (Postfix 3.8.4's smtpd_forbid_bare_newline);
    # "reject" answers 550, ends DATA there and reads what follows as commands.
    data_bare_lf: str = "line-end"

    # -- hooks ------------------------------------------------------------------------
    def greeting(self, session: Session) -> ReplyValue:
        """The banner, after ``banner_delay``. A 421 banner closes; 554 refuses all but QUIT."""
        if self.banner_delay and not session.sleep(self.banner_delay):
            return None
        return self.banner if self.banner is not None else (
            f"220 {self.hostname} ESMTP mailprobe-lab")

    def handle(self, session: Session, line: str) -> ReplyValue:
        """The reply to one command line (DATA's body is handled by the server itself)."""
        if self.command_limit is not None and len(session.commands) > self.command_limit:
            session.close_after_reply()
            return self.command_limit_reply
        verb, _, argument = line.partition(" ")
        if session.refusing and verb.upper() != "QUIT":
            return "503 5.5.1 Error: no SMTP service here"
        for key in (verb.upper(), "*"):
            if key in self.replies:
                if verb.upper() == "QUIT":
                    session.close_after_reply()
                return self.replies[key]
        method = getattr(self, f"smtp_{verb.upper()}", None) if verb.isalpha() else None
        if method is None:
            return "500 5.5.2 Error: command not recognized"
        return method(session, argument)

    def tls_started(self, session: Session) -> ReplyValue:
        """Sent right after a successful STARTTLS handshake, unasked (RFC 3207: nothing)."""
        return None

    def message(self, session: Session, body: bytes) -> ReplyValue:
        """The reply after the final dot of DATA. The body is discarded."""
        session.server.messages.append(body)
        return f"250 2.0.0 Ok: queued as LAB{len(session.server.messages):04d} (discarded)"

    def accepts_recipient(self, session: Session, address: Address) -> bool:
        """Apply :attr:`relay` to one recipient."""
        policy = self.relay
        if policy.open_relay:
            return True
        if policy.trust_local_sender and session.mail_from is not None:
            sender = parse_path(session.mail_from)
            if sender is not None and self.is_local_domain(session, sender.domain):
                return True
        if address.route:  # @hop,@hop:user@domain - relayed when the first hop is us
            if self.is_local_domain(session, address.domain) and "@" not in address.local:
                return True
            first_hop = address.route.split(",")[0].lstrip("@")
            return policy.source_route and self.is_local_domain(session, first_hop)
        local = address.unquoted_local
        if not address.domain:
            if address.local.lower() == "postmaster":
                return True
            if "!" in local:
                return policy.bang_path
            if "%" in local:
                return policy.percent_hack
            return False
        if "@" in address.domain:  # never: the split takes the last @
            return False
        if not self.is_local_domain(session, address.domain):
            return False
        if address.quoted and ("@" in local or "%" in local or "!" in local):
            return policy.quoted_local_part
        if "@" in local:
            return policy.double_at
        if "!" in local:
            return policy.bang_path
        if "%" in local:
            return policy.percent_hack
        return True

    def is_local_domain(self, session: Session, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        if not domain:
            return False
        names = {d.lower().rstrip(".") for d in self.local_domains}
        names.add(self.hostname.lower())
        if domain in names:
            return True
        if domain.startswith("[") and domain.endswith("]"):
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(literal) == ipaddress.ip_address(session.local[0])
        return False

    # -- the default state machine, one method per verb ------------------------------------
    def smtp_HELO(self, session: Session, argument: str) -> ReplyValue:
        if not argument.strip():
            return "501 Syntax: HELO hostname"
        session.reset(helo=argument.strip(), esmtp=False)
        return f"250 {self.hostname}"

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        if not argument.strip():
            return "501 5.5.4 Syntax: EHLO hostname"
        session.reset(helo=argument.strip(), esmtp=True)
        extensions = list(self.ehlo_extensions)
        if self.starttls and not session.tls:
            extensions.append("STARTTLS")
        lines = [self.hostname, *extensions]
        return [f"250-{text}" for text in lines[:-1]] + [f"250 {lines[-1]}"]

    def smtp_MAIL(self, session: Session, argument: str) -> ReplyValue:
        if self.helo_required and session.helo is None:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if session.mail_from is not None:
            return "503 5.5.1 Error: nested MAIL command"
        if not argument.upper().startswith("FROM:"):
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        sender = parse_path(argument[5:])
        if sender is None:
            return "501 5.1.7 Bad sender address syntax"
        session.mail_from = argument[5:].strip()
        return "250 2.1.0 Ok"

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if session.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        if not argument.upper().startswith("TO:"):
            return "501 5.5.4 Syntax: RCPT TO:<address>"
        recipient = parse_path(argument[3:])
        if recipient is None or not recipient.raw:
            return "501 5.1.3 Bad recipient address syntax"
        if not self.accepts_recipient(session, recipient):
            return f"554 5.7.1 <{recipient.raw}>: Relay access denied"
        session.rcpts.append(recipient.raw)
        return "250 2.1.5 Ok"

    def smtp_DATA(self, session: Session, argument: str) -> ReplyValue:
        if argument.strip():
            return "501 5.5.4 Syntax: DATA"
        if session.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        if not session.rcpts:
            return "503 5.5.1 Error: need RCPT command"
        session.in_data = True
        return "354 End data with <CR><LF>.<CR><LF>"

    def smtp_RSET(self, session: Session, argument: str) -> ReplyValue:
        session.reset()
        return "250 2.0.0 Ok"

    def smtp_NOOP(self, session: Session, argument: str) -> ReplyValue:
        return "250 2.0.0 Ok"

    def smtp_QUIT(self, session: Session, argument: str) -> ReplyValue:
        session.close_after_reply()
        return "221 2.0.0 Bye"

    def smtp_VRFY(self, session: Session, argument: str) -> ReplyValue:
        if not argument.strip():
            return "501 5.5.4 Syntax: VRFY address"
        return "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"

    def smtp_EXPN(self, session: Session, argument: str) -> ReplyValue:
        return "502 5.5.1 EXPN not implemented"

    def smtp_HELP(self, session: Session, argument: str) -> ReplyValue:
        return "214 2.0.0 See RFC 5321"

    def smtp_STARTTLS(self, session: Session, argument: str) -> ReplyValue:
        if not self.starttls or session.tls:
            return "502 5.5.1 Error: command not implemented"
        if argument.strip():
            return "501 5.5.4 Syntax: STARTTLS"
        session.start_tls_after_reply()
        return "220 2.0.0 Ready to start TLS"


# -- one connection ------------------------------------------------------------------------
class Session:
    """One client connection: its SMTP state and the primitives hooks may use."""

    def __init__(self, server: ScriptedSMTPServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.behaviour = server.behaviour
        self.sock: socket.socket = sock
        self.number = number  # 1 for the server's first connection
        self.peer: tuple[str, int] = sock.getpeername()[:2]
        self.local: tuple[str, int] = sock.getsockname()[:2]
        self.commands: list[str] = []
        self.helo: str | None = None
        self.esmtp = False
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.tls = False
        self.in_data = False
        self.refusing = False  # after a 554 banner
        self.closed = False
        self._close_after = False
        self._tls_after = False
        self._buffer = b""

    # -- primitives for hooks ------------------------------------------------------------
    def reset(self, helo: str | None = None, esmtp: bool | None = None) -> None:
        """Forget the mail transaction (and set the greeting when given)."""
        self.mail_from = None
        self.rcpts = []
        self.in_data = False
        if helo is not None:
            self.helo = helo
        if esmtp is not None:
            self.esmtp = esmtp

    def sleep(self, seconds: float) -> bool:
        """Wait; returns False at once when the server is stopping."""
        return not self.server._stopping.wait(seconds)

    def send(self, reply: ReplyValue, drip: float | None = None) -> None:
        """Send a reply (see the module doc for the forms), dripped when asked."""
        if reply is None:
            return
        if isinstance(reply, bytes):
            data = reply
        else:
            lines = reply.splitlines() if isinstance(reply, str) else list(reply)
            end = self.behaviour.line_end.encode()
            data = b"".join(line.encode("utf-8", "surrogateescape") + end for line in lines)
        self.send_raw(data, self.behaviour.drip if drip is None else drip)

    def send_raw(self, data: bytes, drip: float = 0.0) -> None:
        """Send bytes as they are; with ``drip``, one byte every ``drip`` seconds."""
        if self.closed:
            return
        try:
            self.sock.settimeout(SEND_TIMEOUT)
            if drip > 0:
                for index in range(len(data)):
                    if index and not self.sleep(drip):
                        return
                    self.sock.sendall(data[index:index + 1])
            else:
                self.sock.sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        """Close the connection now (a FIN)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.sock.close()

    def reset_connection(self) -> None:
        """Abort the connection with a TCP RST instead of a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def close_after_reply(self) -> None:
        self._close_after = True

    def start_tls_after_reply(self) -> None:
        self._tls_after = True

    def read_line(self) -> bytes | None:
        """The next line from the client (with its line end), or None when it is gone."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end + 1], self._buffer[end + 1:]
                return line
            if len(self._buffer) > MAX_BUFFER:
                return None
            chunk = self._recv()
            if not chunk:
                return None
            self._buffer += chunk

    # -- the loop -------------------------------------------------------------------------
    def _recv(self) -> bytes:
        idle_until = time.monotonic() + self.behaviour.idle_timeout
        while not self.closed and not self.server._stopping.is_set():
            if time.monotonic() > idle_until:
                return b""
            try:
                self.sock.settimeout(POLL)
                return self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return b""
        return b""

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.close()

    def _run(self) -> None:
        behaviour = self.behaviour
        banner = behaviour.greeting(self)
        self.send(banner)
        code = reply_code(banner)
        if code == "421":
            return
        if code == "554":
            self.refusing = True
        while not self.closed and not self._close_after:
            raw = self.read_line()
            if raw is None:
                return
            if self.in_data:
                self._read_data(raw)
                continue
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            self.commands.append(line)
            with self.server._lock:
                self.server.commands.append(line)
            if len(raw) > MAX_COMMAND_LINE:
                reply: ReplyValue = "500 5.5.2 Error: line too long"
            else:
                reply = behaviour.handle(self, line)
            if behaviour.reply_delay and not self.sleep(behaviour.reply_delay):
                return
            self.send(reply)
            if self._tls_after:
                self._tls_after = False
                self._wrap_tls()

    def _read_data(self, first: bytes) -> None:
        body: list[bytes] = []
        raw: bytes | None = first
        while raw is not None:
            if (self.behaviour.data_bare_lf != "line-end" and raw.endswith(b"\n")
                    and not raw.endswith(b"\r\n")):
                self.in_data = False
                if self.behaviour.data_bare_lf == "close":
                    self.close()
                    return
                self.reset()
                self.send("550 5.5.2 Error: bare <LF> received")
                return
            if raw.rstrip(b"\r\n") == b".":
                self.in_data = False
                reply = self.behaviour.message(self, b"".join(body))
                self.reset()
                if self.behaviour.reply_delay and not self.sleep(self.behaviour.reply_delay):
                    return
                self.send(reply)
                return
            body.append(raw[1:] if raw.startswith(b"..") else raw)
            raw = self.read_line()
        self.close()

    def _wrap_tls(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.behaviour.certificate_files or self_signed_certificate(
            self.behaviour.hostname, *self.behaviour.certificate_names)
        context.load_cert_chain(cert, key)
        if self._buffer:  # a client that pipelined after STARTTLS: RFC 3207 says discard
            self._buffer = b""
        try:
            self.sock.settimeout(10)
            self.sock = context.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError):
            self.close()
            return
        self.tls = True
        self.reset(helo=None, esmtp=False)
        self.helo = None
        self.send(self.behaviour.tls_started(self))


def reply_code(reply: ReplyValue) -> str:
    """The first three characters of a reply in any of its forms ('' for None)."""
    if reply is None:
        return ""
    if isinstance(reply, bytes):
        return reply[:3].decode("ascii", "replace")
    if isinstance(reply, str):
        return reply[:3]
    return reply[0][:3] if reply else ""


@functools.cache
def self_signed_certificate(hostname: str, *alt_names: str) -> tuple[str, str]:
    """(certificate file, key file) for ``hostname``, made once per process with openssl.

    The certificate's subject CN is ``hostname``; its subjectAltName lists ``alt_names``
    (``hostname`` when none are given).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("STARTTLS in the lab needs the openssl command (apt install openssl)")
    names = alt_names or (hostname,)
    san = ",".join(f"IP:{name}" if is_ip_address(name) else f"DNS:{name}" for name in names)
    directory = Path(tempfile.mkdtemp(prefix="mailprobe-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={hostname}", "-addext", f"subjectAltName={san}"],
        check=True, capture_output=True, timeout=30,
    )
    return str(cert), str(key)


# -- the server ------------------------------------------------------------------------------
class ScriptedSMTPServer(LabServer):
    """A threaded SMTP server on loopback; every connection runs in its own thread.

    ``port=None`` takes a free port. Use as a context manager, or call :meth:`start` and
    :meth:`stop`. :meth:`stop` closes the listener and every connection and joins the threads.
    """

    def __init__(self, behaviour: Behaviour | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.host = host
        self.port = port or 0
        self.commands: list[str] = []  # every command line of every connection, in order
        self.messages: list[bytes] = []  # bodies received by DATA (discarded, kept for tests)
        self.sessions: list[Session] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None

    @property
    def connections(self) -> int:
        return len(self.sessions)

    def start(self) -> ScriptedSMTPServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.behaviour.starttls and self.behaviour.certificate_files is None:
            self_signed_certificate(self.behaviour.hostname,  # fail now, not mid-session
                                    *self.behaviour.certificate_names)
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(POLL)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"smtpd-{self.port}",
                                          daemon=True)
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except (ConnectionAbortedError, ConnectionResetError):
                continue  # a client that reset before we accepted (a port scanner's RST)
            except OSError:
                return    # the listener was closed: stop() is under way
            with self._lock:
                try:
                    sock.setblocking(True)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle
                    session = Session(self, sock, len(self.sessions) + 1)
                except OSError:
                    sock.close()  # reset between accept() and here: nothing to serve
                    continue
                self.sessions.append(session)
                thread = threading.Thread(target=session.run, daemon=True,
                                          name=f"smtpd-{self.port}-{session.number}")
                self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and all connections; wait (bounded) for every thread."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            sessions = list(self.sessions)
            threads = list(self._threads)
        for session in sessions:
            session.close()
        until = time.monotonic() + timeout
        for thread in [self._acceptor, *threads]:
            if thread is not None:
                thread.join(max(0.0, until - time.monotonic()))

