"""A real Dovecot (Debian's dovecot-imapd) serving Maildirs over IMAP and IMAPS on loopback.

Each :class:`DovecotServer` runs ``dovecot -F -c CONF`` in the foreground with its own
configuration, run and state directories and log in a temporary directory; the system's
/etc/dovecot is never read. Users log in with a password from a passwd-file; user ``NAME``'s
mailbox is the Maildir ``mail_root/NAME``, the layout a lab Postfix's virtual(8) agent writes
(:class:`lab.postfix_mailbox.MailboxPostfix`), so a message Postfix delivered can be read over
IMAP. Dovecot needs root to start (it switches to the mail user for each login).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

from lab.process import LabError, LabServer, ManagedProcess, free_port, require_binary, wait_for_tcp
from lab.smtpd import self_signed_certificate

#: The mail user every lab Maildir belongs to (Postfix's virtual_uid_maps in the lab).
MAIL_UID = MAIL_GID = 65534


class DovecotServer(LabServer):
    """``DovecotServer({"probe": "secret"}, mail_root).start()`` ... ``.stop()``.

    ``port`` is the plain IMAP port; with ``tls=True`` an IMAPS listener runs on
    ``imaps_port`` with a self-signed certificate for 127.0.0.1 (its file, to trust it, is
    :attr:`ca_file`).
    """

    def __init__(self, users: dict[str, str], mail_root: Path, *, host: str = "127.0.0.1",
                 port: int | None = None, tls: bool = False) -> None:
        self.users = dict(users)
        self.mail_root = Path(mail_root)
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.imaps_port = free_port(host) if tls else 0
        self.process = ManagedProcess("dovecot")
        self.ca_file = ""
        self.started_seconds: float | None = None

    @property
    def workdir(self) -> Path:
        return self.process.workdir

    def url(self, user: str, folder: str = "INBOX", *, password: str | None = None,
            tls: bool = False) -> str:
        """The ``--mailbox`` URL of ``user``'s folder (the password only when given)."""
        secret = f":{quote(password, safe='')}" if password is not None else ""
        scheme, port = ("imaps", self.imaps_port) if tls else ("imap", self.port)
        return f"{scheme}://{quote(user, safe='')}{secret}@{self.host}:{port}/{quote(folder)}"

    def log(self) -> str:
        parts = [self.process.output()]
        path = self.workdir / "dovecot.log"
        if path.exists():
            parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _write_config(self) -> Path:
        work = self.workdir
        work.chmod(0o755)
        for sub in ("run", "state"):
            (work / sub).mkdir(exist_ok=True)
        users = work / "users"
        users.write_text("".join(f"{name}:{{PLAIN}}{password}\n"
                                 for name, password in self.users.items()))
        users.chmod(0o644)
        listeners = (f"  inet_listener imap {{\n    address = {self.host}\n"
                     f"    port = {self.port}\n  }}\n")
        ssl = "ssl = no\n"
        if self.tls:
            cert, key = self_signed_certificate(self.host, self.host, "localhost")
            self.ca_file = cert
            ssl = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n"
            listeners += (f"  inet_listener imaps {{\n    address = {self.host}\n"
                          f"    port = {self.imaps_port}\n    ssl = yes\n  }}\n")
        else:
            listeners += "  inet_listener imaps {\n    port = 0\n  }\n"
        config = work / "dovecot.conf"
        config.write_text(
            f"base_dir = {work / 'run'}\n"
            f"state_dir = {work / 'state'}\n"
            f"log_path = {work / 'dovecot.log'}\n"
            "protocols = imap\n"
            f"listen = {self.host}\n"
            + ssl
            + "disable_plaintext_auth = no\n"
            "auth_mechanisms = plain login\n"
            "default_internal_user = dovecot\n"
            "default_login_user = dovenull\n"
            f"first_valid_uid = {MAIL_UID}\n"
            f"mail_location = maildir:{self.mail_root}/%u\n"
            "passdb {\n  driver = passwd-file\n"
            f"  args = scheme=PLAIN username_format=%u {users}\n}}\n"
            "userdb {\n  driver = static\n"
            f"  args = uid={MAIL_UID} gid={MAIL_GID} home={self.mail_root}/%u\n}}\n"
            "service imap-login {\n" + listeners + "}\n"
            # no index files next to the lab's Maildirs' messages
            "mail_plugins =\n"
        )
        config.chmod(0o644)
        return config

    def start(self) -> DovecotServer:
        """Write the configuration, start ``dovecot -F`` and wait for its IMAP greeting."""
        if os.geteuid() != 0:
            raise LabError("the lab Dovecot needs root to start (dovecot -F)")
        dovecot = require_binary("dovecot", "/usr/sbin/dovecot")
        began = time.monotonic()
        config = self._write_config()
        self.process.spawn([dovecot, "-F", "-c", str(config)])
        try:
            wait_for_tcp(self.host, self.port, timeout=15, banner=True)
            if self.tls:
                wait_for_tcp(self.host, self.imaps_port, timeout=15)
        except LabError as exc:
            log = self.log()
            self.stop()
            raise LabError(f"dovecot did not come up: {exc}\n{log}") from exc
        self.started_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        self.process.cleanup()

    def __repr__(self) -> str:
        return f"DovecotServer({self.host}:{self.port})"
