"""The operator's mailbox: watch it for the probe's tokenised messages, then remove them.

One interface for a Maildir on this machine and an IMAP(S) folder::

    url = mailbox_password(parse_mailbox_url("imaps://me@mail.example.org/INBOX"),
                           password_file="/etc/mailprobe/mailbox.secret")
    with open_mailbox(url, deadline) as mailbox:      # before anything is sent
        ...send messages carrying tokens...
        found = mailbox.wait_for(tokens, deadline, wait=120, since=sent_at)
        mailbox.remove(found, deadline)

Every wait draws on the check's :class:`~mailprobe.net.deadline.Deadline`. imaplib is
imported only for an IMAP mailbox.
"""

from __future__ import annotations

from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox.base import Arrival, Mailbox, MailboxError
from mailprobe.net.mailbox.url import (
    PASSWORD_ENV,
    MailboxURL,
    MailboxURLError,
    mailbox_password,
    parse_mailbox_url,
)

__all__ = ["PASSWORD_ENV", "Arrival", "Mailbox", "MailboxError", "MailboxURL",
           "MailboxURLError", "mailbox_password", "open_mailbox", "parse_mailbox_url"]


def open_mailbox(url: MailboxURL, deadline: Deadline, *, cafile: str | None = None) -> Mailbox:
    """Open the mailbox (log in and select the folder for IMAP); :class:`MailboxError` when it
    cannot be used. Messages already there are never read."""
    if url.is_imap:
        from mailprobe.net.mailbox.imap import IMAPMailbox

        return IMAPMailbox(url, deadline, cafile=cafile)
    from mailprobe.net.mailbox.maildir import MaildirMailbox

    return MaildirMailbox(url)
