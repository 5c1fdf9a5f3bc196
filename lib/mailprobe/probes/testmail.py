"""The small test messages probes send, clearly labelled, and the tokens that find them again.

A probe that has to send a message (the backscatter proof, the smuggling sequences, later the
relay delivery proof) sends a :class:`ProbeMessage`: a few lines of plain text saying what it
is, which mailprobe check sent it and for whom (the operator's address), with a unique token
in the Subject, the Message-ID and the body, so that the message, or a bounce quoting it, can
be recognised in a mailbox.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.utils import formatdate

from mailprobe import __version__

TOKEN_PREFIX = "mailprobe"
#: Header names every probe message carries (for filters on the receiving side).
LABEL_HEADER = "X-Mailprobe-Test"


def new_token(kind: str) -> str:
    """A token no message carries yet: ``mailprobe-KIND-<16 hex digits>``."""
    return f"{TOKEN_PREFIX}-{kind}-{secrets.token_hex(8)}"


def check_header_value(value: str, what: str) -> str:
    """``value`` when it can go into a header line as is (no line breaks or controls)."""
    if not value or any(not ch.isprintable() for ch in value):
        raise ValueError(f"{what} {value!r} cannot go into a message header")
    return value


@dataclass(frozen=True)
class ProbeMessage:
    """One labelled test message. ``operator`` (the From: address) is who runs the test."""

    operator: str
    recipient: str
    subject: str
    kind: str  # e.g. "backscatter", "smuggling lf-dot-crlf" (the label header's value)
    token: str
    explanation: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Header and body lines, without line ends."""
        for value, what in ((self.operator, "the sender"), (self.recipient, "the recipient"),
                            (self.subject, "the subject"), (self.kind, "the kind")):
            check_header_value(value, what)
        return [
            f"From: mailprobe test <{self.operator}>",
            f"To: <{self.recipient}>",
            f"Subject: [mailprobe test] {self.subject} {self.token}",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: <{self.token}@mailprobe.invalid>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii",
            "Auto-Submitted: auto-generated",
            f"{LABEL_HEADER}: {self.kind}",
            "",
            *self.explanation,
            "",
            f"Sent by mailprobe {__version__} for {self.operator}.",
            f"Test token: {self.token}",
        ]

    def text(self) -> bytes:
        """The message as DATA text: CRLF between lines, dot-stuffed, without the last line
        end, so that the caller ends it (``b"\\r\\n.\\r\\n"`` or a sequence under test)."""
        stuffed = ["." + line if line.startswith(".") else line for line in self.lines()]
        return "\r\n".join(stuffed).encode("ascii", "replace")

    def data(self) -> bytes:
        """The message with the standard end of data: ready to send after a 354."""
        return self.text() + b"\r\n.\r\n"
