#!/usr/bin/env bash
# Times the fast f32 CPU path (`bptt --compute cpu`) and the two strongest JAX-on-CPU forms
# (autodiff "hoisted" and the hand-written "split VJP", see scripts/jax_cpu_baseline.py)
# alternately, round after round, at (h, T, B) = (1024, 256, 1) and (1024, 256, 32), d = q = 64,
# identity, mse, seed 0; then prints the table of docs/performance.md (medians of each round's
# median, with the range over rounds). JAX's gradients are compared with the fast path's on the
# same problem once per shape. Nothing here passes or fails.
#
#   scripts/bench_cpu_vs_jax.sh [ROUNDS]      (default 3)
#
# Needs a Python with JAX: PYTHON=/path/to/python (default /tmp/venv-bench/bin/python), made with
#   python3 -m venv /tmp/venv-bench && /tmp/venv-bench/bin/pip install -r scripts/requirements-bench.txt
# On a machine other jobs keep busy, BENCH_PREFIX="chrt -r 10" (root) runs both timed programs
# at a real-time priority, so neither shares its cores with those jobs (the same for both).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
py=${PYTHON:-/tmp/venv-bench/bin/python}
read -r -a prefix <<<"${BENCH_PREFIX:-}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build -q --release --bin bptt --example time_cpu
bptt=target/release/bptt
shapes="1 32"
runs() { if [ "$1" = 1 ]; then echo 20; else echo 5; fi; } # timed runs per program per round

echo "== $(date -u +%FT%TZ) $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)${BENCH_PREFIX:+, under $BENCH_PREFIX}"
for b in $shapes; do
    # The problem (bptt's seed-0 random problem) for JAX, with the fast path's gradients.
    target/release/examples/time_cpu --fast-only --runs 1 --batch "$b" --save-problem "$dir/p$b.safetensors" >/dev/null
    echo "== B=$b: JAX's gradients against the fast path's"
    "$py" scripts/jax_cpu_baseline.py --problem "$dir/p$b.safetensors" --forms split-vjp --runs 1 | tail -n +2 | grep -v median
done
for r in $(seq "$rounds"); do
    for b in $shapes; do
        n=$(runs "$b")
        ms=$("${prefix[@]}" "$bptt" --compute cpu --hidden 1024 --steps 256 --batch "$b" --repeat "$n" --json |
            "$py" -c 'import json, sys; print(json.load(sys.stdin)["timings_ms"]["cpu_total"])')
        echo "round $r B=$b fast-cpu $ms" | tee -a "$dir/times"
        "${prefix[@]}" "$py" scripts/jax_cpu_baseline.py --problem "$dir/p$b.safetensors" --forms hoisted,split-vjp --runs "$n" |
            awk -v r="$r" -v b="$b" '/median/ { name = ($2 == "hoisted") ? "jax-hoisted" : "jax-split-vjp";
                for (i = 1; i <= NF; i++) if ($i == "median") print "round", r, "B=" b, name, $(i + 1) }' |
            tee -a "$dir/times"
    done
done
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$dir/times" <<'EOF'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    _, _, shape, name, ms = line.split()
    times.setdefault((shape, name), []).append(float(ms))
def cell(v):
    return f"{statistics.median(v):.1f} ms ({min(v):.1f}–{max(v):.1f})"
print("\n| shape (h,T,B) | fast f32 CPU path | JAX autodiff hoisted | JAX split VJP | split VJP / fast |")
print("|---|---|---|---|---|")
for shape in ("B=1", "B=32"):
    fast, hoisted, split = (times[(shape, n)] for n in ("fast-cpu", "jax-hoisted", "jax-split-vjp"))
    ratio = statistics.median(split) / statistics.median(fast)
    print(f"| 1024, 256, {shape[2:]} | {cell(fast)} | {cell(hoisted)} | {cell(split)} | {ratio:.2f}× |")
print(f"\n(median of {len(fast)} rounds' medians, range over rounds in brackets)")
EOF
