"""``bptt.torch.RNN``: a drop-in for a one-layer, one-direction ``torch.nn.RNN`` whose forward
and backward passes run in bptt's engines: WGSL on any GPU wgpu reaches (Vulkan, Metal, DX12,
or a software adapter), the fast f32 CPU path, or the f64 reference (docs/python.md).

Same parameter names and shapes (``weight_ih_l0 [h, d]``, ``weight_hh_l0 [h, h]``,
``bias_ih_l0 [h]``, ``bias_hh_l0 [h]``), same initialisation, same ``forward(input, hx=None)
-> (output, h_n)``, so ``load_state_dict`` from a ``torch.nn.RNN`` works unchanged. The
backward pass is bptt's layer mode: the upstream gradients ∂L/∂h_t (from ``output``, and from
``h_n`` into h_T) in; ∂L/∂x_t, ∂L/∂h_0 and the parameter gradients out.
"""

import math

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("bptt.torch needs PyTorch: `pip install torch` (the rest of bptt does not)") from e

from . import _lib

__all__ = ["RNN", "RNNFunction"]

NONLINEARITIES = ("tanh", "relu", "identity")


def _numpy(t):
    """A CPU tensor's values as a C-contiguous numpy array (no copy when it already is one;
    numpy's single-threaded copy otherwise, e.g. of the expanded gradient of a sum, which costs
    less than waking torch's thread pool beside bptt's own threads)."""
    return np.ascontiguousarray(t.detach().to("cpu").numpy())


def _tensor(a, like):
    """A numpy result as a tensor on `like`'s device (no copy on the CPU)."""
    t = torch.from_numpy(a)
    return t if like.device.type == "cpu" else t.to(like.device)


class RNNFunction(torch.autograd.Function):
    """output, h_T = RNN(x [T, B, d], h0 [B, h] or None, w_ih, w_hh, b_ih, b_hh) with the
    forward and backward passes in ``layer`` (a ``bptt._lib.Layer``)."""

    @staticmethod
    def forward(ctx, layer, nonlinearity, x, h0, w_ih, w_hh, b_ih, b_hh):
        t, b, d = x.shape
        h = w_hh.shape[0]
        bias = None if b_ih is None else (b_ih + b_hh).detach()
        f64 = x.dtype == torch.float64
        run = layer.forward_f64 if f64 else layer.forward_f32
        args = [_numpy(w_ih), _numpy(w_hh), None if bias is None else _numpy(bias), _numpy(x)]
        h0_np = None if h0 is None else _numpy(h0)
        out = _tensor(run((t, b, d, h), nonlinearity, *args, h0_np), x)
        h_last = out[-1].clone()
        ctx.layer, ctx.nonlinearity, ctx.has_h0, ctx.has_bias = layer, nonlinearity, h0 is not None, bias is not None
        ctx.save_for_backward(x, h0, w_ih, w_hh, out)
        return out, h_last

    @staticmethod
    def backward(ctx, grad_out, grad_h_last):
        x, h0, w_ih, w_hh, out = ctx.saved_tensors
        t, b, d = x.shape
        h = w_hh.shape[0]
        f64 = x.dtype == torch.float64
        run = ctx.layer.backward_f64 if f64 else ctx.layer.backward_f32
        dtype = np.float64 if f64 else np.float32
        bias = np.zeros(h, dtype) if ctx.has_bias else None
        grads = run(
            (t, b, d, h),
            ctx.nonlinearity,
            _numpy(w_ih),
            _numpy(w_hh),
            bias,
            _numpy(x),
            None if h0 is None else _numpy(h0),
            _numpy(out),
            _numpy(grad_out),
            _numpy(grad_h_last),
        )
        grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b = (None if g is None else _tensor(g, x) for g in grads)
        grad_h0 = grad_h0 if ctx.has_h0 else None
        # Both biases get ∂L/∂b_h (their sum enters the model), as two tensors, not one shared.
        grad_b2 = None if grad_b is None else grad_b.clone()
        return None, None, grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b, grad_b2


class RNN(nn.Module):
    """``torch.nn.RNN`` with one layer and one direction, computed by bptt.

    ``RNN(input_size, hidden_size, nonlinearity="tanh", bias=True, batch_first=False,
    device_kind="gpu")``: ``nonlinearity`` also takes "identity"; ``device_kind`` is where the
    passes run: "gpu" (WGSL through wgpu, f32), "cpu" (the fast f32 path) or "reference" (the
    f64 oracle: a module converted with ``.double()`` then computes in f64 throughout). On the
    GPU, ``schedule`` ("fused" or "stepwise") and ``adapter``/``backend``/``software`` choose
    how and where. ``num_layers`` > 1, ``bidirectional``, ``dropout`` and packed sequences are
    refused with an error naming them.
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
        *,
        device_kind="gpu",
        schedule="fused",
        adapter=None,
        backend=None,
        software=False,
    ):
        super().__init__()
        if num_layers != 1:
            raise ValueError(f"bptt.torch.RNN: `num_layers` {num_layers} is not supported yet: one layer only (stack several modules)")
        if bidirectional:
            raise ValueError("bptt.torch.RNN: `bidirectional` is not supported yet: one direction only")
        if dropout:
            raise ValueError(f"bptt.torch.RNN: `dropout` {dropout} is not supported yet (it acts between layers, and there is one)")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"bptt.torch.RNN: `nonlinearity` must be one of {', '.join(NONLINEARITIES)}, not {nonlinearity!r}")
        if device_kind not in ("gpu", "cpu", "reference"):
            raise ValueError(f"bptt.torch.RNN: `device_kind` must be one of gpu, cpu, reference, not {device_kind!r}")
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"bptt.torch.RNN: `input_size` and `hidden_size` must be at least 1, got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = 1
        self.nonlinearity = nonlinearity
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = 0.0
        self.bidirectional = False
        self.device_kind = device_kind
        self.schedule = schedule
        self._adapter = (adapter, backend, software)
        self._layer = None
        factory = {"device": device, "dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size, **factory))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    def reset_parameters(self):
        """U(−1/√h, 1/√h) for every parameter, as torch.nn.RNN."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def layer(self):
        """The engine behind the module (opened on first use: on the GPU, the context is shared
        by every module on the same adapter)."""
        if self._layer is None:
            adapter, backend, software = self._adapter
            self._layer = _lib.Layer(self.device_kind, self.schedule, adapter, backend, software)
        return self._layer

    def __getstate__(self):
        # The engine is not copied (copy.deepcopy, pickling, DistributedDataParallel's
        # replicas): each copy opens its own on first use.
        state = self.__dict__.copy()
        state["_layer"] = None
        return state

    def forward(self, input, hx=None):
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise ValueError("bptt.torch.RNN does not take packed sequences (PackedSequence) yet: give a padded tensor")
        w = self.weight_ih_l0
        if w.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"bptt.torch.RNN computes in float32 or float64, not {w.dtype}: convert the module with .float() or .double()")
        if input.dtype != w.dtype:
            raise ValueError(f"bptt.torch.RNN: input must have the type {w.dtype}, got type {input.dtype}")
        batched = input.dim() == 3
        if input.dim() not in (2, 3):
            raise ValueError(f"bptt.torch.RNN: expected input to be 2-D or 3-D, got {input.dim()}-D")
        if input.size(-1) != self.input_size:
            raise ValueError(f"bptt.torch.RNN: input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}")
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        x = x.contiguous()
        t, b = x.shape[0], x.shape[1]
        if t == 0 or b == 0:
            raise ValueError(f"bptt.torch.RNN: the input has {t} steps and a batch of {b}: both must be at least 1")
        h0 = None
        if hx is not None:
            want = (1, b, self.hidden_size) if batched else (1, self.hidden_size)
            if tuple(hx.shape) != want:
                raise ValueError(f"bptt.torch.RNN: expected hidden size {want}, got {tuple(hx.shape)}")
            if hx.dtype != w.dtype:
                raise ValueError(f"bptt.torch.RNN: hx must have the type {w.dtype}, got type {hx.dtype}")
            h0 = hx.reshape(b, self.hidden_size).contiguous()
        out, h_last = RNNFunction.apply(
            self.layer(), self.nonlinearity, x, h0, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0
        )
        h_n = h_last.unsqueeze(0)
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s + f", device_kind={self.device_kind!r}"
