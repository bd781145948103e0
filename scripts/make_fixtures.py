#!/usr/bin/env python3
"""Writes the test fixtures in tests/fixtures/: small BPTT problems with gradients computed by JAX.

This is an implementation independent of the Rust code, written from the math contract
(docs/model.md): the forward pass is a `jax.lax.scan`, the gradients come from
`jax.value_and_grad` (reverse-mode autodiff, not hand-written BPTT), in float64.

Each case is two files:
  <case>.safetensors           the inputs: w_hx w_hh w_qh x h0 [b_h b_q] y|labels (F64, labels
                               I64), with __metadata__ loss and activation. `bptt --load` reads it.
  <case>.expected.safetensors  JAX's results, F64, under the result names bptt writes:
                               loss grad_w_hx grad_w_hh grad_w_qh [grad_b_h grad_b_q] grad_h0
                               grad_h_norm, and the forward states h [T,B,h] and o [T,B,q].

grad_h_norm[t] = ||dL/dh_t|| is taken from autodiff too: a zero perturbation eps_t is added to
h_t inside the scan, and dL/d(eps_t) is dL/dh_t (the total derivative, through every later step).

Regenerate (from the repository root):
    python3 -m venv /tmp/venv-fixtures
    /tmp/venv-fixtures/bin/pip install -r scripts/requirements.txt
    /tmp/venv-fixtures/bin/python scripts/make_fixtures.py [CASE ...]
The inputs come from numpy's seeded generator: rerunning gives the same tensor values bit for
bit (only the order of the __metadata__ keys in the header may change); the expected values
may differ in the last bits across JAX/XLA versions, far below the tests' 1e-9 tolerance. `cargo test --release --test fixtures` then checks the Rust reference.
"""

import os
import sys
from dataclasses import dataclass

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import jax.numpy as jnp  # noqa: E402  (after enabling x64)
import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


@dataclass
class Case:
    name: str
    T: int
    B: int
    d: int
    h: int
    q: int
    activation: str  # identity | tanh | relu
    loss: str  # mse | xent
    bias: bool = False
    random_h0: bool = False
    spectral_radius: float | None = None
    seed: int = 0


CASES = [
    Case("identity_mse", T=5, B=1, d=3, h=4, q=2, activation="identity", loss="mse", seed=1),
    Case("tanh_mse_batch", T=6, B=3, d=3, h=5, q=2, activation="tanh", loss="mse", seed=2),
    Case("tanh_xent_bias_h0", T=7, B=2, d=4, h=6, q=3, activation="tanh", loss="xent",
         bias=True, random_h0=True, seed=3),
    Case("identity_xent_batch", T=5, B=4, d=2, h=4, q=5, activation="identity", loss="xent",
         seed=4),
    Case("identity_mse_bias_h0", T=4, B=2, d=3, h=4, q=3, activation="identity", loss="mse",
         bias=True, random_h0=True, seed=5),
    Case("exploding_identity_mse", T=24, B=2, d=3, h=8, q=2, activation="identity", loss="mse",
         spectral_radius=1.3, seed=6),
    Case("tanh_xent_h12", T=10, B=2, d=5, h=12, q=4, activation="tanh", loss="xent",
         bias=True, seed=7),
    # relu (the IRNN's phi): h0 and biases so that some units are clipped and some are not.
    Case("relu_mse_bias_h0", T=8, B=3, d=3, h=6, q=2, activation="relu", loss="mse",
         bias=True, random_h0=True, seed=8),
]


def make_inputs(c: Case) -> dict:
    """Random inputs in the crate's distributions (weights ~ N(0, 1/fan_in), data ~ N(0, 1))."""
    rng = np.random.default_rng(c.seed)
    w_hh = rng.normal(0.0, 1.0 / np.sqrt(c.h), (c.h, c.h))
    if c.spectral_radius is not None:
        w_hh *= c.spectral_radius / np.max(np.abs(np.linalg.eigvals(w_hh)))
    inputs = {
        "w_hx": rng.normal(0.0, 1.0 / np.sqrt(c.d), (c.h, c.d)),
        "w_hh": w_hh,
        "w_qh": rng.normal(0.0, 1.0 / np.sqrt(c.h), (c.q, c.h)),
        "x": rng.normal(0.0, 1.0, (c.T, c.B, c.d)),
        "h0": rng.normal(0.0, 1.0, (c.B, c.h)) if c.random_h0 else np.zeros((c.B, c.h)),
    }
    if c.bias:
        inputs["b_h"] = rng.normal(0.0, 0.1, (c.h,))
        inputs["b_q"] = rng.normal(0.0, 0.1, (c.q,))
    if c.loss == "mse":
        inputs["y"] = rng.normal(0.0, 1.0, (c.T, c.B, c.q))
    else:
        inputs["labels"] = rng.integers(0, c.q, (c.T, c.B), dtype=np.int64)
    return {k: (v if v.dtype == np.int64 else v.astype(np.float64)) for k, v in inputs.items()}


def results(c: Case, inp: dict) -> dict:
    phi = {"identity": lambda a: a, "tanh": jnp.tanh, "relu": jax.nn.relu}[c.activation]
    zero_h, zero_q = jnp.zeros(c.h), jnp.zeros(c.q)
    targets = inp["y"] if c.loss == "mse" else inp["labels"]

    def step_loss(o, target):
        """sum over the batch of l(o_b, target_b)"""
        if c.loss == "mse":
            return 0.5 * jnp.sum((o - target) ** 2)
        logp = jax.nn.log_softmax(o, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, target[:, None], axis=-1))

    def total_loss(p, eps):
        b_h = p.get("b_h", zero_h)
        b_q = p.get("b_q", zero_q)

        def step(h_prev, xs):
            x_t, eps_t, target_t = xs
            a_t = x_t @ p["w_hx"].T + h_prev @ p["w_hh"].T + b_h
            h_t = phi(a_t) + eps_t  # eps = 0: only there to read dL/dh_t
            o_t = h_t @ p["w_qh"].T + b_q
            return h_t, (step_loss(o_t, target_t), h_t, o_t)

        _, (losses, hs, os_) = jax.lax.scan(step, p["h0"], (inp["x"], eps, targets))
        return jnp.sum(losses) / (c.T * c.B), (hs, os_)

    params = {k: jnp.asarray(inp[k]) for k in ("w_hx", "w_hh", "w_qh", "h0", "b_h", "b_q")
              if k in inp}
    eps = jnp.zeros((c.T, c.B, c.h))
    (loss, (hs, os_)), (g, g_eps) = jax.value_and_grad(total_loss, argnums=(0, 1),
                                                       has_aux=True)(params, eps)
    out = {
        "loss": np.asarray(loss),
        "grad_w_hx": np.asarray(g["w_hx"]),
        "grad_w_hh": np.asarray(g["w_hh"]),
        "grad_w_qh": np.asarray(g["w_qh"]),
        "grad_h0": np.asarray(g["h0"]),
        "grad_h_norm": np.asarray(jnp.sqrt(jnp.sum(g_eps**2, axis=(1, 2)))),
        "h": np.asarray(hs),
        "o": np.asarray(os_),
    }
    if c.bias:
        out["grad_b_h"] = np.asarray(g["b_h"])
        out["grad_b_q"] = np.asarray(g["b_q"])
    return {k: v.astype(np.float64) for k, v in out.items()}


def main():
    # Case names on the command line regenerate only those cases (the others' files stay as
    # they are); no names regenerates every case.
    only = set(sys.argv[1:])
    unknown = only - {c.name for c in CASES}
    if unknown:
        sys.exit(f"unknown case(s): {', '.join(sorted(unknown))}")
    os.makedirs(OUT, exist_ok=True)
    for c in CASES:
        if only and c.name not in only:
            continue
        inp = make_inputs(c)
        exp = results(c, inp)
        meta = {"loss": c.loss, "activation": c.activation}
        shape = f"T={c.T} B={c.B} d={c.d} h={c.h} q={c.q}"
        save_file(inp, os.path.join(OUT, f"{c.name}.safetensors"), metadata=meta)
        save_file(exp, os.path.join(OUT, f"{c.name}.expected.safetensors"),
                  metadata={**meta, "shape": shape, "source": "scripts/make_fixtures.py (JAX "
                            f"{jax.__version__}, float64)"})
        print(f"{c.name:24s} {shape:28s} loss={float(exp['loss']):.6g} "
              f"max grad_h_norm={float(exp['grad_h_norm'].max()):.4g}")


if __name__ == "__main__":
    main()
