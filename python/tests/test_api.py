"""bptt.bptt, bptt.check, bptt.sweep, bptt.random_problem, bptt.problem, bptt.load/save and
bptt.train from Python: numpy in and out, every device against the f64 reference, the dtype
and shape rules, the errors, the notebook representations."""

import json
import threading

import numpy as np
import pytest

import bptt
from conftest import rel_err

GRADS = ("grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "grad_h0", "grad_h_norm")


def arrays(p):
    """A problem's tensors as a dict of numpy arrays."""
    names = ("w_hx", "w_hh", "w_qh", "x", "y", "labels", "h0", "b_h", "b_q")
    return {n: getattr(p, n) for n in names if getattr(p, n) is not None}


@pytest.mark.parametrize("activation,loss", [("tanh", "mse"), ("relu", "xent"), ("identity", "mse")])
def test_every_device_matches_the_reference(gpu, activation, loss):
    p = bptt.random_problem(9, 3, 5, 33, 4, activation=activation, loss=loss, bias=True, random_h0=True, seed=3)
    ref = bptt.bptt(p, device="reference")
    assert ref.grad_w_hh.shape == (33, 33) and ref.grad_w_hx.shape == (33, 5) and ref.grad_w_qh.shape == (4, 33)
    assert ref.grad_h0.shape == (3, 33) and ref.grad_h_norm.shape == (9,) and ref.grad_b_q.shape == (4,)
    assert ref.grad_w_hh.dtype == np.float64 and np.isfinite(ref.loss) and ref.loss > 0
    for device, schedule in [("gpu", "fused"), ("gpu", "stepwise"), ("cpu", "fused")]:
        r = bptt.bptt(p, device=device, schedule=schedule)
        assert abs(r.loss - ref.loss) <= 1e-5 * abs(ref.loss)
        for name in GRADS:
            assert rel_err(getattr(r, name), getattr(ref, name)) < 1e-4, (device, schedule, name)


def test_arrays_in_float32_or_float64_give_the_problem_they_describe():
    p = bptt.random_problem(5, 2, 3, 7, 4, activation="tanh", bias=True, random_h0=True, seed=1)
    a = arrays(p)
    from_f64 = bptt.bptt(**a, activation="tanh", device="reference")
    want = bptt.bptt(p, device="reference")
    assert from_f64.loss == want.loss and np.array_equal(from_f64.grad_w_hh, want.grad_w_hh)
    # f32 arrays widen exactly: the same problem as the f32-rounded f64 one.
    a32 = {k: v.astype(np.float32) for k, v in a.items()}
    rounded = {k: v.astype(np.float32).astype(np.float64) for k, v in a.items()}
    r32 = bptt.bptt(**a32, activation="tanh", device="reference")
    r64 = bptt.bptt(**rounded, activation="tanh", device="reference")
    assert r32.loss == r64.loss and np.array_equal(r32.grad_w_hx, r64.grad_w_hx)
    # Non-contiguous arrays (a transposed copy's transpose, a strided slice) are copied.
    a_nc = dict(a)
    a_nc["w_hh"] = np.asfortranarray(a["w_hh"])
    a_nc["x"] = np.repeat(a["x"], 2, axis=2)[:, :, ::2]
    assert not a_nc["x"].flags.c_contiguous and not a_nc["w_hh"].flags.c_contiguous
    r = bptt.bptt(**a_nc, activation="tanh", device="reference")
    assert r.loss == want.loss and np.array_equal(r.grad_h0, want.grad_h0)


def test_labels_and_states():
    p = bptt.random_problem(4, 2, 3, 5, 6, loss="xent", seed=2)
    assert p.labels.dtype == np.int64 and p.labels.shape == (4, 2) and p.y is None
    r = bptt.bptt(**arrays(p), device="cpu", keep_states=True)
    assert r.h.shape == (4, 2, 5) and r.o.shape == (4, 2, 6)
    assert bptt.bptt(p, device="cpu").h is None
    # Labels as int32 or uint8 are the same labels.
    a = arrays(p)
    a["labels"] = a["labels"].astype(np.uint8)
    assert bptt.bptt(**a, device="reference").loss == bptt.bptt(p, device="reference").loss


def test_truncation_segments_and_clipping_on_the_gpu_match_the_reference(gpu):
    p = bptt.random_problem(12, 2, 3, 9, 3, activation="tanh", bias=True, seed=4)
    for opts in [dict(truncate=3), dict(truncate="random:0.3", truncate_seed=5), dict(segments=3), dict(clip=0.5)]:
        ref = bptt.bptt(p, device="reference", **opts)
        g = bptt.bptt(p, device="gpu", **opts)
        for name in GRADS:
            assert rel_err(getattr(g, name), getattr(ref, name)) < 1e-4, (opts, name)
    clipped = bptt.bptt(p, device="reference", clip=0.5)
    norm = np.sqrt(sum(np.sum(getattr(clipped, n) ** 2) for n in ("grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q")))
    assert abs(norm - 0.5) < 1e-9 and clipped.clip_norm > 0.5
    # Plain BPTT differs from the truncated one.
    assert rel_err(bptt.bptt(p, device="reference", truncate=3).grad_w_hh, bptt.bptt(p, device="reference").grad_w_hh) > 1e-3


def test_shapes_dtypes_and_options_are_refused_naming_them():
    p = bptt.random_problem(4, 2, 3, 5, 6, seed=2)
    a = arrays(p)

    def err(kind, **changes):
        with pytest.raises(kind) as e:
            bptt.bptt(**{**a, **changes}, device="reference")
        return str(e.value)

    assert err(ValueError, x=np.zeros((4, 2, 7))) == (
        "tensor `x`: expected shape [4, 2, 3] ([T, B, d] with d = 3 from w_hx), got [4, 2, 7]"
    )
    assert "tensor `w_qh`: expected shape [6, 5]" in err(ValueError, w_qh=np.zeros((6, 4)))
    assert "tensor `h0`: expected shape [2, 5]" in err(ValueError, h0=np.zeros((5, 2)))
    assert "tensor `y`" in err(ValueError, y=np.zeros((4, 2)))
    assert err(TypeError, x=a["x"].astype(np.int64)).startswith("tensor `x`: dtype int64 is not accepted")
    assert "tensor `w_hh`: dtype complex128" in err(TypeError, w_hh=a["w_hh"].astype(complex))
    assert "exactly one of `y` (mse) or `labels` (xent)" in err(ValueError, labels=np.zeros((4, 2), np.int64))
    bad = a["x"].copy()
    bad[1, 1, 1] = np.nan
    assert "tensor `x`: 1 non-finite value(s)" in err(ValueError, x=bad)
    with pytest.raises(ValueError, match="`device` must be one of gpu, cpu, reference, not 'tpu'"):
        bptt.bptt(p, device="tpu")
    with pytest.raises(ValueError, match="`activation` must be one of identity, tanh, relu"):
        bptt.random_problem(activation="sigmoid")
    with pytest.raises(ValueError, match="`memory` must be a number of bytes"):
        bptt.bptt(p, device="cpu", memory=0)
    with pytest.raises(ValueError, match="`checkpoints` must be a whole number"):
        bptt.bptt(p, device="cpu", checkpoints=0)
    with pytest.raises(ValueError, match="`memory` \\(or `checkpoints`\\) and `segments` cannot be combined"):
        bptt.bptt(p, device="reference", memory="64K", segments=2)
    with pytest.raises(ValueError, match="`keep_states` needs every state"):
        bptt.bptt(p, device="cpu", checkpoints=2, keep_states=True)
    with pytest.raises(ValueError, match="too small for one checkpoint"):
        bptt.bptt(p, device="reference", memory=64)
    with pytest.raises(ValueError, match="`truncate` must be K steps"):
        bptt.bptt(p, device="reference", truncate="sometimes")
    with pytest.raises(ValueError, match=r"more than the 1\.0 MiB available \(`max_memory`\)"):
        bptt.bptt(bptt.random_problem(steps=500, batch=500, hidden=100), device="reference", max_memory="1M")
    with pytest.raises(ValueError, match="`tolerance` must be a finite number > 0"):
        bptt.check(p, compute="reference", tolerance=0)
    with pytest.raises(ValueError, match="`cpu_peak` compares the fast CPU path"):
        bptt.check(p, compute="reference", cpu_peak=True)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        bptt.random_problem(steps=0)


def test_a_missing_adapter_is_a_runtime_error_naming_what_was_asked(gpu):
    with pytest.raises(RuntimeError, match="no GPU adapter matches `adapter` no-such-gpu"):
        bptt.bptt(bptt.random_problem(), device="gpu", adapter="no-such-gpu")


def test_the_gil_is_released_while_an_engine_runs():
    # The worker signals, then enters a call of a few hundred ms; the main thread, waiting for
    # the signal, can run Python only if the call released the GIL.
    p = bptt.random_problem(64, 32, 32, 160, 32, seed=1)  # about 0.2 s on the reference
    started, other_ran, seen = threading.Event(), threading.Event(), []

    def worker():
        started.set()
        bptt.bptt(p, device="reference")
        seen.append(other_ran.is_set())

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    other_ran.set()
    t.join()
    assert seen == [True]


def test_the_check_report_has_the_json_fields_and_notebook_views(gpu):
    p = bptt.random_problem(16, 2, 4, 24, 4, activation="tanh", spectral_radius=0.9, seed=5)
    r = bptt.check(p, repeat=1)
    d = r.to_dict()
    for key in ("loss", "rel_err", "pass", "grad_h_norm", "reach", "reach_factor", "timings_ms"):
        assert key in d
        assert getattr(r, key) == d[key]
    assert r.passed is True and r.checked and r.worst_rel_err() < 1e-4
    assert set(r.rel_err) >= {"grad_w_hh", "grad_h0"} and len(r.grad_h_norm) == 16
    assert json.loads(r.to_json()) == d
    # The result it describes: the GPU's, as arrays, against the reference's.
    assert r.result.device == "gpu"
    assert rel_err(r.result.grad_w_hh, bptt.bptt(p, device="reference").grad_w_hh) < 1e-4
    table = r._repr_html_()
    assert table.startswith("<table>") and "PASS" in table and "grad_w_hh" in table
    for svg in (r.graph()._repr_svg_(), r.plot()._repr_svg_()):
        assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "h<tspan" in r.graph().text or "h_" in r.graph().text


def test_the_fast_path_against_this_machine_s_peak():
    r = bptt.check(bptt.random_problem(), compute="cpu", cpu_peak=True, repeat=1)
    assert r.cpu_peak_gflops > 0 and 0 < r.cpu_peak_fraction == pytest.approx(r.cpu_gflops / r.cpu_peak_gflops)
    assert bptt.check(bptt.random_problem(), compute="cpu", repeat=1).cpu_peak_gflops is None


def test_a_result_draws_its_graph_and_profile():
    p = bptt.random_problem(6, 1, 3, 8, 3, loss_at="last", spectral_radius=0.5, seed=1)
    r = bptt.bptt(p, device="reference")
    graph, plot = r.graph()._repr_svg_(), r.plot()._repr_svg_()
    assert graph.lstrip().startswith("<svg") and plot.lstrip().startswith("<svg")
    # The same graph the check draws from the same numbers.
    assert graph == bptt.check(p, compute="reference").graph().text
    assert "<table>" in r._repr_html_() and "grad_w_hh" in r._repr_html_()


def test_vanishing_and_exploding_show_in_a_sweep():
    s = bptt.sweep([0.9, 1.1], steps=40, batch=1, input=4, hidden=32, output=4, loss_at="last", compute="reference")
    assert [row["radius"] for row in s.sweep] == [0.9, 1.1]
    vanish, explode = (row["reach_factor"] for row in s.sweep)
    assert vanish < 1 < explode
    assert s.result is None and s.plot().text.lstrip().startswith("<svg")


def test_problems_and_results_round_trip_through_files(tmp_path):
    p = bptt.random_problem(6, 2, 3, 5, 4, activation="tanh", loss="xent", bias=True, random_h0=True, seed=9)
    bptt.save(tmp_path / "p.safetensors", p)
    q = bptt.load(tmp_path / "p.safetensors")
    assert (q.activation, q.loss, q.bias) == ("tanh", "xent", True)
    for name, v in arrays(p).items():
        assert np.array_equal(getattr(q, name), v), name
    r = bptt.bptt(p, device="reference", keep_states=True)
    bptt.save(tmp_path / "r.safetensors", r)
    back = bptt.load(tmp_path / "r.safetensors")
    assert back["shape"] == {"steps": 6, "batch": 2, "input": 3, "hidden": 5, "output": 4}
    for name in GRADS + ("h", "o"):
        # Results are written as F32.
        assert rel_err(back[name], getattr(r, name)) < 1e-6, name
    with pytest.raises(FileNotFoundError):
        bptt.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="`activation` relu contradicts"):
        bptt.load(tmp_path / "p.safetensors", activation="relu")
    with pytest.raises(TypeError, match="writes a bptt.Problem or a bptt.Result"):
        bptt.save(tmp_path / "x.safetensors", {"w": 1})


def test_training_returns_the_curve_and_the_weights():
    t = bptt.train(steps=10, hidden=16, batch=16, iters=60, device="cpu", activation="relu", init_recurrent="identity",
                   lr=0.003, clip=1.0, log_every=10, eval_every=30, eval_size=64)
    assert t.task == "adding" and t.iters == 60 and len(t.curve) == 6 and len(t.eval) >= 2
    assert t.weights["w_hh"].shape == (16, 16) and t.weights["w_hh"].dtype == np.float32
    assert t.weights["w_qh"].shape == (1, 16) and np.isfinite(t.final_eval["loss"])
    assert "held-out" in t._repr_html_() and t.plot().text.lstrip().startswith("<svg")
    with pytest.raises(ValueError, match="`task` must be one of adding, copy, text"):
        bptt.train(task="sorting", device="cpu")


def test_a_memory_budget_checkpoints_every_device_and_the_check_says_how(gpu):
    """Exact BPTT within `memory` (docs/gradients.md, "Long sequences in bounded memory"): the
    same gradients as storing every state, more forward steps than T, on every device."""
    p = bptt.random_problem(200, 2, 4, 16, 3, activation="tanh", spectral_radius=0.9, bias=True, seed=7)
    for device in ("reference", "cpu", "gpu"):
        full = bptt.bptt(p, device=device, truncate=5, clip=0.5)
        r = bptt.bptt(p, device=device, truncate=5, clip=0.5, memory="24K")
        assert full.forward_steps is None and 200 < r.forward_steps < 600, device
        for name in GRADS:
            assert rel_err(getattr(r, name), getattr(full, name)) < 1e-6, (device, name)
    by_slots = bptt.bptt(p, device="reference", checkpoints=3)
    assert by_slots.forward_steps > 400
    report = bptt.check(p, repeat=1, memory="24K")
    m = report.memory
    assert report.passed and m["path"] == "gpu" and m["budget_bytes"] == 24 << 10
    assert m["peak_bytes"] <= 24 << 10 < m["full_bytes"] and m["forward_steps"] == m["forward_steps_optimal"]
    assert [e["path"] for e in m["paths"]] == ["gpu", "cpu", "cpu-ref"]
    assert bptt.check(p, repeat=1).memory is None
