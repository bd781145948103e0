#!/usr/bin/env bash
# Training speed, bptt's fast CPU path against PyTorch eager, alternately in one sitting:
# one iteration = a fresh adding-problem minibatch, forward, backward, clipping to norm 1 and
# an Adam step, at h = 128, T = 200, B = 32 (tanh RNN), ROUNDS rounds of each.
#
#   cargo build --release
#   python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch numpy
#   PYTHON=/tmp/venv-torch/bin/python scripts/bench_train_vs_torch.sh [ROUNDS]
#
# THREADS=N (default 2) caps both sides: rayon and matrixmultiply's pools for bptt,
# torch.set_num_threads for PyTorch.
set -euo pipefail
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS
ROUNDS=${1:-3}
PYTHON=${PYTHON:-python3}
BPTT=${BPTT:-target/release/bptt}
ITERS=${ITERS:-100}
for r in $(seq 1 "$ROUNDS"); do
    $BPTT train --compute cpu --task adding --activation tanh --hidden 128 --steps 200 --batch 32 \
        --iters "$ITERS" --optim adam --clip 1 --eval-every "$ITERS" --eval-size 32 --json |
        python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["sequences_per_s"]; print("bptt fast CPU path h=128 T=200 B=32: %.2f ms per iteration (mean of %d), %.0f sequences/s" % (32/s*1e3, r["iters"], s))'
    $PYTHON scripts/torch_train_baseline.py --hidden 128 --steps 200 --batch 32 --iters 30 --threads "$THREADS"
done
