#!/usr/bin/env python3
"""Scale: DNSBL audits of 1, 16 and 256 mailers in one run, +100 ms per DNS answer.

Set-up (inside a private network namespace): rbldnsd serves --zones zones (each lists every
16th mailer address and RFC 5782's 127.0.0.2) behind the delaying forwarder on 127.0.0.1:53.
Two ways of running the same audit for N mailers:

* ``cron``: the product's wrapper, ``python -m mailprobe.cron --dry-run`` with N mailers
  (check dnsbl), by default in one interpreter through the audit engine (``engine_jobs``
  mailers at once, --engine-jobs);
* ``cron-process``: the same with ``engine = "process"``: one plugin process per mailer,
  ``jobs`` at once (--jobs), as before the in-process engine;
* ``hosts-file``: one plugin run, ``check_dnsbl --hosts FILE`` with the N addresses: one
  interpreter asks every (mailer, zone) pair at once (at most 200 queries in flight).

Each size is run --rounds times, the two ways alternately; medians and growth vs one mailer.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from bench_dnsbl import start_forwarder

SIZES = (1, 16, 256)



def addresses(count: int) -> list[str]:
    return [f"198.18.{n // 250}.{n % 250 + 1}" for n in range(count)]


def zone_data(zones: list[str]) -> dict[str, tuple[str, str]]:
    listed = "\n".join(addresses(max(SIZES))[::16])
    return {zone: ("ip4set", f":127.0.0.2:Listed by $\n127.0.0.2\n{listed}\n") for zone in zones}


def cron_config(work: Path, count: int, zones: list[str], jobs: int, nameserver: str,
                engine: str = "in-process", engine_jobs: int = 32) -> Path:
    zone_args = ", ".join(f'"--zone", "{z}"' for z in zones)
    lines = [f'state_file = "{work}/state-{engine}-{count}.json"', 'from = "bench@bench.test"',
             'smtp_host = "127.0.0.1"', 'checks = ["dnsbl"]', f"jobs = {jobs}",
             f'engine = "{engine}"', f"engine_jobs = {engine_jobs}",
             f'python = "{common.PYTHON}"', "", "[defaults]",
             f'dnsbl = [{zone_args}, "-t", "60"]']
    for number, address in enumerate(addresses(count)):
        lines += ["", "[[mailer]]", f'name = "mx{number}.bench.test"', f'address = "{address}"',
                  'postmaster = "postmaster@bench.test"', f'nameserver = ["{nameserver}"]']
    path = work / f"cron-{engine}-{count}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0], rounds=3)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=16,
                        help="cron wrapper's parallel plugin processes (engine = process)")
    parser.add_argument("--engine-jobs", type=int, default=32,
                        help="cron wrapper's mailers audited at once in-process")
    args = parser.parse_args()
    common.in_private_netns()
    common.prepare()
    from lab.rbldnsd import RbldnsdServer

    zones = [f"bl{n:02d}.scale.test" for n in range(1, args.zones + 1)]
    listen = "127.0.0.1:53"
    work = Path(tempfile.mkdtemp(prefix="mpbench-scale-"))
    results: dict[str, dict[int, common.Series]] = {}
    with RbldnsdServer(zone_data(zones), port=5300) as rbl:
        forwarder = start_forwarder(rbl.nameserver, args.delay_ms, listen, zones[0])
        try:
            for count in SIZES:
                hosts = work / f"hosts-{count}"
                hosts.write_text("\n".join(addresses(count)) + "\n")

                def cron_way(engine: str, count: int = count) -> common.Run:
                    config = cron_config(work, count, zones, args.jobs, listen, engine,
                                         args.engine_jobs)
                    Path(f"{work}/state-{engine}-{count}.json").unlink(missing_ok=True)
                    return common.run([common.PYTHON, "-m", "mailprobe.cron", "-c", str(config),
                                       "--dry-run"], env=env())

                def cron(count: int = count) -> common.Run:
                    return cron_way("in-process", count)

                def cron_process(count: int = count) -> common.Run:
                    return cron_way("process", count)

                def hosts_file(hosts: Path = hosts) -> common.Run:
                    zone_args = [arg for zone in zones for arg in ("--zone", zone)]
                    return common.run([common.PYTHON, str(common.ROOT / "plugins" / "check_dnsbl"),
                                       "--hosts", str(hosts), *zone_args, "--nameserver", listen,
                                       "-t", "60", "-w", "10000", "-c", "10000"], env=env())

                def check(name: str, result: common.Run) -> None:
                    if result.returncode not in (0, 1) or (
                            name == "hosts-file" and not result.stdout.startswith("DNSBL OK")):
                        common.expect(name, result, (), "")

                series = common.alternate({"cron": cron, "cron-process": cron_process,
                                           "hosts-file": hosts_file},
                                          args.rounds, warmup=0 if count > 16 else 1,
                                          check=check)
                for name, s in series.items():
                    results.setdefault(name, {})[count] = s
        finally:
            forwarder.terminate()
            forwarder.wait(5)
            shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def env() -> dict[str, str]:
    environment = common.child_env()
    environment["PYTHONPATH"] = str(common.ROOT / "lib")
    return environment


def report(results: dict[str, dict[int, common.Series]], args: object) -> None:
    rows = []
    for name, by_size in results.items():
        one = by_size[1].median("wall")
        for count, s in by_size.items():
            rows.append([name, count, common.ms(s.median("wall")), f"{s.median('wall') / one:.1f}x",
                         common.ms(s.median("cpu")), common.ms(s.median("wall") / count),
                         s.runs[-1].stdout.strip().splitlines()[0][:60] if s.runs[-1].stdout
                         else ""])
    lines = [f"Scale: DNSBL audit of N mailers on {args.zones} zones, +{args.delay_ms:.0f} ms per "
             f"answer; cron engine_jobs={args.engine_jobs}, cron-process jobs={args.jobs}; "
             f"{args.rounds} rounds (medians)",
             common.table(rows, ["way", "mailers", "wall", "vs 1 mailer", "cpu",
                                 "wall/mailer", "output"]),
             "goal: 256 mailers in under 10x the time of one"]
    for name, by_size in results.items():
        ratio = by_size[256].median("wall") / by_size[1].median("wall")
        lines.append(f"  {name}: {ratio:.1f}x ({'met' if ratio < 10 else 'NOT met'})")
    text = "\n".join(lines)
    print(text)
    common.save("scale", {"text": text, "zones": args.zones, "jobs": args.jobs,
                          "engine_jobs": args.engine_jobs,
                          "series": {n: {c: {"wall": s.median("wall"), "cpu": s.median("cpu")}
                                         for c, s in by.items()} for n, by in results.items()}})


if __name__ == "__main__":
    main()
