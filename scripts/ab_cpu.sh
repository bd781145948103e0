#!/bin/bash
# Alternates two builds of examples/time_cpu, round after round (the order flipped each round),
# and prints each one's median of per-round medians and the median and quartiles of the paired
# ratios B/A: how docs/performance.md compares a change with the code before it on a noisy
# machine.
#
#   scripts/ab_cpu.sh BIN_A BIN_B ROUNDS [time_cpu arguments...]
#
# e.g. (a build of the parent commit copied to /tmp/time_cpu_before first):
#   scripts/ab_cpu.sh /tmp/time_cpu_before target/release/examples/time_cpu 20 --runs 11
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 BIN_A BIN_B ROUNDS [time_cpu arguments...]" >&2
    exit 2
fi
A=$1; B=$2; ROUNDS=$3; shift 3
PREFIX=${BENCH_PREFIX:-chrt -r 10}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 0 ]; then order="A B"; else order="B A"; fi
    for which in $order; do
        if [ "$which" = A ]; then bin=$A; else bin=$B; fi
        ms=$($PREFIX "$bin" --fast-only "$@" | grep -o 'median *[0-9.]*' | awk '{print $2}')
        echo "$which $ms"
    done
done | python3 -c '
import statistics as st, sys
runs = {"A": [], "B": []}
for line in sys.stdin:
    which, ms = line.split()
    runs[which].append(float(ms))
for which, bin in (("A", sys.argv[1]), ("B", sys.argv[2])):
    v = runs[which]
    print(f"{which} {bin}: median {st.median(v):.2f} ms (min {min(v):.2f}) over {len(v)} rounds")
ratios = [b / a for a, b in zip(runs["A"], runs["B"])]
q = st.quantiles(ratios, n=4)
print(f"B/A paired by round: median {st.median(ratios):.3f}, quartiles {q[0]:.3f} to {q[2]:.3f}")
' "$A" "$B"
