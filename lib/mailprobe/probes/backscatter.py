"""Backscatter (NST's bounce test): does the server take mail for users it does not have, and
then bounce it to whoever the envelope sender claims to be?

The default run stops at RCPT: MAIL FROM an outside address, RCPT TO the control recipient
(postmaster@, must be accepted) and RCPT TO a random local part at the mail domain, then RSET.
Nothing is sent. The opt-in proof sends one small labelled message to that random user only,
with MAIL FROM the operator's own address (``bounce_to``), and watches the operator's mailbox
for a bounce carrying the message's token. A third party's address is never used.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.mailbox import Arrival, Mailbox, MailboxError
from mailprobe.net.smtp import (
    ConnectError,
    Disconnected,
    ProtocolError,
    Reply,
    SMTPError,
    SMTPSession,
    SMTPTimeout,
    Transcript,
    can_answer,
)
from mailprobe.probes.testmail import ProbeMessage, new_token

#: Seconds to wait, after a QUIT answered with something other than 221, for a further reply.
QUIT_GRACE = 1.0
#: Seconds kept back from the deadline after the wait, to remove the bounce and report.
REMOVE_RESERVE = 2.0


class ServiceDown(Exception):
    """No usable banner."""


class RefusedAtBanner(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def random_local_part() -> str:
    """A local part no mailbox has: ``mailprobe-nosuch-<12 hex digits>``."""
    return f"mailprobe-nosuch-{secrets.token_hex(6)}"


@dataclass
class BackscatterOptions:
    address: str
    port: int
    helo: str
    sender: str  # MAIL FROM: an outside address, or the operator's bounce_to for the proof
    control: str  # a local recipient that must be accepted (postmaster@DOMAIN)
    unknown: str  # a random local part at the mail domain
    source_address: str | None = None
    command_timeout: float = 20.0
    server: str = ""  # the server's name for the message text (-H)


@dataclass
class Proof:
    """The opt-in bounce test: what was sent, and what came back."""

    bounce_to: str
    wait: float
    token: str = ""
    message: Reply | None = None  # the reply to the end of the test message (None: not sent)
    sent_at: float = 0.0  # time.monotonic() when the server took it
    not_sent: str = ""  # why no message was sent
    bounce: Arrival | None = None
    watched: float = 0.0  # seconds the mailbox was watched after sending
    mailbox_error: str = ""
    removed: int = 0
    removal_note: str = ""


@dataclass
class BackscatterReport:
    banner: Reply | None = None
    mail: Reply | None = None  # MAIL FROM
    control: Reply | None = None
    unknown: Reply | None = None
    error: str = ""  # the RCPT test could not be completed
    proof: Proof | None = None
    connections: int = 0
    round_trips: int = 0
    transcript: Transcript = field(default_factory=Transcript)


class BackscatterProbe:
    def __init__(self, options: BackscatterOptions, deadline: Deadline) -> None:
        self.options = options
        self.deadline = deadline
        self.report = BackscatterReport()

    def run(self, proof: Proof | None = None, mailbox: Mailbox | None = None,
            keep: bool = False) -> BackscatterReport:
        """The RCPT test; then, with ``proof`` and an open ``mailbox``, the bounce test.
        Raises :class:`ServiceDown` or :class:`RefusedAtBanner`."""
        options, report = self.options, self.report
        report.proof = proof
        session = SMTPSession(options.address, options.port, deadline=self.deadline,
                              source_address=options.source_address,
                              transcript=report.transcript,
                              step_timeout=options.command_timeout)
        try:
            self._greet(session)
            self._rcpt_test(session)
            if proof is not None:
                self._send_proof(session, proof, mailbox)
            elif report.unknown is not None:
                self._check_in_step(session)
        except BudgetExhausted as exc:
            report.error = str(exc)
        finally:
            session.quit()
            report.round_trips = session.round_trips
        if proof is not None and mailbox is not None and proof.message is not None \
                and proof.message.positive:
            self._watch(proof, mailbox, keep)
        return report

    def _greet(self, session: SMTPSession) -> None:
        try:
            banner = session.connect()
        except (ConnectError, SMTPTimeout, Disconnected, ProtocolError) as exc:
            raise ServiceDown(f"no usable banner: {exc}") from None
        self.report.banner = banner
        self.report.connections += 1
        if not banner.positive:
            raise RefusedAtBanner(banner)

    def _rcpt_test(self, session: SMTPSession) -> None:
        options, report = self.options, self.report
        try:
            ehlo = session.hello(options.helo)
            if not ehlo.positive:
                report.error = f"EHLO and HELO refused: {ehlo}"
                return
            commands = [f"MAIL FROM:<{options.sender}>", f"RCPT TO:<{options.control}>",
                        f"RCPT TO:<{options.unknown}>"]
            if session.unread():
                self._out_of_step("a reply came before MAIL FROM was sent")
                return
            replies = session.pipeline(commands)
        except SMTPError as exc:
            report.error = str(exc)
            return
        misfit = next((f"{r} cannot answer {c.split(':')[0]}"
                       for c, r in zip(commands, replies, strict=True) if not can_answer(c, r)),
                      None)
        if misfit is not None or session.unread():
            self._out_of_step(misfit or "more replies came than commands were sent")
            return
        report.mail, report.control, report.unknown = replies
        if not report.mail.positive:
            report.control = report.unknown = None  # never judged: no transaction

    def _check_in_step(self, session: SMTPSession) -> None:
        """QUIT and its 221 close the books: a reply too many that came late is read here
        instead of the 221, and then nothing the connection showed is judged."""
        try:
            reply = session.command("QUIT", "waiting for the reply to QUIT")
        except SMTPError:
            return  # no reply to QUIT: nothing was seen out of step
        if reply.code == 221:
            return
        # a server may answer QUIT with something else; only a reply after it shows that the
        # one read was a reply too many (as the relay runner judges its connections)
        time.sleep(max(0.0, min(QUIT_GRACE, self.deadline.remaining() - 0.1)))
        if session.unread():
            self._out_of_step(f"QUIT was answered {reply}, and more came after it")

    def _out_of_step(self, why: str) -> None:
        report = self.report
        report.mail = report.control = report.unknown = None
        report.error = (f"the server's replies got out of step with the commands ({why}): "
                        "what it answered is not judged")

    def _send_proof(self, session: SMTPSession, proof: Proof, mailbox: Mailbox | None) -> None:
        options, report = self.options, self.report
        if mailbox is None:
            proof.not_sent = "the mailbox could not be opened"
            return
        if report.unknown is None or not report.unknown.positive:
            proof.not_sent = "the unknown user was not accepted"
            return
        proof.token = new_token("backscatter")
        message = ProbeMessage(
            operator=proof.bounce_to, recipient=options.unknown, subject="backscatter test",
            kind="backscatter", token=proof.token, explanation=(
                "This is a test message of check_backscatter (mailprobe), sent by",
                f"  {proof.bounce_to}",
                "to a random user that should not exist:",
                f"  {options.unknown}",
                f"It checks whether {options.server or options.address} bounces mail for "
                "unknown users",
                "to the envelope sender (backscatter). No one should read it; you may "
                "delete it."))
        try:
            replies = session.pipeline(["RSET", f"MAIL FROM:<{proof.bounce_to}>",
                                        f"RCPT TO:<{options.unknown}>"])
            refused = next((r for r in replies if not r.positive), None)
            if refused is not None:
                proof.not_sent = f"the second transaction was refused: {refused}"
                return
            start = session.command("DATA")
            if start.code != 354:
                proof.not_sent = f"DATA refused: {start}"
                return
            session.send_raw(message.data(), "sending the test message")
            session.round_trips += 1
            proof.message = session.read_reply("waiting for the reply to the test message")
            proof.sent_at = time.monotonic()
        except SMTPError as exc:
            proof.not_sent = f"the test message could not be sent: {exc}"

    def _watch(self, proof: Proof, mailbox: Mailbox, keep: bool) -> None:
        watch = Deadline(max(0.0, self.deadline.remaining() - REMOVE_RESERVE))
        try:
            found = mailbox.wait_for([proof.token], watch, wait=proof.wait,
                                     since=proof.sent_at or None)
            proof.watched = mailbox.watched
            proof.bounce = found.get(proof.token)
            if proof.bounce is not None and not keep:
                proof.removed = mailbox.remove([proof.token], self.deadline)
                proof.removal_note = mailbox.note
        except (MailboxError, BudgetExhausted) as exc:
            proof.watched = mailbox.watched
            proof.mailbox_error = str(exc)


# --- the verdict (pure) ---------------------------------------------------------------------

def assess(report: BackscatterReport, accept_level: int = WARNING) -> list[Finding]:
    """The findings of one run; ``accept_level`` is the state for an unknown user accepted at
    RCPT (``--accept-state``)."""
    findings: list[Finding] = []
    unknown, control = report.unknown, report.control
    if report.error and unknown is None:
        findings.append(Finding(UNKNOWN, "rcpt", f"inconclusive: the RCPT test could not be "
                                                 f"completed ({report.error})"))
    elif report.mail is not None and not report.mail.positive:
        findings.append(Finding(UNKNOWN, "mail", f"inconclusive: MAIL FROM refused "
                                                 f"({report.mail})"))
    if unknown is not None:
        if unknown.positive:
            findings.append(Finding(accept_level, "unknown_user",
                                    f"accepts mail for unknown users at RCPT ({unknown}): "
                                    "any bounce later is backscatter"))
        elif unknown.transient:
            findings.append(Finding(WARNING, "unknown_user",
                                    f"defers unknown users with {unknown} instead of refusing "
                                    "them (5xx)"))
        elif unknown.permanent:
            findings.append(Finding(OK, "unknown_user",
                                    f"refuses unknown users at RCPT ({unknown})"))
        else:
            findings.append(Finding(UNKNOWN, "unknown_user",
                                    f"inconclusive: RCPT TO an unknown user answered {unknown}"))
    if control is not None and not control.positive:
        findings.append(Finding(UNKNOWN, "control", f"inconclusive: the control recipient "
                                                    f"was not accepted ({control})"))
    if report.proof is not None:
        findings.extend(_assess_proof(report.proof, unknown))
    return findings


def _assess_proof(proof: Proof, unknown: Reply | None) -> list[Finding]:
    if proof.mailbox_error and proof.message is None:
        return [Finding(UNKNOWN, "mailbox", f"the bounce test was not run: "
                                            f"{proof.mailbox_error}")]
    if proof.message is None:
        if unknown is not None and not unknown.positive:
            return []  # refused at RCPT: there is nothing to bounce
        return [Finding(UNKNOWN, "bounce", f"the bounce test could not be run "
                                           f"({proof.not_sent or 'not sent'})")]
    if not proof.message.positive:
        return [Finding(OK, "bounce", f"refused the test message itself ({proof.message}): "
                                      "no bounce can come from this server")]
    if proof.bounce is not None:
        return [Finding(CRITICAL, "bounce",
                        f"sent a bounce to a forged sender: backscatter (from "
                        f"{proof.bounce.describe()}, after {proof.bounce.seconds:.1f}s)")]
    if proof.mailbox_error:
        return [Finding(UNKNOWN, "mailbox", f"the mailbox could not be watched for the bounce "
                                            f"after {proof.watched:.0f}s: {proof.mailbox_error}")]
    return [Finding(OK, "bounce", f"no bounce arrived within {proof.watched:.0f}s of sending "
                                  "(a catch-all, a discarding filter, or a bounce still "
                                  "queued)")]
