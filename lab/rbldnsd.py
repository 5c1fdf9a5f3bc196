"""A real DNSBL server (rbldnsd) on loopback serving zones given as text.

``zones`` maps a zone name to one dataset ``(kind, text)`` or a list of them, where kind is an
rbldnsd dataset type: ``ip4set``, ``ip4trie``, ``ip6trie``, ``ip6tset``, ``dnset``,
``generic``, ``acl``, ... Handy recipes:

* a listing with a TXT reason: ``("ip4set", ":127.0.0.2:Listed, see http://x/?$\\n192.0.2.1")``;
* a zone answering 127.255.255.254 to everything: ``("acl", "0.0.0.0/0 :127.255.255.254:no")``;
* a zone that never answers: ``("acl", "0.0.0.0/0 :ignore\\n::/0 :ignore")``;
* A records for host names: ``("generic", "mail A 192.0.2.1")``.

An ``acl`` needs a real dataset beside it; an empty ``ip4set`` is added when it stands alone.
rbldnsd REFUSES names outside its zones. It binds one socket: ``-b HOST/PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.process import (
    LabServer,
    ManagedProcess,
    free_port,
    require_binary,
)

Dataset = tuple[str, str]


class RbldnsdServer(LabServer):
    """``rbldnsd -n`` in the foreground on ``host``/``port``, one temp dir per server."""

    def __init__(self, zones: dict[str, Dataset | list[Dataset]], host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.zones = {name.rstrip("."): [sets] if isinstance(sets, tuple) else list(sets)
                      for name, sets in zones.items()}
        self.host = host
        self.port = port or free_port(host)
        self.process = ManagedProcess("rbldnsd")

    @property
    def nameserver(self) -> str:
        """The ``--nameserver`` argument for the plugins."""
        return self.address

    def _zone_specs(self) -> list[str]:
        work = self.process.workdir
        data = work / "data"
        data.mkdir(exist_ok=True)
        specs = []
        for number, (zone, datasets) in enumerate(self.zones.items()):
            if all(kind == "acl" for kind, _ in datasets):
                datasets = [*datasets, ("ip4set", "")]
            for index, (kind, text) in enumerate(datasets):
                filename = f"z{number}-{index}.{kind}"
                (data / filename).write_text(text.rstrip("\n") + "\n")
                (data / filename).chmod(0o644)
                specs.append(f"{zone}:{kind}:{filename}")
        return specs

    def start(self) -> RbldnsdServer:
        rbldnsd = require_binary("rbldnsd", "/usr/sbin/rbldnsd")
        specs = self._zone_specs()
        data = self.process.workdir / "data"
        for path in (self.process.workdir, data):
            path.chmod(0o755)  # readable by the rbldns user
        argv = [rbldnsd, "-n", "-w", str(data), "-b", f"{self.host}/{self.port}",
                "-t", "60", "-c", "0"]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "rbldns"]  # rbldnsd refuses to run as root
        self.process.spawn([*argv, *specs])
        plain = [z for z, sets in self.zones.items() if all(k != "acl" for k, _ in sets)]
        first = (plain or list(self.zones) or ["lab.test"])[0]
        self.wait_for_dns_or_fail(self.process, first, "rbldnsd")
        return self

    @property
    def workdir(self) -> Path:
        return self.process.workdir

    def stop(self) -> None:
        self.process.cleanup()

