"""bptt.torch.RNN against torch.nn.RNN: outputs and every gradient with the same weights (tanh
and relu, batch_first both ways, with and without hx, batched and not) on the GPU and the fast
CPU path; gradcheck in f64 through the reference; the refusals."""

import pytest
import torch

import bptt.torch as bt
from conftest import rel_err

KINDS = ["gpu", "cpu"]


def pair(kind, nonlinearity="tanh", bias=True, batch_first=False, d=5, h=24, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.RNN(d, h, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first)
    mine = bt.RNN(d, h, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first, device_kind=kind)
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def run(model, x, hx, weights):
    """Forward, a loss using both outputs, backward: (output, h_n, every gradient)."""
    for t in [x, hx] + weights:
        if t is not None:
            t.grad = None
    out, h_n = model(x, hx) if hx is not None else model(x)
    # Weighted sums, so every output element gets its own upstream gradient.
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    w_h = torch.randn(h_n.shape, generator=gen, dtype=out.dtype)
    ((out * w_out).sum() + (h_n * w_h).sum()).backward()
    grads = [t.grad.clone() for t in [x, hx] + weights if t is not None]
    return [out.detach(), h_n.detach()] + grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_outputs_and_gradients_equal_torch(gpu, kind, nonlinearity, batch_first, with_hx):
    ref, mine = pair(kind, nonlinearity, batch_first=batch_first, seed=3)
    t, b, d, h = 13, 6, 5, 24
    x = torch.randn((b, t, d) if batch_first else (t, b, d), requires_grad=True)
    hx = torch.randn(1, b, h, requires_grad=True) if with_hx else None
    want = run(ref, x, hx, list(ref.parameters()))
    got = run(mine, x, hx, list(mine.parameters()))
    names = ["output", "h_n"] + (["x", "hx"] if with_hx else ["x"]) + [n for n, _ in ref.named_parameters()]
    assert len(got) == len(want) == len(names)
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert rel_err(g, w) <= 1e-5, (name, rel_err(g, w))


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input_and_no_bias(gpu, kind):
    ref, mine = pair(kind, bias=False, seed=4)
    assert [n for n, _ in mine.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    x = torch.randn(9, 5, requires_grad=True)
    hx = torch.randn(1, 24, requires_grad=True)
    want = run(ref, x, hx, list(ref.parameters()))
    got = run(mine, x, hx, list(mine.parameters()))
    for g, w in zip(got, want):
        assert g.shape == w.shape and rel_err(g, w) <= 1e-5


def test_the_parameters_are_torch_nn_rnn_s():
    ref = torch.nn.RNN(3, 7)
    mine = bt.RNN(3, 7, device_kind="cpu")
    assert [(n, p.shape) for n, p in mine.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert mine.state_dict().keys() == ref.state_dict().keys()
    # Initialised as torch's: U(−1/√h, 1/√h).
    big = bt.RNN(4, 400, device_kind="cpu")
    w = big.weight_hh_l0.detach()
    assert w.abs().max() <= 400 ** -0.5 and w.abs().max() > 0.9 * 400 ** -0.5
    assert "device_kind='cpu'" in repr(mine)


def test_gradcheck_in_f64_through_the_reference():
    torch.manual_seed(0)
    for nonlinearity in ["tanh", "relu", "identity"]:
        m = bt.RNN(3, 4, nonlinearity=nonlinearity, device_kind="reference").double()
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        hx = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
        params = list(m.parameters())

        def f(x, hx, *ps):
            out, h_n = bt.RNNFunction.apply(m.layer(), nonlinearity, x, hx[0], *ps)
            return out, h_n

        assert torch.autograd.gradcheck(f, (x, hx, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
        # The module itself computes in f64: its output is the f64 one, not f32's rounding.
        out, _ = m(x, hx)
        assert out.dtype == torch.float64


def test_f64_on_the_fast_paths_computes_in_f32_and_returns_f64(gpu):
    torch.manual_seed(1)
    for kind in KINDS:
        m = bt.RNN(3, 8, device_kind=kind).double()
        ref = bt.RNN(3, 8, device_kind="reference").double()
        ref.load_state_dict(m.state_dict())
        x = torch.randn(6, 2, 3, dtype=torch.float64)
        with torch.no_grad():
            out, _ = m(x)
            want, _ = ref(x)
        assert out.dtype == torch.float64
        err = rel_err(out, want)
        assert 0 < err < 1e-6, (kind, err)


def test_unsupported_arguments_are_refused_naming_them():
    with pytest.raises(ValueError, match="`num_layers` 2 is not supported"):
        bt.RNN(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="`bidirectional` is not supported"):
        bt.RNN(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="`dropout` 0.5 is not supported"):
        bt.RNN(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match="`nonlinearity` must be one of tanh, relu, identity"):
        bt.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="`device_kind` must be one of gpu, cpu, reference"):
        bt.RNN(3, 4, device_kind="cuda")
    m = bt.RNN(3, 4, device_kind="cpu")
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(ValueError, match="packed sequences"):
        m(packed)
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 2"):
        m(torch.randn(5, 2, 2))
    with pytest.raises(ValueError, match="expected hidden size \\(1, 2, 4\\), got \\(1, 3, 4\\)"):
        m(torch.randn(5, 2, 3), torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="input must have the type torch.float32, got type torch.float64"):
        m(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 or float64, not torch.float16"):
        m.half()(torch.randn(5, 2, 3).half())
