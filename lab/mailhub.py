"""A lab Postfix that accepts mail for people: Maildirs for virtual domains, aliases that pipe
mail to a command (the way a site runs ``mailprobe relaytest receive``), and recipients it
refuses. Everything else is discarded, as in every lab Postfix; nothing leaves the machine.

    hub = MailHub(maildirs=tmp, mailboxes=["alice@uni.test"], local_domain="relaytest.test",
                  aliases={"relaytest": "|/path/to/command"}, alias_owner="nagios").start()
    hub.wait_for("alice@uni.test", 1)   # -> [email.message.Message]

The alias file is owned by ``alias_owner``, so local(8) runs the pipe command as that user
(Postfix never runs it as root). Retries are fast (1-2 s) so a command that exits 75
(EX_TEMPFAIL) is seen running again within seconds. Needs root, like every lab Postfix.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from lab.postfix import PostfixServer
from lab.process import LabError

MAILDIR_UID = 65534   # nobody: the virtual(8) agent writes the Maildirs as this user


class MailHub(PostfixServer):
    def __init__(self, maildirs: Path, mailboxes: list[str], local_domain: str = "",
                 aliases: dict[str, str] | None = None, alias_owner: str = "nobody",
                 refuse: dict[str, str] | None = None, name: str = "mailhub") -> None:
        self.maildirs = maildirs
        self.mailboxes = [m.lower() for m in mailboxes]
        self.aliases = dict(aliases or {})
        self.alias_owner = alias_owner
        domains = sorted({m.rpartition("@")[2] for m in self.mailboxes})
        settings = {
            "mydestination": f"{local_domain}, localhost" if local_domain else "localhost",
            "virtual_mailbox_domains": ", ".join(domains),
            "virtual_mailbox_base": str(maildirs),
            "virtual_mailbox_maps": "texthash:${config_directory}/vmailbox",
            "virtual_transport": "virtual",
            "virtual_uid_maps": f"static:{MAILDIR_UID}",
            "virtual_gid_maps": f"static:{MAILDIR_UID}",
            "virtual_minimum_uid": "100",
            "local_transport": "local",
            "alias_maps": "hash:${config_directory}/aliases",
            "local_recipient_maps": "texthash:${config_directory}/local_recipients",
            "smtpd_recipient_restrictions":
                "check_recipient_access texthash:${config_directory}/refuse",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        maps = {
            "vmailbox": "".join(f"{m} {self.folder(m)}/\n" for m in self.mailboxes),
            "aliases": "".join(f"{k}: {v}\n" for k, v in self.aliases.items()) or "#\n",
            "local_recipients": "".join(f"{k} ok\n" for k in self.aliases) or "#\n",
            "refuse": "".join(f"{k} {v}\n" for k, v in (refuse or {}).items()) or "#\n",
        }
        super().__init__(name, settings, maps=maps)

    @staticmethod
    def folder(address: str) -> str:
        return address.lower().replace("@", "_at_")

    def maildir(self, address: str) -> Path:
        return self.maildirs / self.folder(address)

    def _write_config(self) -> None:
        super()._write_config()
        master = self.config_dir / "master.cf"
        with open(master, "a") as handle:
            handle.write("virtual   unix  -       n       n       -       -       virtual\n"
                         "local     unix  -       n       n       -       -       local\n")
        owner = pwd.getpwnam(self.alias_owner)
        aliases = self.config_dir / "aliases"
        proc = subprocess.run(["postalias", "-c", str(self.config_dir), str(aliases)],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise LabError(f"postalias failed: {proc.stderr.strip()} {self.maillog()[-500:]}")
        for path in (aliases, aliases.with_name("aliases.db")):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        past = time.time() - 60
        for path in self.config_dir.iterdir():
            os.utime(path, (past, past))

    def start(self) -> MailHub:
        self.maildirs.mkdir(parents=True, exist_ok=True)
        os.chown(self.maildirs, MAILDIR_UID, MAILDIR_UID)
        super().start()
        return self

    def queue_empty(self) -> bool:
        proc = subprocess.run(["postqueue", "-c", str(self.config_dir), "-j"],
                              capture_output=True, text=True, timeout=10)
        return proc.returncode == 0 and not proc.stdout.strip()

    def messages(self, address: str) -> list[Message]:
        """The mails delivered to ``address`` so far, oldest first."""
        new = self.maildir(address) / "new"
        files = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)) \
            if new.exists() else []
        return [message_from_bytes(f.read_bytes()) for f in files]

    def flush(self) -> None:
        """Deliver the deferred mail now (``postqueue -f``), as the next queue run would."""
        subprocess.run(["postqueue", "-c", str(self.config_dir), "-f"], capture_output=True,
                       timeout=10, check=False)

    def wait_for(self, address: str, count: int, timeout: float = 30.0,
                 flush_every: float = 0.0) -> list[Message]:
        """The mails of ``address`` once at least ``count`` arrived (LabError after timeout).

        ``flush_every`` > 0 flushes the queue that often while waiting: after a delivery to a
        command that died of a signal, Postfix 3.7 sometimes leaves the message until a later
        queue run rather than retrying within ``maximal_backoff_time``."""
        until = time.monotonic() + timeout
        flushed = time.monotonic()
        while time.monotonic() < until:
            found = self.messages(address)
            if len(found) >= count:
                return found
            if flush_every and time.monotonic() - flushed > flush_every:
                self.flush()
                flushed = time.monotonic()
            time.sleep(0.1)
        queue = subprocess.run(["postqueue", "-c", str(self.config_dir), "-p"],
                               capture_output=True, text=True, timeout=10).stdout
        raise LabError(f"{address}: {len(self.messages(address))} mails, expected {count}\n"
                       f"queue: {queue}\n{self.maillog()[-4000:]}")
