#!/usr/bin/env python3
"""The training tables of docs/training.md and docs/tutorial.md, each row over several seeds.

Every row runs `bptt train ... --json` once per seed (0..SEEDS-1) on the fast CPU path and
reports the median and the range [min–max] of the held-out metric, how many runs learned (the
report's verdict begins with "learned:"), and the median time. Nothing here is a single run:
a conclusion drawn from a table holds for every seed or says that it does not.

    cargo build --release && nice -n 10 python3 scripts/train_tables.py [adding] [copy] [text]

A run that diverges (its loss stops being finite: `bptt train` exits 1 saying so) is counted
in the "diverged" column and left out of the medians and ranges, which are over the runs that
finished.

Environment: BPTT (default target/release/bptt), SEEDS (default 5), ITERS (the adding table's
iterations, default 3000), STEPS (the adding table's T, default "50 100 200"). Each command is
printed before its table.
"""

import json
import os
import statistics
import subprocess
import sys
import time

BPTT = os.environ.get("BPTT", "target/release/bptt")
SEEDS = int(os.environ.get("SEEDS", "5"))


def run(args):
    """One run's --json report, or None when it diverged."""
    out = subprocess.run([BPTT, "train", *args, "--json"], capture_output=True, text=True)
    if out.returncode == 1 and "diverged" in out.stderr:
        return None
    if out.returncode != 0:
        sys.exit(f"bptt train {' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def spread(values, fmt):
    """'median [min–max]'."""
    if not values:
        return "–"
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"


def rows(common, models):
    """Runs every model over the seeds; yields (name, flags, reports)."""
    for name, flags in models:
        reports = [run([*common, *flags, "--seed", str(s)]) for s in range(SEEDS)]
        yield name, flags, [r for r in reports if r is not None], reports.count(None)


def learned(reports):
    return sum(r["verdict"].startswith("learned:") for r in reports)


def adding():
    iters = os.environ.get("ITERS", "3000")
    common = ["--task", "adding", "--compute", "cpu", "--hidden", "64", "--batch", "32", "--iters", iters,
              "--optim", "adam", "--lr", "1e-3", "--clip", "1", "--eval-every", "500", "--eval-size", "1024"]
    print(f"bptt train {' '.join(common)} --steps T MODEL --seed S   (S = 0..{SEEDS - 1})\n")
    print(f"| T | model | held-out MSE, median [range] | best held-out MSE | learned (of {SEEDS}) | diverged | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for t in map(int, os.environ.get("STEPS", "50 100 200").split()):
        k, p = t // 5, 5 / t
        models = [
            ("tanh RNN", ["--activation", "tanh", "--init-recurrent", "normal"]),
            ("IRNN", ["--activation", "relu", "--init-recurrent", "identity"]),
            (f"IRNN, truncated K={k}", ["--activation", "relu", "--init-recurrent", "identity", "--truncate", str(k)]),
            (f"IRNN, random:{p:g}", ["--activation", "relu", "--init-recurrent", "identity", "--truncate", f"random:{p:g}"]),
        ]
        for name, flags, reports, diverged in rows([*common, "--steps", str(t)], models):
            final = [r["final_eval"]["loss"] for r in reports]
            best = [min(e["loss"] for e in r["eval"]) for r in reports]
            secs = statistics.median(r["seconds"] for r in reports) if reports else float("nan")
            f4 = lambda x: f"{x:.4f}"
            print(f"| {t} | {name} | {spread(final, f4)} | {spread(best, f4)} | {learned(reports)} | {diverged} | {secs:.0f} |", flush=True)


def copy():
    common = ["--task", "copy", "--steps", "30", "--hidden", "64", "--iters", "1500", "--compute", "cpu",
              "--clip", "1", "--lr", "3e-3", "--eval-every", "500"]
    print(f"bptt train {' '.join(common)} MODEL --seed S   (S = 0..{SEEDS - 1})\n")
    print("| MODEL | held-out cross-entropy (baseline 0.693), median [range] | symbols recalled (chance 12.5%) |")
    print("|---|---|---|")
    models = [
        ("`--activation relu --init-recurrent identity`", ["--activation", "relu", "--init-recurrent", "identity"]),
        ("`--activation tanh --init-recurrent orthogonal`", ["--activation", "tanh", "--init-recurrent", "orthogonal"]),
    ]
    for name, flags, reports, diverged in rows(common, models):
        xent = [r["final_eval"]["loss"] for r in reports]
        acc = [100 * r["final_eval"]["accuracy"] for r in reports]
        print(f"| {name} | {spread(xent, lambda x: f'{x:.3f}')} | {spread(acc, lambda x: f'{x:.1f}%')} |", flush=True)
        if diverged:
            print(f"\n({diverged} of {SEEDS} runs of {name} diverged and are left out)\n")


def text():
    common = ["--task", "text", "--text", "data/timemachine.txt", "--steps", "64", "--hidden", "128", "--batch", "32",
              "--iters", "1500", "--compute", "cpu", "--clip", "1", "--lr", "3e-3", "--eval-every", "500",
              "--eval-size", "512"]
    print(f"bptt train {' '.join(common)} STRATEGY --seed S   (S = 0..{SEEDS - 1})\n")
    print("| strategy | `STRATEGY` | held-out perplexity, median [range] | training cross-entropy | time (s) |")
    print("|---|---|---|---|---|")
    models = [
        ("full BPTT", []),
        ("regular truncation, K = 8", ["--truncate", "8"]),
        ("randomised truncation, P = 1/8", ["--truncate", "random:0.125"]),
    ]
    for name, flags, reports, diverged in rows(common, models):
        ppl = [r["final_eval"]["perplexity"] for r in reports]
        train = [r["final_train"] for r in reports]
        secs = statistics.median(r["seconds"] for r in reports) if reports else float("nan")
        shown = f"`{' '.join(flags)}`" if flags else "(none)"
        f3 = lambda x: f"{x:.3f}"
        print(f"| {name} | {shown} | {spread(ppl, f3)} | {spread(train, f3)} | {secs:.0f} |", flush=True)
        if diverged:
            print(f"\n({diverged} of {SEEDS} runs of {name} diverged and are left out)\n")


def main():
    tables = {"adding": adding, "copy": copy, "text": text}
    chosen = sys.argv[1:] or list(tables)
    for name in chosen:
        if name not in tables:
            sys.exit(f"unknown table '{name}': choose from {', '.join(tables)}")
    for name in chosen:
        start = time.time()
        print(f"## {name}\n")
        tables[name]()
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"\n({SEEDS} seeds, {time.time() - start:.0f} s in all, load average {load})\n", flush=True)


if __name__ == "__main__":
    main()
