"""Plays relay attempts against one server, reusing connections where the server allows.

Cost model: one connection is reused for consecutive attempts with the same greeting; each
attempt is ``RSET`` (when a transaction is open), ``MAIL FROM``, ``RCPT TO``, sent in one
round trip when the server offers PIPELINING. We reconnect when the greeting mode changes,
when the server drops us, and before the server's error limit (Postfix's default soft limit
is 10 errors per session, after which every reply is delayed by a second).

Safety: DATA is only ever sent with ``depth="data"``, and then the connection is dropped as
soon as the server answers 354, before any message text: nothing can be delivered.
"""

from __future__ import annotations

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
    greeting_name,
    ip_literal,
)
from mailprobe.probes.relay.catalogue import CONTROL, Greeting, RelayAttempt, Targets
from mailprobe.probes.relay.verdict import AttemptResult, Outcome, classify, classify_data

# Rejections we allow on one connection before opening a fresh one (Postfix: soft limit 10).
ERRORS_PER_CONNECTION = 8


class StartTLS(Enum):
    NEVER = "never"
    TRY = "try"
    REQUIRE = "require"


class Depth(Enum):
    RCPT = "rcpt"
    DATA = "data"


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


class ServiceDown(Exception):
    """The mail service cannot be reached or gives no banner (CRITICAL)."""


class ServerRefusesUs(Exception):
    """The banner is a 4xx/5xx: the server will not talk to this vantage point."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class TLSUnavailable(Exception):
    """--starttls require, and the server does not offer (or fails) STARTTLS."""


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
        self.pipelining_broken = False
        self.retried: set[str] = set()  # attempts replayed alone after a lost connection

    # -- connections ------------------------------------------------------------------------
    def open(self) -> Reply:
        """Connect and read the banner; ServiceDown / ServerRefusesUs when that fails."""
        self.close()
        session = SMTPSession(
            self.options.address, self.options.port, deadline=self.deadline,
            source_address=self.options.source_address, transcript=self.transcript,
        )
        try:
            banner = session.connect()
        except ConnectError as exc:
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
        if self.report.banner is None:
            self.report.banner = banner
            self.report.server_name = greeting_name(banner)
        return banner

    def close(self, polite: bool = True) -> None:
        """End the session: with QUIT when ``polite``, else just drop the line."""
        if self.session is not None:
            if polite:
                self.session.quit()
            else:
                self.session.close()
            self.report.round_trips += self.session.round_trips
            self.session = None

    def greet(self, greeting: Greeting) -> None:
        """Open a connection greeted the way ``greeting`` asks (reusing the current one)."""
        if (self.session is not None and self.session.connected
                and self.session_greeting == greeting
                and self.session_errors < ERRORS_PER_CONNECTION):
            return
        self.open()
        assert self.session is not None
        self.session_greeting = greeting
        if greeting is Greeting.NONE:
            return
        self._hello(greeting)
        if self.options.starttls is not StartTLS.NEVER and greeting is not Greeting.HELO:
            self._starttls(greeting)

    def _hello(self, greeting: Greeting) -> Reply:
        assert self.session is not None
        name = {
            Greeting.EHLO: self.options.helo_name,
            Greeting.HELO: self.options.helo_name,
            Greeting.SERVER_NAME: self.report.server_name or self.options.targets.dom,
            Greeting.LOCALHOST: "localhost",
            Greeting.SERVER_IP: ip_literal(self.options.address),
        }[greeting]
        reply = self.session.hello(name, helo_only=greeting is Greeting.HELO)
        if not reply.positive:
            self.session_errors += 1
        return reply

    def _starttls(self, greeting: Greeting) -> None:
        assert self.session is not None
        offered = "STARTTLS" in self.session.esmtp
        if not offered or self.tls_broken:
            if self.options.starttls is StartTLS.REQUIRE:
                raise TLSUnavailable("the server does not offer STARTTLS"
                                     if not offered else "STARTTLS failed earlier")
            return
        try:
            reply = self.session.starttls()
        except TLSError as exc:
            if self.options.starttls is StartTLS.REQUIRE:
                raise TLSUnavailable(str(exc)) from exc
            self.tls_broken = True
            self.report.notes.append(f"{exc}; continuing without TLS")
            self.open()
            self._hello(greeting)
            return
        if not reply.positive:
            if self.options.starttls is StartTLS.REQUIRE:
                raise TLSUnavailable(f"STARTTLS refused: {reply}")
            self.tls_broken = True
            self.report.notes.append(f"STARTTLS refused ({reply}); continuing without TLS")
            return
        self.report.tls = True
        self._hello(greeting)

    # -- attempts --------------------------------------------------------------------------
    def run(self, attempts: list[RelayAttempt]) -> RelayReport:
        """The control, then every attempt; stops early only when the budget is spent.

        Results keep the order of ``attempts``. Raises ServiceDown / ServerRefusesUs /
        TLSUnavailable / BudgetExhausted only while the control is being played.
        """
        control = self.options.control
        queue = [control, *attempts]
        judged: dict[str, AttemptResult] = {}
        try:
            while queue:
                try:
                    self._play_next(queue, judged)
                except (ServiceDown, ServerRefusesUs) as exc:
                    if control.id not in judged:
                        raise
                    reason = f"server unreachable mid-series: {exc}"
                    judged.update((a.id, self._result(a, Outcome.ERROR, detail=reason))
                                  for a in queue)
                    break
                except BudgetExhausted as exc:
                    if control.id not in judged:
                        raise
                    judged.update((a.id, self._result(a, Outcome.NOT_RUN, detail=str(exc)))
                                  for a in queue)
                    break
        finally:
            self.close()
        self.report.control = judged[control.id]
        self.report.results = [judged[a.id] for a in attempts]
        return self.report

    def _play_next(self, queue: list[RelayAttempt], judged: dict[str, AttemptResult]) -> None:
        """Play the head of ``queue`` (with what can share its round trip); judge what answered.

        A lost connection is retried once per attempt on a fresh one, then the attempt is an
        error; a command timeout makes the attempt waiting for its reply a TIMEOUT.
        """
        head = queue[0]
        played: list[AttemptResult] = []
        try:
            self.greet(head.greeting)
            self._play_batch(self._plan(queue), played)
            failure: SMTPError | None = None
        except (Disconnected, ProtocolError, SMTPTimeout) as exc:
            failure = exc
        for result in played:
            judged[result.attempt.id] = result
            queue.remove(result.attempt)
        if failure is None:
            return
        self.close(polite=False)
        waiting = queue[0]
        if isinstance(failure, SMTPTimeout):
            if self.deadline.remaining() < 0.05:  # the check's budget, not this command
                raise BudgetExhausted(failure.stage, self.deadline.budget) from failure
            judged[waiting.id] = self._result(waiting, Outcome.TIMEOUT, detail=str(failure))
            queue.pop(0)
        elif waiting.id in self.retried:
            judged[waiting.id] = self._result(waiting, Outcome.ERROR, detail=str(failure))
            queue.pop(0)
        else:
            self.retried.add(waiting.id)  # replayed alone on a fresh connection

    def _plan(self, queue: list[RelayAttempt]) -> list[RelayAttempt]:
        """The attempts to send in one pipelined batch on the current session.

        Consecutive attempts with the same greeting share the batch, as many as the error
        budget of the connection allows (a refused RCPT costs one error, a new unusual sender
        may cost one more); attempts with the same sender share one MAIL transaction.
        """
        head = queue[0]
        session = self.session
        assert session is not None
        if (head is self.options.control or head.id in self.retried
                or self.pipelining_broken or "PIPELINING" not in session.esmtp
                or self.options.depth is Depth.DATA):
            return [head]
        usual_sender = self.options.control.mail_command(self.options.targets)
        budget = ERRORS_PER_CONNECTION - self.session_errors
        batch: list[RelayAttempt] = []
        cost, sender = 0, None
        for attempt in queue:
            if attempt.greeting is not head.greeting or attempt.id in self.retried:
                break
            mail = attempt.mail_command(self.options.targets)
            extra = 1 + (mail != sender and mail != usual_sender)
            if batch and cost + extra > budget:
                break
            batch.append(attempt)
            cost, sender = cost + extra, mail
        return batch

    def _play_batch(self, batch: list[RelayAttempt], played: list[AttemptResult]) -> None:
        """Send the batch's transactions and judge each attempt as its RCPT reply arrives.

        Results go to ``played`` as they are judged, so a failure part-way keeps them.
        """
        session = self.session
        assert session is not None
        targets = self.options.targets
        steps: list[tuple[str, RelayAttempt]] = []  # (command line, attempt it serves)
        sender = None
        for attempt in batch:
            mail = attempt.mail_command(targets)
            if mail != sender:
                if self.in_transaction or sender is not None:
                    steps.append(("RSET", attempt))
                steps.append((mail, attempt))
                sender = mail
            steps.append((attempt.rcpt_command(targets), attempt))
        pipelined = len(steps) > 1 and "PIPELINING" in session.esmtp and not self.pipelining_broken
        stage = "waiting for the replies to a relay attempt"
        if pipelined:
            session.send_batch([line for line, _ in steps], stage)
        mail_reply: Reply | None = None
        for line, attempt in steps:
            kind = line.split(" ")[0].split(":")[0].upper()
            if kind == "RCPT" and not pipelined and mail_reply is not None \
                    and not mail_reply.positive:
                played.append(self._judge(attempt, mail_reply, None))  # never sent
                continue
            reply = session.read_reply(stage) if pipelined else session.command(line)
            if reply.code == 421:  # "service closing": what is left was not judged
                raise Disconnected(f"the server closed the session: {reply}", stage)
            if reply.code >= 400:
                self.session_errors += 1
            if kind == "RSET":
                if not reply.positive:
                    self._pipelining_is_broken(reply)
                continue
            if kind == "MAIL":
                mail_reply = reply
                self.in_transaction = reply.positive
                continue
            assert mail_reply is not None
            if not mail_reply.positive and reply.positive:
                self._pipelining_is_broken(reply)
            rcpt_reply = reply if mail_reply.positive else None  # else a "503 need MAIL"
            result = self._judge(attempt, mail_reply, rcpt_reply)
            played.append(result)
            if result.outcome is Outcome.RELAYED and self.options.depth is Depth.DATA \
                    and attempt is not self.options.control:
                self._probe_data(result)

    def _judge(self, attempt: RelayAttempt, mail_reply: Reply,
               rcpt_reply: Reply | None) -> AttemptResult:
        outcome, detail = classify(mail_reply, rcpt_reply)
        return self._result(attempt, outcome, attempt.mail_command(self.options.targets),
                            attempt.rcpt_command(self.options.targets), mail_reply, rcpt_reply,
                            detail)

    def _pipelining_is_broken(self, reply: Reply) -> None:
        """Replies that cannot belong to the commands sent: replay without pipelining."""
        self.pipelining_broken = True
        self.report.notes.append(
            f"the server offers PIPELINING but its replies to a batch do not match the commands "
            f"(got {reply}); continuing without pipelining")
        raise ProtocolError("pipelined replies out of order", "relay attempt")

    def _probe_data(self, result: AttemptResult) -> None:
        """Send DATA after an accepted outside RCPT; drop the line at 354 (nothing delivered)."""
        assert self.session is not None
        reply = self.session.command("DATA")
        result.data_reply = reply
        result.outcome, result.detail = classify_data(reply)
        if reply.intermediate or reply.positive:
            self.transcript.add("**", "dropping the connection at 354: no message is sent")
            self.close(polite=False)
        else:
            self.session_errors += 1

    # -- helpers ---------------------------------------------------------------------------
    def _result(self, attempt: RelayAttempt, outcome: Outcome, mail: str = "", rcpt: str = "",
                mail_reply: Reply | None = None, rcpt_reply: Reply | None = None,
                detail: str = "") -> AttemptResult:
        return AttemptResult(attempt, outcome, mail, rcpt, mail_reply, rcpt_reply, None, detail)

    def _where(self) -> str:
        return f"{self.options.address} port {self.options.port}"
