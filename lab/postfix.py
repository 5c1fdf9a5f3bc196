"""A real Postfix instance on loopback with its own configuration, queue and log.

Each :class:`PostfixServer` lives in its own temporary directory (``etc/`` with main.cf and
master.cf, ``queue/``, ``data/``, ``maillog``) and is run with ``postfix -c DIR start``; the
system's /etc/postfix is never read for configuration nor written. Every instance discards all
mail (every transport is ``discard:``), never asks DNS, and listens only on ``host:port``
(and ``[::1]:port`` with ``ipv6=True``). Postfix needs root to start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from lab.process import (
    LabError,
    LabServer,
    free_port,
    require_binary,
    stop_pid,
    wait_for_tcp,
)

LAB_DOMAIN = "relaylab.test"

#: main.cf settings every instance gets; ``settings`` override them key by key.
DEFAULT_SETTINGS: dict[str, str] = {
    "compatibility_level": "3.6",
    "myhostname": f"mx.{LAB_DOMAIN}",
    "mydomain": LAB_DOMAIN,
    "myorigin": "$mydomain",
    "mydestination": f"{LAB_DOMAIN}, mx.{LAB_DOMAIN}, localhost",
    "mynetworks": "127.0.0.1/32",
    "relay_domains": "",
    # Correctly closed: trusted network or our own domains only, 5xx for everything else.
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    # Only these local users exist (smtpd rejects other local recipients with 550 5.1.1).
    "local_recipient_maps": "texthash:${config_directory}/local_recipients",
    "alias_maps": "",
    "alias_database": "",
    # Nothing ever leaves the machine, nothing asks DNS.
    "default_transport": "discard:",
    "relay_transport": "discard:",
    "local_transport": "discard:",
    "virtual_transport": "discard:",
    "smtp_dns_support_level": "disabled",
    "smtpd_peername_lookup": "no",
    "biff": "no",
    "append_dot_mydomain": "no",
    # No flow control: relay probes open many MAIL transactions that never become messages, so
    # qmgr never hands tokens back and, after ~80 of them, cleanup pauses 1 s per MAIL FROM.
    "in_flow_delay": "0",
}

#: Local users the lab instances know (``local_recipient_maps``).
LOCAL_RECIPIENTS = ("postmaster", "abuse", "root", "user")

#: The lab's named configurations: name -> (main.cf settings, maps). Verified forms are listed
#: in docs/lab.md ("Postfix") and proven by tests/test_lab_mtas.py.
PRESETS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # Correctly closed (the defaults): 554 5.7.1 Relay access denied for every outside form.
    "closed": ({}, {}),
    # Open relay: every client is "trusted".
    "open": ({"mynetworks": "0.0.0.0/0"}, {}),
    # Classic hole: relaying decided by the (forgeable) sender address.
    "sender_trust": (
        {"smtpd_relay_restrictions": "permit_mynetworks, check_sender_access "
         "texthash:${config_directory}/sender_access, reject_unauth_destination"},
        {"sender_access": f"{LAB_DOMAIN} OK\n"}),
    # Classic hole: relaying decided by the (forgeable) HELO name.
    "helo_trust": (
        {"smtpd_relay_restrictions": "permit_mynetworks, check_helo_access "
         "texthash:${config_directory}/helo_access, reject_unauth_destination"},
        {"helo_access": f"mx.{LAB_DOMAIN} OK\n{LAB_DOMAIN} OK\nlocalhost OK\n"}),
    # Classic hole: a backup MX / gateway for relaylab.test with allow_untrusted_routing = yes
    # forwards sender-routed addresses (user%ext@dom, "user@ext"@dom, ext!user@dom) unchanged.
    "percent_hole": (
        {"mydestination": f"mx.{LAB_DOMAIN}, localhost", "relay_domains": LAB_DOMAIN,
         "relay_recipient_maps": "", "allow_untrusted_routing": "yes"}, {}),
    # Classic hole (issue 13): more HELO names trusted, none of them the banner's name.
    "helo_trust_names": (
        {"smtpd_relay_restrictions": "permit_mynetworks, check_helo_access "
         "texthash:${config_directory}/helo_access, reject_unauth_destination"},
        {"helo_access": f"localhost.localdomain OK\ngw.{LAB_DOMAIN} OK\n"}),
    # Closed, but XCLIENT is open to every client (smtpd_authorized_xclient_hosts): anyone may
    # claim to be 127.0.0.1, which is in mynetworks, and relay (Postfix XCLIENT_README).
    "xclient_open": ({"smtpd_authorized_xclient_hosts": "0.0.0.0/0"}, {}),
    # Closed, with XFORWARD open to every client: XFORWARD changes only what is logged and
    # passed on, never the relay decision.
    "xforward_open": ({"smtpd_authorized_xforward_hosts": "0.0.0.0/0"}, {}),
    # Rejects every recipient (even postmaster): a relay test is inconclusive.
    "reject_all": ({"smtpd_relay_restrictions": "reject"}, {}),
    # Postfix's own default: 454 4.7.1 (temporary) for relay attempts.
    "defer": ({"smtpd_relay_restrictions": "permit_mynetworks, defer_unauth_destination"}, {}),
    # SMTP smuggling (CVE-2023-51764), Postfix < 3.9's default: a bare <LF> ends a line, so
    # <LF>.<LF>, <LF>.<CR><LF> and <CR><LF>.<LF> end DATA.
    "bare_newline_default": ({"smtpd_forbid_bare_newline": "no"}, {}),
    # The fix (3.7.9+): bare <LF> is no line end; no exclusions, so 127.0.0.1 is covered too.
    "bare_newline_forbidden": ({"smtpd_forbid_bare_newline": "yes",
                                "smtpd_forbid_bare_newline_exclusions": ""}, {}),
    # The fix plus smtpd_forbid_unauth_pipelining: message text sent before the 354 is refused.
    "smuggling_hardened": ({"smtpd_forbid_bare_newline": "yes",
                            "smtpd_forbid_bare_newline_exclusions": "",
                            "smtpd_forbid_unauth_pipelining": "yes"}, {}),
}

# The services a discard-only Postfix needs; no chroot, no smtp client, no pickup.
MASTER_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


def _listen_hosts(host: str, ipv6: bool) -> list[str]:
    hosts = [host]
    if ipv6 and host != "::1":
        hosts.append("::1")
    return hosts


def free_port_on_all(hosts: list[str]) -> int:
    """A TCP port free on every one of ``hosts``."""
    for _ in range(50):
        port = free_port(hosts[0])
        if all(_tcp_free(h, port) for h in hosts[1:]):
            return port
    raise LabError(f"no port free on all of {hosts}")


def _tcp_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listener(host: str, port: int) -> str:
    address = f"[{host}]" if ":" in host else host
    return f"{address}:{port} inet  n       -       n       -       -       smtpd\n"


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a slow init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait until it is gone (or a zombie), then :func:`stop_pid` as the fallback."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if not _alive(pid):
            return
        time.sleep(0.02)
    stop_pid(pid, timeout=1)


def _pids_of_config(config_dir: Path) -> list[int]:
    """Processes started for this instance (Postfix passes MAIL_CONFIG to its children)."""
    marker = f"MAIL_CONFIG={config_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


class PostfixServer(LabServer):
    """One Postfix instance: ``PostfixServer("closed").start()`` ... ``.stop()``.

    ``settings`` override main.cf keys; ``maps`` writes files into the config directory (use
    them as ``texthash:${config_directory}/NAME``, no postmap needed).
    """

    def __init__(self, name: str, settings: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None, ipv6: bool = False,
                 maps: dict[str, str] | None = None) -> None:
        self.name = name
        self.host = host
        self.ipv6 = ipv6 or ":" in host
        self.hosts = _listen_hosts(host, ipv6)
        self.port = port or free_port_on_all(self.hosts)
        self.settings = dict(DEFAULT_SETTINGS, **(settings or {}))
        self.maps = dict(maps or {})
        self.workdir: Path | None = None
        self._final_log = ""
        self.started_seconds: float | None = None
        self.leftovers: list[int] = []   # pids still there after the master stopped

    @classmethod
    def preset(cls, preset: str, name: str | None = None, **kwargs: object) -> PostfixServer:
        """An instance with one of the :data:`PRESETS` (not started)."""
        settings, maps = PRESETS[preset]
        return cls(name or preset, dict(settings), maps=dict(maps), **kwargs)  # type: ignore[arg-type]

    # paths -------------------------------------------------------------------------------
    def _dir(self) -> Path:
        if self.workdir is None:
            raise LabError(f"postfix {self.name} is not set up")
        return self.workdir

    @property
    def config_dir(self) -> Path:
        return self._dir() / "etc"

    @property
    def queue_dir(self) -> Path:
        return self._dir() / "queue"

    @property
    def maillog_path(self) -> Path:
        return self._dir() / "maillog"

    def maillog(self) -> str:
        """Everything this instance logged (Postfix reports its errors only here)."""
        if self.workdir is None:
            return self._final_log
        with contextlib.suppress(OSError):
            return self.maillog_path.read_text(errors="replace")
        return self._final_log

    # life cycle --------------------------------------------------------------------------
    def _write_config(self) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"mailprobe-postfix-{self.name}-"))
        self.workdir = work
        work.chmod(0o755)  # the postfix user must reach its queue and data directories
        postfix_user = pwd.getpwnam("postfix")
        for sub in ("etc", "queue"):
            (work / sub).mkdir(mode=0o755)
        (work / "data").mkdir(mode=0o700)
        os.chown(work / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        main = {
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(work / "data"),
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(work),
            "inet_interfaces": "all",
            "inet_protocols": ("all" if self.ipv6 and len(self.hosts) > 1
                               else "ipv6" if self.ipv6 else "ipv4"),
            **self.settings,
        }
        (self.config_dir / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in main.items()))
        (self.config_dir / "master.cf").write_text(
            "".join(_listener(h, self.port) for h in self.hosts) + MASTER_SERVICES)
        files = {"local_recipients": "".join(f"{u} ok\n" for u in LOCAL_RECIPIENTS), **self.maps}
        for filename, text in files.items():
            (self.config_dir / filename).write_text(text if text.endswith("\n") else text + "\n")
        # Postfix waits until a just-written main.cf or table is a second old (about 2 s per
        # start): date the files back instead.
        past = time.time() - 60
        for path in self.config_dir.iterdir():
            os.utime(path, (past, past))

    def start(self) -> PostfixServer:
        """Write the configuration, start Postfix and wait for its banner (about 1 s)."""
        if os.geteuid() != 0:
            raise LabError("Postfix needs root to start (postfix -c DIR start)")
        postfix = require_binary("postfix", "/usr/sbin/postfix")
        began = time.monotonic()
        self._write_config()
        proc = subprocess.run([postfix, "-c", str(self.config_dir), "start"],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        try:
            if proc.returncode != 0:
                raise LabError(f"postfix start exited {proc.returncode}")
            for host in self.hosts:
                wait_for_tcp(host, self.port, timeout=15, banner=True)
        except LabError as exc:
            detail = (proc.stdout + proc.stderr).strip()
            log = self.maillog()
            self.stop()
            raise LabError(f"postfix {self.name} did not come up: {exc}\n{detail}\n{log}") from exc
        self.started_seconds = time.monotonic() - began
        return self

    def _master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Stop the master as ``postfix stop`` does (SIGTERM; it takes its process group with
        it) without that script's one-second polling, kill whatever of this instance is left,
        and remove its files (the maillog text is kept for :meth:`maillog`)."""
        if self.workdir is None:
            return
        master = self._master_pid()
        if master is not None:
            _terminate(master)
        else:
            postfix = shutil.which("postfix") or "/usr/sbin/postfix"
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([postfix, "-c", str(self.config_dir), "stop"],
                               capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        self.leftovers = _pids_of_config(self.config_dir)
        for pid in self.leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        until = time.monotonic() + 5
        while any(_alive(pid) for pid in self.leftovers) and time.monotonic() < until:
            time.sleep(0.02)
        self._final_log = self.maillog()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None


    def __repr__(self) -> str:
        return f"PostfixServer({self.name!r}, {self.host}:{self.port})"
