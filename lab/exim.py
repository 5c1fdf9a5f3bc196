"""A real Exim (Debian's exim4-daemon-light, unpacked beside Postfix) as a lab open relay.

Exim conflicts with Postfix as a Debian package, so ``./dev setup`` unpacks it into
``.cache/exim`` (see :func:`find_exim`). Each :class:`EximServer` runs ``exim4 -C CONF -bdf`` in
the foreground with its own spool, log and pid file in a temporary directory; it accepts every
recipient (open relay by default) and discards every message with a ``:blackhole:`` router.
It never asks DNS (``host_lookup =``, no dnslookup router). Exim needs root to start.
:class:`HeaderTrustingExim` relays on the From:/Sender: header into the operator's Maildir.
"""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

from lab.postfix import free_port_on_all
from lab.process import LabError, LabServer, ManagedProcess, wait_for_tcp

LAB_DOMAIN = "relaylab.test"
EXIM_USER = "Debian-exim"
ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (
    ROOT / ".cache" / "exim" / "usr" / "sbin" / "exim4",
    Path("/usr/sbin/exim4"),
)

#: Local users the lab Exim knows (mail to them is discarded like everything else).
LOCAL_USERS = ("postmaster", "abuse", "root", "user")

#: acl_smtp_rcpt bodies: "open" accepts every recipient; "closed" only known local users.
RCPT_ACLS = {
    "open": "  accept\n",
    "closed": ("  accept  domains = +local_domains\n"
               "          verify = recipient\n"
               "  deny    domains = +local_domains\n"
               "          message = unknown user\n"
               "  deny    message = relay not permitted\n"),
}


def find_exim() -> Path:
    """The exim4 binary (unpacked by ./dev setup, or an installed one), else LabError."""
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise LabError("exim4 is not available: run ./dev setup (unpacks exim4-daemon-light into "
                   f"{CANDIDATES[0].parents[2]})")


class EximServer(LabServer):
    """One Exim daemon: ``EximServer("open").start()`` ... ``.stop()`` (or a context manager).

    ``acl`` is a key of :data:`RCPT_ACLS` or the text of an ``acl_smtp_rcpt`` ACL body;
    ``settings`` add or override main-section options (``name = value``).
    """

    def __init__(self, name: str = "open", acl: str = "open",
                 settings: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int | None = None, ipv6: bool = False) -> None:
        self.name = name
        self.host = host
        self.hosts = [host] + (["::1"] if ipv6 and host != "::1" else [])
        self.port = port or free_port_on_all(self.hosts)
        self.acl = RCPT_ACLS.get(acl, acl)
        self.settings = dict(settings or {})
        self.process = ManagedProcess(f"exim-{name}")
        self.started_seconds: float | None = None
        self._final_log = ""

    @property
    def workdir(self) -> Path:
        return self.process.workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "exim.conf"

    def mainlog(self) -> str:
        """Exim's main log plus its reject/panic logs and anything it printed."""
        if not self.workdir.exists():
            return self._final_log
        parts = [self.process.output()]
        for name in ("mainlog", "rejectlog", "paniclog"):
            path = self.workdir / "log" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    maillog = mainlog

    def _write_config(self, exim: Path) -> None:
        work = self.workdir
        work.chmod(0o755)
        user = pwd.getpwnam(EXIM_USER)
        for sub in ("spool", "log"):
            (work / sub).mkdir(exist_ok=True)
            os.chown(work / sub, user.pw_uid, user.pw_gid)
        interfaces = " ; ".join(f"{h}.{self.port}" for h in self.hosts)
        main = {
            "exim_path": str(exim),
            "exim_user": EXIM_USER,
            "exim_group": EXIM_USER,
            "spool_directory": str(work / "spool"),
            "log_file_path": str(work / "log" / "%slog"),
            "pid_file_path": str(work / "exim.pid"),
            "daemon_smtp_ports": str(self.port),
            "local_interfaces": f"<; {interfaces}",
            "disable_ipv6": "false" if any(":" in h for h in self.hosts) else "true",
            "primary_hostname": f"mx.{LAB_DOMAIN}",
            "qualify_domain": LAB_DOMAIN,
            "host_lookup": "",
            "rfc1413_hosts": "",
            "tls_advertise_hosts": "",
            "keep_environment": "",
            "acl_smtp_rcpt": "acl_check_rcpt",
            "smtp_accept_max": "50",
            "smtp_banner": "$smtp_active_hostname ESMTP Exim $version_number $tod_full",
            **self._main_options(),
            **self.settings,
        }
        self.config_path.write_text(
            f"domainlist local_domains = {LAB_DOMAIN} : mx.{LAB_DOMAIN} : localhost\n"
            + "".join(f"{key} = {value}\n" for key, value in main.items())
            + "\nbegin acl\n\nacl_check_rcpt:\n" + self.acl + self._acls()
            + "\nbegin routers\n\n" + self._routers()
            # known local users and every remote address go to :blackhole: (nothing is
            # delivered); unknown local users do not route, so "verify = recipient" fails
            + "local_users:\n  driver = redirect\n  domains = +local_domains\n"
            f"  local_parts = {' : '.join(LOCAL_USERS)}\n  data = :blackhole:\n"
            "remote:\n  driver = redirect\n  domains = ! +local_domains\n"
            "  data = :blackhole:\n"
            "\nbegin transports\n\n" + self._transports()
            + "\nbegin retry\n\n*  *  F,1m,1m\n"
        )
        self.config_path.chmod(0o644)

    # Hooks for subclasses: the lab Exim itself adds nothing.
    def _main_options(self) -> dict[str, str]:
        """Main-section options added before ``settings``."""
        return {}

    def _acls(self) -> str:
        """More ACLs after ``acl_check_rcpt`` (each ``name:`` and its body)."""
        return ""

    def _routers(self) -> str:
        """Routers tried before the two :blackhole: ones."""
        return ""

    def _transports(self) -> str:
        """The transports section."""
        return ""

    def start(self) -> EximServer:
        """Write the configuration, start ``exim4 -bdf`` and wait for its banner."""
        if os.geteuid() != 0:
            raise LabError("the lab Exim needs root to start (exim4 -bd)")
        exim = find_exim()
        try:
            pwd.getpwnam(EXIM_USER)
        except KeyError as exc:
            raise LabError(f"user {EXIM_USER} is missing: run ./dev setup") from exc
        began = time.monotonic()
        self._write_config(exim)
        self.process.spawn([str(exim), "-C", str(self.config_path), "-bdf"])
        try:
            for host in self.hosts:
                wait_for_tcp(host, self.port, timeout=15, banner=True)
        except LabError as exc:
            log = self.mainlog()
            self.stop()
            raise LabError(f"exim {self.name} did not come up: {exc}\n{log}") from exc
        self.started_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the daemon (and its children: it runs in its own session) and remove its files."""
        if self.workdir.exists():
            self._final_log = self.mainlog()
        self.process.cleanup()

    def __repr__(self) -> str:
        return f"EximServer({self.name!r}, {self.host}:{self.port})"


#: acl_smtp_data body of :class:`HeaderTrustingExim`: a message is accepted only when its
#: From: or Sender: header names an address in the server's own domains (the seed-001 fault:
#: relaying on the originator in the headers).
HEADER_TRUST_DATA_ACL = (
    "  accept  condition = ${if match_domain{${domain:$h_from:}}{+local_domains}}\n"
    "  accept  condition = ${if match_domain{${domain:$h_sender:}}{+local_domains}}\n"
    "  deny    message = relay not permitted\n"
)


class HeaderTrustingExim(EximServer):
    """An Exim that relays on the header originator, and holds the operator's mailbox.

    Its ``acl_smtp_rcpt`` accepts every recipient; its ``acl_smtp_data``
    (:data:`HEADER_TRUST_DATA_ACL`) accepts a message only when ``From:`` or ``Sender:`` is in
    relaylab.test (or another of its local domains) and denies every other one, so only a
    forged header gets outside mail through. ``USER@operator.test`` (``operator_domain``) is an
    outside domain to the ACLs but is routed by an ``accept`` router to an appendfile/maildir
    transport writing ``mail_root/USER`` (Maildirs created empty at start, owned by
    Debian-exim, whom Exim runs deliveries as under ``-C``). Everything else is discarded as in
    every lab Exim: nothing leaves the machine.
    """

    def __init__(self, name: str, mail_root: Path, users: tuple[str, ...] = ("probe",), *,
                 operator_domain: str = "operator.test", **kwargs: object) -> None:
        super().__init__(name, acl="open", **kwargs)  # type: ignore[arg-type]
        self.mail_root = Path(mail_root)
        self.users = users
        self.operator_domain = operator_domain

    def maildir(self, user: str) -> Path:
        return self.mail_root / user

    def operator_address(self, user: str) -> str:
        return f"{user}@{self.operator_domain}"

    def _main_options(self) -> dict[str, str]:
        return {"acl_smtp_data": "acl_check_data"}

    def _acls(self) -> str:
        return "\nacl_check_data:\n" + HEADER_TRUST_DATA_ACL

    def _routers(self) -> str:
        return ("operator_mailbox:\n  driver = accept\n"
                f"  domains = {self.operator_domain}\n"
                f"  local_parts = {' : '.join(self.users)}\n"
                "  transport = operator_maildir\n")

    def _transports(self) -> str:
        return ("operator_maildir:\n  driver = appendfile\n"
                f"  directory = {self.mail_root}/$local_part_data\n"
                "  maildir_format\n  create_directory = false\n"
                f"  user = {EXIM_USER}\n  group = {EXIM_USER}\n  mode = 0600\n")

    def _write_config(self, exim: Path) -> None:
        super()._write_config(exim)
        user = pwd.getpwnam(EXIM_USER)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        self.mail_root.chmod(0o755)
        for name in self.users:
            for sub in ("", "cur", "new", "tmp"):
                path = self.maildir(name) / sub
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, user.pw_uid, user.pw_gid)
                path.chmod(0o700)

    def __repr__(self) -> str:
        return f"HeaderTrustingExim({self.name!r}, {self.host}:{self.port})"
