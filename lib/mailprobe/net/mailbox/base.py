"""What every mailbox reader shares: watching for tokens within the deadline, removing."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox.url import MailboxURL

#: Seconds between two looks into the mailbox while waiting.
POLL_INTERVAL = 0.25
#: Bytes read of one new message to look for the tokens (a bounce quotes the test message
#: near its start; nothing needs the whole of a large message).
MAX_READ = 1024 * 1024


class MailboxError(Exception):
    """The mailbox could not be opened, read or cleaned (one line for a postmaster)."""


@dataclass(frozen=True)
class Arrival:
    """A message carrying one of the tokens, as it was found."""

    token: str
    seconds: float  # from ``since`` of :meth:`Mailbox.wait_for` until the probe saw it
    subject: str
    sender: str  # the From: header
    reference: str  # the Maildir file name or the IMAP UID

    def describe(self) -> str:
        return f"{self.sender or '(no From:)'}: {self.subject or '(no Subject:)'}"


class Mailbox(ABC):
    """One opened mailbox. Use :func:`mailprobe.net.mailbox.open_mailbox` to get one."""

    def __init__(self, url: MailboxURL) -> None:
        self.url = url
        self.arrivals: dict[str, Arrival] = {}  # every token found so far
        self.watched = 0.0  # seconds from the last wait's ``since`` to its last complete look
        self.note = ""  # how the last removal went, when not as asked (e.g. not expunged)

    def wait_for(self, tokens: Collection[str], deadline: Deadline, *, wait: float,
                 since: float | None = None) -> dict[str, Arrival]:
        """Watch the mailbox until every token has arrived, ``wait`` seconds after ``since``
        (a :func:`time.monotonic` value, default now) have passed, or ``deadline`` expires.

        Returns the tokens seen (each with the seconds since ``since``); :attr:`watched` tells
        how long the mailbox was watched. Only messages that arrived after the mailbox was
        opened are read, each once.
        """
        since = time.monotonic() if since is None else since
        wanted = set(tokens)
        until = min(since + wait, deadline.expires)
        while deadline.remaining() > 0:
            for reference, raw in self._new_messages(deadline):
                for token in sorted(wanted - set(self.arrivals)):
                    if token.encode() in raw:
                        self.arrivals[token] = _arrival(token, time.monotonic() - since,
                                                        reference, raw)
            self.watched = round(time.monotonic() - since, 3)
            if wanted <= set(self.arrivals):
                break
            left = until - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL_INTERVAL, left))
        return {token: self.arrivals[token] for token in tokens if token in self.arrivals}

    def remove(self, tokens: Collection[str], deadline: Deadline) -> int:
        """Delete the messages found carrying ``tokens`` (the probe's own); returns how many."""
        references = sorted({self.arrivals[t].reference for t in tokens if t in self.arrivals})
        return self._delete(references, deadline) if references else 0

    @abstractmethod
    def _new_messages(self, deadline: Deadline) -> Iterator[tuple[str, bytes]]:
        """(reference, first bytes) of each message not seen before."""

    @abstractmethod
    def _delete(self, references: list[str], deadline: Deadline) -> int:
        """Delete these messages; returns how many were deleted."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the mailbox (log out); never raises."""

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _arrival(token: str, seconds: float, reference: str, raw: bytes) -> Arrival:
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    head = raw[: end if end >= 0 else 16384]
    try:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(head)
        subject, sender = str(headers.get("Subject", "")), str(headers.get("From", ""))
    except Exception:  # a header we cannot parse still carries the token
        subject, sender = "", ""
    return Arrival(token, round(seconds, 3), _clean(subject), _clean(sender), reference)


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)[:200]
