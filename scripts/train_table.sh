#!/usr/bin/env bash
# The adding-problem table of docs/training.md: a plain tanh RNN, the IRNN (relu,
# w_hh = I; Le et al. 2015) and the IRNN trained with BPTT truncated to K = T/5 steps (below
# T/2, the least distance from the last step back to the first marker), at several T.
# Each run trains on the fast CPU path and prints one markdown row from its --json report.
#
#   cargo build --release && scripts/train_table.sh [T ...]      (default T: 50 100 200)
set -euo pipefail
BPTT=${BPTT:-target/release/bptt}
ITERS=${ITERS:-3000}
COMMON="train --task adding --compute cpu --hidden 64 --batch 32 --iters $ITERS --optim adam --lr 1e-3 --clip 1 --eval-every 500 --eval-size 1024 --seed 0 --json"
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(50 100 200)
echo "| T | model | held-out MSE (baseline 0.167) | best held-out MSE | time (s) | sequences/s |"
echo "|---|---|---|---|---|---|"
for T in "${STEPS[@]}"; do
    K=$((T / 5))
    for model in "tanh RNN|--activation tanh --init-recurrent normal" \
                 "IRNN|--activation relu --init-recurrent identity" \
                 "IRNN, truncated K=$K|--activation relu --init-recurrent identity --truncate $K"; do
        name=${model%%|*}
        flags=${model#*|}
        # shellcheck disable=SC2086
        $BPTT $COMMON --steps "$T" $flags | python3 -c '
import json, sys
r = json.load(sys.stdin)
best = min(e["loss"] for e in r["eval"])
final, secs, rate = r["final_eval"]["loss"], r["seconds"], r["sequences_per_s"]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {final:.4f} | {best:.4f} | {secs:.0f} | {rate:.0f} |")
' "$T" "$name"
    done
done
