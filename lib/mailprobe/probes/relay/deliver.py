"""--depth deliver: the test message an accepted attempt carries, and what became of it.

Every message goes to the operator's own address only (``--deliver-to``: the outside user and
domain of the attempts), is small and plain, says that it is a relay test from mailprobe and
who runs it, and carries a token (the attempt's id and 16 random hex digits) in its Subject,
Message-ID and body, by which :mod:`mailprobe.probes.relay.proof` finds it in the mailbox.
The header attempts (seed 001) put an address of the server's own domain in ``From:`` or
``Sender:``; the envelope stays the operator's.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.probes.relay.catalogue import RelayAttempt, Targets, header_value
from mailprobe.probes.testmail import ProbeMessage, new_token


@dataclass
class Delivery:
    """One test message the server took (2xx at the end of data)."""

    token: str
    sent_at: float  # time.monotonic() when the server took it
    arrived: float | None = None  # seconds from sending until the probe saw it
    removed: bool = False  # removed from the mailbox afterwards


@dataclass(frozen=True)
class RelayTestMessage(ProbeMessage):
    """A :class:`ProbeMessage` whose From: (and Sender:) may name someone else (the header
    attempts); the envelope sender stays the attempt's."""

    header_from: str = ""
    header_sender: str = ""

    def lines(self) -> list[str]:
        lines = super().lines()
        if self.header_from:
            lines[0] = f"From: <{self.header_from}>"
        if self.header_sender:
            lines.insert(1, f"Sender: <{self.header_sender}>")
        return lines


def relay_message(attempt: RelayAttempt, targets: Targets, operator: str,
                  server: str) -> RelayTestMessage:
    """The labelled test message of ``attempt``, to ``operator`` (who runs the test)."""
    token = new_token(f"relay-{attempt.id}")
    header_from = header_value(attempt.header_from, targets) if attempt.header_from else ""
    header_sender = (header_value(attempt.header_sender, targets) if attempt.header_sender
                     else "")
    return RelayTestMessage(
        operator=operator, recipient=operator, subject=f"relay test {attempt.id}",
        kind=f"relay {attempt.id}", token=token, header_from=header_from,
        header_sender=header_sender, explanation=(
            "This is a relay test message of check_open_relay (mailprobe), run by",
            f"  {operator}",
            f"and sent through {server} to that address only, as the attempt",
            f"  {attempt.id}: {attempt.description}.",
            f"If it reached {operator}, {server} relays mail from outside to outside",
            "(an open relay). No one else receives it; you may delete it.",
        ))
