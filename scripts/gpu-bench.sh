#!/usr/bin/env bash
# Checks and times both GPU schedules on a real GPU, plus the dispatch-latency floor.
#
#   cargo build --release && scripts/gpu-bench.sh [BINARY]
#
# For each shape (h,T,B) it runs the fused and stepwise schedules: first a check against the
# f64 reference (--compute both, PASS required) where the reference is affordable, then the
# timed GPU-only run. Every run's JSON goes to $OUT (or ./gpu-bench-out), and a table is
# printed: total ms, µs per step, the floor (2T empty dispatches in one pass), total/floor,
# GFLOP/s and effective GB/s (docs/design.md, "FLOP and byte model").
# Environment: SHAPES="1024x256x1 ..." (h x T x B) overrides the shapes; CHECK_SHAPES likewise
# for the checked ones; REPEAT (default 20) timed runs per schedule.
set -euo pipefail
bin=${1:-target/release/bptt}
out=${OUT:-gpu-bench-out}
mkdir -p "$out"
shapes=${SHAPES:-"1024x256x1 1024x256x32 2048x512x1 4096x256x1"}
check_shapes=${CHECK_SHAPES:-"1024x256x1 2048x512x1"}
repeat=${REPEAT:-20}
# On the device machine the NVIDIA ICD lives here; elsewhere the system default applies.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ]; then export VK_DRIVER_FILES=$nv_icd; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

"$bin" --list-adapters | tee "$out/adapters.txt"
status=0
for shape in $check_shapes; do
  IFS=x read -r h t b <<<"$shape"
  for s in fused stepwise; do
    if "$bin" --hidden "$h" --steps "$t" --batch "$b" --schedule "$s" --compute both --repeat 1 --json \
        >"$out/check_${s}_${shape}.json"; then
      echo "check $s $shape: PASS"
    else
      echo "check $s $shape: FAIL (see $out/check_${s}_${shape}.json)"; status=1
    fi
  done
done
printf '%-8s %-12s %10s %10s %10s %8s %9s %9s\n' schedule shape total_ms us/step floor_ms x_floor GFLOP/s GB/s
for shape in $shapes; do
  IFS=x read -r h t b <<<"$shape"
  for s in fused stepwise; do
    f="$out/time_${s}_${shape}.json"
    "$bin" --hidden "$h" --steps "$t" --batch "$b" --schedule "$s" --compute gpu --repeat "$repeat" --json >"$f" || status=1
    python3 - "$f" "$s" "$shape" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["timings_ms"]
print(f'{sys.argv[2]:<8} {sys.argv[3]:<12} {t["gpu_total"]:10.3f} {r["gpu_us_per_step"]:10.1f} '
      f'{r["gpu_dispatch_floor_ms"]:10.3f} {r["gpu_total_over_floor"]:8.2f} {r["gpu_gflops"]:9.1f} {r["gpu_gbps"]:9.1f}')
PY
  done
done
exit $status
