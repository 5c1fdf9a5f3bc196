#!/bin/sh
# Runs every benchmark in turn (each in its own private network namespace; needs root) and
# leaves the figures in benchmarks/results/*.json and the printed tables in results/all.txt.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p benchmarks/results
for bench in startup dnsbl scale relay; do
    echo "== $bench (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    $PY benchmarks/bench_$bench.py "$@"
    echo
done 2>&1 | tee benchmarks/results/all.txt
