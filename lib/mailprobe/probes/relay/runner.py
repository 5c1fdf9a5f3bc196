"""Plays relay attempts against one server address, keeping its replies in step with our commands.

Cost model: one connection is reused for consecutive attempts with the same greeting; each
attempt is ``RSET`` (when a transaction is open), ``MAIL FROM``, ``RCPT TO``, sent in one
round trip when the server offers PIPELINING. We reconnect when the greeting mode changes,
when the server drops us, and before the server's error limit (Postfix's default soft limit
is 10 errors per session, after which every reply is delayed by a second). The last batch of
a connection carries its ``QUIT``.

Replies in step: a reply is only taken for a command it can answer (a 220 never answers EHLO,
a 354 only DATA, an accepted RCPT cannot follow a refused MAIL), nothing the server sent may
be waiting unread when the next command goes out, and a connection that judged anything ends
with ``QUIT``, whose 221 closes the books: a reply too many shows up there at the latest. What
a connection judged stays provisional until it ends without such a symptom. On a symptom (or
a pipelined batch left unanswered) its results are thrown away and every attempt from then on
is played alone on its own connection, one command at a time; an attempt out of step even
then is an ERROR, never judged.

Safety: DATA is only ever sent with ``depth="data"`` or ``depth="deliver"``. At ``data`` the
connection is dropped as soon as the server answers 354, before any message text: nothing can
be delivered. At ``deliver`` an attempt accepted at RCPT gets one small labelled message
(:mod:`mailprobe.probes.relay.deliver`) whose recipient is the operator's own address (the
outside user and domain are the operator's then; attempts whose recipient is anything else
are never played at that depth).

Preambles (XCLIENT, XFORWARD, AUTH without a password) change what the server believes about
the session, so an attempt with one is played alone on a connection of its own; it is tried
only when the server offered the extension (and, for AUTH, the mechanism) in its reply to our
EHLO, else it is NOT APPLICABLE without a connection.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import socket
import time
from dataclasses import dataclass, field
from enum import Enum

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import (
    ConnectError,
    Disconnected,
    ProtocolError,
    Reply,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    TLSError,
    Transcript,
    can_answer,
    command_verb,
    greeting_name,
    ip_literal,
    parse_ehlo_extensions,
    printable,
)
from mailprobe.probes.relay.catalogue import (
    CONTROL,
    Greeting,
    Preamble,
    RelayAttempt,
    Targets,
)
from mailprobe.probes.relay.deliver import Delivery, relay_message
from mailprobe.probes.relay.verdict import (
    AttemptResult,
    Outcome,
    classify,
    classify_data,
    classify_message,
)

# Rejections we allow on one connection before opening a fresh one (Postfix: soft limit 10).
ERRORS_PER_CONNECTION = 8
# How long to wait, after a QUIT answered with something other than 221, for a further reply
# (which would show that the first one answered an earlier command).
QUIT_GRACE = 1.0
# Unasked greetings (220) skipped before the reply to EHLO/HELO, at most.
MAX_SKIPPED_GREETINGS = 2
# Why a connection could not even be tried from this host (nothing said about the server).
LOCAL_ERRNOS = {errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


class StartTLS(Enum):
    NEVER = "never"
    TRY = "try"
    REQUIRE = "require"


class Depth(Enum):
    RCPT = "rcpt"
    DATA = "data"
    DELIVER = "deliver"


# The address and name an XCLIENT/XFORWARD preamble claims for the client.
CLAIMED_ADDRESS = "127.0.0.1"
CLAIMED_NAME = "localhost"
# NTLM null session (MS02-011): a NEGOTIATE message, then an AUTHENTICATE message with empty
# LM/NT responses, domain, user and workstation (every security buffer empty, at offset 64).
NTLM_NEGOTIATE = base64.b64encode(
    b"NTLMSSP\x00\x01\x00\x00\x00" + (0x00000207).to_bytes(4, "little")
    + bytes(16)).decode()
NTLM_NULL_AUTHENTICATE = base64.b64encode(
    b"NTLMSSP\x00\x03\x00\x00\x00" + (bytes(4) + (64).to_bytes(4, "little")) * 6
    + (0x00000201).to_bytes(4, "little")).decode()


@dataclass
class RelayOptions:
    """Everything the runner needs to know about the target and the way to probe it."""

    address: str
    port: int
    targets: Targets
    helo_name: str
    source_address: str | None = None
    starttls: StartTLS = StartTLS.TRY
    depth: Depth = Depth.RCPT
    command_timeout: float = 20.0
    control: RelayAttempt = CONTROL  # the local recipient that must be accepted
    ptr_name: str = ""  # the PTR name of the address (Greeting.PTR_NAME), '' when none
    ptr_note: str = ""  # why there is no PTR name to try (when ptr_name is '')
    ptr_failure: str = ""  # the PTR look-up failed: helo-ptr-name is not judged
    deliver_to: str = ""  # --depth deliver: the operator's address (user@ext of targets)
    server: str = ""  # the server's name for the test message's text (-H)


class ServiceDown(Exception):
    """The mail service cannot be reached or gives no banner (CRITICAL)."""


class CannotReach(Exception):
    """This host cannot open a connection to the address at all (no route, no usable source
    address): nothing is known about the server."""


class ServerRefusesUs(Exception):
    """The banner is a 4xx/5xx: the server will not talk to this vantage point."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class TLSUnavailable(Exception):
    """--starttls require, and the server does not offer (or fails) STARTTLS."""


class OutOfStep(Exception):
    """The server's replies cannot be matched to the commands sent: a reply no command asked
    for, one that answers another command, or one that contradicts the reply before it; or
    (``unanswered``) a pipelined batch whose replies stopped coming."""

    def __init__(self, message: str, unanswered: bool = False) -> None:
        super().__init__(message)
        self.unanswered = unanswered


def is_local_failure(exc: ConnectError) -> bool:
    """Whether a failed connect says nothing about the server: this host has no route to it,
    or cannot use the source address (bind failed, wrong address family)."""
    cause = exc.__cause__
    if isinstance(cause, socket.gaierror):  # a source address of the other family
        return True
    return isinstance(cause, OSError) and cause.errno in LOCAL_ERRNOS


@dataclass
class RelayReport:
    """The whole run: banner, control, one result per attempt, and what it cost."""

    banner: Reply | None = None
    server_name: str = ""
    control: AttemptResult | None = None
    results: list[AttemptResult] = field(default_factory=list)
    connections: int = 0
    round_trips: int = 0
    tls: bool = False
    notes: list[str] = field(default_factory=list)
    extensions: dict[str, str] | None = None  # what the server offered to our first EHLO

    def note(self, text: str) -> None:
        """Add a note once (the same event on every connection is one note)."""
        if text not in self.notes:
            self.notes.append(text)


class RelayRunner:
    """Plays the control and then the attempts, in order, on as few connections as it can."""

    def __init__(self, options: RelayOptions, deadline: Deadline,
                 transcript: Transcript | None = None) -> None:
        self.options = options
        self.deadline = deadline
        self.transcript = transcript if transcript is not None else Transcript()
        self.report = RelayReport()
        self.session: SMTPSession | None = None
        self.session_greeting: Greeting | None = None
        self.session_errors = 0
        self.in_transaction = False
        self.tls_broken = False
        self.isolated = False  # replies went out of step: one attempt per connection from now on
        self.retried: set[str] = set()  # attempts replayed alone after a lost connection
        self.queue: list[RelayAttempt] = []  # not judged yet, in order
        self.judged: dict[str, AttemptResult] = {}
        self.pending: list[AttemptResult] = []  # judged on this connection, not yet committed
        self.waiting: RelayAttempt | None = None  # the attempt whose reply is being waited for
        self.partial: AttemptResult | None = None  # what it showed before that reply (DATA)
        self.last_reply: Reply | None = None  # the reply taken for the last command
        self.preamble_note = ""  # what the preamble of the attempt being played got
        self._order: dict[str, int] = {}

    # -- connections ------------------------------------------------------------------------
    def open(self) -> Reply:
        """Connect and read the banner; ServiceDown / CannotReach / ServerRefusesUs on failure."""
        self._drop()
        session = SMTPSession(
            self.options.address, self.options.port, deadline=self.deadline,
            source_address=self.options.source_address, transcript=self.transcript,
        )
        try:
            banner = session.connect()
        except ConnectError as exc:
            if is_local_failure(exc):
                raise CannotReach(str(exc)) from exc
            raise ServiceDown(str(exc)) from exc
        except SMTPTimeout as exc:
            if self.report.banner is not None and self.deadline.remaining() < 0.05:
                # it answered before: the check's budget ran out, the service is not down
                raise BudgetExhausted(exc.stage, self.deadline.budget) from exc
            waited = self.deadline.elapsed()
            raise ServiceDown(f"no banner from {self._where()} within {waited:.1f}s") from exc
        except (Disconnected, ProtocolError) as exc:
            raise ServiceDown(f"no usable banner from {self._where()}: {exc}") from exc
        finally:
            self.report.connections += 1
        if not banner.positive:
            session.quit()
            self.report.round_trips += session.round_trips
            raise ServerRefusesUs(banner)
        session.step_timeout = self.options.command_timeout
        self.session = session
        self.session_greeting = None
        self.session_errors = 0
        self.in_transaction = False
        self.last_reply = banner
        if self.report.banner is None:
            self.report.banner = banner
            self.report.server_name = greeting_name(banner)
        return banner

    def close(self, polite: bool = True) -> None:
        """End the session: with QUIT when ``polite``, else just drop the line.

        A connection that judged something ends with QUIT and its reply: the last check that
        the replies were in step (OutOfStep when they were not). Either way, what it judged is
        committed unless it was out of step.
        """
        session = self.session
        if session is None:
            return
        if polite and self.pending and session.connected:
            self.waiting, self.partial = None, None
            self._nothing_unasked("before QUIT")
            stage = "waiting for the reply to QUIT"
            try:
                reply: Reply | None = session.command("QUIT", stage)
            except (Disconnected, SMTPTimeout, ProtocolError):
                reply = None  # no reply to QUIT: nothing was seen out of step
            if reply is not None:
                self._check_quit_reply(reply)
        elif polite:
            session.quit()
        self._drop()

    def shutdown(self) -> None:
        """Drop the connection, keeping what it judged (for callers giving up on the run)."""
        self._drop()

    def _drop(self) -> None:
        """Close the socket and commit what this connection judged."""
        session = self.session
        if session is not None:
            session.close()
            self.report.round_trips += session.round_trips
            self.session = None
        for result in self.pending:
            self.judged[result.attempt.id] = result
        self.pending = []

    def _reusable(self, greeting: Greeting) -> bool:
        return (self.session is not None and self.session.connected and not self.isolated
                and self.session_greeting == greeting
                and self.session_errors < ERRORS_PER_CONNECTION)

    def _connect(self, greeting: Greeting) -> None:
        """Open a connection greeted the way ``greeting`` asks (and STARTTLS when offered)."""
        self.open()
        self.session_greeting = greeting
        if greeting is Greeting.NONE:
            return
        self._hello(greeting)
        if self.options.starttls is not StartTLS.NEVER and greeting is not Greeting.HELO:
            self._starttls(greeting)
        session = self.session
        if greeting is Greeting.EHLO and self.report.extensions is None and session is not None:
            self.report.extensions = dict(session.esmtp)

    def _hello(self, greeting: Greeting) -> Reply:
        session = self.session
        assert session is not None
        name = {
            Greeting.EHLO: self.options.helo_name,
            Greeting.HELO: self.options.helo_name,
            Greeting.SERVER_NAME: self.report.server_name or self.options.targets.dom,
            Greeting.LOCALHOST: "localhost",
            Greeting.SERVER_IP: ip_literal(self.options.address),
            Greeting.LOCALHOST_LOCALDOMAIN: "localhost.localdomain",
            Greeting.PTR_NAME: self.options.ptr_name,
            Greeting.MAIL_DOMAIN: self.options.targets.dom,
        }[greeting]
        helo_only = greeting is Greeting.HELO
        self._nothing_unasked("before the greeting", greeting_allowed=True)
        reply = session.hello(name, helo_only=helo_only)
        for _ in range(MAX_SKIPPED_GREETINGS):
            if reply.code != 220:
                break
            # a greeting nobody asked for cannot answer EHLO/HELO, whose reply comes next
            self._skipped_greeting(reply)
            reply = session.read_reply("waiting for the reply to the greeting")
            if not helo_only and reply.positive:
                session.esmtp = parse_ehlo_extensions(reply)
                session.greeting_verb = "EHLO"
            elif not helo_only and not reply.transient and reply.code != 220:
                reply = session.hello(name, helo_only=True)
        verb = "HELO" if helo_only or session.greeting_verb == "HELO" else "EHLO"
        if not can_answer(verb, reply):
            raise OutOfStep(f"{reply} cannot answer {verb}")
        self.last_reply = reply
        if not reply.positive:
            self.session_errors += 1
        return reply

    def _skipped_greeting(self, reply: Reply) -> None:
        """Note a 220 nobody asked for (a second banner, or one after STARTTLS)."""
        session = self.session
        where = "after STARTTLS" if session is not None and session.tls else "after its banner"
        self.report.note(f"the server sent an unasked greeting {where} ({reply}); skipped it: "
                         "a 220 cannot answer EHLO/HELO")

    def _starttls(self, greeting: Greeting) -> None:
        """STARTTLS when offered. With ``--starttls try`` anything going wrong on the way (a
        refusal, a failed or silent handshake, replies out of step after it) means going on
        in plain text, on a fresh connection when the old one is spoiled."""
        session = self.session
        assert session is not None
        offered = "STARTTLS" in session.esmtp
        if not offered or self.tls_broken:
            if self.options.starttls is StartTLS.REQUIRE:
                raise TLSUnavailable("the server does not offer STARTTLS"
                                     if not offered else "STARTTLS failed earlier")
            return
        try:
            reply = session.starttls()
            if not reply.positive:
                if self.options.starttls is StartTLS.REQUIRE:
                    raise TLSUnavailable(f"STARTTLS refused: {reply}")
                self.tls_broken = True
                self.report.note(f"STARTTLS refused ({reply}); continuing without TLS")
                return
            self.last_reply = reply
            self._hello(greeting)
        except (SMTPError, OutOfStep) as exc:
            if isinstance(exc, SMTPTimeout) and self.deadline.remaining() < 0.05:
                raise BudgetExhausted(exc.stage, self.deadline.budget) from exc
            failure = str(exc) if isinstance(exc, TLSError) else f"STARTTLS failed: {exc}"
            if self.options.starttls is StartTLS.REQUIRE:
                raise TLSUnavailable(failure) from exc
            self.tls_broken = True
            self.report.note(f"{failure}; continuing without TLS")
            self._connect(greeting)
            return
        self.report.tls = True

    # -- the series ------------------------------------------------------------------------
    def run(self, attempts: list[RelayAttempt]) -> RelayReport:
        """The control, then every attempt; stops early only when the budget is spent.

        Results keep the order of ``attempts``. Raises ServiceDown / CannotReach /
        ServerRefusesUs / TLSUnavailable / BudgetExhausted only while the control is being
        played.
        """
        control = self.options.control
        self.queue = [control, *attempts]
        self._order = {a.id: index for index, a in enumerate(self.queue)}
        self.judged = {}
        try:
            while self.queue or self.session is not None:
                try:
                    if self.queue:
                        self._play_next()
                    else:
                        self.close()  # the last connection: its QUIT decides what it judged
                except OutOfStep as exc:
                    self._out_of_step(exc)
                except (Disconnected, ProtocolError, SMTPTimeout) as exc:
                    self._lost(exc)
        except (ServiceDown, CannotReach, ServerRefusesUs, TLSUnavailable) as exc:
            self._drop()
            if control.id not in self.judged:
                raise
            reason = (f"--starttls require: {exc}" if isinstance(exc, TLSUnavailable)
                      else f"server unreachable mid-series: {exc}")
            self._give_up(Outcome.ERROR, reason)
        except BudgetExhausted as exc:
            self._drop()  # what was judged stands
            if control.id not in self.judged:
                raise
            self._give_up(Outcome.NOT_RUN, str(exc))
        finally:
            self._drop()
        self.report.control = self.judged[control.id]
        self.report.results = [self.judged[a.id] for a in attempts]
        return self.report

    def _play_next(self) -> None:
        """Play the head of the queue (with what can share its round trip)."""
        head = self.queue[0]
        if head.greeting is Greeting.PTR_NAME and self.options.ptr_failure:
            self._settle(head, Outcome.ERROR, self.options.ptr_failure)
            return
        inapplicable = self._inapplicable(head)
        if inapplicable:
            self._settle(head, Outcome.NOT_APPLICABLE, inapplicable)
            return
        if self.session is not None and (head.preamble is not None
                                         or not self._reusable(head.greeting)):
            self.waiting, self.partial = None, None
            self.close()
        self.waiting, self.partial = head, None
        self.preamble_note = ""
        if self.session is None:
            self._connect(head.greeting)
            if head.preamble is not None:
                self.session_greeting = None  # what follows the preamble is not reusable
                refusal = self._preamble(head)
                if refusal is not None:
                    self._pend(refusal)
                    self.close()
                    return
        batch, quit_after = self._plan()
        self._play_batch(batch, quit_after)
        self.waiting, self.partial = None, None
        if self.isolated:
            self.close()  # one attempt per connection, checked by its QUIT

    def _plan(self) -> tuple[list[RelayAttempt], bool]:
        """The attempts to send in one pipelined batch on the current session, and whether
        the batch ends the connection (then it carries the QUIT).

        Consecutive attempts with the same greeting share the batch, as many as the error
        budget of the connection allows (a refused RCPT costs one error, a new unusual sender
        may cost one more); attempts with the same sender share one MAIL transaction.
        """
        queue = self.queue
        head = queue[0]
        session = self.session
        assert session is not None
        pipelining = "PIPELINING" in session.esmtp and not self.isolated
        if head.preamble is not None:
            return [head], True
        if (head is self.options.control or head.id in self.retried or not pipelining
                or self.options.depth is not Depth.RCPT):
            return [head], False
        usual_sender = self.options.control.mail_command(self.options.targets)
        budget = ERRORS_PER_CONNECTION - self.session_errors
        batch: list[RelayAttempt] = []
        cost, sender, spent = 0, None, False
        for attempt in queue:
            if attempt.greeting is not head.greeting or attempt.id in self.retried \
                    or attempt.preamble is not None:  # a preamble needs its own connection
                break
            mail = attempt.mail_command(self.options.targets)
            extra = 1 + (mail != sender and mail != usual_sender)
            if batch and cost + extra > budget:
                spent = True
                break
            batch.append(attempt)
            cost, sender = cost + extra, mail
        rest = queue[len(batch):]
        # the connection ends after the batch when the greeting changes, or when it will have
        # used its error budget even if only the RCPTs are refused (as a closed server does)
        used_up = spent and self.session_errors + len(batch) >= ERRORS_PER_CONNECTION
        ends = (used_up or not rest or rest[0].greeting is not head.greeting
                or rest[0].preamble is not None)
        return batch, ends

    def _play_batch(self, batch: list[RelayAttempt], quit_after: bool) -> None:
        """Send the batch's transactions and judge each attempt as its RCPT reply arrives.

        Results go to :attr:`pending` as they are judged, so a failure part-way keeps them.
        """
        session = self.session
        assert session is not None
        targets = self.options.targets
        steps: list[tuple[str, RelayAttempt | None]] = []  # (command line, attempt it serves)
        sender = None
        for attempt in batch:
            mail = attempt.mail_command(targets)
            if mail != sender:
                if self.in_transaction or sender is not None:
                    steps.append(("RSET", attempt))
                steps.append((mail, attempt))
                sender = mail
            steps.append((attempt.rcpt_command(targets), attempt))
        if quit_after:
            steps.append(("QUIT", None))
        pipelined = (len(steps) > 1 and "PIPELINING" in session.esmtp and not self.isolated)
        stage = "waiting for the replies to a relay attempt"
        if pipelined:
            self._nothing_unasked("before a batch of commands")
            session.send_batch([line for line, _ in steps], stage)
        mail_reply: Reply | None = None
        for line, serves in steps:
            if serves is None:  # the QUIT ending the connection
                self._quit_in_batch(pipelined)
                return
            attempt = serves
            self.waiting, self.partial = attempt, None
            kind = command_verb(line)
            if kind == "RCPT" and not pipelined and mail_reply is not None \
                    and not mail_reply.positive:
                self._pend(self._judge(attempt, mail_reply, None))  # never sent
                continue
            if pipelined:
                try:
                    reply = session.read_reply(stage)
                except SMTPTimeout as exc:
                    if self.deadline.remaining() < 0.05:
                        raise
                    # a batch left unanswered: a tarpit, or a server dropping pipelined
                    # commands; playing command by command tells them apart
                    raise OutOfStep(f"no reply within {self.options.command_timeout:g}s to "
                                    f"pipelined commands", unanswered=True) from exc
            else:
                self._nothing_unasked(f"before {kind}")
                reply = session.command(line, stage)
            if reply.code == 421:  # "service closing": what is left was not judged
                raise Disconnected(f"the server closed the session: {reply}", stage)
            self._check_in_step(line, reply, mail_reply)
            self.last_reply = reply
            if reply.code >= 400:
                self.session_errors += 1
            if kind == "RSET":
                continue
            if kind == "MAIL":
                mail_reply = reply
                self.in_transaction = reply.positive
                continue
            assert mail_reply is not None
            rcpt_reply = reply if mail_reply.positive else None  # else a "503 need MAIL"
            result = self._judge(attempt, mail_reply, rcpt_reply)
            if result.outcome is Outcome.RELAYED and self.options.depth is not Depth.RCPT \
                    and attempt is not self.options.control:
                self.partial = result
                if self.options.depth is Depth.DATA:
                    self._probe_data(result)
                else:
                    self._deliver(result)
                continue
            self._pend(result)

    def _check_in_step(self, line: str, reply: Reply, mail_reply: Reply | None) -> None:
        """OutOfStep when ``reply`` cannot be the reply to ``line``."""
        kind = command_verb(line)
        if not can_answer(line, reply):
            raise OutOfStep(f"{reply} cannot answer {kind}")
        if kind == "RSET" and not reply.positive:
            raise OutOfStep(f"RSET was refused ({reply})")
        if kind == "RCPT" and mail_reply is not None:
            if not mail_reply.positive and reply.positive:
                raise OutOfStep(f"RCPT TO accepted ({reply}) after MAIL FROM was refused "
                                f"({mail_reply})")
            if mail_reply.positive and reply.code == 503:
                raise OutOfStep(f"RCPT TO answered {reply} (bad sequence) after MAIL FROM was "
                                f"accepted")

    def _probe_data(self, result: AttemptResult) -> None:
        """Send DATA after an accepted outside RCPT; drop the line at 354 (nothing delivered)."""
        session = self.session
        assert session is not None
        self._nothing_unasked("before DATA")
        reply = session.command("DATA", "waiting for the reply to DATA")
        if not can_answer("DATA", reply):
            raise OutOfStep(f"{reply} cannot answer DATA")
        result.data_reply = reply
        result.outcome, result.detail = classify_data(reply)
        self._pend(result)
        self.partial = None
        if reply.intermediate:
            self.transcript.add("**", "dropping the connection at 354: no message is sent")
            self._drop()
        else:
            self.last_reply = reply
            self.session_errors += 1

    def _deliver(self, result: AttemptResult) -> None:
        """--depth deliver: after an accepted RCPT, one labelled message to the operator's
        address; the mailbox later tells whether it arrived (:mod:`.deliver`)."""
        session = self.session
        assert session is not None
        options = self.options
        self._nothing_unasked("before DATA")
        reply = session.command("DATA", "waiting for the reply to DATA")
        if not can_answer("DATA", reply):
            raise OutOfStep(f"{reply} cannot answer DATA")
        result.data_reply = reply
        if reply.code != 354:
            result.outcome, result.detail = classify_data(reply)
            self.last_reply = reply
            self.session_errors += 1
            self.in_transaction = False
            self._pend(result)
            self.partial = None
            return
        message = relay_message(result.attempt, options.targets, options.deliver_to,
                                options.server or options.address)
        session.send_raw(message.data(), "sending the test message")
        session.round_trips += 1
        end = session.read_reply("waiting for the reply to the test message")
        sent_at = time.monotonic()
        if end.code == 354 or end.intermediate:
            raise OutOfStep(f"{end} cannot answer the end of the message")
        self.last_reply = end
        self.in_transaction = False
        result.data_reply = end
        result.outcome, result.detail = classify_message(end)
        if end.positive:
            result.delivery = Delivery(message.token, sent_at)
        else:
            self.session_errors += 1
        self._pend(result)
        self.partial = None

    def _inapplicable(self, attempt: RelayAttempt) -> str:
        """Why ``attempt`` cannot be tried against this server ('' when it can)."""
        if attempt.greeting is Greeting.PTR_NAME:
            name = self.options.ptr_name
            if not name:
                return self.options.ptr_note or "no PTR name to greet with"
            if name.lower() == self.report.server_name.lower().rstrip("."):
                return f"the PTR name {name} is the banner's name (helo-server-name)"
        preamble = attempt.preamble
        offered = self.report.extensions
        if preamble is None or offered is None:
            return ""
        if preamble.extension not in offered:
            return f"{preamble.extension} not offered"
        if preamble.mechanism and preamble.mechanism not in offered["AUTH"].upper().split():
            return f"AUTH {preamble.mechanism} not offered"
        return ""

    def _preamble(self, attempt: RelayAttempt) -> AttemptResult | None:
        """Send the attempt's preamble on the fresh connection. Returns the result when the
        server refused it (XCLIENT/XFORWARD: no relay through it), else None; a failed AUTH is
        noted and the attempt goes on (a relay after a failed AUTH is a hole too)."""
        session = self.session
        assert session is not None and attempt.preamble is not None
        preamble = attempt.preamble
        if preamble.extension not in session.esmtp:  # offered to the first EHLO only
            return self._result(attempt, Outcome.NOT_APPLICABLE,
                                detail=f"{preamble.extension} not offered on this connection")
        stage = f"waiting for the reply to {preamble.extension}"
        self._nothing_unasked(f"before {preamble.extension}")
        if preamble in (Preamble.XCLIENT, Preamble.XFORWARD):
            line = f"{preamble.extension} NAME={CLAIMED_NAME} ADDR={CLAIMED_ADDRESS}"
            reply = session.command(line, stage)
            if reply.code == 421:
                raise Disconnected(f"the server closed the session: {reply}", stage)
            if not reply.positive:
                self.session_errors += 1
                return self._result(attempt, Outcome.REFUSED, rcpt_reply=reply,
                                    detail=f"{line} refused")
            self.preamble_note = f"{line} -> {reply}"
            self.last_reply = reply
            if preamble is Preamble.XCLIENT and reply.code == 220:  # a new session: greet
                self._hello(Greeting.EHLO)
            return None
        reply = self._auth(preamble, stage)
        if reply.code == 421:
            raise Disconnected(f"the server closed the session: {reply}", stage)
        if not reply.positive:
            self.session_errors += 1
        self.last_reply = reply
        self.preamble_note = f"AUTH {preamble.mechanism} without a password -> {reply}"
        return None

    def _auth(self, preamble: Preamble, stage: str) -> Reply:
        """The AUTH exchange of ``preamble`` (never a password); the server's last reply."""
        session = self.session
        assert session is not None
        if preamble is Preamble.AUTH_PLAIN_NULL:
            return session.command("AUTH PLAIN " + base64.b64encode(b"\0\0").decode(), stage)
        if preamble is Preamble.AUTH_ANONYMOUS:
            return session.command("AUTH ANONYMOUS " + base64.b64encode(b"mailprobe").decode(),
                                   stage)
        if preamble is Preamble.AUTH_LOGIN_NULL:
            reply = session.command("AUTH LOGIN", stage)
            for _ in range(2):  # user name, password: both empty
                if reply.code != 334:
                    break
                reply = session.command("", stage)  # an empty SASL response
            return reply if reply.code != 334 else session.command("*", stage)
        reply = session.command("AUTH NTLM " + NTLM_NEGOTIATE, stage)
        if reply.code == 334:
            reply = session.command(NTLM_NULL_AUTHENTICATE, stage)
        return reply if reply.code != 334 else session.command("*", stage)

    def _quit_in_batch(self, pipelined: bool) -> None:
        """Read the reply to the QUIT that ended a batch (send it first when not pipelined)."""
        session = self.session
        assert session is not None
        self.waiting, self.partial = None, None
        stage = "waiting for the reply to QUIT"
        try:
            if pipelined:
                reply = session.read_reply(stage)
            else:
                self._nothing_unasked("before QUIT")
                reply = session.command("QUIT", stage)
        except (Disconnected, SMTPTimeout, ProtocolError):
            self._drop()  # no reply to QUIT: nothing was seen out of step
            return
        self._check_quit_reply(reply)
        self._drop()

    def _check_quit_reply(self, reply: Reply) -> None:
        """221 ends the connection in step. Any other reply may be a sloppy server's answer to
        QUIT, or the reply to an earlier command (a reply too many before it): in step only
        if nothing follows it."""
        if reply.code == 221:
            return
        session = self.session
        assert session is not None
        saved = session.step_timeout
        session.step_timeout = min(self.options.command_timeout, QUIT_GRACE)
        try:
            more = session.read_reply("waiting to see whether the reply to QUIT was the last")
        except (Disconnected, SMTPTimeout):
            return  # one reply to one QUIT, whatever it said
        except ProtocolError as exc:
            raise OutOfStep(f"QUIT answered {reply}, then more: {exc}") from exc
        finally:
            session.step_timeout = saved
        raise OutOfStep(f"QUIT answered {reply}, then {more}: a reply too many came earlier")

    def _nothing_unasked(self, stage: str, greeting_allowed: bool = False) -> None:
        """Before a command goes out: the server must not have said anything unasked.

        With ``greeting_allowed`` (before EHLO/HELO), an unasked 220 is skipped with a note.
        Played command by command (after a symptom), unasked replies that mean the same as
        the reply taken for the last command (both accepted, or both refused) are set aside:
        whichever of them answered, the judgement is the same. Otherwise OutOfStep.
        """
        session = self.session
        assert session is not None
        while session.unread():
            pending = session.unread()
            if greeting_allowed and pending[:3] == b"220":
                # a 220 nobody asked for (a second banner, one after STARTTLS), whole or still
                # arriving: it cannot answer the EHLO/HELO about to go out; skip it
                self._skipped_greeting(session.read_reply("reading an unasked greeting"))
                continue
            if not self.isolated or b"\n" not in pending:
                first = printable(pending.split(b"\n", 1)[0].rstrip(b"\r"), 80)
                raise OutOfStep(f"the server sent {first!r} {stage}, unasked")
            extra = session.read_reply(f"reading an unasked reply {stage}")
            last = self.last_reply
            if last is None or extra.code // 100 != last.code // 100:
                raise OutOfStep(f"an unasked reply {extra} after {last}")
            self.report.note(f"the server sent unasked replies ({extra} after {last}); set "
                             "aside, as they mean the same")

    # -- outcomes --------------------------------------------------------------------------
    def _pend(self, result: AttemptResult) -> None:
        """Judged on this connection: committed when it ends in step."""
        self.pending.append(result)
        if result.attempt in self.queue:
            self.queue.remove(result.attempt)

    def _judge(self, attempt: RelayAttempt, mail_reply: Reply,
               rcpt_reply: Reply | None) -> AttemptResult:
        outcome, detail = classify(mail_reply, rcpt_reply)
        if attempt.preamble is not None and self.preamble_note:
            detail = "; ".join(part for part in (f"after {self.preamble_note}", detail) if part)
        return self._result(attempt, outcome, attempt.mail_command(self.options.targets),
                            attempt.rcpt_command(self.options.targets), mail_reply, rcpt_reply,
                            detail)

    def _out_of_step(self, exc: OutOfStep) -> None:
        """Throw away what the connection judged; replay it alone, command by command. An
        attempt out of step even then is an ERROR."""
        suspects = [result.attempt for result in self.pending]
        if self.waiting is not None and self.waiting not in suspects:
            suspects.append(self.waiting)
        self.pending = []
        self.waiting, self.partial = None, None
        self._drop()
        if not self.isolated:
            self.isolated = True
            what = ("a pipelined batch went unanswered (a tarpit, or a server that drops "
                    "pipelined commands)" if exc.unanswered
                    else "the server's replies got out of step with the commands")
            self.report.note(f"{what} ({exc}); what that connection showed was not judged, "
                             "and every attempt from then on was played alone, one command at "
                             "a time")
            self.queue = sorted({*self.queue, *suspects}, key=lambda a: self._order[a.id])
            return
        for attempt in suspects or self.queue[:1]:
            self._settle(attempt, Outcome.ERROR, f"replies out of step with the commands: {exc}")

    def _lost(self, exc: SMTPError) -> None:
        """The connection was lost, or a command went unanswered. What it judged stands; the
        attempt waiting for a reply is replayed once, alone, on a fresh connection (a
        timeout makes it TIMEOUT: not judged)."""
        waiting, partial = self.waiting, self.partial
        self.waiting, self.partial = None, None
        self._drop()
        if waiting is None:  # the reply to QUIT: nothing waited for it
            return
        if isinstance(exc, SMTPTimeout):
            if self.deadline.remaining() < 0.05:  # the check's budget, not this command
                self.waiting, self.partial = waiting, partial
                raise BudgetExhausted(exc.stage, self.deadline.budget) from exc
            self._settle(waiting, Outcome.TIMEOUT,
                         f"no answer within --command-timeout {self.options.command_timeout:g}s "
                         f"while {exc.stage}: not judged", partial)
        elif waiting.id in self.retried:
            self._settle(waiting, Outcome.ERROR, str(exc), partial)
        else:
            self.retried.add(waiting.id)

    def _give_up(self, outcome: Outcome, reason: str) -> None:
        """Everything still queued ends as ``outcome`` (the budget is spent, the server gone)."""
        waiting, partial = self.waiting, self.partial
        for attempt in list(self.queue):
            self._settle(attempt, outcome, reason, partial if attempt is waiting else None)

    def _settle(self, attempt: RelayAttempt, outcome: Outcome, detail: str,
                partial: AttemptResult | None = None) -> None:
        """Record an attempt that could not be judged (with what it showed before, if any)."""
        if partial is not None:
            result = dataclasses.replace(
                partial, outcome=outcome,
                detail=f"RCPT TO accepted, then DATA got no reply: {detail}")
        elif outcome is Outcome.TIMEOUT:  # sent, never answered: show what was sent
            targets = self.options.targets
            result = self._result(attempt, outcome, attempt.mail_command(targets),
                                  attempt.rcpt_command(targets), detail=detail)
        else:
            result = self._result(attempt, outcome, detail=detail)
        self.judged[attempt.id] = result
        if attempt in self.queue:
            self.queue.remove(attempt)

    def _result(self, attempt: RelayAttempt, outcome: Outcome, mail: str = "", rcpt: str = "",
                mail_reply: Reply | None = None, rcpt_reply: Reply | None = None,
                detail: str = "") -> AttemptResult:
        return AttemptResult(attempt, outcome, mail, rcpt, mail_reply, rcpt_reply, None, detail)

    def _where(self) -> str:
        return f"{self.options.address} port {self.options.port}"
