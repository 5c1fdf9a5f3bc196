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

from mailprobe.deadline import BudgetExhausted, Deadline
from mailprobe.relay.catalogue import CONTROL, Greeting, RelayAttempt, Targets
from mailprobe.relay.verdict import AttemptResult, Outcome, classify, classify_data
from mailprobe.smtp import (
    ConnectError,
    Disconnected,
    ProtocolError,
    Reply,
    SMTPSession,
    SMTPTimeout,
    TLSError,
    Transcript,
    greeting_name,
    ip_literal,
)

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

    def close(self) -> None:
        if self.session is not None:
            self.session.quit()
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
    def play(self, attempt: RelayAttempt) -> AttemptResult:
        """Play one attempt; reconnect once if the server dropped us."""
        for retry in (False, True):
            try:
                return self._play_once(attempt)
            except (Disconnected, ProtocolError) as exc:
                self._forget_session()
                if retry:
                    return self._result(attempt, Outcome.ERROR, detail=str(exc))
            except SMTPTimeout as exc:
                self._forget_session()
                if self.deadline.remaining() < 0.05:  # the check's budget, not this command
                    raise BudgetExhausted(exc.stage, self.deadline.budget) from exc
                return self._result(attempt, Outcome.TIMEOUT, detail=str(exc))
        raise AssertionError("unreachable")

    def _play_once(self, attempt: RelayAttempt) -> AttemptResult:
        self.greet(attempt.greeting)
        session = self.session
        assert session is not None
        mail = attempt.mail_command(self.options.targets)
        rcpt = attempt.rcpt_command(self.options.targets)
        lines = (["RSET"] if self.in_transaction else []) + [mail]
        if "PIPELINING" in session.esmtp and not self.pipelining_broken:
            replies = session.pipeline([*lines, rcpt])
            mail_reply, rcpt_reply = replies[-2], replies[-1]
            if _out_of_order(replies, with_rset=len(lines) > 1):
                # a refused RSET, or a RCPT accepted after a refused MAIL: the replies do not
                # belong to the commands. Replay this attempt (and the rest) one by one.
                self.pipelining_broken = True
                self.report.notes.append(
                    "the server offers PIPELINING but its replies to a batch do not match the "
                    f"commands ({', '.join(str(r.code) for r in replies)}); continuing without "
                    "pipelining")
                self._forget_session()
                raise ProtocolError("pipelined replies out of order", "relay attempt")
            if not mail_reply.positive:
                rcpt_reply = None  # the RCPT reply is only a "503 need MAIL" then
        else:
            mail_reply = [session.command(line) for line in lines][-1]
            rcpt_reply = session.command(rcpt) if mail_reply.positive else None
        closing = next((r for r in (mail_reply, rcpt_reply) if r and r.code == 421), None)
        if closing is not None:  # "service closing": the attempt was not judged, retry it
            self._forget_session()
            raise Disconnected(f"the server closed the session: {closing}", "relay attempt")
        self.in_transaction = mail_reply.positive
        self.session_errors += sum(1 for r in (mail_reply, rcpt_reply) if r and r.code >= 400)
        outcome, detail = classify(mail_reply, rcpt_reply)
        result = self._result(attempt, outcome, mail, rcpt, mail_reply, rcpt_reply, detail)
        probing_data = self.options.depth is Depth.DATA and attempt is not self.options.control
        if outcome is Outcome.RELAYED and probing_data:
            self._probe_data(result)
        return result

    def _probe_data(self, result: AttemptResult) -> None:
        """Send DATA after an accepted outside RCPT; drop the line at 354 (nothing delivered)."""
        assert self.session is not None
        reply = self.session.command("DATA")
        result.data_reply = reply
        result.outcome, result.detail = classify_data(reply)
        if reply.intermediate or reply.positive:
            self.transcript.add("**", "dropping the connection at 354: no message is sent")
            self._forget_session()
        else:
            self.session_errors += 1

    def run(self, attempts: list[RelayAttempt]) -> RelayReport:
        """The control, then every attempt; stops early only when the budget is spent."""
        results = self.report.results
        try:
            self.report.control = self.play(self.options.control)
            for index, attempt in enumerate(attempts):
                try:
                    results.append(self.play(attempt))
                except (ServiceDown, ServerRefusesUs) as exc:
                    # the server went away mid-series: what is left cannot be played
                    reason = f"server unreachable mid-series: {exc}"
                    results.extend(self._result(a, Outcome.ERROR, detail=reason)
                                   for a in attempts[index:])
                    break
                except BudgetExhausted as exc:
                    results.extend(self._result(a, Outcome.NOT_RUN, detail=str(exc))
                                   for a in attempts[index:])
                    break
        finally:
            self.close()
        return self.report

    # -- helpers ---------------------------------------------------------------------------
    def _forget_session(self) -> None:
        if self.session is not None:
            self.report.round_trips += self.session.round_trips
            self.session.close()
            self.session = None

    def _result(self, attempt: RelayAttempt, outcome: Outcome, mail: str = "", rcpt: str = "",
                mail_reply: Reply | None = None, rcpt_reply: Reply | None = None,
                detail: str = "") -> AttemptResult:
        return AttemptResult(attempt, outcome, mail, rcpt, mail_reply, rcpt_reply, None, detail)

    def _where(self) -> str:
        return f"{self.options.address} port {self.options.port}"


def _out_of_order(replies: list[Reply], with_rset: bool) -> bool:
    """Whether pipelined [RSET,] MAIL, RCPT replies cannot be the replies to those commands."""
    if with_rset and not replies[0].positive:
        return True
    mail_reply, rcpt_reply = replies[-2], replies[-1]
    return not mail_reply.positive and rcpt_reply.positive
