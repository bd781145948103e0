#!/usr/bin/env python3
"""PyTorch eager baseline for `bptt train`'s speed claim (docs/training.md): one training
iteration on the adding problem (a fresh minibatch, forward, MSE at the last step, backward,
clipping to global norm 1, an Adam step) with a tanh RNN of the same sizes, on the CPU.

Two forms, and the faster one counts: torch.nn.RNN (ATen's fused CPU RNN) and a hand-written
loop over the steps (h = tanh(x_t W_ihᵀ + h W_hhᵀ + b)). Prints one line per form: median
milliseconds per iteration over --iters timed iterations after --warmup.

    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch numpy
    /tmp/venv-torch/bin/python scripts/torch_train_baseline.py --hidden 128 --steps 200 --batch 32
"""

import argparse
import statistics
import time

import torch


def adding_batch(steps, batch, gen):
    values = torch.rand(steps, batch, generator=gen)
    markers = torch.zeros(steps, batch)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=gen)
    second = torch.randint(half, steps, (batch,), generator=gen)
    cols = torch.arange(batch)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = values[first, cols] + values[second, cols]
    return x, y


class HandRNN(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.w_hx = torch.nn.Linear(d, h)
        self.w_hh = torch.nn.Linear(h, h, bias=False)

    def forward(self, x):
        xproj = self.w_hx(x)  # all steps at once, as the fast path does
        h = torch.zeros(x.shape[1], self.w_hh.in_features)
        for t in range(x.shape[0]):
            h = torch.tanh(xproj[t] + self.w_hh(h))
        return h


def time_form(form, args):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if form == "nn.RNN":
        rnn = torch.nn.RNN(2, args.hidden, nonlinearity="tanh")
        last = lambda x: rnn(x)[0][-1]  # noqa: E731
    else:
        rnn = HandRNN(2, args.hidden)
        last = rnn
    head = torch.nn.Linear(args.hidden, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def iteration():
        x, y = adding_batch(args.steps, args.batch, gen)
        opt.zero_grad(set_to_none=True)
        o = head(last(x)).squeeze(-1)
        loss = 0.5 * ((o - y) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        iteration()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        iteration()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--form", choices=["nn.RNN", "hand", "both"], default="both")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    forms = ["nn.RNN", "hand"] if args.form == "both" else [args.form]
    for form in forms:
        ms = time_form(form, args)
        print(f"torch {torch.__version__} {form:7s} h={args.hidden} T={args.steps} B={args.batch}: "
              f"{ms:.2f} ms per iteration (median of {args.iters}), {args.batch / ms * 1e3:.0f} sequences/s")


if __name__ == "__main__":
    main()
