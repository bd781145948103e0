#!/usr/bin/env bash
# Times the fast f32 CPU path and JAX on CPU alternately on the same problem (T=256 B=1 d=64
# h=1024 q=64, identity, mse, seed 0), then the f64 reference once. Medians are printed by each
# program; nothing here passes or fails.
#
#   scripts/bench_cpu_vs_jax.sh [ROUNDS]      (default 3; needs /work/venv-bench, see
#                                               scripts/requirements-bench.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
py=${PYTHON:-/work/venv-bench/bin/python}
problem=$(mktemp --suffix=.safetensors)
trap 'rm -f "$problem"' EXIT
cargo build --release --example time_cpu
bin=target/release/examples/time_cpu
"$bin" --fast-only --runs 3 --save-problem "$problem" >/dev/null
for r in $(seq "$rounds"); do
    echo "== round $r"
    "$bin" --fast-only --runs 21
    "$py" scripts/jax_cpu_baseline.py --problem "$problem" --runs 21
done
echo "== reference (and the fast path's error against it)"
"$bin" --runs 21 --ref-runs 3
