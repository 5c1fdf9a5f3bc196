"""A lab Postfix that delivers one domain into Maildirs: the operator's mailbox of the tests.

:class:`MailboxPostfix` is a :class:`~lab.postfix.PostfixServer` whose virtual(8) agent
delivers ``USER@mailbox.test`` into the Maildir ``mail_root/USER`` (owned by the lab's mail
user, the layout :class:`lab.dovecot.DovecotServer` serves over IMAP). Everything else is as
in every lab Postfix: ``relaylab.test`` is its own domain, nothing leaves the machine and
nothing asks DNS. :data:`MAILBOX_PRESETS` name the configurations the bounce tests need.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lab.postfix import PostfixServer

MAILBOX_DOMAIN = "mailbox.test"
#: The relay tests' operator domain: delivered into the same Maildirs, but in no address class
#: of the instance (see :class:`RelayingMailboxPostfix`).
OPERATOR_DOMAIN = "operator.test"
MAIL_UID = MAIL_GID = 65534

#: name -> main.cf settings on top of the lab defaults (``local_recipient_maps`` lists the
#: known users of relaylab.test; mail to them is discarded).
MAILBOX_PRESETS: dict[str, dict[str, str]] = {
    # Rejects unknown users of relaylab.test at RCPT (550 5.1.1): no bounce is ever made.
    "reject_unknown": {},
    # Accepts any local part of relaylab.test at RCPT (no local_recipient_maps); local(8) then
    # finds no such user and bounces the message to its envelope sender: backscatter. Mail for
    # users that exist on this machine goes to /bin/true, never to /var/mail.
    "bounce_unknown": {"local_recipient_maps": "", "local_transport": "local",
                       "mailbox_command": "/bin/true"},
    # Accepts any local part at RCPT and discards the mail (a catch-all that drops): no bounce.
    "discard_unknown": {"local_recipient_maps": ""},
}

MAILBOX_SERVICES = (
    "virtual   unix  -       n       n       -       -       virtual\n"
    "local     unix  -       n       n       -       -       local\n"
)


def make_maildir(path: Path) -> Path:
    """An empty Maildir (cur, new, tmp) owned by the lab's mail user."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for each in (path, path / "cur", path / "new", path / "tmp"):
        os.chown(each, MAIL_UID, MAIL_GID)
        each.chmod(0o700)
    return path


class MailboxPostfix(PostfixServer):
    """A lab Postfix with Maildirs for ``users`` at :data:`MAILBOX_DOMAIN` under ``mail_root``.

    ``preset`` is a key of :data:`MAILBOX_PRESETS`; ``settings`` override it key by key.
    """

    def __init__(self, name: str, mail_root: Path, users: tuple[str, ...] = ("probe",), *,
                 preset: str = "reject_unknown", settings: dict[str, str] | None = None,
                 **kwargs: object) -> None:
        self.mail_root = Path(mail_root)
        self.users = users
        mailbox_settings = {
            "virtual_mailbox_domains": MAILBOX_DOMAIN,
            "virtual_mailbox_base": str(self.mail_root),
            "virtual_mailbox_maps": "texthash:${config_directory}/vmailbox",
            "virtual_transport": "virtual",
            "virtual_uid_maps": f"static:{MAIL_UID}",
            "virtual_gid_maps": f"static:{MAIL_GID}",
            "virtual_minimum_uid": "100",
            **MAILBOX_PRESETS[preset],
            **(settings or {}),
        }
        vmailbox = "".join(f"{user}@{MAILBOX_DOMAIN} {user}/\n" for user in users)
        super().__init__(name, mailbox_settings, maps={"vmailbox": vmailbox},
                         **kwargs)  # type: ignore[arg-type]

    def maildir(self, user: str) -> Path:
        return self.mail_root / user

    def mail_address(self, user: str) -> str:
        return f"{user}@{MAILBOX_DOMAIN}"

    def _write_config(self) -> None:
        super()._write_config()
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_root, MAIL_UID, MAIL_GID)
        for user in self.users:
            make_maildir(self.maildir(user))
        master = self.config_dir / "master.cf"
        with open(master, "a") as handle:
            handle.write(MAILBOX_SERVICES)
        past = time.time() - 60
        os.utime(master, (past, past))

    def queue_empty(self) -> bool:
        """True when no message waits in the queue (every delivery and bounce is done)."""
        proc = subprocess.run(["postqueue", "-c", str(self.config_dir), "-j"],
                              capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
        return proc.returncode == 0 and not proc.stdout.strip()

    def __repr__(self) -> str:
        return f"MailboxPostfix({self.name!r}, {self.host}:{self.port})"


class RelayingMailboxPostfix(MailboxPostfix):
    """The Postfix under a relay test that also holds the operator's mailbox.

    ``USER@operator.test`` is routed by ``transport_maps`` to virtual(8), into the Maildir
    ``mail_root/USER``, but operator.test is in no address class (not mydestination, not a
    virtual or relay domain): to smtpd it is an outside domain, so ``reject_unauth_destination``
    refuses it to an outsider and only a relay (``relay`` settings: e.g. ``mynetworks =
    0.0.0.0/0``, or an open XCLIENT) lets mail reach it. One instance, no SMTP client: the
    relayed message never leaves Postfix, and nothing else is delivered anywhere.
    """

    def __init__(self, name: str, mail_root: Path, users: tuple[str, ...] = ("probe",), *,
                 relay: dict[str, str] | None = None, **kwargs: object) -> None:
        settings = {"transport_maps": "texthash:${config_directory}/transport", **(relay or {})}
        super().__init__(name, mail_root, users, settings=settings,
                         **kwargs)  # type: ignore[arg-type]
        self.maps["vmailbox"] += "".join(f"{user}@{OPERATOR_DOMAIN} {user}/\n"
                                         for user in users)
        self.maps["transport"] = f"{OPERATOR_DOMAIN} virtual:\n"

    def operator_address(self, user: str) -> str:
        return f"{user}@{OPERATOR_DOMAIN}"
