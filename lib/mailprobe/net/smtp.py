"""One SMTP client session, written for probing rather than for sending mail.

Unlike :mod:`smtplib` it sends command lines byte for byte as given (relay tests need
non-RFC address forms on the wire), keeps a transcript of every line, counts round trips,
and draws every socket wait from one :class:`~mailprobe.net.deadline.Deadline`, so a tarpit or a
server dripping one byte a second can never hold a check past its ``-t``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import time
from dataclasses import dataclass, field

from mailprobe.net.deadline import BudgetExhausted, Deadline

MAX_LINE = 64 * 1024  # RFC 5321 says 512 octets; be generous, but never unbounded.
MAX_LINES = 500  # lines in one multi-line reply before we call it endless
CRLF = b"\r\n"


class SMTPError(Exception):
    """Base of every failure of a session; ``stage`` names what we were doing."""

    def __init__(self, message: str, stage: str = "") -> None:
        super().__init__(message)
        self.stage = stage


class ConnectError(SMTPError):
    """TCP connection could not be made (refused, unreachable, timed out)."""


class SMTPTimeout(SMTPError):
    """The server did not answer within the time budget."""


class Disconnected(SMTPError):
    """The server closed or reset the connection."""


class ProtocolError(SMTPError):
    """The server's reply is not an SMTP reply (garbage, endless, oversized)."""


class TLSError(SMTPError):
    """The STARTTLS handshake failed."""


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        first = self.lines[0] if self.lines else ""
        more = f" (+{len(self.lines) - 1} lines)" if len(self.lines) > 1 else ""
        return f"{self.code} {first}".rstrip() + more


def printable(data: bytes | str, limit: int = 200) -> str:
    """Render server bytes for a human: no control characters, bounded length."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


def parse_reply_line(raw: bytes) -> tuple[int, bool, str]:
    """Split one reply line into (code, is_last, text).

    Accepts ``250-text``, ``250 text`` and a bare ``250``. Raises :class:`ProtocolError` for
    anything else.
    """
    line = raw.rstrip(b"\r\n")
    if len(line) < 3 or not line[:3].isdigit() or line[:1] not in b"2345":
        raise ProtocolError(f"not an SMTP reply: {printable(line, 80)!r}", "reading reply")
    code = int(line[:3])
    if len(line) == 3:
        return code, True, ""
    sep = line[3:4]
    if sep not in (b" ", b"-"):
        raise ProtocolError(f"not an SMTP reply: {printable(line, 80)!r}", "reading reply")
    return code, sep == b" ", printable(line[4:], MAX_LINE)


def parse_reply(raw_lines: list[bytes]) -> Reply:
    """Assemble a reply from its lines (the parser behind :meth:`SMTPSession.read_reply`)."""
    if not raw_lines:
        raise ProtocolError("empty reply", "reading reply")
    code = 0
    texts: list[str] = []
    for index, raw in enumerate(raw_lines):
        line_code, last, text = parse_reply_line(raw)
        if index == 0:
            code = line_code
        elif line_code != code:
            raise ProtocolError(
                f"reply code changed from {code} to {line_code} inside one reply", "reading reply"
            )
        texts.append(text)
        if last and index != len(raw_lines) - 1:
            raise ProtocolError("reply continues after its last line", "reading reply")
    return Reply(code, tuple(texts))


@dataclass
class TranscriptLine:
    at: float  # seconds since the session's first connect
    direction: str  # "->" sent, "<-" received, "**" event
    text: str

    def __str__(self) -> str:
        return f"{self.at:7.3f} {self.direction} {self.text}"


@dataclass
class Transcript:
    """Every line of every connection of a check, in order (printed with ``-vvv``)."""

    lines: list[TranscriptLine] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, direction: str, text: str) -> None:
        self.lines.append(TranscriptLine(time.monotonic() - self.started, direction, text))

    def render(self) -> list[str]:
        return [str(line) for line in self.lines]


def address_family(ipv4: bool = False, ipv6: bool = False) -> int:
    """The socket family asked for by ``-4``/``-6`` (AF_UNSPEC when neither)."""
    if ipv4 and not ipv6:
        return socket.AF_INET
    if ipv6 and not ipv4:
        return socket.AF_INET6
    return socket.AF_UNSPEC


def ip_literal(address: str) -> str:
    """RFC 5321 address literal: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"



_TLS_CONTEXT: ssl.SSLContext | None = None


def _audit_tls_context() -> ssl.SSLContext:
    """One client context for every STARTTLS of the run, verifying nothing.

    ``ssl.create_default_context()`` would load the system's CA store (about 20 ms of CPU)
    on every STARTTLS, for certificates we do not verify; the protocol defaults are the same.
    """
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXT = context
    return _TLS_CONTEXT


class SMTPSession:
    """A client session on one TCP connection.

    Every blocking step takes its timeout from ``deadline`` (capped by ``step_timeout`` when
    given), so the session as a whole cannot outlive the check.
    """

    def __init__(
        self,
        address: str,
        port: int = 25,
        *,
        deadline: Deadline,
        source_address: str | None = None,
        transcript: Transcript | None = None,
        step_timeout: float | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.deadline = deadline
        self.source_address = source_address
        self.transcript = transcript if transcript is not None else Transcript()
        self.step_timeout = step_timeout
        self.sock: socket.socket | None = None
        self._buffer = b""
        self.round_trips = 0
        self.esmtp: dict[str, str] = {}
        self.greeting_verb = ""
        self.tls = False
        self.banner: Reply | None = None
        self.banner_time: float | None = None

    # -- connection -------------------------------------------------------------------
    def connect(self) -> Reply:
        """Open the TCP connection and read the banner (one round trip)."""
        stage = f"connecting to {self.address} port {self.port}"
        try:
            infos = socket.getaddrinfo(
                self.address, self.port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise ConnectError(f"not an IP address: {self.address}", stage) from exc
        family, socktype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            if self.source_address:
                sock.bind((self.source_address, 0))
            sock.settimeout(self._timeout(stage))
            self.transcript.add("**", f"connect {self.address} port {self.port}"
                                + (f" from {self.source_address}" if self.source_address else ""))
            started = time.monotonic()
            sock.connect(sockaddr)
        except BudgetExhausted:
            sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            raise ConnectError(f"connection to {self._where()} timed out", stage) from exc
        except OSError as exc:
            sock.close()
            reason = exc.strerror or str(exc)
            if exc.errno == errno.EADDRNOTAVAIL and self.source_address:
                reason = f"cannot use source address {self.source_address}: {reason}"
            raise ConnectError(f"cannot connect to {self._where()}: {reason}", stage) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # we batch writes ourselves
        self.sock = sock
        self.round_trips += 1
        self.banner = self.read_reply("waiting for the banner")
        self.banner_time = time.monotonic() - started
        return self.banner

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self._buffer = b""

    def quit(self) -> None:
        """Say QUIT without waiting for the 221 (it costs a round trip), then close."""
        if self.sock is not None and self.deadline.remaining() > 0:
            with contextlib.suppress(SMTPError, BudgetExhausted):
                self.send_line("QUIT", "saying QUIT")
        self.close()

    def __enter__(self) -> SMTPSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def unread(self) -> bytes:
        """What the server has sent that no read has taken yet, without waiting for more.

        Before a command goes out this should be empty: anything here answers no command (a
        reply too many, an unasked greeting) and would be taken for the next command's reply.
        """
        if self.sock is not None:
            try:
                self.sock.setblocking(False)
                while len(self._buffer) <= MAX_LINE:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break  # the end of the stream stays for the next read to report
                    self._buffer += chunk
            except OSError:  # nothing more right now (BlockingIOError, SSLWantReadError), or a
                pass  # reset, which the next read reports
        return self._buffer

    # -- lines --------------------------------------------------------------------------
    def send_line(self, line: str | bytes, stage: str) -> None:
        """Send one command line exactly as given, plus CRLF."""
        if self.sock is None:
            raise Disconnected("not connected", stage)
        data = line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape")
        self.transcript.add("->", printable(data, 1000))
        self._sendall(data + CRLF, stage)

    def send_raw(self, data: bytes, stage: str) -> None:
        """Send bytes exactly as given, nothing added (message text, non-standard line ends).
        The transcript shows them escaped (``\\r``, ``\\n``, ``\\x00``)."""
        if self.sock is None:
            raise Disconnected("not connected", stage)
        self.transcript.add("->", printable(repr(data)[2:-1], 1000))
        self._sendall(data, stage)

    def _sendall(self, data: bytes, stage: str) -> None:
        assert self.sock is not None
        try:
            self.sock.settimeout(self._timeout(stage))
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise SMTPTimeout(f"{self._where()} stopped reading while {stage}", stage) from exc
        except OSError as exc:
            self._lost(stage)
            raise Disconnected(f"{self._where()} dropped the connection while {stage}: "
                               f"{exc.strerror or exc}", stage) from exc

    def _read_line(self, stage: str) -> bytes:
        assert self.sock is not None
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                if len(line) > MAX_LINE:
                    raise ProtocolError(f"reply line longer than {MAX_LINE} bytes", stage)
                return line
            if len(self._buffer) > MAX_LINE:
                self._lost(stage)
                raise ProtocolError(
                    f"reply line longer than {MAX_LINE} bytes without end of line", stage
                )
            try:
                self.sock.settimeout(self._timeout(stage))
                chunk = self.sock.recv(65536)
            except TimeoutError as exc:
                partial = f" (got {printable(self._buffer, 60)!r} so far)" if self._buffer else ""
                raise SMTPTimeout(f"no complete reply from {self._where()} while {stage}{partial}",
                                  stage) from exc
            except OSError as exc:
                self._lost(stage)
                raise Disconnected(f"{self._where()} reset the connection while {stage}",
                                   stage) from exc
            if not chunk:
                unterminated = self._buffer
                self._lost(stage)
                if unterminated:
                    # a last line without CRLF: take it, the server then closed
                    return unterminated
                raise Disconnected(f"{self._where()} closed the connection while {stage}", stage)
            self._buffer += chunk

    def read_reply(self, stage: str = "reading a reply") -> Reply:
        """Read one complete (multi-line) reply within the deadline."""
        raw_lines: list[bytes] = []
        while True:
            if self.sock is None:
                raise Disconnected(f"{self._where()} closed the connection while {stage}", stage)
            raw = self._read_line(stage)
            self.transcript.add("<-", printable(raw.rstrip(b"\r\n"), 1000))
            try:
                _, last, _ = parse_reply_line(raw)
            except ProtocolError as exc:
                exc.stage = stage
                raise
            raw_lines.append(raw)
            if last:
                break
            if len(raw_lines) >= MAX_LINES:
                raise ProtocolError(f"reply of more than {MAX_LINES} lines while {stage}", stage)
        try:
            return parse_reply(raw_lines)
        except ProtocolError as exc:
            exc.stage = stage
            raise

    # -- commands -------------------------------------------------------------------------
    def command(self, line: str | bytes, stage: str | None = None) -> Reply:
        """Send one raw command line and read its reply (one round trip)."""
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        stage = stage or f"waiting for the reply to {text.split(':')[0].split(' ')[0].upper()}"
        self.send_line(line, stage)
        self.round_trips += 1
        return self.read_reply(stage)

    def pipeline(self, lines: list[str]) -> list[Reply]:
        """Send several commands at once when the server offers PIPELINING, else one by one.

        Returns one reply per command sent.
        """
        if "PIPELINING" not in self.esmtp or len(lines) < 2:
            return [self.command(line) for line in lines]
        stage = "waiting for pipelined replies"
        self.send_batch(lines, stage)
        return [self.read_reply(stage) for _ in lines]

    def send_batch(self, lines: list[str], stage: str) -> None:
        """Send a pipelined batch (RFC 2920) in one write: one round trip for its replies.

        Sent line by line, Nagle's algorithm would hold each line until the previous one is
        acknowledged. The caller reads one reply per line with :meth:`read_reply`.
        """
        if self.sock is None:
            raise Disconnected("not connected", stage)
        batch = [ln.encode("utf-8", "surrogateescape") for ln in lines]
        for data in batch:
            self.transcript.add("->", printable(data, 1000))
        self._sendall(b"".join(data + CRLF for data in batch), stage)
        self.round_trips += 1

    def hello(self, name: str, helo_only: bool = False) -> Reply:
        """EHLO, falling back to HELO when EHLO is refused; records the ESMTP extensions."""
        self.esmtp = {}
        if not helo_only:
            reply = self.command(f"EHLO {name}", stage="waiting for the reply to EHLO")
            if reply.positive:
                self.greeting_verb = "EHLO"
                self.esmtp = parse_ehlo_extensions(reply)
                return reply
            if reply.transient or not self.connected:
                return reply
        reply = self.command(f"HELO {name}", stage="waiting for the reply to HELO")
        self.greeting_verb = "HELO" if reply.positive else ""
        return reply

    def starttls(self, server_hostname: str | None = None) -> Reply:
        """STARTTLS and the TLS handshake; the caller must greet again afterwards.

        The certificate is not verified here: we audit servers, we do not trust them. The
        peer certificate stays available as :attr:`peer_certificate`.
        """
        reply = self.command("STARTTLS", stage="waiting for the reply to STARTTLS")
        if not reply.positive:
            return reply
        assert self.sock is not None
        context = _audit_tls_context()
        stage = "negotiating TLS"
        try:
            self.sock.settimeout(self._timeout(stage))
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._lost(stage)
            raise SMTPTimeout(f"TLS handshake with {self._where()} timed out", stage) from exc
        except (ssl.SSLError, OSError) as exc:
            self._lost(stage)
            raise TLSError(f"TLS handshake with {self._where()} failed: {exc}", stage) from exc
        self.round_trips += 2
        self.tls = True
        self._buffer = b""
        self.esmtp = {}
        self.transcript.add("**", f"TLS established ({self.sock.version()})")
        return reply

    @property
    def peer_certificate(self) -> bytes | None:
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.getpeercert(binary_form=True)
        return None

    # -- helpers --------------------------------------------------------------------------
    def _timeout(self, stage: str) -> float:
        return self.deadline.timeout(stage, self.step_timeout)

    def _where(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{addr}:{self.port}"

    def _lost(self, stage: str) -> None:
        self.transcript.add("**", f"connection lost while {stage}")
        self.close()


# RFC 5321 4.3.2 (and RFC 3207 for STARTTLS): the positive and intermediate replies each command
# can get. Errors (4xx, 5xx) may answer any command.
_POSITIVE_REPLIES: dict[str, frozenset[int]] = {
    "EHLO": frozenset({250}), "HELO": frozenset({250}), "MAIL": frozenset({250}),
    "RCPT": frozenset({250, 251}), "DATA": frozenset({354}), "RSET": frozenset({250}),
    "NOOP": frozenset({250}), "QUIT": frozenset({221}), "STARTTLS": frozenset({220}),
    "VRFY": frozenset({250, 251, 252}),
}


def command_verb(line: str) -> str:
    """The verb of a command line, upper case: ``MAIL`` for ``mail from:<a@b>``."""
    return line.strip().split(" ")[0].split(":")[0].upper()


def can_answer(command: str, reply: Reply) -> bool:
    """Whether ``reply`` can be the reply to ``command`` (RFC 5321 4.3.2).

    A 220 never answers EHLO, a 354 only DATA, a 250 never DATA: a positive reply that does not
    fit its command answers another one, and the replies are out of step with the commands.
    Commands not in the table accept any reply.
    """
    allowed = _POSITIVE_REPLIES.get(command_verb(command))
    return reply.code >= 400 or allowed is None or reply.code in allowed


def parse_ehlo_extensions(reply: Reply) -> dict[str, str]:
    """The ESMTP keywords of an EHLO reply (first line is the server's name)."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params
    return extensions


def greeting_name(reply: Reply | None) -> str:
    """The host name a banner or EHLO reply claims (its first word), or ''."""
    if reply is None or not reply.lines:
        return ""
    words = reply.lines[0].split()
    return words[0] if words else ""
