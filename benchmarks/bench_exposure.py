#!/usr/bin/env python3
"""Exposure scan: check_port_exposure vs nmap -sT on the same targets, and the cost of a /16.

Set-up (inside a private network namespace, whose only interface is its own loopback):

* ``site /24``: 127.77.0.0/24, port 25. Four real Postfix instances listen (127.77.0.4, .6,
  .7, .9), every other address refuses (RST). (Not the lab's scripted SMTP server: nmap closes
  each connection with an RST before the server accepts it, which that server does not
  survive.) check_port_exposure runs twice: with the four
  allowed (``--allow``: a pure connect scan, the same work as nmap) and with none allowed
  (the four are unsanctioned: their banner and EHLO are read too).
* ``silent /24``: 10.99.0.0/24, port 25, routed into the namespace's loopback
  (``ip route add 10.99.0.0/24 dev lo``): the SYNs are dropped there (no local address, no
  forwarding), nothing answers and nothing leaves the namespace. Every port is "filtered":
  the case of a site whose router drops port 25 for almost every address.
* ``/16 refused``: 127.1.0.0/16 on loopback, port 25, nothing listens (one round each).
* ``/16 silent``: 10.98.0.0/16 routed into loopback like the silent /24; check_port_exposure
  only (nmap would take minutes), once with --max-in-flight 4096 --connect-timeout 2.

nmap runs as ``nmap -sT -Pn -n -p 25 TARGETS`` (connect scan, no host discovery, no DNS,
default timing T3), check_port_exposure with ``--connect-timeout 3`` (its default) unless
noted. Both must find the same open ports: the script checks it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SITE = "127.77.0.0/24"
LISTENERS = ("127.77.0.4", "127.77.0.6", "127.77.0.7", "127.77.0.9")
SILENT = "10.99.0.0/24"
BIG_REFUSED = "127.1.0.0/16"
BIG_SILENT = "10.98.0.0/16"


def env() -> dict[str, str]:
    environment = common.child_env()
    environment["PYTHONPATH"] = str(common.ROOT / "lib")
    return environment


def ours(target: str, *extra: str, timeout: str = "60") -> Callable[[], common.Run]:
    argv = [*common.plugin("port_exposure"), "-N", target, "--ports", "25", "-t", timeout,
            *extra]
    return lambda: common.run(argv, timeout=600, env=env())


def nmap(target: str) -> Callable[[], common.Run]:
    argv = ["nmap", "-sT", "-Pn", "-n", "-p", "25", target]
    return lambda: common.run(argv, timeout=1200)


def open_ports(name: str, result: common.Run) -> int:
    """Open ports a contender found (nmap: 'open' port lines; ours: the open= perfdata)."""
    if name.startswith("nmap"):
        return len(re.findall(r"^25/tcp\s+open\b", result.stdout, re.M))
    match = re.search(r"\bopen=(\d+)", result.first_line)
    if not match:
        common.expect(name, result, (), "open=")
    return int(match.group(1)) if match else -1


def checker(expected_open: int, ours_codes: tuple[int, ...]) -> Callable[[str, common.Run], None]:
    def check(name: str, result: common.Run) -> None:
        if name.startswith("nmap"):
            common.expect(name, result, (0,), "Nmap done")
        else:
            common.expect(name, result, ours_codes, "PORT_EXPOSURE")
        found = open_ports(name, result)
        if found != expected_open:
            raise SystemExit(f"{name} found {found} open ports, expected {expected_open}:\n"
                             f"{result.stdout[:2000]}")
    return check


def blackhole(prefix: str) -> None:
    """Route ``prefix`` into this namespace's loopback: SYNs to it are silently dropped."""
    subprocess.run(["ip", "route", "add", prefix, "dev", "lo"], check=True)


def row(name: str, s: common.Series, base: float) -> list[str]:
    lo, hi = s.spread("wall")
    wall = s.median("wall")
    return [name, common.ms(wall), f"{common.ms(lo)}..{common.ms(hi)}",
            common.ms(s.median("cpu")), f"{s.median('maxrss_kb') / 1024:.1f} MiB",
            f"{wall / base:.2f}"]


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0], rounds=3)
    parser.add_argument("--skip-big", action="store_true", help="leave out the two /16 cases")
    args = parser.parse_args()
    common.in_private_netns()
    common.prepare()
    from lab.postfix import PostfixServer

    blackhole(SILENT)
    blackhole(BIG_SILENT)
    allow = ",".join(LISTENERS)
    servers = [PostfixServer(f"bench-site{n}", {"myhostname": f"host{n}.site.test"},
                             host=address, port=25)
               for n, address in enumerate(LISTENERS)]
    tables: dict[str, dict[str, common.Series]] = {}
    try:
        for server in servers:
            server.start()
        tables["site /24 (4 listeners, 250 refused)"] = common.alternate({
            "check_port_exposure --allow (scan only)": ours(SITE, "--allow", allow),
            "check_port_exposure (4 unsanctioned: banner+EHLO)": ours(SITE),
            "nmap -sT": nmap(SITE),
        }, args.rounds, check=checker(len(LISTENERS), (0, 2)))
        tables["silent /24 (254 filtered)"] = common.alternate({
            "check_port_exposure": ours(SILENT),
            "nmap -sT": nmap(SILENT),
        }, args.rounds, warmup=0, check=checker(0, (0,)))
        if not args.skip_big:
            tables["/16 refused (65534 addresses, loopback)"] = common.alternate({
                "check_port_exposure": ours(BIG_REFUSED, timeout="300"),
                "nmap -sT": nmap(BIG_REFUSED),
            }, 1, warmup=0, check=checker(0, (0,)))
            tables["/16 silent (65534 filtered)"] = common.alternate({
                "check_port_exposure --max-in-flight 4096 --connect-timeout 2":
                    ours(BIG_SILENT, "--max-in-flight", "4096", "--connect-timeout", "2",
                         timeout="300"),
            }, 1, warmup=0, check=checker(0, (0,)))
    finally:
        for server in servers:
            server.stop()
    report(tables, args)


def report(tables: dict[str, dict[str, common.Series]], args: object) -> None:
    lines = [f"Exposure scan, port 25; {args.rounds} rounds for the /24s, 1 for the /16s "
             "(medians)"]
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for title, series in tables.items():
        base = next(iter(series.values())).median("wall")
        rows = [row(name, s, base) for name, s in series.items()]
        lines += ["", title, common.table(rows, ["tool", "wall", "min..max", "cpu", "peak RSS",
                                                 "x first"])]
        for name, s in series.items():
            lines.append(f"  {name}: {s.runs[-1].first_line[:200]}")
        figures[title] = {name: {"wall": s.median("wall"), "cpu": s.median("cpu")}
                          for name, s in series.items()}
    text = "\n".join(lines)
    print(text)
    common.save("exposure", {"text": text, "figures": figures})


if __name__ == "__main__":
    main()
