#!/usr/bin/env python3
"""JAX-on-CPU baseline for the fast CPU path: the same RNN, loss and gradients, float32, jitted,
timed after warm-up with block_until_ready; prints the median of --runs runs per form.

Three forms are timed, so the baseline is not a straw man:
  autodiff scan-all:  the textbook step inside jax.lax.scan (input projection, recurrence,
                      output, loss), gradients by jax.value_and_grad;
  autodiff hoisted:   only the recurrence in the scan; x·w_hxᵀ, the outputs and the loss are
                      batched over all steps outside it; gradients by jax.value_and_grad;
  split VJP:          the strongest form, the split of the fused GPU schedule and of the fast
                      CPU path. Forward: x·w_hxᵀ for all steps before the scan, only
                      h_t = φ(xproj_t + h_{t−1}·w_hhᵀ) inside it, the outputs, loss and ∂L/∂o
                      after it. Backward (a jax.custom_vjp of the recurrence): a second scan
                      carrying only ∂L/∂a_t = (gq_t + ∂L/∂a_{t+1}·w_hh) ⊙ φ′(a_t), then
                      ∂L/∂w_hh, ∂L/∂w_hx, ∂L/∂w_qh as single matrix products over all T·B rows.
The split form's gradients are checked against autodiff's (max relative error per tensor).

The problem: --problem FILE reads a safetensors file written by
`cargo run --release --example time_cpu -- --save-problem FILE` (inputs w_hx w_hh w_qh x y h0,
and the fast path's loss and gradients, which are compared with JAX's). Without it, a random
problem with the same shapes and distributions is used (the timing does not depend on values).
--forms picks which forms run (default: all three), --tanh uses φ = tanh instead of identity.

    /tmp/venv-bench/bin/python scripts/jax_cpu_baseline.py --problem /tmp/p.safetensors
"""

import argparse
import statistics
import time

import numpy as np

FORMS = ("scan-all", "hoisted", "split-vjp")


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
    ap.add_argument("--tanh", action="store_true", help="φ = tanh (default identity)")
    ap.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset of " + ",".join(FORMS))
    args = ap.parse_args()
    forms = args.forms.split(",")
    for f in forms:
        if f not in FORMS:
            ap.error(f"unknown form {f!r}; known: {', '.join(FORMS)}")

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)  # float32 throughout

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
    phi = jnp.tanh if args.tanh else (lambda a: a)
    # φ′ from φ's output h_t = φ(a_t): 1 − h² for tanh, 1 for identity.
    dphi = (lambda h_t: 1.0 - h_t * h_t) if args.tanh else (lambda h_t: jnp.ones_like(h_t))
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}: T={T} B={B} d={d} h={h} q={q} "
          f"{'tanh' if args.tanh else 'identity'} mse float32")

    def loss_scan_all(params, h0, x, y):
        w_hx, w_hh, w_qh = params

        def step(h_prev, xy):
            x_t, y_t = xy
            h_t = phi(x_t @ w_hx.T + h_prev @ w_hh.T)
            o_t = h_t @ w_qh.T
            return h_t, 0.5 * jnp.sum((o_t - y_t) ** 2)

        _, ls = jax.lax.scan(step, h0, (x, y))
        return jnp.sum(ls) / (T * B)

    def loss_hoisted(params, h0, x, y):
        w_hx, w_hh, w_qh = params
        ax = x @ w_hx.T  # [T,B,h], all steps at once

        def step(h_prev, ax_t):
            h_t = phi(ax_t + h_prev @ w_hh.T)
            return h_t, h_t

        _, hs = jax.lax.scan(step, h0, ax)
        o = hs @ w_qh.T
        return 0.5 * jnp.sum((o - y) ** 2) / (T * B)

    # The recurrence alone, hs = [h_1..h_T] from (w_hh, h0, xproj), with a hand-written VJP:
    # its backward is one scan carrying only ∂L/∂a_t; every weight gradient is one product after.
    @jax.custom_vjp
    def recur(w_hh, h0, xproj):
        def step(h_prev, xp_t):
            h_t = phi(xp_t + h_prev @ w_hh.T)
            return h_t, h_t

        return jax.lax.scan(step, h0, xproj)[1]

    def recur_fwd(w_hh, h0, xproj):
        hs = recur(w_hh, h0, xproj)
        return hs, (w_hh, h0, hs)

    def recur_bwd(res, gq):  # gq = ∂L/∂h_t through the outputs, [T,B,h]
        w_hh, h0, hs = res

        def step(ga_next, gq_h):
            gq_t, h_t = gq_h
            ga_t = (gq_t + ga_next @ w_hh) * dphi(h_t)  # ∂L/∂a_t
            return ga_t, ga_t

        _, ga = jax.lax.scan(step, jnp.zeros_like(h0), (gq, hs), reverse=True)
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        grad_w_hh = ga.reshape(T * B, h).T @ h_prev.reshape(T * B, h)
        return grad_w_hh, ga[0] @ w_hh, ga  # ∂L/∂w_hh, ∂L/∂h0, ∂L/∂xproj = ∂L/∂a

    recur.defvjp(recur_fwd, recur_bwd)

    def loss_split(params, h0, x, y):
        w_hx, w_hh, w_qh = params
        hs = recur(w_hh, h0, x @ w_hx.T)  # ∂L/∂w_hx = ∂L/∂Aᵀ·X by autodiff: one product
        o = hs @ w_qh.T  # ∂L/∂o, gq = ∂L/∂o·w_qh and ∂L/∂w_qh: one product each over all steps
        return 0.5 * jnp.sum((o - y) ** 2) / (T * B)

    params = tuple(jnp.asarray(t[k]) for k in ("w_hx", "w_hh", "w_qh"))
    h0, x, y = (jnp.asarray(t[k]) for k in ("h0", "x", "y"))
    fns = {"scan-all": loss_scan_all, "hoisted": loss_hoisted, "split-vjp": loss_split}
    labels = {"scan-all": "autodiff scan-all", "hoisted": "autodiff hoisted", "split-vjp": "split VJP"}
    results = {}
    for name in forms:
        vg = jax.jit(jax.value_and_grad(fns[name], argnums=(0, 1)))
        loss, (g, g_h0) = jax.block_until_ready(vg(params, h0, x, y))  # compile + warm-up
        for _ in range(3):
            jax.block_until_ready(vg(params, h0, x, y))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            jax.block_until_ready(vg(params, h0, x, y))
            times.append((time.perf_counter() - start) * 1e3)
        print(f"{labels[name]:18} median {statistics.median(times):8.2f} ms over {args.runs} runs "
              f"(min {min(times):.2f}, max {max(times):.2f})")
        got = dict(loss=np.asarray(loss), grad_w_hx=g[0], grad_w_hh=g[1], grad_w_qh=g[2], grad_h0=g_h0)
        results[name] = {k: np.asarray(v, np.float64) for k, v in got.items()}
        if saved is not None:
            print("    rel. difference from the fast path: " + rel_errs(results[name], saved))
    if "split-vjp" in results:
        # The hand-written VJP against autodiff's, on this problem (always computed, even when
        # only split-vjp is timed).
        auto = results.get("hoisted")
        if auto is None:
            vg = jax.jit(jax.value_and_grad(loss_hoisted, argnums=(0, 1)))
            loss, (g, g_h0) = vg(params, h0, x, y)
            auto = dict(loss=np.asarray(loss), grad_w_hx=g[0], grad_w_hh=g[1], grad_w_qh=g[2], grad_h0=g_h0)
            auto = {k: np.asarray(v, np.float64) for k, v in auto.items()}
        worst = max(rel_err(results["split-vjp"][k], auto[k]) for k in auto)
        print(f"    split VJP against autodiff: {rel_errs(results['split-vjp'], auto)}; max {worst:.1e}")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a)


def rel_errs(got, ref):
    return ", ".join(f"{k} {rel_err(got[k], ref[k]):.1e}" for k in got)


if __name__ == "__main__":
    main()
