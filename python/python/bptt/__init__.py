"""bptt: backpropagation through time for a simple RNN on any GPU (wgpu + WGSL), checked
against an f64 reference, from Python.

The calls (docs/python.md):

- ``bptt.bptt(w_hx, w_hh, w_qh, x, y=None, labels=None, ...)`` (or ``bptt.bptt(problem)``):
  one forward + backward pass on ``device="gpu"``, ``"cpu"`` (the fast f32 path) or
  ``"reference"`` (f64) → a :class:`Result` of numpy arrays.
- ``bptt.check(problem, ...)``: the gradient check → a :class:`Report` whose fields are the JSON
  report's; ``report.graph()`` and ``report.plot()`` draw it (inline in Jupyter).
- ``bptt.random_problem(...)``, ``bptt.problem(...)``, ``bptt.load(path)``, ``bptt.save(path, obj)``.
- ``bptt.train(task="adding", ...)`` → a :class:`Trained` run: the curve, the held-out metrics,
  the weights as numpy arrays.
- ``bptt.torch.RNN``: a drop-in ``torch.nn.RNN`` (one layer) whose forward and backward run here.

Errors are exceptions with the library's one-line message: ``ValueError`` for bad input,
``TypeError`` for an array of a dtype that is not accepted, ``RuntimeError`` for GPU failures,
``OSError`` for files. Nothing is printed.
"""

import errno
import html
import json
import os

import numpy as np

from . import _lib
from ._arrays import count as _count, expect, floats, labels as _labels, memory as _memory, truncation as _truncation
from ._lib import Problem

__all__ = [
    "Problem",
    "Report",
    "Result",
    "SVG",
    "Trained",
    "adapter_info",
    "bptt",
    "check",
    "list_adapters",
    "load",
    "problem",
    "random_problem",
    "save",
    "sweep",
    "train",
]

__version__ = _lib.VERSION

RESULT_TENSORS = ("loss", "grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "grad_h0", "grad_h_norm")


class SVG:
    """A figure as SVG text: shown inline by Jupyter, written by :meth:`save`."""

    def __init__(self, text):
        self.text = text

    def _repr_svg_(self):
        return self.text

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.text)

    def __repr__(self):
        return f"<bptt.SVG, {len(self.text)} characters>"


def _table(rows, title=None):
    """A compact two-column HTML table."""
    head = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{head}{body}</table>"


def _g(v):
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


class Result:
    """One forward + backward pass: the loss, every gradient and ‖∂L/∂h_t‖ as numpy float64
    arrays (``grad_w_hx [h, d]``, ``grad_w_hh [h, h]``, ``grad_w_qh [q, h]``, ``grad_b_h [h]``,
    ``grad_b_q [q]``, ``grad_h0 [B, h]``, ``grad_h_norm [T]``), the states ``h [T, B, h]`` and
    ``o [T, B, q]`` when kept (else None), ``clip_norm``, ‖g‖ before clipping, when it
    clipped, and ``forward_steps``, the forward steps a checkpointed run (``memory``,
    ``checkpoints``) evaluated (else None). ``problem`` is the problem it was computed for."""

    def __init__(self, tensors, problem, device):
        self.problem = problem
        self.device = device
        self.loss = float(tensors["loss"])
        for name in RESULT_TENSORS[1:] + ("h", "o"):
            setattr(self, name, tensors.get(name))
        self.clip_norm = tensors.get("clip_norm")
        self.forward_steps = tensors.get("forward_steps")

    def tensors(self):
        """The result's tensors by their file names (biases and states only when present)."""
        out = {"loss": self.loss}
        for name in RESULT_TENSORS[1:] + ("h", "o"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    def graph(self):
        """The problem's unrolled computation graph, each h_t coloured by this result's
        ‖∂L/∂h_t‖ (truncation, segments and clipping are not drawn: use :func:`check` for those)."""
        return SVG(self.problem.graph_svg(self.grad_h_norm.tolist(), self.grad_h0.ravel().tolist()))

    def plot(self):
        """‖∂L/∂h_t‖ against t."""
        return SVG(self.problem.plot_svg(self.grad_h_norm.tolist()))

    def _repr_html_(self):
        rows = [("device", self.device), ("loss", _g(self.loss))]
        for name, v in self.tensors().items():
            if name != "loss":
                rows.append((f"‖{name}‖ {list(v.shape)}", _g(float(np.linalg.norm(v)))))
        return _table(rows, "bptt result")

    def __repr__(self):
        return f"bptt.Result(device={self.device!r}, loss={self.loss:.6g}, T={len(self.grad_h_norm)})"


class Report:
    """A gradient check's report: every field of the JSON report (docs/report.md) is an
    attribute (``report.loss``, ``report.rel_err``, ``report.grad_h_norm``, …; ``pass`` is a
    Python keyword, so it is also ``report.passed``). ``result`` is the :class:`Result` it
    describes; :meth:`graph` and :meth:`plot` draw it. Jupyter shows it as a table."""

    def __init__(self, native, problem=None):
        self._native = native
        self._fields = json.loads(native.json())
        for k, v in self._fields.items():
            setattr(self, k, v)
        self.passed = self._fields["pass"]
        self._problem = problem
        self._result = None

    @property
    def result(self):
        """The :class:`Result` the report describes (the GPU's when it ran); None for a sweep."""
        if self._result is None and self._problem is not None:
            tensors = self._native.result()
            if tensors is not None:
                self._result = Result(tensors, self._problem, self._fields["result_from"])
        return self._result

    def to_dict(self):
        """The JSON report as a dict (a copy)."""
        return json.loads(json.dumps(self._fields))

    def to_json(self, **kwargs):
        return json.dumps(self._fields, **kwargs)

    def worst_rel_err(self):
        """The largest relative error of any compared tensor (nan when nothing was compared)."""
        errs = list(self._fields["rel_err"].values())
        return max(errs) if errs else float("nan")

    def graph(self):
        """The unrolled computation graph, each h_t coloured by ‖∂L/∂h_t‖."""
        return SVG(self._native.graph_svg())

    def plot(self):
        """‖∂L/∂h_t‖ and the reach profile against t (every radius of a sweep)."""
        return SVG(self._native.plot_svg())

    def _repr_html_(self):
        f = self._fields
        s = f["shape"]
        verdict = {True: "PASS", False: "FAIL", None: "nothing compared"}[f["pass"]]
        rows = [
            ("shape", f"T={s['steps']} B={s['batch']} d={s['input']} h={s['hidden']} q={s['output']}"),
            ("problem", f"{f['activation']}, {f['loss_fn']} at {f['loss_at']}, bias={f['bias']}, seed={f['seed']}"),
            ("compute", f"{f['compute']}" + (f" on {f['adapter']['name']}" if f["adapter"] else "")),
            ("loss", f"{_g(f['loss'])} (from {f['result_from']})"),
            ("w_hh", f"ρ = {_g(f['spectral_radius'])}, σ_max = {_g(f['largest_singular_value'])}"),
            ("‖∂L/∂h_t‖", f"t=1: {_g(f['grad_h_norm'][0])}, t=T: {_g(f['grad_h_norm'][-1])}"),
        ]
        if f["reach_summary"]:
            rows.append(("reach", f["reach_summary"]))
        for v in f["variant"]:
            rows.append(("variant", v))
        for name, e in f["rel_err"].items():
            rows.append((f"rel. error {name}", f"{e:.3e}"))
        t = f["timings_ms"]
        for key in ("gpu_total", "cpu_total", "cpu_ref_total"):
            if t[key] is not None:
                rows.append((f"{key} (ms)", _g(t[key])))
        for p in f["problems"]:
            rows.append(("problem", p))
        for n in f["notes"]:
            rows.append(("note", n))
        rows.append(("result", verdict))
        return _table(rows, "bptt gradient check")

    def __repr__(self):
        return (
            f"bptt.Report(loss={self.loss:.6g}, pass={self._fields['pass']}, "
            f"worst_rel_err={self.worst_rel_err():.3g}, compute={self.compute!r})"
        )


class Trained:
    """A finished training run: every field of ``bptt train --json`` as an attribute
    (``curve``, ``eval``, ``final_eval``, ``baseline``, …), ``weights`` (numpy float32 arrays
    by name: w_hx, w_hh, w_qh, b_h, b_q), ``metadata``, :meth:`plot` and :meth:`save_model`."""

    def __init__(self, native):
        self._native = native
        self._fields = json.loads(native.json())
        for k, v in self._fields.items():
            setattr(self, k, v)
        self.weights = native.weights()
        self.metadata = native.metadata()

    def to_dict(self):
        return json.loads(json.dumps(self._fields))

    def plot(self):
        """The training and held-out curves with the memoryless baseline."""
        return SVG(self._native.plot_svg())

    def save_model(self, path):
        """Writes the weights as a model file, for ``bptt.train(init_from=path)`` or the command."""
        self._native.save_model(str(path))

    def _repr_html_(self):
        f = self._fields
        fe = f["final_eval"]
        rows = [
            ("task", f"{f['task']} (T={f['steps']}, B={f['batch']}, h={f['hidden']}, {f['activation']})"),
            ("device", f["device"]),
            ("optimiser", f"{f['optimizer']}, lr {f['lr']}, {f['iters']} iterations"),
            (f"held-out {f['metric']}", f"{_g(fe['loss'])} (baseline {_g(f['baseline'])})"),
            ("time", f"{f['seconds']:.2f} s, {f['sequences_per_s']:.0f} sequences/s"),
        ]
        if fe.get("accuracy") is not None:
            rows.append(("held-out accuracy", _g(fe["accuracy"])))
        for n in f["notes"]:
            rows.append(("note", n))
        return _table(rows, "bptt training run")

    def __repr__(self):
        return f"bptt.Trained(task={self.task!r}, iters={self.iters}, final held-out {self.metric}={self.final_eval['loss']:.4g})"


def problem(w_hx, w_hh, w_qh, x, y=None, labels=None, h0=None, b_h=None, b_q=None, *, activation="identity", loss=None, loss_at="all"):
    """A :class:`Problem` from numpy arrays (float32 or float64; labels integers): w_hx [h, d],
    w_hh [h, h], w_qh [q, h], x [T, B, d], and y [T, B, q] (mse) or labels [T, B] (xent);
    optional h0 [B, h] and the bias pair b_h [h], b_q [q]. Every shape is checked against the
    others, every value must be finite; the values are kept in f64 (f32 widens exactly)."""
    w_hh = floats("w_hh", w_hh, 2)
    h = w_hh.shape[0]
    expect("w_hh", w_hh, (h, h), "w_hh is square")
    w_hx = floats("w_hx", w_hx, 2)
    d = w_hx.shape[1]
    expect("w_hx", w_hx, (h, d), f"[h, d] with h = {h} from w_hh")
    w_qh = floats("w_qh", w_qh, 2)
    q = w_qh.shape[0]
    expect("w_qh", w_qh, (q, h), f"[q, h] with h = {h} from w_hh")
    x = floats("x", x, 3)
    t, b = x.shape[0], x.shape[1]
    expect("x", x, (t, b, d), f"[T, B, d] with d = {d} from w_hx")
    if (y is None) == (labels is None):
        raise ValueError("give the targets as exactly one of `y` (mse) or `labels` (xent)")
    implied = "mse" if y is not None else "xent"
    if loss is not None and loss != implied:
        given = "`y`" if y is not None else "`labels`"
        raise ValueError(f"`loss` {loss} contradicts the targets: {given} means {implied}")
    if y is not None:
        y = floats("y", y, 3)
        expect("y", y, (t, b, q), f"[T, B, q] with T, B = {t}, {b} from x and q = {q} from w_qh")
    else:
        labels = _labels(labels)
        expect("labels", labels, (t, b), f"[T, B] from x = {t}, {b}")
    if h0 is not None:
        h0 = floats("h0", h0, 2)
        expect("h0", h0, (b, h), f"[B, h] with B = {b} from x and h = {h} from w_hh")
    if (b_h is None) != (b_q is None):
        raise ValueError("biases come as a pair: give both `b_h` and `b_q`, or neither")
    if b_h is not None:
        b_h, b_q = floats("b_h", b_h, 1), floats("b_q", b_q, 1)
        expect("b_h", b_h, (h,), f"[h] with h = {h} from w_hh")
        expect("b_q", b_q, (q,), f"[q] with q = {q} from w_qh")
    return _lib.make_problem((t, b, d, h, q), activation, loss_at, w_hx, w_hh, w_qh, x, y, labels, h0, b_h, b_q)


def _problem_of(first, rest, activation, loss, loss_at):
    """The problem of a call given either a Problem or the arrays."""
    if isinstance(first, Problem):
        if any(v is not None for v in rest.values()):
            given = ", ".join(f"`{k}`" for k, v in rest.items() if v is not None)
            raise ValueError(f"give a Problem or the arrays, not both (also given: {given})")
        if loss is not None and loss != first.loss:
            raise ValueError(f"`loss` {loss} contradicts the problem's targets ({first.loss})")
        if activation is None and loss_at is None:
            return first
        return first.with_options(activation, loss_at)
    if rest["w_hh"] is None or rest["w_qh"] is None or rest["x"] is None:
        raise ValueError("give a Problem, or the arrays w_hx, w_hh, w_qh, x and y or labels")
    return problem(first, **rest, activation=activation or "identity", loss=loss, loss_at=loss_at or "all")


def bptt(
    w_hx,
    w_hh=None,
    w_qh=None,
    x=None,
    y=None,
    labels=None,
    h0=None,
    b_h=None,
    b_q=None,
    *,
    activation=None,
    loss=None,
    loss_at=None,
    device="gpu",
    schedule="fused",
    truncate=None,
    truncate_seed=0,
    segments=None,
    clip=None,
    memory=None,
    checkpoints=None,
    keep_states=False,
    max_memory=None,
    adapter=None,
    backend=None,
    software=False,
):
    """One forward + backward pass → :class:`Result`.

    Give the arrays (see :func:`problem`) or a :class:`Problem` first. ``device``: "gpu" (f32,
    WGSL), "cpu" (the fast f32 path) or "reference" (f64, no rounding); ``schedule``: "fused"
    or "stepwise" (GPU); ``truncate``: K steps back from each loss term, or "random:P" (cut
    probability P, seeded by ``truncate_seed``); ``segments``: N, the gradient cut at their
    boundaries; ``clip``: the global norm θ; ``memory``: exact BPTT within this many bytes
    (or "64M") for everything that grows with T, the states checkpointed (binomial
    checkpointing; docs/gradients.md); ``checkpoints``: the states held at once instead (or as
    well); ``keep_states``: return h and o too; ``max_memory``: the host memory the run may plan
    for (bytes or "8G"); ``adapter``/``backend``/``software``: which GPU (else
    ``WGPU_ADAPTER_NAME``/``WGPU_BACKEND``, else the best one found)."""
    rest = dict(w_hh=w_hh, w_qh=w_qh, x=x, y=y, labels=labels, h0=h0, b_h=b_h, b_q=b_q)
    p = _problem_of(w_hx, rest, activation, loss, loss_at)
    k, random_p = _truncation(truncate)
    tensors = _lib.compute(
        p, device, schedule, adapter, backend, software, k, random_p, truncate_seed, segments, clip, keep_states,
        _memory(max_memory, "max_memory"), _memory(memory), _count(checkpoints, "checkpoints"),
    )
    return Result(tensors, p, device)


def check(
    w_hx,
    w_hh=None,
    w_qh=None,
    x=None,
    y=None,
    labels=None,
    h0=None,
    b_h=None,
    b_q=None,
    *,
    activation=None,
    loss=None,
    loss_at=None,
    compute="both",
    schedule="fused",
    tolerance=1e-4,
    repeat=None,
    truncate=None,
    truncate_seed=0,
    segments=None,
    clip=None,
    keep_states=False,
    memory=None,
    checkpoints=None,
    max_memory=None,
    cpu_peak=False,
    adapter=None,
    backend=None,
    software=False,
):
    """The gradient check (``bptt`` without a subcommand) → :class:`Report`.

    ``compute``: "both" (the GPU checked against the f64 reference, the fast CPU path timed
    too), "gpu", "cpu" or "reference"; ``tolerance``: the largest relative error a tensor may
    have; ``repeat``: timed runs after a warm-up (None: about 2 s worth); ``cpu_peak``: measure
    this machine's FMA peak and report the fast CPU path's rate against it. The other keywords
    are :func:`bptt`'s."""
    rest = dict(w_hh=w_hh, w_qh=w_qh, x=x, y=y, labels=labels, h0=h0, b_h=b_h, b_q=b_q)
    p = _problem_of(w_hx, rest, activation, loss, loss_at)
    k, random_p = _truncation(truncate)
    native = _lib.check(
        p, compute, schedule, float(tolerance), repeat, adapter, backend, software, k, random_p, truncate_seed,
        segments, clip, keep_states, _memory(max_memory, "max_memory"), _memory(memory),
        _count(checkpoints, "checkpoints"), bool(cpu_peak),
    )
    return Report(native, p)


def random_problem(
    steps=32,
    batch=4,
    input=8,
    hidden=64,
    output=8,
    *,
    activation="identity",
    loss="mse",
    loss_at="all",
    bias=False,
    seed=0,
    spectral_radius=None,
    random_h0=False,
):
    """A seeded random :class:`Problem` (the command's): weights ~ N(0, 1/fan_in), w_hh rescaled
    to ``spectral_radius`` when given, x and y ~ N(0, 1), labels uniform; the same on every
    machine for the same seed."""
    dims = (steps, batch, input, hidden, output)
    return _lib.random_problem(dims, activation, loss, loss_at, bias, seed, spectral_radius, random_h0)


def sweep(
    radii,
    steps=32,
    batch=4,
    input=8,
    hidden=64,
    output=8,
    *,
    activation="identity",
    loss="mse",
    loss_at="all",
    bias=False,
    seed=0,
    random_h0=False,
    compute="both",
    schedule="fused",
    tolerance=1e-4,
    repeat=None,
    memory=None,
    checkpoints=None,
    max_memory=None,
    adapter=None,
    backend=None,
    software=False,
):
    """The random problem at each spectral radius in ``radii`` → :class:`Report` whose
    ``sweep`` has one row per radius (the rest is the first radius's); ``plot()`` draws them all."""
    dims = (steps, batch, input, hidden, output)
    native = _lib.sweep(
        dims, activation, loss, loss_at, bias, seed, random_h0, [float(r) for r in radii], compute, schedule,
        float(tolerance), repeat, adapter, backend, software, _memory(max_memory, "max_memory"), _memory(memory),
        _count(checkpoints, "checkpoints"),
    )
    return Report(native)


def load(path, *, activation=None, loss=None, loss_at=None):
    """A safetensors file: a problem's inputs → :class:`Problem` (``activation``, ``loss`` and
    ``loss_at`` override the file's metadata, and must agree with it), or a result file (as
    ``bptt --save`` writes) → a dict of its tensors with ``shape`` and ``metadata``."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    if _lib.file_kind(path) == "result":
        tensors, shape, metadata = _lib.load_grads(path)
        tensors["shape"] = dict(zip(("steps", "batch", "input", "hidden", "output"), shape))
        tensors["metadata"] = metadata
        return tensors
    return _lib.load_problem(path, activation, loss, loss_at)


def save(path, obj):
    """Writes a :class:`Problem` (its inputs, as ``bptt --load`` reads them) or a
    :class:`Result` (its gradients, and the states when kept, as ``bptt --save`` writes them)."""
    path = str(path)
    if isinstance(obj, Problem):
        return _lib.save_problem(path, obj)
    if isinstance(obj, Result):
        return _lib.save_grads(path, obj.tensors(), obj.problem)
    raise TypeError(f"bptt.save writes a bptt.Problem or a bptt.Result, not {type(obj).__name__}")


def train(
    task="adding",
    *,
    text=None,
    steps=None,
    hidden=128,
    batch=32,
    iters=1000,
    activation=None,
    init_recurrent="normal",
    init_scale=1.0,
    optim="adam",
    lr=None,
    momentum=0.9,
    clip=None,
    truncate=None,
    truncate_seed=0,
    device="gpu",
    seed=0,
    log_every=10,
    eval_every=100,
    eval_size=512,
    partition=None,
    sample=None,
    prompt=None,
    init_from=None,
    memory=None,
    checkpoints=None,
    max_memory=None,
    adapter=None,
    backend=None,
    software=False,
):
    """``bptt train`` as a call → :class:`Trained`. ``task``: "adding", "copy" or "text" (with
    ``text`` a UTF-8 file); ``device``: "gpu" or "cpu"; ``truncate``: K steps or "random:P"
    (cuts drawn from ``truncate_seed``); the other keywords are the command's options
    (docs/training.md)."""
    k, random_p = _truncation(truncate)
    native = _lib.train(
        task, None if text is None else str(text), steps, hidden, batch, iters, activation, init_recurrent,
        float(init_scale), optim, lr, float(momentum), clip, k, random_p, truncate_seed, device, adapter, backend,
        software, seed,
        log_every, eval_every, eval_size, partition, sample, prompt, None if init_from is None else str(init_from),
        _memory(max_memory, "max_memory"), _memory(memory), _count(checkpoints, "checkpoints"),
    )
    return Trained(native)


def list_adapters(adapter=None, backend=None, software=False):
    """The GPU adapters wgpu sees, one line each."""
    return _lib.list_adapters(adapter, backend, software)


def adapter_info(adapter=None, backend=None, software=False):
    """The adapter a GPU call with these keywords uses (opening it), as one line."""
    return _lib.adapter_info(adapter, backend, software)
