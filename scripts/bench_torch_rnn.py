"""Forward + backward of bptt.torch.RNN against torch.nn.RNN on the CPU, alternating, round
after round, and the share of each bptt call spent at the Python boundary (checks, copies,
conversions, autograd) rather than in the engine. Prints the table of docs/performance.md
("bptt.torch.RNN against torch.nn.RNN"). Nothing here passes or fails.

    python scripts/bench_torch_rnn.py [ROUNDS] [--gpu]

in a virtual environment with the package and torch installed (`pip install ./python torch`).
Each round times, for each shape and each implementation in turn, `RUNS` iterations of
forward, `output.sum() + h_n.sum()`, backward (after 2 of warm-up), and keeps their median;
the table gives the median over rounds with the range. torch runs with its default thread
count and with one, and bptt is compared with the faster of the two. The engine's own time per call is
`Layer.last_ms` (measured in Rust around the engine, conversions included); the rest of the
iteration's wall time is the boundary's. With --gpu, the GPU engine (whatever adapter wgpu
finds) is timed too.
"""

import os
import statistics
import sys
import time

import torch

import bptt
import bptt.torch as bt

SHAPES = [(128, 200, 32), (1024, 256, 1)]  # (h, T, B)
D = 64
RUNS = {32: 10, 1: 5}


def step(model, x):
    """One forward + backward; returns (wall ms, engine ms or None)."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out, h_n = model(x)
    engine = model.layer().last_ms if isinstance(model, bt.RNN) else None
    (out.sum() + h_n.sum()).backward()
    wall = (time.perf_counter() - t0) * 1e3
    if engine is not None:
        engine += model.layer().last_ms
    return wall, engine


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else 3
    kinds = ["cpu"] + (["gpu"] if "--gpu" in sys.argv else [])
    print(f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {os.cpu_count()} CPUs, "
          f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), bptt {bptt.__version__}")
    if "gpu" in kinds:
        print(f"   GPU adapter: {bptt.adapter_info()}")
    results = {}  # (shape, impl) -> [(median wall, median engine)] per round
    torch.manual_seed(0)
    for r in range(rounds):
        for h, t, b in SHAPES:
            x = torch.randn(t, b, D)
            ref = torch.nn.RNN(D, h)
            # torch with its default thread count and with one thread (on a busy machine its
            # spinning OpenMP threads can cost more than they bring): the faster is the peer.
            impls = [("torch.nn.RNN", ref), ("torch.nn.RNN, 1 thread", ref)]
            for kind in kinds:
                m = bt.RNN(D, h, device_kind=kind)
                m.load_state_dict(ref.state_dict())
                impls.append((f"bptt.torch.RNN {kind}", m))
            for name, model in impls:
                threads = torch.get_num_threads()
                if name.endswith("1 thread"):
                    torch.set_num_threads(1)
                for _ in range(2):
                    step(model, x)
                times = [step(model, x) for _ in range(RUNS[b])]
                torch.set_num_threads(threads)
                wall = statistics.median(w for w, _ in times)
                engine = statistics.median(e for _, e in times) if times[0][1] is not None else None
                results.setdefault(((h, t, b), name), []).append((wall, engine))
        print(f"   round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    print()
    print("| h, T, B | implementation | forward + backward (median of rounds, range) | engine | boundary share |")
    print("|---|---|---|---|---|")
    for (h, t, b) in SHAPES:
        base = min(statistics.median(w for w, _ in results[((h, t, b), n)]) for n in ("torch.nn.RNN", "torch.nn.RNN, 1 thread"))
        for name in ["torch.nn.RNN", "torch.nn.RNN, 1 thread"] + [f"bptt.torch.RNN {k}" for k in kinds]:
            rows = results[((h, t, b), name)]
            walls = [w for w, _ in rows]
            med = statistics.median(walls)
            speed = "" if name.startswith("torch") else f", {base / med:.2f}× the faster torch's speed"
            cell = f"{med:.2f} ms ({min(walls):.2f}–{max(walls):.2f}){speed}"
            if rows[0][1] is None:
                print(f"| {h}, {t}, {b} | {name} | {cell} | | |")
            else:
                eng = statistics.median(e for _, e in rows)
                share = statistics.median((w - e) / w for w, e in rows)
                print(f"| {h}, {t}, {b} | {name} | {cell} | {eng:.2f} ms | {share:.1%} |")


if __name__ == "__main__":
    main()
