"""The catalogue of misbehaving SMTP servers, and the documented state of each plugin facing it.

Every case is a scripted server (:mod:`lab.smtpd`) on loopback. ``relay`` is what
check_open_relay must say (spoken from 127.0.0.2, ``--mail-domain lab.test``; a case whose
``host`` is a name has a server on 127.0.0.1 and one on ::1, and is probed by that name, with
its own scripted DNS when the DNS is the hostile part), ``rdns`` what
check_banner_rdns must say (with a correct PTR/FCrDNS for the server's address served by the
scripted DNS server, so only the SMTP side is hostile). Several :class:`Expect` for one plugin
are played in order against the same server (e.g. greylisting: the second run differs).

States follow the issue: UNKNOWN when the check could not determine the answer, WARNING or
CRITICAL when the behaviour itself is the finding.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdatatype

from lab.dnsd import DNSBehaviour
from lab.smtpd import Behaviour, RelayPolicy, ReplyValue, Session
from mailprobe.probes.relay.catalogue import CATALOGUE
from tests.hostile.expect import CRITICAL, OK, UNKNOWN, WARNING, Expect, as_tuple

NO_SERVER = "no-server"  # a case whose "server" is a port nobody listens on


# -- behaviours no knob gives -------------------------------------------------------------------
class ResetAt(Behaviour):
    """Sends a TCP RST instead of replying to the ``at``-th command (1-based) or to ``verb``."""

    def __init__(self, at: int | None = None, verb: str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.at, self.verb = at, verb

    def handle(self, session: Session, line: str) -> ReplyValue:
        hit_number = self.at is not None and len(session.commands) >= self.at
        hit_verb = self.verb is not None and line.upper().startswith(self.verb)
        if hit_number or hit_verb:
            session.reset_connection()
            return None
        return super().handle(session, line)


class CloseAtOnce(Behaviour):
    """Accepts the TCP connection and closes it without a word."""

    def greeting(self, session: Session) -> ReplyValue:
        session.close()
        return None


class NoLineEnd(Behaviour):
    """A banner without any end of line, then silence (the client waits for the rest)."""

    def greeting(self, session: Session) -> ReplyValue:
        return b"220 mx.lab.test ESMTP but the line never ends"


class HugeEhloLine(Behaviour):
    """EHLO answered with one reply line of 1 MB."""

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        return b"250-mx.lab.test " + b"x" * (1024 * 1024) + b"\r\n250 PIPELINING\r\n"


class EndlessEhlo(Behaviour):
    """EHLO answered with ``250-`` lines forever (until the client goes away)."""

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        chunk = b"".join(b"250-EXTENSION-%d\r\n" % n for n in range(100))
        while not session.closed and session.sleep(0.001):
            session.send_raw(chunk)
        return None


class CodeChangeEhlo(Behaviour):
    """A multi-line EHLO reply whose code changes half-way (250- then 251)."""

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        session.reset(helo=argument.strip(), esmtp=True)
        return ["250-mx.lab.test", "251 PIPELINING"]


class BinaryReplies(Behaviour):
    """Banner and EHLO carrying NUL bytes, invalid UTF-8 and non-ASCII text."""

    def greeting(self, session: Session) -> ReplyValue:
        return b"220 mx.lab.test ESMTP \x00\xc3\x28\xff\xfe caf\xc3\xa9 \x1b[31mred\r\n"

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        session.reset(helo=argument.strip(), esmtp=True)
        return (b"250-mx.lab.test gr\xc3\xbc\xc3\x9fe \x00\x01\x02\r\n250-X-\xff\xfe\r\n"
                b"250 PIPELINING\r\n")


class BrokenStartTLS(Behaviour):
    """Advertises STARTTLS, says 220 to it, then answers the handshake with plain text."""

    def smtp_STARTTLS(self, session: Session, argument: str) -> ReplyValue:
        session.send_raw(b"220 2.0.0 Ready to start TLS\r\n")
        session.send_raw(b"this is not a TLS server hello\r\n" * 4)
        session.close()
        return None


class Greylist(Behaviour):
    """451 for a (sender, recipient) pair seen for the first time; the normal policy after."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.seen: set[tuple[str, str]] = set()

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if session.mail_from is not None:
            triplet = (session.mail_from, argument.strip())
            if triplet not in self.seen:
                self.seen.add(triplet)
                return "451 4.7.1 Greylisted, please try again later"
        return super().smtp_RCPT(session, argument)


class RefuseAtData(Behaviour):
    def smtp_DATA(self, session: Session, argument: str) -> ReplyValue:
        return "554 5.7.1 Relaying denied at DATA"


def more_coming(session: Session, within: float = 0.3) -> bool:
    """Whether the client sent more commands without waiting for this reply (pipelining)."""
    if b"\n" in session._buffer:
        return True
    try:
        session.sock.settimeout(within)
        return bool(session.sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


class PipelineOutOfOrder(Behaviour):
    """Offers PIPELINING, then answers each pipelined batch in reverse order (once a client
    waits for the reply to MAIL FROM, i.e. stopped pipelining, it answers in order)."""

    in_order = False

    def handle(self, session: Session, line: str) -> ReplyValue:
        verb = line.split(" ")[0].upper()
        reply = super().handle(session, line)
        pending: list[ReplyValue] = session.__dict__.setdefault("pending", [])
        if verb in ("RSET", "MAIL") and not self.in_order:
            if more_coming(session):  # more of the batch is waiting: answer it all later
                pending.append(reply)
                return None
            if verb == "MAIL":
                self.in_order = True
        session.__dict__["pending"] = []
        out: list[str] = []
        for item in reversed([*pending, reply]):
            out.extend(item.splitlines() if isinstance(item, str) else item or ())
        return out or None


class PipelineDropsRest(Behaviour):
    """Offers PIPELINING, then answers only the first command of a batch and drops the rest."""

    def handle(self, session: Session, line: str) -> ReplyValue:
        if more_coming(session, within=0.01):  # a batch comes in one write
            session.sleep(0.05)
            with contextlib.suppress(OSError):
                session.sock.settimeout(0.05)
                while session.sock.recv(65536):
                    pass
            session._buffer = b""
        return super().handle(session, line)


class DiesAfter(Behaviour):
    """Serves ``commands`` commands in all, then resets every connection (a crashed MTA whose
    listener is still up for a moment)."""

    def __init__(self, commands: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.left = commands

    def greeting(self, session: Session) -> ReplyValue:
        if self.left <= 0:
            session.reset_connection()
            return None
        return super().greeting(session)

    def handle(self, session: Session, line: str) -> ReplyValue:
        self.left -= 1
        if self.left < 0:
            session.reset_connection()
            return None
        return super().handle(session, line)


class NoPostmaster(Behaviour):
    """Refuses postmaster@ (the control) but relays everything else."""

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if "postmaster@" in argument.lower():
            return "550 5.1.1 <postmaster@lab.test>: Recipient address rejected: User unknown"
        return super().smtp_RCPT(session, argument)


# -- issue 12: servers that got a wrong verdict ---------------------------------------------------
class DataTrouble(Behaviour):
    """An open relay that goes wrong for recipients containing ``marker`` once they are
    accepted: ``how="drop"`` closes the connection at DATA, ``"silent"`` never answers DATA,
    ``"close-after-rcpt"`` closes the connection right after accepting the RCPT."""

    def __init__(self, how: str, marker: str = "!", **kwargs: object) -> None:
        super().__init__(relay=RelayPolicy.open(), **kwargs)  # type: ignore[arg-type]
        self.how, self.marker = how, marker

    def marked(self, session: Session) -> bool:
        return any(self.marker in rcpt for rcpt in session.rcpts)

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        reply = super().smtp_RCPT(session, argument)
        if self.how == "close-after-rcpt" and self.marked(session):
            session.close_after_reply()
        return reply

    def smtp_DATA(self, session: Session, argument: str) -> ReplyValue:
        if self.marked(session):
            if self.how == "drop":
                session.close()
                return None
            if self.how == "silent":
                session.sleep(60)
                return None
        return super().smtp_DATA(session, argument)


class ExtraReplyToMail(Behaviour):
    """Answers every MAIL FROM twice; with ``delay`` the second reply comes that much later
    (after the client sent its next command)."""

    def __init__(self, delay: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delay = delay

    def smtp_MAIL(self, session: Session, argument: str) -> ReplyValue:
        reply = super().smtp_MAIL(session, argument)
        assert isinstance(reply, str)
        if self.delay:
            session.send(reply)
            session.sleep(self.delay)
            return reply
        return [reply, reply]


class GreetsAgainAfterTLS(Behaviour):
    """STARTTLS works, then an unasked 220 greeting follows: right after the handshake
    (``at="handshake"``) or in front of the reply to the next EHLO (``at="ehlo"``)."""

    def __init__(self, at: str, **kwargs: object) -> None:
        super().__init__(starttls=True, **kwargs)  # type: ignore[arg-type]
        self.at = at

    def tls_started(self, session: Session) -> ReplyValue:
        return f"220 {self.hostname} ESMTP ready" if self.at == "handshake" else None

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        reply = super().smtp_EHLO(session, argument)
        if self.at == "ehlo" and session.tls and not session.__dict__.get("greeted_again"):
            session.__dict__["greeted_again"] = True
            return [f"220 {self.hostname} ESMTP ready", *(reply or ())]
        return reply


class EveryReplyTwice(Behaviour):
    """Sends every reply twice, the banner included."""

    @staticmethod
    def twice(reply: ReplyValue) -> ReplyValue:
        if reply is None or isinstance(reply, bytes):
            return reply
        lines = reply.splitlines() if isinstance(reply, str) else list(reply)
        return lines + lines

    def greeting(self, session: Session) -> ReplyValue:
        return self.twice(super().greeting(session))

    def handle(self, session: Session, line: str) -> ReplyValue:
        return self.twice(super().handle(session, line))


class SilentRset(Behaviour):
    """Never answers RSET (one reply short in every pipelined batch that starts with one)."""

    def smtp_RSET(self, session: Session, argument: str) -> ReplyValue:
        session.reset()
        return None


class TarpitOutside(Behaviour):
    """An open relay that never answers RCPT TO for an outside recipient (a tarpit); the
    control (postmaster@, a local recipient) is answered at once."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(relay=RelayPolicy.open(), **kwargs)  # type: ignore[arg-type]

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if "postmaster@" not in argument.lower():
            session.sleep(60)
            return None
        return super().smtp_RCPT(session, argument)


class StartTLSSilence(Behaviour):
    """An open relay offering STARTTLS: ``reply=True`` answers it 220 and never starts the
    handshake; ``reply=False`` never answers STARTTLS at all."""

    def __init__(self, reply: bool = True, **kwargs: object) -> None:
        super().__init__(starttls=True, relay=RelayPolicy.open(), **kwargs)  # type: ignore[arg-type]
        self.reply = reply

    def smtp_STARTTLS(self, session: Session, argument: str) -> ReplyValue:
        if self.reply:
            session.send("220 2.0.0 Ready to start TLS")
        session.sleep(60)
        return None


@dataclass
class TypeFault(DNSBehaviour):
    """A correct DNS world except for one question type: never answered (``silent``) or
    answered with ``rcode`` and nothing else."""

    rdtype: str = "AAAA"
    silent: bool = False
    rcode: str = ""

    def respond(self, query: dns.message.Message,
                tcp: bool) -> dns.message.Message | bytes | None:
        question = query.question[0] if query.question else None
        if question is None or dns.rdatatype.to_text(question.rdtype) != self.rdtype:
            return super().respond(query, tcp)
        if self.silent:
            return None
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.from_text(self.rcode))
        return response


# -- the catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SMTPCase:
    """One misbehaving server. With ``host`` a name (``mx.lab.test``), ``behaviour`` listens on
    127.0.0.1 and ``behaviour6`` on ::1 (same port; None: nobody listens there), and the name
    is served by ``dns`` (default: the correct world of test_smtp_hostile.GOOD_DNS)."""

    id: str
    description: str
    behaviour: Callable[[], Behaviour] | None  # None: nobody listens
    relay: tuple[Expect, ...] = ()
    rdns: tuple[Expect, ...] = ()
    host: str = "127.0.0.1"
    tags: tuple[str, ...] = field(default=())
    behaviour6: Callable[[], Behaviour] | None = None
    dns: Callable[[], DNSBehaviour] | None = None


def case(id_: str, description: str, behaviour: Callable[[], Behaviour] | None, *,
         relay: Expect | tuple[Expect, ...] = (), rdns: Expect | tuple[Expect, ...] = (),
         host: str = "127.0.0.1", behaviour6: Callable[[], Behaviour] | None = None,
         dns: Callable[[], DNSBehaviour] | None = None) -> SMTPCase:
    return SMTPCase(id_, description, behaviour, as_tuple(relay), as_tuple(rdns), host,
                    behaviour6=behaviour6, dns=dns)


ALL_ATTEMPTS = r"0 of \d+ relay attempts accepted"
NO_BANNER = r"mail service down: no (usable )?banner"
ONLY_PLAYED = r"only \d+ of \d+ attempts could be played"
NOT_PLAYED = r"inconclusive: the control could not be played "
TIMEOUT_1 = ("--command-timeout", "1")
OUT_OF_STEP = r"note: the server's replies got out of step with the commands"
DATA_3 = ("--depth", "data", "--tests", "plain,bang-path,upper-case")
DATA_2 = ("--depth", "data", "--tests", "plain,bang-path")
AFTER_RCPT = r"RCPT TO accepted, then DATA got no reply: "
N = len(CATALOGUE)
OPEN_N = N - 8  # what the scripted open relay accepts (see OPEN_37)
ALL_ON = rf"0 of {N} relay attempts accepted"
# the scripted open relay wants a greeting before MAIL FROM: all but no-greeting relay, and
# helo-ptr-name (the PTR name is the banner's), XCLIENT, XFORWARD and the four AUTH attempts
# (none offered) do not apply
OPEN_37 = rf"{OPEN_N} of {N} relay attempts accepted \(plain, "
DUAL_STACK = """
mx.lab.test. A 127.0.0.1
mx.lab.test. AAAA ::1
"""

SMTP_CASES: tuple[SMTPCase, ...] = (
    case("refused", "nothing listens on the port (connection refused)", None,
         relay=Expect(CRITICAL, r"mail service down: cannot connect .*refused"),
         rdns=Expect(CRITICAL, r"mail service down: cannot connect .*refused")),
    case("close-at-once", "accepts the connection and closes it without a banner",
         lambda: CloseAtOnce(),
         relay=Expect(CRITICAL, NO_BANNER + r".*closed the connection"),
         rdns=Expect(CRITICAL, r"no banner: 127\.0\.0\.1:\d+ closed the connection")),
    case("no-banner", "connection accepted, the banner never comes",
         lambda: Behaviour(banner_delay=60),
         relay=Expect(CRITICAL, NO_BANNER + r" from .* within", timeout=3),
         rdns=Expect(UNKNOWN, r"no banner from 127\.0\.0\.1:\d+ within", timeout=3)),
    case("banner-1s", "banner after 1 s", lambda: Behaviour(banner_delay=1),
         relay=(Expect(OK, ALL_ATTEMPTS, ("--tests", "plain,helo-only,no-greeting"), timeout=8),
                Expect(UNKNOWN, ONLY_PLAYED + r" \(the 3s time budget ran out while",
                       timeout=3)),
         rdns=Expect(OK, r"127\.0\.0\.1 -> mx\.lab\.test -> 127\.0\.0\.1, banner mx\.lab\.test",
                     ("--no-starttls-ok",))),
    case("banner-10s", "banner after 10 s (a greet pause)", lambda: Behaviour(banner_delay=10),
         relay=Expect(OK, ALL_ATTEMPTS, ("--tests", "plain"), timeout=12),
         rdns=Expect(WARNING, r"banner after 10\.\d+s", ("-w", "5", "-c", "11"), timeout=12)),
    case("banner-beyond-t", "banner later than -t (a tarpit)", lambda: Behaviour(banner_delay=30),
         relay=Expect(CRITICAL, NO_BANNER + r" from .* within", timeout=3),
         rdns=(Expect(UNKNOWN, r"no banner .* within", timeout=3),
               Expect(CRITICAL, r"banner after [23]\.\d+s", ("-c", "2"), timeout=3))),
    case("banner-drip", "banner dripped one byte a second", lambda: Behaviour(drip=1.0),
         relay=Expect(CRITICAL, NO_BANNER + r".*within", timeout=3),
         rdns=Expect(UNKNOWN, r"no banner .* within", timeout=3)),
    case("banner-421", "421 on connect (busy / not for you)",
         lambda: Behaviour(banner="421 4.3.2 Service not available, closing channel"),
         relay=Expect(UNKNOWN, r"inconclusive: .*refuses this vantage point at the banner "
                               r"\(421 4\.3\.2"),
         rdns=Expect(CRITICAL, r"banner is not 220: 421 4\.3\.2")),
    case("banner-554", "554 on connect (no SMTP service here)",
         lambda: Behaviour(banner="554 5.7.1 No SMTP service here"),
         relay=Expect(UNKNOWN, r"inconclusive: .*refuses this vantage point at the banner "
                               r"\(554 5\.7\.1"),
         rdns=Expect(CRITICAL, r"banner is not 220: 554 5\.7\.1")),
    case("garbage-banner", "speaks HTTP instead of SMTP",
         lambda: Behaviour(banner="HTTP/1.1 400 Bad Request"),
         relay=Expect(CRITICAL, NO_BANNER + r".*not an SMTP reply"),
         rdns=Expect(CRITICAL, r"no banner from .*not an SMTP reply")),
    case("reset-after-banner", "TCP reset instead of a reply to the first command",
         lambda: ResetAt(at=1),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*reset the connection.*" + ONLY_PLAYED),
         rdns=Expect(CRITICAL, r"reset the connection while waiting for the reply to EHLO")),
    case("reset-after-ehlo", "replies to EHLO, then resets the connection",
         lambda: ResetAt(at=2),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*reset the connection.*" + ONLY_PLAYED),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("reset-mid-attempt", "resets the connection at RCPT TO", lambda: ResetAt(verb="RCPT"),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*reset the connection.*" + ONLY_PLAYED),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("bare-lf", "reply lines end in LF instead of CRLF", lambda: Behaviour(line_end="\n"),
         relay=Expect(OK, ALL_ATTEMPTS),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("no-line-end", "banner without any line end, then silence", lambda: NoLineEnd(),
         relay=Expect(CRITICAL, NO_BANNER + r".*within", timeout=3),
         rdns=Expect(UNKNOWN, r"no banner .* within", timeout=3)),
    case("megabyte-line", "a 1 MB reply line to EHLO", lambda: HugeEhloLine(),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*longer than.*" + ONLY_PLAYED),
         rdns=Expect(CRITICAL, r"reply line longer than \d+ bytes")),
    case("endless-multiline", "250- continuation lines forever to EHLO", lambda: EndlessEhlo(),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*reply of more than \d+ lines.*" + ONLY_PLAYED),
         rdns=Expect(CRITICAL, r"reply of more than \d+ lines")),
    case("code-change", "multi-line reply whose code changes (250- then 251)",
         lambda: CodeChangeEhlo(),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(.*reply code changed.*" + ONLY_PLAYED),
         rdns=Expect(CRITICAL, r"reply code changed from 250 to 251")),
    case("yes-to-everything", "250 to every command, unknown ones included",
         lambda: Behaviour(replies={"*": "250 OK"}),
         relay=Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted \(plain, "),
         rdns=Expect(WARNING, r"EHLO name OK does not match PTR mx\.lab\.test",
                     ("--no-starttls-ok",))),
    case("354-to-rcpt", "354 (start mail input) in reply to RCPT TO",
         lambda: Behaviour(replies={"RCPT": "354 go ahead"}),
         relay=Expect(UNKNOWN, NOT_PLAYED + r"\(replies out of step with the commands: 354 go "
                               r"ahead cannot answer RCPT\)"),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("binary-replies", "NUL bytes, invalid UTF-8 and escape codes in banner and EHLO",
         lambda: BinaryReplies(),
         relay=Expect(OK, ALL_ATTEMPTS),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("ehlo-rejected", "EHLO refused (502): a HELO-only server",
         lambda: Behaviour(replies={"EHLO": "502 5.5.2 Error: command not recognized"}),
         relay=Expect(OK, ALL_ATTEMPTS),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("starttls-broken", "STARTTLS advertised, the handshake fails",
         lambda: BrokenStartTLS(ehlo_extensions=("PIPELINING", "STARTTLS")),
         relay=(Expect(OK, ALL_ATTEMPTS),
                Expect(UNKNOWN, r"--starttls require: TLS handshake .* failed",
                       ("--starttls", "require"))),
         rdns=(Expect(OK, r"banner mx\.lab\.test"),
               Expect(CRITICAL, r"TLS handshake with 127\.0\.0\.1:\d+ failed",
                      ("--starttls-cert-days", "10")))),
    case("tls-required", "530 (must issue STARTTLS first) to every command, STARTTLS not offered",
         lambda: Behaviour(replies={"*": "530 5.7.0 Must issue a STARTTLS command first"}),
         relay=Expect(UNKNOWN, r"inconclusive: control .* not accepted \(530 5\.7\.0"),
         rdns=Expect(WARNING, r"EHLO and HELO \S+ refused: 530 5\.7\.0")),
    case("greylist-all", "450 for every RCPT TO (greylisting that never lets go)",
         lambda: Behaviour(replies={"RCPT": "450 4.2.0 Greylisted, try again later"}),
         relay=Expect(WARNING, r"defers even .*postmaster@lab\.test.*relay status unproven"),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("greylist-then-accept", "451 for a new sender/recipient pair, accepted on retry "
         "(an open relay behind greylisting)",
         lambda: Greylist(relay=RelayPolicy.open()),
         relay=(Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted .*\d+ of \d+ relay "
                                 r"attempts answered 4xx.*defers even"),
                Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted \(plain, "))),
    case("refuse-at-data", "accepts every RCPT TO, refuses DATA with 554",
         lambda: RefuseAtData(relay=RelayPolicy.open()),
         relay=(Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted"),
                Expect(OK, ALL_ATTEMPTS, ("--depth", "data")))),
    case("pipelining-out-of-order", "PIPELINING offered, replies of a batch come in reverse "
         "order", lambda: PipelineOutOfOrder(),
         relay=Expect(OK, ALL_ATTEMPTS, detail=r"note: the server's replies got out of step "
                      r"with the commands \(RSET was refused")),
    case("pipelining-drops", "PIPELINING offered, every command after the first of a batch "
         "is dropped", lambda: PipelineDropsRest(),
         relay=Expect(OK, r"0 of 2 relay attempts accepted",
                      (*TIMEOUT_1, "--tests", "plain,bang-path"), timeout=6,
                      detail=r"note: a pipelined batch went unanswered \(a tarpit, or a "
                             r"server that drops pipelined commands\) \(no reply within 1s to "
                             r"pipelined commands\)")),
    case("dies-mid-series-closed", "a closed server that dies after 12 commands",
         lambda: DiesAfter(12),
         # the reset meets the next connection at connect() or at the banner, as it happens
         relay=Expect(UNKNOWN, ONLY_PLAYED + r" \(server unreachable mid-series: (no usable "
                               r"banner|cannot connect to .*: Connection reset by peer)"),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("dies-mid-series-open", "an open relay that dies after 12 commands: the relays seen "
         "before are proof enough", lambda: DiesAfter(12, relay=RelayPolicy.open()),
         relay=Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted \(plain.*; only \d+ of "
                                r"\d+ attempts could be played")),
    case("control-refused-but-relays", "refuses the control recipient postmaster@, relays "
         "outside recipients", lambda: NoPostmaster(relay=RelayPolicy.open()),
         relay=Expect(CRITICAL, r"\d+ of \d+ relay attempts accepted \(plain.*inconclusive: "
                                r"control")),
    case("closes-after-4", "421 and close after every 4 commands (reconnect needed)",
         lambda: Behaviour(command_limit=4, helo_required=False),
         relay=Expect(OK, ALL_ATTEMPTS),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("tarpit", "every reply delayed 1.5 s", lambda: Behaviour(reply_delay=1.5),
         relay=Expect(UNKNOWN, r"the 4s time budget ran out while waiting for"),
         rdns=Expect(OK, r"banner mx\.lab\.test", ("--no-starttls-ok",))),
    case("ipv6-only", "listens on [::1] only", lambda: Behaviour(), host="::1",
         relay=Expect(OK, ALL_ATTEMPTS),
         rdns=Expect(OK, r"::1 -> mx\.lab\.test -> ::1, banner mx\.lab\.test",
                     ("--no-starttls-ok",))),
    # -- issue 12, item 1: --depth data and a relay that drops or goes silent after RCPT ------
    case("data-drop", "an open relay that drops the connection at DATA for a bang-path "
         "recipient (--depth data)", lambda: DataTrouble("drop"),
         relay=(Expect(CRITICAL, r"^OPEN_RELAY CRITICAL - 2 of 3 relay attempts accepted "
                                 r"\(plain, upper-case\); only 2 of 3 attempts could be played \("
                       + AFTER_RCPT + r".*closed the connection while waiting for the reply to "
                                      r"DATA\)", DATA_3,
                       detail=r"^\[ERROR\] bang-path: .* -> 250 2\.1\.5 Ok \(" + AFTER_RCPT),
                Expect(CRITICAL, r"1 of 2 relay attempts accepted \(plain\); only 1 of 2 attempts "
                                 r"could be played", DATA_2))),
    case("data-silent", "an open relay that never answers DATA for a bang-path recipient "
         "(--depth data)", lambda: DataTrouble("silent"),
         relay=Expect(CRITICAL, r"2 of 3 relay attempts accepted \(plain, upper-case\); only 2 of "
                                r"3 attempts could be played \(1 never answered within "
                                r"--command-timeout 1s\)", (*DATA_3, *TIMEOUT_1), timeout=8,
                      detail=r"^\[TIMEOUT\] bang-path: .* -> 250 2\.1\.5 Ok \(" + AFTER_RCPT)),
    case("close-after-rcpt", "an open relay that closes the connection right after accepting a "
         "bang-path recipient (--depth data)", lambda: DataTrouble("close-after-rcpt"),
         relay=(Expect(CRITICAL, r"2 of 3 relay attempts accepted \(plain, upper-case\); only 2 of "
                                 r"3 attempts could be played \(" + AFTER_RCPT, DATA_3),
                Expect(CRITICAL, r"3 of 3 relay attempts accepted", DATA_3[2:]))),
    # -- item 2: replies out of step with the commands -----------------------------------------
    case("extra-reply-to-mail", "a closed server answering every MAIL FROM twice (every later "
         "reply shifts by one)", lambda: ExtraReplyToMail(),
         relay=Expect(OK, ALL_ATTEMPTS, detail=OUT_OF_STEP)),
    case("extra-reply-to-mail-open", "an open relay answering every MAIL FROM twice",
         lambda: ExtraReplyToMail(relay=RelayPolicy.open()),
         relay=Expect(CRITICAL, OPEN_37, detail=OUT_OF_STEP)),
    case("extra-reply-late", "a closed server sending a second 250 to MAIL FROM 0.3 s later, "
         "after the next command went out", lambda: ExtraReplyToMail(delay=0.3),
         relay=Expect(UNKNOWN, r"only 0 of 2 attempts could be played \(replies out of step with "
                               r"the commands", ("--tests", "plain,bang-path"), timeout=8,
                      detail=OUT_OF_STEP)),
    case("greeting-after-starttls", "STARTTLS works, then an unasked 220 comes in front of the "
         "reply to the next EHLO", lambda: GreetsAgainAfterTLS("ehlo"),
         relay=(Expect(OK, ALL_ATTEMPTS, detail=r"note: the server sent an unasked greeting "
                                                r"after STARTTLS \(220 "),
                Expect(OK, ALL_ATTEMPTS, ("--starttls", "require", "-v"),
                       detail=r"^cost: .*TLS yes"))),
    case("greeting-after-handshake", "STARTTLS works, then an unasked 220 comes right after "
         "the TLS handshake", lambda: GreetsAgainAfterTLS("handshake"),
         relay=(Expect(OK, ALL_ATTEMPTS, detail=r"note: the server sent an unasked greeting "
                                                r"after STARTTLS \(220 "),
                Expect(OK, ALL_ATTEMPTS, ("--starttls", "require", "-v"),
                       detail=r"^cost: .*TLS yes"))),
    case("double-banner", "the banner comes twice",
         lambda: Behaviour(banner="220 mx.lab.test ESMTP first\n220 mx.lab.test ESMTP again"),
         relay=Expect(OK, ALL_ATTEMPTS, detail=r"note: the server sent an unasked greeting after "
                                               r"its banner")),
    case("every-reply-twice", "a closed server sending every reply twice",
         lambda: EveryReplyTwice(), relay=Expect(OK, ALL_ATTEMPTS, detail=OUT_OF_STEP)),
    case("every-reply-twice-open", "an open relay sending every reply twice",
         lambda: EveryReplyTwice(relay=RelayPolicy.open()),
         relay=Expect(CRITICAL, OPEN_37, detail=OUT_OF_STEP)),
    case("silent-rset", "a closed server that never answers RSET (a reply short)",
         lambda: SilentRset(), relay=Expect(OK, ALL_ATTEMPTS, detail=OUT_OF_STEP)),
    # -- items 3 and 9: every address of a name, and a family that cannot be looked up ---------
    case("dual-stack-v6-relays", "mx.lab.test: closed on 127.0.0.1, an open relay on ::1",
         lambda: Behaviour(), behaviour6=lambda: Behaviour(relay=RelayPolicy.open()),
         host="mx.lab.test",
         relay=(Expect(CRITICAL, rf"{OPEN_N} of {2 * N} relay attempts accepted \(::1: plain, "
                                 r"sender-null, .*"
                                 r"\); 127\.0\.0\.1: " + ALL_ON, detail=r"^address ::1:$"),
                Expect(OK, ALL_ATTEMPTS, ("-4",)),
                Expect(CRITICAL, rf"- {OPEN_N} of {N} relay attempts accepted \(plain", ("-6",)))),
    case("dual-stack-v6-down", "mx.lab.test: closed on 127.0.0.1, nothing listens on ::1",
         lambda: Behaviour(), host="mx.lab.test",
         relay=Expect(CRITICAL, r"::1: mail service down: cannot connect to \[::1\]:\d+: "
                                r"Connection refused; 127\.0\.0\.1: " + ALL_ON)),
    case("aaaa-dropped", "the AAAA question for mx.lab.test is never answered (A is)",
         lambda: Behaviour(), behaviour6=lambda: Behaviour(relay=RelayPolicy.open()),
         host="mx.lab.test", dns=lambda: TypeFault(DUAL_STACK, rdtype="AAAA", silent=True),
         relay=(Expect(UNKNOWN, r"IPv6 not tested: DNS look-up mx\.lab\.test AAAA not answered "
                                r"within [\d.]+s of the A answer; 127\.0\.0\.1: " + ALL_ON),
                Expect(OK, ALL_ATTEMPTS, ("-4",)))),
    case("aaaa-servfail", "the AAAA question for mx.lab.test is answered SERVFAIL (A is fine)",
         lambda: Behaviour(), host="mx.lab.test",
         dns=lambda: TypeFault(DUAL_STACK, rdtype="AAAA", rcode="SERVFAIL"),
         relay=(Expect(UNKNOWN, r"IPv6 not tested: DNS look-up mx\.lab\.test AAAA failed: the "
                                r"resolver answered SERVFAIL; 127\.0\.0\.1: " + ALL_ON),
                Expect(OK, ALL_ATTEMPTS, ("-4",)))),
    case("a-dropped", "the A question for mx.lab.test is never answered (AAAA is)",
         lambda: Behaviour(relay=RelayPolicy.open()), behaviour6=lambda: Behaviour(),
         host="mx.lab.test", dns=lambda: TypeFault(DUAL_STACK, rdtype="A", silent=True),
         relay=(Expect(UNKNOWN, r"IPv4 not tested: DNS look-up mx\.lab\.test A not answered "
                                r"within [\d.]+s of the AAAA answer; ::1: " + ALL_ON),
                Expect(OK, ALL_ATTEMPTS, ("-6",)))),
    case("aaaa-dropped-v4-relays", "the AAAA question is never answered, and 127.0.0.1 relays",
         lambda: Behaviour(relay=RelayPolicy.open()), host="mx.lab.test",
         dns=lambda: TypeFault(DUAL_STACK, rdtype="AAAA", silent=True),
         relay=Expect(CRITICAL, rf"{OPEN_N} of {N} relay attempts accepted \(127\.0\.0\.1: "
                                r"plain, .*\); "
                                r"IPv6 not tested: DNS look-up mx\.lab\.test AAAA")),
    # -- item 6: a tarpit is not a refusal -------------------------------------------------------
    case("tarpit-outside-rcpt", "an open relay that never answers RCPT TO for an outside "
         "recipient (the control is answered)", lambda: TarpitOutside(),
         relay=Expect(UNKNOWN, r"only 0 of 3 attempts could be played \(3 never answered within "
                               r"--command-timeout 1s\)",
                      (*TIMEOUT_1, "--tests", "plain,bang-path,upper-case"), timeout=8,
                      detail=r"^\[TIMEOUT\] plain: MAIL FROM:")),
    # -- item 7: STARTTLS that never gets going ----------------------------------------------------
    case("starttls-silent", "an open relay answering 220 to STARTTLS, then never starting the "
         "handshake", lambda: StartTLSSilence(),
         relay=(Expect(CRITICAL, r"2 of 2 relay attempts accepted",
                       ("--command-timeout", "2", "--tests", "plain,bang-path"), timeout=8,
                       detail=r"note: STARTTLS failed: TLS handshake with .* timed out; "
                              r"continuing without TLS"),
                Expect(UNKNOWN, r"--starttls require: STARTTLS failed: TLS handshake with .* "
                                r"timed out", ("--starttls", "require", *TIMEOUT_1)))),
    case("starttls-no-reply", "an open relay that never answers STARTTLS",
         lambda: StartTLSSilence(reply=False),
         relay=Expect(CRITICAL, r"2 of 2 relay attempts accepted",
                      ("--command-timeout", "2", "--tests", "plain,bang-path"), timeout=8,
                      detail=r"note: STARTTLS failed: no complete reply .* while waiting for the "
                             r"reply to STARTTLS; continuing without TLS")),
)
