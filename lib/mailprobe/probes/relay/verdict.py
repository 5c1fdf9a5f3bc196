"""How one relay attempt's replies are judged (pure functions, no network)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mailprobe.findings import OK, UNKNOWN, WARNING, Finding
from mailprobe.net.smtp import Reply
from mailprobe.probes.relay.catalogue import RelayAttempt
from mailprobe.probes.relay.deliver import Delivery


class Outcome(Enum):
    """What an attempt showed, from the relay point of view."""

    RELAYED = "relayed"  # 2xx at RCPT for an outside recipient (--depth deliver: it arrived)
    ACCEPTED_NOT_DELIVERED = "accepted-not-delivered"  # --depth deliver: taken, never arrived
    NOT_APPLICABLE = "not applicable"  # the route does not exist (extension not offered, ...)
    REFUSED = "refused"  # 5xx at RCPT
    SENDER_REFUSED = "sender refused"  # 5xx at MAIL FROM: the recipient was never judged
    TEMPFAILED = "tempfailed"  # 4xx at MAIL or RCPT: not a proper refusal (seed 000)
    REFUSED_AT_DATA = "refused at DATA"  # RCPT accepted, DATA refused (--depth data)
    TIMEOUT = "timeout"  # no answer within the command timeout: not judged
    ERROR = "error"  # could not be played (connection lost twice, replies out of step, garbage)
    NOT_RUN = "not run"  # the time budget ran out before it

    @property
    def label(self) -> str:
        return self.value.upper()


# Outcomes that show the server did not relay this form.
NOT_RELAYED = {Outcome.REFUSED, Outcome.SENDER_REFUSED, Outcome.REFUSED_AT_DATA,
               Outcome.NOT_APPLICABLE}
# Outcomes of attempts the server never answered for: nothing is known about the form.
NOT_JUDGED = {Outcome.TIMEOUT, Outcome.ERROR, Outcome.NOT_RUN}


@dataclass
class AttemptResult:
    """One attempt as played: the commands sent and the replies that decided it."""

    attempt: RelayAttempt
    outcome: Outcome
    mail_command: str = ""
    rcpt_command: str = ""
    mail_reply: Reply | None = None
    rcpt_reply: Reply | None = None
    data_reply: Reply | None = None
    detail: str = ""
    delivery: Delivery | None = None  # --depth deliver: the message sent, and its arrival

    @property
    def deciding_reply(self) -> Reply | None:
        return self.data_reply or self.rcpt_reply or self.mail_reply

    def describe(self) -> str:
        """One long-output line: outcome, id, what was sent, the reply."""
        label = self.outcome.label
        if self.attempt.id == "control":
            label = "ACCEPTED" if self.outcome is Outcome.RELAYED else f"CONTROL {label}"
        parts = [f"[{label}] {self.attempt.id}:"]
        if self.rcpt_command:
            parts.append(f"{self.mail_command} / {self.rcpt_command}")
        if self.deciding_reply:
            parts.append(f"-> {self.deciding_reply}")
        if self.detail:
            parts.append(f"({self.detail})")
        return " ".join(parts)


def classify(mail_reply: Reply | None, rcpt_reply: Reply | None) -> tuple[Outcome, str]:
    """Judge an attempt from its MAIL FROM and RCPT TO replies.

    The recipient reply decides; a refused sender means the recipient was never judged
    (not a relay); any 4xx is a temporary refusal, which is not a proper relay refusal.
    """
    if mail_reply is None:
        return Outcome.ERROR, "no reply to MAIL FROM"
    if mail_reply.permanent:
        return Outcome.SENDER_REFUSED, ""
    if mail_reply.transient:
        return Outcome.TEMPFAILED, "temporary refusal at MAIL FROM"
    if not mail_reply.positive:
        return Outcome.ERROR, f"unexpected reply {mail_reply.code} to MAIL FROM"
    if rcpt_reply is None:
        return Outcome.ERROR, "no reply to RCPT TO"
    if rcpt_reply.positive:
        return Outcome.RELAYED, ""
    if rcpt_reply.permanent:
        return Outcome.REFUSED, ""
    if rcpt_reply.transient:
        return Outcome.TEMPFAILED, "temporary refusal is not a proper relay refusal"
    return Outcome.ERROR, f"unexpected reply {rcpt_reply.code} to RCPT TO"


def classify_message(end_reply: Reply) -> tuple[Outcome, str]:
    """--depth deliver: the reply to the end of the test message. A 2xx leaves the verdict to
    the mailbox (RELAYED until then); a 5xx refuses the message (a header check), a 4xx
    defers it."""
    if end_reply.positive:
        return Outcome.RELAYED, "message accepted; waiting for it in the mailbox"
    if end_reply.permanent:
        return Outcome.REFUSED_AT_DATA, "accepted at RCPT, the message refused at its end"
    return Outcome.TEMPFAILED, "the message deferred at its end (4xx)"


def classify_data(data_reply: Reply) -> tuple[Outcome, str]:
    """After an accepted outside RCPT, judge the DATA reply (only with --depth data).

    Only 354 says the server would take the message; a 2xx cannot answer DATA (the runner
    treats it as replies out of step before it gets here) and is not judged.
    """
    if data_reply.code == 354:
        return Outcome.RELAYED, "354 at DATA: the server would take the message"
    if data_reply.positive or data_reply.intermediate:
        return Outcome.ERROR, f"{data_reply.code} cannot answer DATA: not judged"
    return Outcome.REFUSED_AT_DATA, "accepted at RCPT, refused at DATA"


@dataclass(frozen=True)
class Tally:
    """Counts over a series of attempts (the perfdata)."""

    attempts: int
    relayed: int
    tempfailed: int
    refused: int
    timeouts: int
    errors: int
    not_run: int
    undelivered: int = 0  # accepted, never arrived (--depth deliver)
    delivered: int = 0  # arrived in the operator's mailbox (--depth deliver)
    inapplicable: int = 0  # not applicable to this server

    @classmethod
    def of(cls, results: list[AttemptResult]) -> Tally:
        def count(*outcomes: Outcome) -> int:
            return sum(1 for r in results if r.outcome in outcomes)

        return cls(
            attempts=len(results),
            relayed=count(Outcome.RELAYED),
            tempfailed=count(Outcome.TEMPFAILED),
            refused=count(Outcome.REFUSED, Outcome.SENDER_REFUSED, Outcome.REFUSED_AT_DATA),
            timeouts=count(Outcome.TIMEOUT),
            errors=count(Outcome.ERROR),
            not_run=count(Outcome.NOT_RUN),
            undelivered=count(Outcome.ACCEPTED_NOT_DELIVERED),
            delivered=sum(1 for r in results if r.outcome is Outcome.RELAYED
                          and r.delivery is not None and r.delivery.arrived is not None),
            inapplicable=count(Outcome.NOT_APPLICABLE),
        )

    @property
    def judged(self) -> int:
        """Attempts the server answered for (relayed, refused, tempfailed, not delivered), or
        that do not apply to it."""
        return self.attempts - self.timeouts - self.errors - self.not_run


# -- findings shared by every front door (check_open_relay, the report) -----------------------

def control_finding(control: AttemptResult) -> Finding:
    """What the control says about a run: accepted (OK), deferred, refused, not judged."""
    reply = control.deciding_reply
    if control.outcome is Outcome.RELAYED:
        return Finding(OK, "control", "control accepted")
    if control.outcome is Outcome.TEMPFAILED:
        return Finding(WARNING, "control", f"the server defers even {control.rcpt_command} "
                       f"({reply}); relay status unproven")
    if control.outcome is Outcome.TIMEOUT:
        return Finding(UNKNOWN, "control", f"inconclusive: control timed out ({control.detail})")
    if control.outcome in (Outcome.ERROR, Outcome.NOT_RUN):  # never judged
        return Finding(UNKNOWN, "control", f"inconclusive: the control could not be played "
                       f"({control.detail})")
    what = control.rcpt_command or "the control"
    return Finding(UNKNOWN, "control", f"inconclusive: control {what} not accepted "
                   f"({reply or control.detail})")


def incomplete_finding(results: list[AttemptResult], command_timeout: float) -> Finding | None:
    """UNKNOWN when an attempt was not judged: never answered, not played, or out of step."""
    tally = Tally.of(results)
    if tally.judged == tally.attempts:
        return None
    reasons: list[str] = []
    if tally.timeouts:
        reasons.append(f"{tally.timeouts} never answered within --command-timeout "
                       f"{command_timeout:g}s")
    reasons += sorted({r.detail for r in results
                       if r.outcome in (Outcome.ERROR, Outcome.NOT_RUN) and r.detail})
    return Finding(UNKNOWN, "incomplete", f"only {tally.judged} of {tally.attempts} attempts "
                   f"could be played ({'; '.join(reasons)[:200]})")
