#!/usr/bin/env python3
"""Start-up A/B: each plugin's ``--version`` CPU time, this tree against another git commit.

``bench_startup_ab.py REF [--rounds N]`` checks REF out into a temporary git worktree and runs
``plugins/check_NAME --version`` of both trees alternately (the old one with its ``lib/`` first
on PYTHONPATH), with the project's interpreter and bytecode caching on, and prints the median
CPU time of each and the ratio to a bare ``python -c pass``. Nothing is contacted: ``--version``
does no network work.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

NAMES = ("open_relay", "dnsbl", "banner_rdns", "spf_mx")


def cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("ref", help="the git commit to compare with (e.g. 39ba530)")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "old"
        subprocess.run(["git", "-C", str(common.ROOT), "worktree", "add", "-q", "--detach",
                        str(old), args.ref], check=True)
        try:
            env = common.child_env()
            trees = {"before": (old, dict(env, PYTHONPATH=str(old / "lib"))),
                     "after": (common.ROOT, env)}
            for root, tree_env in trees.values():
                subprocess.run([common.PYTHON, "-m", "compileall", "-q", str(root / "lib")],
                               env=tree_env, stdout=subprocess.DEVNULL, check=False)
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for name in NAMES:
                    for which, (root, tree_env) in trees.items():
                        argv = [common.PYTHON, str(root / "plugins" / f"check_{name}"),
                                "--version"]
                        samples.setdefault((name, which), []).append(cpu_ms(argv, tree_env))
                samples.setdefault(("bare", ""), []).append(
                    cpu_ms([common.PYTHON, "-c", "pass"], env))
        finally:
            subprocess.run(["git", "-C", str(common.ROOT), "worktree", "remove", "--force",
                            str(old)], check=False)
    bare = statistics.median(samples[("bare", "")])
    print(f"--version CPU, median of {args.rounds} rounds; bare interpreter {bare:.0f} ms")
    for name in NAMES:
        before = statistics.median(samples[(name, "before")])
        after = statistics.median(samples[(name, "after")])
        print(f"check_{name}: {args.ref} {before:.0f} ms ({before / bare:.1f}x bare), "
              f"this tree {after:.0f} ms ({after / bare:.1f}x bare), {after - before:+.0f} ms")


if __name__ == "__main__":
    main()
