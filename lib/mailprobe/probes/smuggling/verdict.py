"""Pure rules: what the server's answers around one sequence say about where DATA ended.

After the message text and the sequence under test the runner waits a short time:

* a reply within that wait means the server stopped reading message text at the sequence. A
  2xx took the message as ending there: ENDS_DATA (vulnerable). A 4xx/5xx refused it; the
  runner then sends NOOP: an answer means what follows the sequence is read as commands, so
  a smuggled transaction would run (ENDS_DATA as well); silence or a closed line is REFUSED.
* a closed connection is REFUSED (the server drops such clients).
* silence: the runner sends a proper <CRLF>.<CRLF>. When its reply is followed by more
  replies nobody asked for, those answer the rest of our end of data read as commands: the
  reply we took for the end of data belonged to the sequence (a slow server, or a sequence
  our <CRLF> completed), so DATA ended there (ENDS_DATA). Otherwise the runner sends NOOP and
  reads up to its 250: NOOP's own 250 first means the sequence travelled inside the message
  (CARRIED, or REFUSED when the message was refused); other replies before the 250 are late
  answers to our end of data (ENDS_DATA); no 250 at all leaves it UNDETERMINED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailprobe.net.smtp import Reply


class Silence(enum.Enum):
    """What came instead of a reply."""

    SILENT = "no reply"
    CLOSED = "the connection was closed"


#: What the probe heard at one step: a reply, silence, or a closed connection.
Heard = Reply | Silence


class Outcome(enum.Enum):
    ENDS_DATA = "ENDS DATA"  # the server takes the sequence as the end of the message
    CARRIED = "CARRIED"  # the sequence stayed inside the message
    REFUSED = "REFUSED"  # refused or dropped at the sequence or at the end of data
    NOT_TESTED = "NOT TESTED"  # no mail transaction could be opened to try it
    UNDETERMINED = "UNDETERMINED"  # the answers do not tell where DATA ended
    NOT_RUN = "NOT RUN"  # the time budget ran out first

    @property
    def determined(self) -> bool:
        return self in (Outcome.ENDS_DATA, Outcome.CARRIED, Outcome.REFUSED)


@dataclass(frozen=True)
class Observation:
    """What the server answered around one sequence (None: that step was not taken)."""

    after_sequence: Heard
    after_noop: Heard | None = None  # a 4xx/5xx came right after the sequence: then NOOP
    after_end: Heard | None = None  # silence after the sequence: a proper end of data
    after_end_unasked: Heard | None = None  # what came after that reply, before anything else
    after_end_noop: tuple[Heard, ...] = ()  # then NOOP: the replies up to the first 250


def heard(value: Heard | None) -> str:
    return str(value) if isinstance(value, Reply) else value.value if value else "nothing"


def classify(seen: Observation) -> tuple[Outcome, str]:
    """The outcome for one sequence and the reason, in words for the long output."""
    first = seen.after_sequence
    if isinstance(first, Reply):
        if first.positive:
            return Outcome.ENDS_DATA, f"answered {first} right after the sequence"
        if isinstance(seen.after_noop, Reply):
            return Outcome.ENDS_DATA, (f"refused the message with {first} at the sequence, "
                                       f"then went on answering commands ({seen.after_noop}): "
                                       "what follows the sequence is read as commands")
        return Outcome.REFUSED, f"refused at the sequence: {first}"
    if first is Silence.CLOSED:
        return Outcome.REFUSED, "closed the connection at the sequence"
    end = seen.after_end
    if end is None:
        return Outcome.UNDETERMINED, "no reply to the sequence, and nothing more was tried"
    if end is Silence.SILENT:
        return Outcome.UNDETERMINED, "no reply to the sequence nor to a proper end of data"
    if end is Silence.CLOSED:
        return Outcome.REFUSED, "closed the connection at the end of data"
    return _after_the_end(end, seen)


def _after_the_end(end: Reply, seen: Observation) -> tuple[Outcome, str]:
    """The proper end of data was answered: was that reply really for it?"""
    unasked = seen.after_end_unasked
    if isinstance(unasked, Reply):  # more replies, nothing asked: our end was read as commands
        return Outcome.ENDS_DATA, (f"the message ended before our own end of data: after "
                                   f"{end} the rest of it was answered as a command "
                                   f"({unasked})")
    if unasked is Silence.CLOSED:
        if end.positive:
            return Outcome.UNDETERMINED, (f"the end of data was answered {end}, then the "
                                          "connection was closed: where the message ended is "
                                          "unknown")
        return Outcome.REFUSED, f"refused the message with the sequence inside: {end}"
    replies = [r for r in seen.after_end_noop if isinstance(r, Reply)]
    if replies and replies[0].code == 250:
        if end.positive:
            return Outcome.CARRIED, (f"the sequence stayed inside the message (the proper "
                                     f"end of data was answered {end})")
        return Outcome.REFUSED, f"refused the message with the sequence inside: {end}"
    if any(r.code == 250 for r in replies):  # answers to the rest of our end came first
        return Outcome.ENDS_DATA, (f"the message ended before our own end of data: after "
                                   f"{end} the rest of it was answered as a command "
                                   f"({replies[0]})")
    if not end.positive:
        return Outcome.REFUSED, f"refused the message with the sequence inside: {end}"
    got = ", ".join(heard(r) for r in seen.after_end_noop) or "nothing"
    return Outcome.UNDETERMINED, (f"the end of data was answered {end}, then NOOP got {got}: "
                                  "where the message ended is unknown")


class PipeliningOutcome(enum.Enum):
    ACCEPTED = "ACCEPTED"  # took message text sent before its 354 reply
    REFUSED = "REFUSED"  # refused or dropped the unsynchronised client
    NOT_TESTED = "NOT TESTED"
    UNDETERMINED = "UNDETERMINED"
    NOT_RUN = "NOT RUN"


def classify_pipelining(replies: list[Heard]) -> tuple[PipeliningOutcome, str]:
    """MAIL, RCPT, DATA, the message text and its end went out in one write: the replies
    (one per command, in order, as far as they came) decide."""
    names = ("MAIL FROM", "RCPT TO", "DATA", "the end of data")
    for index, name in enumerate(names):
        reply = replies[index] if index < len(replies) else None
        if reply is None or reply is Silence.SILENT:
            return PipeliningOutcome.UNDETERMINED, f"no reply to {name} of the batch"
        if reply is Silence.CLOSED:
            if index < 2:
                return PipeliningOutcome.NOT_TESTED, f"the connection was closed at {name}"
            return PipeliningOutcome.REFUSED, f"closed the connection at {name}"
        assert isinstance(reply, Reply)
        expected = reply.code == 354 if name == "DATA" else reply.positive
        if not expected:
            if index < 2 and "synchroni" not in reply.text.lower():
                return PipeliningOutcome.NOT_TESTED, f"{name} refused: {reply}"
            return PipeliningOutcome.REFUSED, f"refused at {name}: {reply}"
    return PipeliningOutcome.ACCEPTED, (f"took message text sent before its 354 reply "
                                        f"({replies[3]})")
