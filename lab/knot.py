"""A real authoritative DNS server (Knot) on loopback serving zones given as text."""

from __future__ import annotations

import os
from pathlib import Path

from lab.process import (
    LabServer,
    ManagedProcess,
    free_port,
    require_binary,
)


class KnotServer(LabServer):
    """``knotd`` in the foreground, on 127.0.0.1 (and optionally ::1), one temp dir per server.

    ``zones`` maps an origin (``example.test``) to zone-file text; the text may omit $ORIGIN
    and the SOA/NS (a default SOA/NS is added when the text has no SOA).
    """

    def __init__(self, zones: dict[str, str], host: str = "127.0.0.1", port: int | None = None,
                 ipv6: bool = False) -> None:
        self.zones = zones
        self.host = host
        self.port = port or free_port(host)
        self.ipv6 = ipv6
        self.process = ManagedProcess("knot")

    @property
    def nameserver(self) -> str:
        """The ``--nameserver`` argument for the plugins."""
        return self.address

    def _write_config(self) -> Path:
        work = self.process.workdir
        (work / "zones").mkdir(exist_ok=True)
        (work / "run").mkdir(exist_ok=True)
        (work / "storage").mkdir(exist_ok=True)
        listen = [f"{self.host}@{self.port}"]
        if self.ipv6:
            listen.append(f"::1@{self.port}")
        zone_entries = []
        for origin, text in self.zones.items():
            origin = origin.rstrip(".")
            if "SOA" not in text.upper().split():
                text = (f"@ 3600 IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n"
                        f"@ 3600 IN NS ns.{origin}.\n" + text)
            (work / "zones" / f"{origin}.zone").write_text(f"$ORIGIN {origin}.\n$TTL 60\n{text}\n")
            zone_entries.append(f"  - domain: {origin}\n    file: {origin}.zone\n")
        config = work / "knot.conf"
        config.write_text(
            "server:\n"
            + ("    user: root:root\n" if os.geteuid() == 0 else "")
            + f"    rundir: {work / 'run'}\n"
            "    listen: [ " + ", ".join(listen) + " ]\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            "database:\n"
            f"    storage: {work / 'storage'}\n"
            "log:\n  - target: stderr\n    any: info\n"
            "template:\n  - id: default\n"
            f"    storage: {work / 'zones'}\n"
            "    semantic-checks: off\n    zonefile-sync: -1\n    journal-content: none\n"
            "zone:\n" + "".join(zone_entries)
        )
        return config

    def start(self) -> KnotServer:
        knotd = require_binary("knotd", "/usr/sbin/knotd")
        config = self._write_config()
        self.process.spawn([knotd, "-c", str(config)])
        first = next(iter(self.zones)).rstrip(".") if self.zones else "."
        self.wait_for_dns_or_fail(self.process, first, "knotd")
        return self

    def stop(self) -> None:
        self.process.cleanup()

