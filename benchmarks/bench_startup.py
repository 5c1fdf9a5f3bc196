#!/usr/bin/env python3
"""Start-up cost: CPU time and peak memory of each plugin's full run against the demo lab.

Set-up (inside a private network namespace): the demo lab of ``python -m lab.demo``
(Knot with the lab's zones, the scripted sloppy MTA on 127.0.0.25). Each plugin runs with the
demo's own arguments, alternately with a bare ``python -c pass`` (same interpreter) and, for the
banner case, ``check_smtp`` (C, monitoring-plugins-standard) against the same server. Then
``python -X importtime`` shows, per plugin, what its imports cost, grouped by top-level package,
and which heavy modules are imported and by whom.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CHECK_SMTP = "/usr/lib/nagios/plugins/check_smtp"
NAMES = ("open_relay", "dnsbl", "banner_rdns", "spf_mx")


def importtime(module: str, repeat: int = 5) -> dict[str, float]:
    """Median self time (ms) per top-level package while importing ``module``."""
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat):
        result = common.run([common.PYTHON, "-X", "importtime", "-c", f"import {module}"])
        totals: dict[str, float] = defaultdict(float)
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if match:
                totals[match.group(4).split(".")[0]] += int(match.group(1)) / 1000
        for package, value in totals.items():
            samples[package].append(value)
    return {p: statistics.median(v + [0.0] * (repeat - len(v))) for p, v in samples.items()}


def importers(module: str) -> list[tuple[str, str, float]]:
    """(module, imported by, cumulative ms) for the heaviest non-stdlib-core imports."""
    result = common.run([common.PYTHON, "-X", "importtime", "-c", f"import {module}"])
    rows = []
    stack: list[tuple[int, str]] = []
    entries = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((len(match.group(3)), match.group(4), int(match.group(2)) / 1000))
    # importtime prints children before parents: walk backwards to find each one's parent
    for depth, name, cumulative in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else "-"
        stack.append((depth, name))
        rows.append((name, parent, cumulative))
    return rows


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0], rounds=9)
    args = parser.parse_args()
    common.in_private_netns()
    common.prepare()
    from lab import demo
    from lab.knot import KnotServer
    from lab.process import free_port
    from lab.smtpd import ScriptedSMTPServer

    knot = KnotServer(demo.zones(), host=demo.DNS_ADDRESS).start()
    smtp = ScriptedSMTPServer(demo.mailer_behaviour(), host=demo.MAILER_ADDRESS,
                              port=free_port(demo.MAILER_ADDRESS)).start()
    try:
        runs = {r.name: r for r in demo.plugin_runs(smtp.port, knot.nameserver)}
        contenders = {"python -c pass": lambda: common.run([common.PYTHON, "-c", "pass"]),
                      "check_smtp (C)": lambda: common.run(
                          [CHECK_SMTP, "-H", demo.MAILER_ADDRESS, "-p", str(smtp.port)])}
        for name in NAMES:
            argv = [*common.plugin(name), *runs[f"check_{name}"].argv]
            contenders[f"check_{name}"] = lambda argv=argv: common.run(argv)
            contenders[f"check_{name} --version"] = (
                lambda name=name: common.run([*common.plugin(name), "--version"]))

        def check(name: str, result: common.Run) -> None:
            if name.startswith("check_"):  # a plugin result, whatever the state
                common.expect(name, result, (0, 1, 2, 3), "")
                if not result.stdout.strip() or "Traceback" in result.stdout + result.stderr:
                    common.expect(name, result, (), "")

        series = common.alternate(contenders, args.rounds, check=check)
        imports = {name: importtime(f"mailprobe.checks.{name}") for name in NAMES}
        heavy = {name: importers(f"mailprobe.checks.{name}") for name in NAMES}
    finally:
        smtp.stop()
        knot.stop()
    report(series, imports, heavy, args)


def report(series: dict[str, common.Series], imports: dict, heavy: dict, args: object) -> None:
    bare = series["python -c pass"]
    bare_cpu = bare.median("cpu")
    rows = []
    for name, s in series.items():
        rows.append([name, common.ms(s.median("wall")), common.ms(s.median("cpu")),
                     f"{s.median('cpu') / bare_cpu:.1f}x",
                     f"{s.median('maxrss_kb') / 1024:.1f} MiB",
                     s.runs[-1].first_line[:70]])
    lines = [f"Start-up cost per run against the demo lab, {args.rounds} rounds (medians)",
             common.table(rows, ["run", "wall", "cpu", "cpu / bare", "peak rss", "output"]),
             "", "goal: each plugin's CPU per run < 4x a bare interpreter "
             f"({common.ms(4 * bare_cpu)}):"]
    for name in NAMES:
        cpu = series[f"check_{name}"].median("cpu")
        lines.append(f"  check_{name}: {cpu / bare_cpu:.1f}x "
                     f"({'met' if cpu < 4 * bare_cpu else 'NOT met'})")
    packages = sorted({p for per in imports.values() for p in per},
                      key=lambda p: -max(per.get(p, 0) for per in imports.values()))
    shown = [p for p in packages if max(per.get(p, 0) for per in imports.values()) >= 1.0]
    rows = [[p, *(f"{imports[n].get(p, 0):.1f}" for n in NAMES)] for p in shown]
    rows.append(["(total)", *(f"{sum(imports[n].values()):.1f}" for n in NAMES)])
    lines += ["", "python -X importtime: self time (ms) by top-level package, median of 5 "
              "(importtime itself inflates the figures)",
              common.table(rows, ["package", *NAMES])]
    watch = ("cryptography", "pydnsbl", "publicsuffixlist", "importlib.metadata", "asyncio",
             "aiodns", "pycares", "spf", "ssl", "email", "nagiosplugin", "dns.resolver",
             "dns.asyncresolver", "json", "tempfile", "logging")
    lines += ["", "heavy imports (cumulative ms) and the module that imports them:"]
    for name in NAMES:
        found = [(m, parent, ms) for m, parent, ms in heavy[name] if m in watch]
        lines.append(f"  check_{name}: " + ", ".join(f"{m} {ms:.1f} <- {parent}"
                                                     for m, parent, ms in found))
    text = "\n".join(lines)
    print(text)
    common.save("startup", {"rounds": args.rounds, "text": text, "imports": imports,
                            "series": {n: {"wall": s.median("wall"), "cpu": s.median("cpu"),
                                           "maxrss_kb": s.median("maxrss_kb")}
                                       for n, s in series.items()}})


if __name__ == "__main__":
    main()
