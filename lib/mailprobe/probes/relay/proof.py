"""--depth deliver: watch the operator's mailbox for the tokens of the messages the server
took, then turn each attempt into RELAYED (the token arrived) or ACCEPTED-NOT-DELIVERED.

The mailbox is opened by the caller before anything is sent (only messages arriving after
that are read); the wait is ``--deliver-wait`` seconds from the last message sent, within the
check's deadline. The probe's own messages are removed afterwards unless ``keep``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.mailbox import Mailbox, MailboxError
from mailprobe.probes.relay.verdict import AttemptResult, Outcome

#: Seconds kept back from the deadline after the wait, to remove the messages and report.
REMOVE_RESERVE = 2.0


@dataclass
class Watch:
    """How the mailbox was watched."""

    messages: int = 0  # messages the server took
    watched: float = 0.0  # seconds from the last message sent to the last look
    arrived: int = 0
    removed: int = 0
    error: str = ""  # the mailbox could not be watched (or cleaned)
    note: str = ""  # how the removal went, when not as asked


def waiting(results: list[AttemptResult]) -> list[AttemptResult]:
    """The attempts whose message the server took and whose arrival is still open."""
    return [r for r in results if r.delivery is not None and r.outcome is Outcome.RELAYED
            and r.delivery.arrived is None]


def watch(results: list[AttemptResult], mailbox: Mailbox, deadline: Deadline, wait: float,
          keep: bool = False) -> Watch:
    """Watch ``mailbox`` for the messages of ``results`` and settle each attempt."""
    sent = waiting(results)
    report = Watch(messages=len(sent))
    if not sent:
        return report
    since = max(r.delivery.sent_at for r in sent if r.delivery is not None)
    tokens = [r.delivery.token for r in sent if r.delivery is not None]
    try:
        found = mailbox.wait_for(tokens, Deadline(max(0.0, deadline.remaining()
                                                      - REMOVE_RESERVE)),
                                 wait=wait, since=since)
    except (MailboxError, BudgetExhausted) as exc:
        report.watched, report.error = mailbox.watched, str(exc)
        found = dict(mailbox.arrivals)
    else:
        report.watched = mailbox.watched
    for result in sent:
        delivery = result.delivery
        assert delivery is not None
        arrival = found.get(delivery.token)
        if arrival is not None:
            delivery.arrived = round(since + arrival.seconds - delivery.sent_at, 1)
        settle(result, report)
    report.arrived = sum(1 for r in sent if r.delivery and r.delivery.arrived is not None)
    if report.arrived and not keep:
        arrived = [r.delivery.token for r in sent if r.delivery and r.delivery.arrived is not None]
        try:
            report.removed = mailbox.remove(arrived, deadline)
            report.note = mailbox.note
        except (MailboxError, BudgetExhausted) as exc:
            report.note = f"the test messages could not be removed: {exc}"
        if report.removed:
            for result in sent:
                if result.delivery is not None and result.delivery.arrived is not None:
                    result.delivery.removed = True
    return report


def settle(result: AttemptResult, report: Watch) -> None:
    """The verdict of one attempt whose message the server took (pure)."""
    delivery = result.delivery
    assert delivery is not None
    if delivery.arrived is not None:
        result.outcome = Outcome.RELAYED
        result.detail = f"delivered: token seen in the mailbox after {delivery.arrived:.1f} s"
    elif report.error:
        result.outcome = Outcome.ERROR
        result.detail = (f"the message was taken, but the mailbox could not be watched: "
                         f"{report.error}")
    else:
        result.outcome = Outcome.ACCEPTED_NOT_DELIVERED
        result.detail = (f"accepts outside recipients but did not deliver within "
                         f"{report.watched:.0f} s: honeypot, catch-all, or a queue")
