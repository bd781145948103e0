# %% [markdown]
# # Backpropagation through time, step by step
#
# A walk through the chapter with `bptt`: the model, its unrolled graph, a gradient check
# on the GPU against an f64 reference, vanishing and exploding gradients, truncation, and
# training, first with bptt's own trainer and then with PyTorch.
#
# This file is a notebook in the "percent" format: open it in Jupyter (with jupytext) or VS
# Code, or run it as a script. Every GPU call runs on whatever adapter wgpu finds (Vulkan,
# Metal, DX12, or Mesa's software lavapipe).

# %%
import numpy as np
import torch

import bptt
import bptt.torch

print(bptt.adapter_info())

# %% [markdown]
# ## The model
#
# $a_t = x_t W_{hx}^\top + h_{t-1} W_{hh}^\top + b_h$, $h_t = \varphi(a_t)$,
# $o_t = h_t W_{qh}^\top + b_q$, and $L = \frac{1}{TB}\sum_t \sum_b \ell(o_{tb}, y_{tb})$.
# A seeded random problem: T = 24 steps, a batch of 4, 8 inputs, 32 hidden units, 8 outputs,
# the loss at the last step only, so every gradient has to travel back through time.

# %%
problem = bptt.random_problem(24, 4, 8, 32, 8, activation="tanh", loss_at="last", spectral_radius=0.9, seed=1)
problem

# %% [markdown]
# ## One forward and backward pass
#
# `bptt.bptt` returns the loss and every gradient as numpy arrays. The same problem on the GPU
# (f32, WGSL), the fast CPU path (f32) and the f64 reference agree to f32 rounding.

# %%
results = {device: bptt.bptt(problem, device=device) for device in ("gpu", "cpu", "reference")}
reference = results["reference"]
for device, r in results.items():
    err = np.linalg.norm(r.grad_w_hh - reference.grad_w_hh) / np.linalg.norm(reference.grad_w_hh)
    print(f"{device:9}  L = {r.loss:.6f}   ‖grad_w_hh − reference‖/‖reference‖ = {err:.1e}")
reference

# %% [markdown]
# ## The gradient check and the unrolled graph
#
# `bptt.check` runs the GPU against the reference and explains what it finds; in a notebook
# the report shows as a table, and `report.graph()` draws the unrolled computation graph with
# each $h_t$ coloured by $\lVert \partial L / \partial h_t \rVert$.

# %%
report = bptt.check(problem, repeat=1)
report

# %%
graph = report.graph()
graph

# %% [markdown]
# ## Vanishing and exploding gradients
#
# Each step back multiplies a far loss term's gradient by about the spectral radius ρ of
# $W_{hh}$ (identity activation): below 1 it vanishes, above 1 it explodes. A sweep over ρ
# draws both reach profiles $\lVert \partial L_T / \partial h_t \rVert$.

# %%
sweep = bptt.sweep([0.9, 1.1], steps=48, batch=1, input=8, hidden=32, output=8, loss_at="last", compute="reference")
for row in sweep.sweep:
    print(f"ρ = {row['radius']}: each step back multiplies the gradient by {row['reach_factor']:.3f}")
profiles = sweep.plot()
profiles

# %% [markdown]
# ## Truncation
#
# Truncated BPTT keeps a loss term's gradient only K steps back. With the loss at the last
# step, K = 8 leaves $\partial L/\partial h_t = 0$ before $t = T - 8$, and the weight
# gradients change accordingly.

# %%
full = bptt.bptt(problem, device="gpu")
truncated = bptt.bptt(problem, device="gpu", truncate=8)
print("‖∂L/∂h_t‖, full:     ", np.array2string(full.grad_h_norm[-10:], precision=3))
print("‖∂L/∂h_t‖, truncated:", np.array2string(truncated.grad_h_norm[-10:], precision=3))
change = np.linalg.norm(truncated.grad_w_hh - full.grad_w_hh) / np.linalg.norm(full.grad_w_hh)
print(f"grad_w_hh changes by {change:.1%}")

# %% [markdown]
# ## Training
#
# `bptt.train` is `bptt train`: here an IRNN (relu, $W_{hh} = I$) on the adding problem.

# %%
trained = bptt.train("adding", steps=10, hidden=32, batch=32, iters=300, activation="relu",
                     init_recurrent="identity", lr=0.003, clip=1.0, device="gpu", eval_every=100, eval_size=128)
trained

# %%
curve = trained.plot()
curve

# %% [markdown]
# ## A drop-in `torch.nn.RNN`
#
# `bptt.torch.RNN` has `torch.nn.RNN`'s parameters and semantics, with its forward and
# backward passes in WGSL: a PyTorch model on a GPU PyTorch itself cannot use. Its outputs and
# gradients equal torch's.

# %%
torch.manual_seed(0)
theirs = torch.nn.RNN(8, 32)
ours = bptt.torch.RNN(8, 32, device_kind="gpu")
ours.load_state_dict(theirs.state_dict())
x = torch.randn(24, 4, 8)
out_theirs, _ = theirs(x)
out_ours, _ = ours(x)
out_ours.sum().backward()
out_theirs.sum().backward()
for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
    print(f"{name:14} ‖ours − torch‖/‖torch‖ = {((p.grad - q.grad).norm() / q.grad.norm()).item():.1e}")
