#!/usr/bin/env python3
"""DNSBL fan-out: check_dnsbl vs check_rbl, 50 zones on a local rbldnsd, +100 ms per answer.

Set-up (inside a private network namespace): rbldnsd serves 50 zones (each lists RFC 5782's
127.0.0.2, three of them also list 192.0.2.66); a delaying forwarder on 127.0.0.1:53 holds every
query for --delay-ms before passing it to rbldnsd. Both tools ask that forwarder for the same
address on the same 50 zones. Cases: a clean address and one listed on 3 zones. check_dnsbl
asks, in one round, each zone's A and TXT for the address and its two RFC 5782 test entries
(127.0.0.2 must be listed, 127.0.0.1 must not): 200 queries; check_rbl asks the 50 A questions.

Goals (issue 12): check_dnsbl at least 2x faster than check_rbl with its defaults, and not slower
than ``check_rbl --workers 50``, in both cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

ZONES = [f"bl{n:02d}.bench.test" for n in range(1, 51)]
LISTING_ZONES = ZONES[::17]  # bl01, bl18, bl35
CLEAN, LISTED = "192.0.2.99", "192.0.2.66"
CHECK_RBL = "/usr/lib/nagios/plugins/check_rbl"


def zone_data() -> dict[str, tuple[str, str]]:
    zones = {}
    for zone in ZONES:
        text = ":127.0.0.2:Listed by $ - see http://bench.test/?$\n127.0.0.2\n"
        if zone in LISTING_ZONES:
            text += f"{LISTED}\n"
        zones[zone] = ("ip4set", text)
    return zones


def start_forwarder(upstream: str, delay_ms: float, listen: str,
                    probe_zone: str = ZONES[0]) -> subprocess.Popen:
    from lab.process import wait_for_dns

    env = dict(os.environ, PYTHONPATH=str(common.ROOT / "lib"))
    proc = subprocess.Popen([common.PYTHON, "-m", "lab.dnsdelay", "--listen", listen,
                             "--upstream", upstream, "--delay-ms", str(delay_ms)], env=env)
    host, port = listen.rsplit(":", 1)
    wait_for_dns(host, int(port), probe_zone, timeout=10)
    return proc


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--delay-ms", type=float, default=100.0)
    args = parser.parse_args()
    common.in_private_netns()
    common.prepare()
    from lab.rbldnsd import RbldnsdServer

    delay = args.delay_ms / 1000
    listen = "127.0.0.1:53"
    with RbldnsdServer(zone_data(), port=5300) as rbl:
        forwarder = start_forwarder(rbl.nameserver, args.delay_ms, listen)
        try:
            figures = measure(args.rounds, delay, listen)
        finally:
            forwarder.terminate()
            forwarder.wait(5)
    report(figures, args, delay)


def ours(address: str, nameserver: str, *extra: str) -> list[str]:
    zones = [arg for zone in ZONES for arg in ("--zone", zone)]
    return [*common.plugin("dnsbl"), "-H", address, "--nameserver", nameserver, *zones, *extra]


def check_rbl(address: str, *extra: str) -> list[str]:
    zones = [arg for zone in ZONES for arg in ("-s", zone)]
    return [CHECK_RBL, "-H", address, "-n", "127.0.0.1", "-w", "1", "-c", "2", *zones, *extra]


def measure(rounds: int, delay: float, nameserver: str) -> dict:
    bare = [common.PYTHON, "-c", "pass"]
    cases = {}
    for case, address, ours_codes, rbl_codes in (("clean", CLEAN, (0,), (0,)),
                                                 ("listed", LISTED, (2,), (2,))):
        contenders = {
            "python -c pass": lambda: common.run(bare),
            "check_dnsbl": lambda a=address: common.run(ours(a, nameserver)),
            "check_rbl": lambda a=address: common.run(check_rbl(a)),
            "check_rbl --workers 50": lambda a=address: common.run(check_rbl(a, "--workers",
                                                                              "50")),
        }
        expected = {"check_dnsbl": (ours_codes, "DNSBL"), "check_rbl": (rbl_codes, "CHECK_RBL"),
                    "check_rbl --workers 50": (rbl_codes, "CHECK_RBL"),
                    "python -c pass": ((0,), "")}

        def check(name: str, result: common.Run, expected: dict = expected) -> None:
            codes, needle = expected[name]
            common.expect(name, result, codes, needle)

        series = common.alternate(contenders, rounds, check=check)
        cases[case] = {name: {"wall": s.median("wall"), "cpu": s.median("cpu"),
                              "maxrss_kb": s.median("maxrss_kb"), "spread": s.spread("wall"),
                              "sample": s.runs[-1].first_line}
                       for name, s in series.items()}
        # not timed: what check_dnsbl asked, in how many rounds (its -v count line)
        verbose = common.run(ours(address, nameserver, "-v")).stdout.splitlines()
        cases[case]["check_dnsbl"]["queries"] = verbose[-1] if verbose else ""
    return cases


def report(cases: dict, args: object, delay: float) -> None:
    lines = [f"DNSBL fan-out: {len(ZONES)} zones, +{delay * 1000:.0f} ms per answer, "
             f"{args.rounds} rounds (medians)"]
    for case, figures in cases.items():
        bare = figures["python -c pass"]["wall"]
        ours_wall = figures["check_dnsbl"]["wall"]
        goal = 1.5 * (bare + delay)
        rbl, rbl50 = figures["check_rbl"]["wall"], figures["check_rbl --workers 50"]["wall"]
        rows = []
        for name, f in figures.items():
            lo, hi = f["spread"]
            rows.append([name, common.ms(f["wall"]), f"{common.ms(lo)}..{common.ms(hi)}",
                         common.ms(f["cpu"]), f"{f['maxrss_kb'] / 1024:.1f} MiB",
                         f"{f['wall'] / ours_wall:.2f}"])
        lines += ["", f"case {case} ({CLEAN if case == 'clean' else LISTED}):",
                  common.table(rows, ["tool", "wall", "min..max", "cpu", "peak rss",
                                      "x check_dnsbl"]),
                  f"goal 1: check_dnsbl {common.ms(ours_wall)} <= 1.5 x (interpreter "
                  f"{common.ms(bare)} + {common.ms(delay)}) = {common.ms(goal)}: "
                  f"{'met' if ours_wall <= goal else 'NOT met'}",
                  f"goal 2: check_rbl / check_dnsbl = {rbl / ours_wall:.2f} (default workers, "
                  f"goal >= 2: {'met' if rbl >= 2 * ours_wall else 'NOT met'}), "
                  f"{rbl50 / ours_wall:.2f} (--workers 50, goal >= 1: "
                  f"{'met' if rbl50 >= ours_wall else 'NOT met'})",
                  f"  check_dnsbl -v: {figures['check_dnsbl'].get('queries', '')}",
                  *(f"  {name}: {f['sample']}" for name, f in figures.items() if f["sample"])]
    text = "\n".join(lines)
    print(text)
    common.save("dnsbl", {"delay_ms": delay * 1000, "zones": len(ZONES), "rounds": args.rounds,
                          "cases": cases, "text": text})


if __name__ == "__main__":
    main()
