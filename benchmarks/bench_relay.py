#!/usr/bin/env python3
"""Relay catalogue: check_open_relay (full catalogue) vs nmap --script smtp-open-relay.

Set-up (inside a private network namespace): one real Postfix (preset "closed": a correctly
closed server, the common case; --preset to change) behind a counting proxy that adds --delay-ms
to every server reply (two for a banner: handshake + banner). Both tools speak from 127.0.0.2
(external to the server's mynetworks 127.0.0.1/32) through the proxy. Each tool is measured
without and with the added latency; the proxy counts connections, command lines and round trips
(turns where the client waited for the server) for every run, the same way for both tools.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from smtpproxy import CountingProxy

NMAP_ATTEMPTS = 16  # smtp-open-relay's fixed list of forms


def nmap_datadir(port: int) -> str:
    """A --datadir whose nmap-services calls our port smtp (else the script skips it)."""
    work = Path(tempfile.mkdtemp(prefix="mpbench-nmap-"))
    services = Path("/usr/share/nmap/nmap-services").read_text()
    (work / "nmap-services").write_text(f"smtp\t{port}/tcp\t0.9\t# mailprobe bench\n"
                                        + services)
    return str(work)


def ours_argv(port: int) -> list[str]:
    return [*common.plugin("open_relay"), "-H", "127.0.0.1", "-p", str(port),
            "--source-address", "127.0.0.2", "--mail-domain", "relaylab.test",
            "--external-domain", "example.net", "-t", "120", "-v"]


def nmap_argv(port: int, datadir: str) -> list[str]:
    return ["nmap", "-n", "-Pn", "-sT", "-p", str(port), "--datadir", datadir,
            "-S", "127.0.0.2", "-e", "lo", "--script", "smtp-open-relay",
            "--script-args", "smtp-open-relay.domain=example.net", "127.0.0.1"]


def measure(proxy: CountingProxy, argv: list[str], name: str, attempts_of) -> common.Run:
    proxy.reset()
    result = common.run(argv, timeout=300)
    if name == "nmap" and "smtp-open-relay" not in result.stdout:
        common.expect(name, result, (), "smtp-open-relay")
    if name == "check_open_relay" and not result.stdout.startswith("OPEN_RELAY"):
        common.expect(name, result, (), "OPEN_RELAY")
    result.proxy = {"connections": proxy.connections, "commands": proxy.commands,  # type: ignore[attr-defined]
                    "round_trips": proxy.round_trips, "attempts": attempts_of(result)}
    return result


def our_attempts(result: common.Run) -> int:
    match = re.search(r"'?attempts'?=(\d+)", result.stdout)
    return int(match.group(1)) + 1 if match else 0  # + the control


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0], rounds=5)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--preset", default="closed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a main.cf setting of the Postfix (repeatable)")
    parser.add_argument("--name", default="relay", help="results/NAME.json")
    args = parser.parse_args()
    common.in_private_netns()
    common.prepare()
    from lab.postfix import PostfixServer

    server = PostfixServer.preset(args.preset)
    server.settings.update(dict(item.split("=", 1) for item in args.set))
    server.start()
    datadirs: list[str] = []
    figures: dict = {}
    try:
        for delay in (0.0, args.delay_ms / 1000):
            with CountingProxy(("127.0.0.1", server.port), delay) as proxy:
                datadir = nmap_datadir(proxy.port)
                datadirs.append(datadir)
                contenders = {
                    "check_open_relay": lambda: measure(proxy, ours_argv(proxy.port),
                                                        "check_open_relay", our_attempts),
                    "nmap smtp-open-relay": lambda proxy=proxy, datadir=datadir: measure(
                        proxy, nmap_argv(proxy.port, datadir), "nmap",
                        lambda r: NMAP_ATTEMPTS),
                }
                series = common.alternate(contenders, args.rounds)
                figures[f"{delay * 1000:.0f}"] = summarise(series)
    finally:
        server.stop()
        for datadir in datadirs:
            shutil.rmtree(datadir, ignore_errors=True)
    report(figures, args)


def summarise(series: dict[str, common.Series]) -> dict:
    out = {}
    for name, s in series.items():
        last = s.runs[-1]
        proxy = last.proxy  # type: ignore[attr-defined]
        self_reported = re.search(r"cost: .*?(\d+) SMTP round trips \(([\d.]+) per attempt",
                                  last.stdout)
        out[name] = {"wall": s.median("wall"), "spread": s.spread("wall"),
                     "cpu": s.median("cpu"), **proxy,
                     "rt_per_attempt": proxy["round_trips"] / max(1, proxy["attempts"]),
                     "cmd_per_attempt": proxy["commands"] / max(1, proxy["attempts"]),
                     "per_attempt_wall": s.median("wall") / max(1, proxy["attempts"]),
                     "self_reported": self_reported.group(0) if self_reported else "",
                     "sample": last.first_line if name == "check_open_relay" else
                     " ".join(line.strip() for line in last.stdout.splitlines()
                              if "relay" in line.lower())[:200]}
    return out


def report(figures: dict, args: object) -> None:
    extra = f" with {', '.join(args.set)}" if args.set else ""
    lines = [f"Relay catalogue against Postfix preset '{args.preset}'{extra}, {args.rounds} "
             "rounds (medians; counts from the proxy)"]
    for delay, by_tool in figures.items():
        rows = []
        for name, f in by_tool.items():
            lo, hi = f["spread"]
            rows.append([name, f["attempts"], common.ms(f["wall"]),
                         f"{common.ms(lo)}..{common.ms(hi)}", common.ms(f["cpu"]),
                         f["connections"], f["round_trips"], f"{f['rt_per_attempt']:.2f}",
                         f"{f['cmd_per_attempt']:.2f}", common.ms(f["per_attempt_wall"])])
        ours, nmap = by_tool["check_open_relay"], by_tool["nmap smtp-open-relay"]
        lines += ["", f"added latency {delay} ms per reply:",
                  common.table(rows, ["tool", "attempts", "wall", "min..max", "cpu", "conns",
                                      "round trips", "rt/attempt", "cmds/attempt",
                                      "wall/attempt"]),
                  f"round trips per attempt: ours {ours['rt_per_attempt']:.2f} vs nmap "
                  f"{nmap['rt_per_attempt']:.2f} (goal: fewer); wall: ours "
                  f"{common.ms(ours['wall'])} for {ours['attempts']} attempts vs nmap "
                  f"{common.ms(nmap['wall'])} for "
                  f"{nmap['attempts']} (goal: faster), ratio nmap/ours "
                  f"{nmap['wall'] / ours['wall']:.2f}",
                  f"  ours -v: {ours['self_reported']}",
                  f"  check_open_relay: {ours['sample']}",
                  f"  nmap: {nmap['sample']}"]
    text = "\n".join(lines)
    print(text)
    common.save(args.name, {"preset": args.preset, "settings": args.set, "rounds": args.rounds,
                            "figures": figures, "text": text})


if __name__ == "__main__":
    main()
