"""Plays the smuggling tests: one mail transaction to the local recipient per sequence.

Each test has a connection of its own: EHLO, MAIL FROM, RCPT TO the local recipient, DATA,
then a small labelled message whose text ends with the sequence under test, then a short
wait (see :mod:`.verdict` for what is sent after it). The first test runs alone until its
mail transaction is open (when it cannot be, nothing else is tried); then the others run
beside it, up to :data:`MAX_PARALLEL` at a time, so that their waits overlap. Every message
goes to the one local recipient: nothing else is ever addressed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import (
    ConnectError,
    Disconnected,
    ProtocolError,
    Reply,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    Transcript,
)
from mailprobe.probes.smuggling.advice import cves_for, identify_mta
from mailprobe.probes.smuggling.catalogue import PIPELINING, EndSequence
from mailprobe.probes.smuggling.verdict import (
    Heard,
    Observation,
    Outcome,
    PipeliningOutcome,
    Silence,
    classify,
    classify_pipelining,
)
from mailprobe.probes.testmail import ProbeMessage, new_token

#: Connections open at once (each waits up to ``wait`` seconds for a reply).
MAX_PARALLEL = 4
PROPER_END = b"\r\n.\r\n"
#: After the reply to our end of data: how long to listen for replies nobody asked for. A
#: server that read the rest of our end as commands answers them right behind that reply.
UNASKED_WAIT = 0.5

# why a transaction could not be opened
DOWN, BANNER, TRANSACTION = "down", "banner", "transaction"


class ServiceDown(Exception):
    """No usable banner on the first connection."""


class RefusedAtBanner(Exception):
    """The server refuses this client at the banner (4xx/5xx)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass
class SmugglingOptions:
    address: str
    port: int
    helo: str
    sender: str  # the operator's address: MAIL FROM and From:
    recipient: str  # the one local recipient of every message
    source_address: str | None = None
    wait: float = 2.0  # for a reply right after the sequence
    command_timeout: float = 20.0
    server: str = ""  # the server's name for the message text (-H)


@dataclass
class SequenceResult:
    sequence: EndSequence
    outcome: Outcome
    reason: str
    accepted: bool = False  # the server took a message (2xx at its end)
    transcript: Transcript = field(default_factory=Transcript)
    cause: str = ""  # NOT_TESTED: DOWN, BANNER or TRANSACTION

    def describe(self) -> str:
        return f"[{self.outcome.value}] {self.sequence.id} {self.sequence.label}: {self.reason}"


@dataclass
class PipeliningResult:
    outcome: PipeliningOutcome
    reason: str
    accepted: bool = False
    transcript: Transcript = field(default_factory=Transcript)
    cause: str = ""

    def describe(self) -> str:
        return f"[{self.outcome.value}] pipelining past DATA: {self.reason}"


@dataclass
class SmugglingReport:
    banner: Reply | None = None
    ehlo: Reply | None = None
    results: list[SequenceResult] = field(default_factory=list)
    pipelining: PipeliningResult | None = None
    connections: int = 0

    @property
    def mta(self) -> str | None:
        return identify_mta(r.text for r in (self.banner, self.ehlo) if r is not None)

    @property
    def cves(self) -> str:
        return cves_for(self.mta)

    @property
    def accepted(self) -> int:
        """Messages the server took for the recipient (each a small labelled test)."""
        parts: list[SequenceResult | PipeliningResult] = [*self.results]
        if self.pipelining is not None:
            parts.append(self.pipelining)
        return sum(1 for part in parts if part.accepted)


class _NotTested(Exception):
    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(reason)
        self.cause = cause


#: One test: an end-of-data sequence, or the pipelining test.
Job = EndSequence | str


class SmugglingRunner:
    def __init__(self, options: SmugglingOptions, deadline: Deadline) -> None:
        self.options = options
        self.deadline = deadline
        self.report = SmugglingReport()
        self._lock = threading.Lock()
        self._opened = threading.Event()  # a mail transaction of the first test is open

    # -- the run -------------------------------------------------------------------------------
    def run(self, sequences: list[EndSequence], pipelining: bool) -> SmugglingReport:
        """Play the tests; raises :class:`ServiceDown` or :class:`RefusedAtBanner` when the
        first connection shows that nothing can be tested."""
        jobs: list[Job] = [*sequences, *([PIPELINING] if pipelining else [])]
        if not jobs:
            return self.report
        first_result: list[SequenceResult | PipeliningResult] = []

        def first() -> None:
            first_result.append(self._play(jobs[0]))
            self._opened.set()

        thread = threading.Thread(target=first, daemon=True, name="smuggling-first")
        thread.start()
        self._opened.wait(self.deadline.remaining() + 2.0)  # open, or the first test ended
        early = first_result[0] if first_result and first_result[0].cause else None
        if early is None:
            rest = self._in_parallel(jobs[1:])
        elif early.cause == DOWN:
            raise ServiceDown(early.reason)
        elif early.cause == BANNER and self.report.banner is not None:
            raise RefusedAtBanner(self.report.banner)
        else:  # the same refusal would meet every other test
            rest = [self._not_tried(job, early.reason) for job in jobs[1:]]
        thread.join(self.deadline.remaining() + 2.0)
        results = [first_result[0] if first_result else self._out_of_time(jobs[0]), *rest]
        for result in results:
            if isinstance(result, SequenceResult):
                self.report.results.append(result)
            else:
                self.report.pipelining = result
        return self.report

    def _play(self, job: Job) -> SequenceResult | PipeliningResult:
        """One test; a bug in it becomes an undetermined result, not a lost thread."""
        try:
            if isinstance(job, EndSequence):
                return self.play_sequence(job)
            return self.play_pipelining()
        except Exception as exc:  # the plugin contract: report, never crash a thread
            text = f"internal error: {type(exc).__name__}: {exc}"
            if isinstance(job, EndSequence):
                return SequenceResult(job, Outcome.UNDETERMINED, text)
            return PipeliningResult(PipeliningOutcome.UNDETERMINED, text)

    @staticmethod
    def _not_tried(job: Job, reason: str) -> SequenceResult | PipeliningResult:
        text = f"not tried: {reason}"
        if isinstance(job, EndSequence):
            return SequenceResult(job, Outcome.NOT_TESTED, text, cause=TRANSACTION)
        return PipeliningResult(PipeliningOutcome.NOT_TESTED, text, cause=TRANSACTION)

    def _in_parallel(self, jobs: list[Job]) -> list[SequenceResult | PipeliningResult]:
        """Play ``jobs`` on up to :data:`MAX_PARALLEL` connections at once, in order."""
        results: list[SequenceResult | PipeliningResult | None] = [None] * len(jobs)
        queue = iter(range(len(jobs)))
        take = threading.Lock()

        def worker() -> None:
            while True:
                with take:
                    index = next(queue, None)
                if index is None:
                    return
                results[index] = self._play(jobs[index])

        threads = [threading.Thread(target=worker, daemon=True, name=f"smuggling-{n}")
                   for n in range(min(MAX_PARALLEL, len(jobs)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.deadline.remaining() + 2.0)
        return [result if result is not None else self._out_of_time(job)
                for job, result in zip(jobs, results, strict=True)]

    def _out_of_time(self, job: Job) -> SequenceResult | PipeliningResult:
        """A test whose connection was still busy when the budget was spent."""
        text = f"the {self.deadline.budget:g}s time budget ran out"
        if isinstance(job, EndSequence):
            return SequenceResult(job, Outcome.NOT_RUN, text)
        return PipeliningResult(PipeliningOutcome.NOT_RUN, text)

    # -- one test --------------------------------------------------------------------------------
    def play_sequence(self, sequence: EndSequence) -> SequenceResult:
        session = self._session()
        token = new_token("smuggling")
        accepted = False
        try:
            self._open(session, data=True)
            message = self._message(
                token, f"SMTP smuggling test {sequence.id}", f"smuggling {sequence.id}",
                f"takes the non-standard sequence {sequence.label} as the end of a message",
                "The sequence under test follows the token line.")
            session.send_raw(message.text() + sequence.ending, "sending the message text")
            seen = self._watch(session)
            outcome, reason = classify(seen)
            accepted = _positive(seen.after_sequence) or _positive(seen.after_end)
        except _NotTested as exc:
            outcome, reason = Outcome.NOT_TESTED, str(exc)
            return SequenceResult(sequence, outcome, reason, False, session.transcript,
                                  exc.cause)
        except BudgetExhausted as exc:
            outcome, reason = Outcome.NOT_RUN, str(exc)
        except Disconnected as exc:
            outcome, reason = Outcome.REFUSED, f"dropped the connection while the message " \
                                               f"text with the sequence was sent ({exc})"
        except SMTPError as exc:
            outcome, reason = Outcome.UNDETERMINED, str(exc)
        finally:
            session.quit()
        return SequenceResult(sequence, outcome, reason, accepted, session.transcript)

    def play_pipelining(self) -> PipeliningResult:
        """MAIL, RCPT, DATA, the message text and its end in one write, before any reply."""
        session = self._session()
        options = self.options
        try:
            self._open(session, data=False)
            message = self._message(
                new_token("smuggling"), "SMTP pipelining test", "smuggling pipelining",
                "takes message text sent before its 354 reply to DATA (pipelining, which SMTP "
                "smuggling needs)")
            batch = (f"MAIL FROM:<{options.sender}>\r\nRCPT TO:<{options.recipient}>\r\n"
                     "DATA\r\n").encode() + message.data()
            session.send_raw(batch, "sending MAIL, RCPT, DATA and the message in one write")
            session.round_trips += 1
            replies: list[Heard] = []
            while len(replies) < 4:
                heard = self._listen(session, options.command_timeout)
                replies.append(heard)
                if not isinstance(heard, Reply):
                    break
            outcome, reason = classify_pipelining(replies)
            accepted = outcome is PipeliningOutcome.ACCEPTED
        except _NotTested as exc:
            return PipeliningResult(PipeliningOutcome.NOT_TESTED, str(exc), False,
                                    session.transcript, exc.cause)
        except BudgetExhausted as exc:
            outcome, reason, accepted = PipeliningOutcome.NOT_RUN, str(exc), False
        except Disconnected as exc:
            outcome, reason, accepted = PipeliningOutcome.REFUSED, str(exc), False
        except SMTPError as exc:
            outcome, reason, accepted = PipeliningOutcome.UNDETERMINED, str(exc), False
        finally:
            session.quit()
        return PipeliningResult(outcome, reason, accepted, session.transcript)

    # -- steps -----------------------------------------------------------------------------------
    def _session(self) -> SMTPSession:
        options = self.options
        return SMTPSession(options.address, options.port, deadline=self.deadline,
                           source_address=options.source_address, transcript=Transcript(),
                           step_timeout=options.command_timeout)

    def _open(self, session: SMTPSession, data: bool) -> None:
        """Connect and greet; with ``data``, MAIL, RCPT and DATA up to the 354."""
        options = self.options
        try:
            banner = session.connect()
        except (ConnectError, SMTPTimeout, Disconnected, ProtocolError) as exc:
            raise _NotTested(f"no usable banner: {exc}", DOWN) from None
        with self._lock:
            self.report.connections += 1
            if self.report.banner is None:
                self.report.banner = banner
        if not banner.positive:
            raise _NotTested(f"refused at the banner: {banner}", BANNER)
        try:
            ehlo = session.hello(options.helo)
            if not ehlo.positive:
                raise _NotTested(f"EHLO and HELO refused: {ehlo}", TRANSACTION)
            with self._lock:
                if self.report.ehlo is None and session.greeting_verb == "EHLO":
                    self.report.ehlo = ehlo
            if not data:
                self._opened.set()
                return
            commands = [f"MAIL FROM:<{options.sender}>", f"RCPT TO:<{options.recipient}>",
                        "DATA"]
            if "PIPELINING" in session.esmtp:
                replies = session.pipeline(commands)
            else:
                replies = []
                for command in commands:
                    replies.append(session.command(command))
                    if not replies[-1].positive:
                        break
        except (SMTPTimeout, Disconnected, ProtocolError) as exc:
            raise _NotTested(f"could not open a mail transaction: {exc}", TRANSACTION) from None
        for command, reply in zip(commands, replies, strict=False):
            wanted = reply.code == 354 if command == "DATA" else reply.positive
            if not wanted:
                verb = command.split(":")[0]
                expected = "354" if command == "DATA" else "2xx"
                raise _NotTested(f"{verb} answered {reply}, not {expected} (see --recipient, "
                                 "--sender)",
                                 TRANSACTION)
        if len(replies) < len(commands):
            raise _NotTested("the server stopped answering before DATA", TRANSACTION)
        self._opened.set()

    def _watch(self, session: SMTPSession) -> Observation:
        """After the sequence: the short wait, then NOOP or a proper end of data (verdict)."""
        wait, patience = self.options.wait, self.options.command_timeout
        first = self._listen(session, wait)
        if isinstance(first, Reply):
            if first.positive:
                return Observation(first)
            return Observation(first, after_noop=self._noop(session, wait))
        if first is Silence.CLOSED:
            return Observation(first)
        session.send_raw(PROPER_END, "ending the message with <CR><LF>.<CR><LF>")
        end = self._listen(session, patience)
        if not isinstance(end, Reply):
            return Observation(first, after_end=end)
        unasked = self._listen(session, min(wait, UNASKED_WAIT))
        if unasked is not Silence.SILENT:
            return Observation(first, after_end=end, after_end_unasked=unasked)
        replies = [self._noop(session, patience)]
        while isinstance(replies[-1], Reply) and replies[-1].code != 250 and len(replies) < 4:
            replies.append(self._listen(session, patience))
        return Observation(first, after_end=end, after_end_unasked=unasked,
                           after_end_noop=tuple(replies))

    def _noop(self, session: SMTPSession, seconds: float) -> Heard:
        try:
            session.send_line("NOOP", "sending NOOP")
        except Disconnected:
            return Silence.CLOSED
        session.round_trips += 1
        return self._listen(session, seconds)

    @staticmethod
    def _listen(session: SMTPSession, seconds: float) -> Heard:
        """The next reply within ``seconds``, or what came instead."""
        if not session.connected:
            return Silence.CLOSED
        saved = session.step_timeout
        session.step_timeout = seconds
        try:
            return session.read_reply("waiting for a reply after the message text")
        except SMTPTimeout:
            return Silence.SILENT
        except Disconnected:
            return Silence.CLOSED
        finally:
            session.step_timeout = saved

    def _message(self, token: str, subject: str, kind: str, question: str,
                 *more: str) -> ProbeMessage:
        options = self.options
        server = options.server or options.address
        return ProbeMessage(
            operator=options.sender, recipient=options.recipient, subject=subject, kind=kind,
            token=token, explanation=(
                "This is a test message of check_smtp_smuggling (mailprobe), sent by",
                f"  {options.sender}",
                "to the local recipient",
                f"  {options.recipient}",
                f"It checks whether {server} {question}",
                f"(SMTP smuggling, {cves_for(None)}). You may delete it.",
                *more))


def _positive(heard: Heard | None) -> bool:
    return isinstance(heard, Reply) and heard.positive
