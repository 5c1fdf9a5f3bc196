"""The mailbox options, defined once for every plugin that proves something by a message
arriving in the operator's mailbox (check_backscatter; check_open_relay --depth deliver).

``--mailbox URL`` (maildir:PATH, imap://USER@HOST[:PORT]/FOLDER, imaps://...),
``--mailbox-password-file FILE`` (else the environment variable MAILPROBE_MAILBOX_PASSWORD;
never the process list), ``--mailbox-cafile FILE`` (a CA to trust for imaps) and ``--keep``
(leave the probe's messages in the mailbox).
"""

from __future__ import annotations

import argparse

from mailprobe.checks import plugin
from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox import (
    PASSWORD_ENV,
    Mailbox,
    MailboxError,
    MailboxURL,
    MailboxURLError,
    mailbox_password,
    open_mailbox,
    parse_mailbox_url,
)


def add_mailbox(group: argparse._ArgumentGroup, what: str) -> None:
    """The mailbox options; ``what`` says what arrives there (for --help)."""
    group.add_argument("--mailbox", metavar="URL",
                       help=f"where the probe reads {what}: maildir:PATH, "
                            "imap://USER@HOST[:PORT]/FOLDER or imaps://...")
    group.add_argument("--mailbox-password-file", metavar="FILE",
                       help=f"IMAP password: the first line of FILE (else ${PASSWORD_ENV}; "
                            "a password in the URL shows on the process list)")
    group.add_argument("--mailbox-cafile", metavar="FILE",
                       help="trust this CA for an imaps:// mailbox (default: the system's)")
    group.add_argument("--keep", action="store_true",
                       help="leave the probe's messages in the mailbox (default: removed)")


def mailbox_url(args: argparse.Namespace) -> MailboxURL | None:
    """The checked ``--mailbox`` with its password, or None; bad values are a UsageError."""
    if not args.mailbox:
        for option, value in (("--mailbox-password-file", args.mailbox_password_file),
                              ("--mailbox-cafile", args.mailbox_cafile)):
            if value:
                raise plugin.UsageError(f"{option} needs --mailbox")
        return None
    try:
        url = mailbox_password(parse_mailbox_url(args.mailbox), args.mailbox_password_file)
    except MailboxURLError as exc:
        raise plugin.UsageError(f"--mailbox: {exc}") from None
    if args.mailbox_cafile and url.scheme != "imaps":
        raise plugin.UsageError("--mailbox-cafile is for an imaps:// mailbox")
    return url


def open_for(args: argparse.Namespace, url: MailboxURL,
             deadline: Deadline) -> tuple[Mailbox | None, str]:
    """(the opened mailbox, '') or (None, why it could not be opened)."""
    try:
        return open_mailbox(url, deadline, cafile=args.mailbox_cafile), ""
    except MailboxError as exc:
        return None, str(exc)
