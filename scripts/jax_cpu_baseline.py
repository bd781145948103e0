#!/usr/bin/env python3
"""JAX-on-CPU baseline for the fast CPU path: the same RNN, loss and gradients, float32,
jax.lax.scan over time, jax.value_and_grad, jitted, timed after warm-up with
block_until_ready; prints the median of --runs runs.

Two formulations are timed and both reported, so the baseline is not a straw man:
  scan-all:  the textbook step inside the scan (input projection, recurrence, output, loss);
  hoisted:   only the recurrence in the scan; x·w_hxᵀ, the outputs and the loss are batched
             over all steps outside it (the same split as src/cpu/fast.rs).

The problem: --problem FILE reads a safetensors file written by
`cargo run --release --example time_cpu -- --save-problem FILE` (inputs w_hx w_hh w_qh x y h0,
and the fast path's loss and gradients, which are compared with JAX's). Without it, a random
problem with the same shapes and distributions is used (the timing does not depend on values).

    /work/venv-bench/bin/python scripts/jax_cpu_baseline.py --problem /tmp/p.safetensors
"""

import argparse
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", help="safetensors file from examples/time_cpu --save-problem")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)

    saved = None
    if args.problem:
        from safetensors.numpy import load_file

        saved = load_file(args.problem)
        t = {k: saved[k].astype(np.float32) for k in ("w_hx", "w_hh", "w_qh", "x", "y", "h0")}
    else:
        T, B, d, h, q = args.steps, args.batch, args.input, args.hidden, args.output
        rng = np.random.default_rng(args.seed)
        n = lambda *s, std=1.0: (std * rng.standard_normal(s)).astype(np.float32)
        t = dict(w_hx=n(h, d, std=d**-0.5), w_hh=n(h, h, std=h**-0.5), w_qh=n(q, h, std=h**-0.5),
                 x=n(T, B, d), y=n(T, B, q), h0=np.zeros((B, h), np.float32))
    T, B, d = t["x"].shape
    h, q = t["w_hh"].shape[0], t["w_qh"].shape[0]
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}: T={T} B={B} d={d} h={h} q={q} "
          f"identity mse float32")

    def loss_scan_all(params, h0, x, y):
        w_hx, w_hh, w_qh = params

        def step(h_prev, xy):
            x_t, y_t = xy
            h_t = x_t @ w_hx.T + h_prev @ w_hh.T  # φ = identity
            o_t = h_t @ w_qh.T
            return h_t, 0.5 * jnp.sum((o_t - y_t) ** 2)

        _, ls = jax.lax.scan(step, h0, (x, y))
        return jnp.sum(ls) / (T * B)

    def loss_hoisted(params, h0, x, y):
        w_hx, w_hh, w_qh = params
        ax = x @ w_hx.T  # [T,B,h], all steps at once

        def step(h_prev, ax_t):
            h_t = ax_t + h_prev @ w_hh.T
            return h_t, h_t

        _, hs = jax.lax.scan(step, h0, ax)
        o = hs @ w_qh.T
        return 0.5 * jnp.sum((o - y) ** 2) / (T * B)

    params = tuple(jnp.asarray(t[k]) for k in ("w_hx", "w_hh", "w_qh"))
    h0, x, y = (jnp.asarray(t[k]) for k in ("h0", "x", "y"))
    for name, f in (("scan-all", loss_scan_all), ("hoisted", loss_hoisted)):
        vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
        loss, (g, g_h0) = jax.block_until_ready(vg(params, h0, x, y))  # compile + warm-up
        for _ in range(3):
            jax.block_until_ready(vg(params, h0, x, y))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            jax.block_until_ready(vg(params, h0, x, y))
            times.append((time.perf_counter() - start) * 1e3)
        print(f"{name:9} median {statistics.median(times):8.2f} ms over {args.runs} runs "
              f"(min {min(times):.2f}, max {max(times):.2f})")
        if saved is not None:
            got = dict(loss=np.asarray(loss), grad_w_hx=g[0], grad_w_hh=g[1], grad_w_qh=g[2],
                       grad_h0=g_h0)
            errs = []
            for k, v in got.items():
                v, ref = np.asarray(v, np.float64), saved[k].astype(np.float64)
                errs.append(f"{k} {np.linalg.norm(v - ref) / np.linalg.norm(ref):.1e}")
            print("           rel. difference from the fast path: " + ", ".join(errs))


if __name__ == "__main__":
    main()
