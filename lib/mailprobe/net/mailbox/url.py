"""``--mailbox`` URLs and where the mailbox password comes from.

Forms: ``maildir:PATH``, ``imap://USER[:PASSWORD]@HOST[:PORT]/FOLDER`` and ``imaps://...``
(user, password and folder percent-encoded; the folder defaults to INBOX). The password
should not be in the URL, which the process list shows: give it in a file
(``--mailbox-password-file``) or in the environment (:data:`PASSWORD_ENV`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PASSWORD_ENV = "MAILPROBE_MAILBOX_PASSWORD"
DEFAULT_PORTS = {"imap": 143, "imaps": 993}
SCHEMES = ("maildir", "imap", "imaps")


class MailboxURLError(ValueError):
    """A ``--mailbox`` URL or password source that cannot be used (a bad option)."""


@dataclass(frozen=True)
class MailboxURL:
    """Where the probe reads the operator's mail."""

    scheme: str  # "maildir", "imap" or "imaps"
    path: str = ""  # the Maildir (maildir:)
    user: str = ""
    password: str | None = None  # only when the URL carries one
    host: str = ""
    port: int = 0
    folder: str = "INBOX"

    @property
    def is_imap(self) -> bool:
        return self.scheme in ("imap", "imaps")

    def with_password(self, password: str | None) -> MailboxURL:
        return MailboxURL(self.scheme, self.path, self.user, password, self.host, self.port,
                          self.folder)

    def __str__(self) -> str:
        """The URL for messages: never the password."""
        if not self.is_imap:
            return f"maildir:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.user}@{host}:{self.port}/{self.folder}"


def parse_mailbox_url(text: str) -> MailboxURL:
    """Parse a ``--mailbox`` value; :class:`MailboxURLError` says what is wrong."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES:
        raise MailboxURLError(f"{_shown(text)!r} is not maildir:PATH, imap://USER@HOST/FOLDER "
                              "or imaps://USER@HOST/FOLDER")
    if scheme == "maildir":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise MailboxURLError("maildir: needs a path (maildir:/home/me/Maildir)")
        return MailboxURL("maildir", path=path)
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. a bad IPv6 literal in brackets
        raise MailboxURLError(f"{_shown(text)!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise MailboxURLError(f"{_shown(text)!r}: no ?query or #fragment in a mailbox URL")
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError as exc:
        raise MailboxURLError(f"{_shown(text)!r}: {exc}") from None
    if not host:
        raise MailboxURLError(f"{_shown(text)!r} names no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise MailboxURLError(f"{_shown(text)!r}: bad IPv6 address") from None
    user = unquote(parts.username or "")
    if not user:
        raise MailboxURLError(f"{_shown(text)!r} names no user (imap://USER@HOST/FOLDER)")
    password = unquote(parts.password) if parts.password is not None else None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if any(ch in folder for ch in "\r\n\0"):
        raise MailboxURLError("the mailbox folder name has a line break or NUL")
    return MailboxURL(scheme, user=user, password=password, host=host,
                      port=port or DEFAULT_PORTS[scheme], folder=folder)


def mailbox_password(url: MailboxURL, password_file: str | None = None,
                     environ: Mapping[str, str] | None = None) -> MailboxURL:
    """``url`` with its password from exactly one source: the URL itself, the file (its first
    line), or the environment variable :data:`PASSWORD_ENV`, in that order. An IMAP URL
    without any password is a :class:`MailboxURLError`."""
    env = os.environ if environ is None else environ
    if not url.is_imap:
        if password_file:
            raise MailboxURLError("--mailbox-password-file is for imap:// and imaps:// mailboxes")
        return url
    if url.password is not None and password_file:
        raise MailboxURLError("the --mailbox URL has a password and --mailbox-password-file "
                              "gives another: keep one (the file: the URL is on the process "
                              "list)")
    if url.password is not None:
        return url
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                first = handle.readline()
        except OSError as exc:
            raise MailboxURLError(f"--mailbox-password-file {password_file}: "
                                  f"{exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise MailboxURLError(f"--mailbox-password-file {password_file} is not UTF-8 "
                                  "text") from None
        password = first.rstrip("\r\n")
        if not password:
            raise MailboxURLError(f"--mailbox-password-file {password_file}: the first line "
                                  "is empty")
        return url.with_password(password)
    if env.get(PASSWORD_ENV):
        return url.with_password(env[PASSWORD_ENV])
    raise MailboxURLError(f"no password for {url}: give --mailbox-password-file FILE or set "
                          f"{PASSWORD_ENV}")


def _shown(text: str) -> str:
    """``text`` for an error message: no control characters, no password."""
    try:
        parts = urlsplit(text)
        if parts.password:
            text = text.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
