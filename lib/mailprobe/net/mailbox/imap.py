"""An IMAP folder (``imap://`` or ``imaps://``): new messages are those with a UID at or above
the folder's UIDNEXT at opening.

imaps verifies the server's certificate and name (the probe sends a password there) against
the system's CA store or ``cafile``. Deleting uses ``UID EXPUNGE`` (RFC 4315 UIDPLUS), which
touches only the probe's own messages; a server without UIDPLUS gets them flagged \\Deleted
and the folder is not expunged (that would also remove messages the user flagged).
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox.base import MAX_READ, Mailbox, MailboxError
from mailprobe.net.mailbox.url import MailboxURL

#: Longest wait for one IMAP command (inside the deadline).
STEP_TIMEOUT = 15.0


class IMAPMailbox(Mailbox):
    """One logged-in IMAP session with the folder selected read-write."""

    def __init__(self, url: MailboxURL, deadline: Deadline, *, cafile: str | None = None) -> None:
        super().__init__(url)
        self._imap = self._connect(deadline, cafile)
        try:
            self._login(deadline)
            self._next_uid = self._select(deadline)
        except BaseException:
            self.close()
            raise

    # -- session ------------------------------------------------------------------------------
    def _connect(self, deadline: Deadline, cafile: str | None) -> imaplib.IMAP4:
        stage = f"connecting to {self.url}"
        timeout = deadline.timeout(stage, STEP_TIMEOUT)
        try:
            if self.url.scheme == "imaps":
                context = ssl.create_default_context(cafile=cafile)
                return imaplib.IMAP4_SSL(self.url.host, self.url.port, ssl_context=context,
                                         timeout=timeout)
            return imaplib.IMAP4(self.url.host, self.url.port, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(f"{self.url}: the server's certificate is not trusted "
                               f"({exc.verify_message}; --mailbox-cafile names a CA to "
                               "trust)") from None
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxError(f"cannot connect to {self.url}: {_reason(exc)}") from None

    def _call(self, stage: str, deadline: Deadline, command: Callable[..., Any],
              *args: Any) -> tuple[str, list[Any]]:
        """One IMAP command within the deadline; a NO/BAD answer is a MailboxError."""
        try:
            self._imap.sock.settimeout(deadline.timeout(f"{stage} ({self.url})", STEP_TIMEOUT))
            typ, data = command(*args)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxError(f"{self.url}: {stage} failed: {_reason(exc)}") from None
        if typ != "OK":
            raise MailboxError(f"{self.url}: {stage} refused: {_text(data)}")
        return typ, data

    def _login(self, deadline: Deadline) -> None:
        assert self.url.password is not None, "mailbox_password() gives every IMAP URL one"
        self._call("login", deadline, self._imap.login, self.url.user, self.url.password)
        _, data = self._call("CAPABILITY", deadline, self._imap.capability)
        self.capabilities = set(_text(data).upper().split())

    def _select(self, deadline: Deadline) -> int:
        folder = self.url.folder
        if not folder.isascii():
            raise MailboxError(f"{self.url}: folder names must be ASCII here")
        quoted = '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        self._call(f"selecting folder {folder}", deadline, self._imap.select, quoted)
        _, data = self._imap.response("UIDNEXT")
        if data and data[0]:
            return int(data[0])
        _, found = self._call("UID SEARCH", deadline, self._imap.uid, "SEARCH", "ALL")
        uids = [int(u) for u in _text(found).split()]
        return max(uids, default=0) + 1

    def close(self) -> None:
        imap = getattr(self, "_imap", None)
        if imap is None:
            return
        try:
            imap.sock.settimeout(2.0)
            imap.logout()
        except Exception:  # closing a broken session: nothing left to do
            pass
        self._imap = None  # type: ignore[assignment]

    # -- messages --------------------------------------------------------------------------------
    def _new_messages(self, deadline: Deadline) -> Iterator[tuple[str, bytes]]:
        self._call("NOOP", deadline, self._imap.noop)  # lets the server report new mail
        _, data = self._call("UID SEARCH", deadline, self._imap.uid, "SEARCH",
                             f"UID {self._next_uid}:*")
        uids = sorted(int(u) for u in _text(data).split() if int(u) >= self._next_uid)
        for uid in uids:
            _, fetched = self._call("UID FETCH", deadline, self._imap.uid, "FETCH", str(uid),
                                    f"(BODY.PEEK[]<0.{MAX_READ}>)")
            raw = b"".join(part[1] for part in fetched if isinstance(part, tuple))
            self._next_uid = uid + 1
            yield str(uid), raw

    def _delete(self, references: list[str], deadline: Deadline) -> int:
        uids = ",".join(references)
        self._call("UID STORE", deadline, self._imap.uid, "STORE", uids, "+FLAGS.SILENT",
                   "(\\Deleted)")
        if "UIDPLUS" not in self.capabilities:
            self.note = (f"{len(references)} message(s) flagged \\Deleted in {self.url} (the "
                         "server has no UIDPLUS: the folder was not expunged)")
            return len(references)
        self._call("UID EXPUNGE", deadline, self._imap.uid, "EXPUNGE", uids)
        return len(references)


def _text(data: list[Any]) -> str:
    parts = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)
             for p in data if p is not None and not isinstance(p, tuple)]
    return re.sub(r"[^\x20-\x7e]", "?", " ".join(parts))[:200]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    text = re.sub(r"""\bb(['"])(.*?)\1""", r"\2", text)  # imaplib quotes the server's bytes
    return re.sub(r"[^\x20-\x7e]", "?", text)[:200]
