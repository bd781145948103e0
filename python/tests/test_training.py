"""A small model, bptt.torch.RNN (an IRNN) + nn.Linear, trained on the adding problem with a torch
optimiser, follows the loss curve of the same model built on torch.nn.RNN from the same
initial weights and batches: to f32 rounding for the first iterations, within 5% after 200."""

import pytest
import torch
from torch import nn

import bptt.torch as bt

T, B, H, ITERS = 10, 32, 32, 260


def adding_batch(gen):
    """x [T, B, 2]: a value in [0, 1) and a marker, two markers per sequence (one in each
    half); y [B, 1]: the sum of the two marked values."""
    values = torch.rand(T, B, generator=gen)
    first = torch.randint(0, T // 2, (B,), generator=gen)
    second = torch.randint(T // 2, T, (B,), generator=gen)
    marks = torch.zeros(T, B)
    marks[first, torch.arange(B)] = 1.0
    marks[second, torch.arange(B)] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(0).unsqueeze(-1)


class Model(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.out = nn.Linear(H, 1)

    def forward(self, x):
        _, h_n = self.rnn(x)
        return self.out(h_n[0])


def curve(model):
    gen = torch.Generator().manual_seed(7)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(ITERS):
        x, y = adding_batch(gen)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_the_loss_curve_is_torch_s(gpu, kind):
    torch.manual_seed(0)
    # An IRNN (relu, w_hh = I, zero biases), which learns the adding problem in a few hundred
    # iterations.
    reference = Model(nn.RNN(2, H, nonlinearity="relu"))
    with torch.no_grad():
        reference.rnn.weight_hh_l0.copy_(torch.eye(H))
        reference.rnn.bias_ih_l0.zero_()
        reference.rnn.bias_hh_l0.zero_()
    mine = Model(bt.RNN(2, H, nonlinearity="relu", device_kind=kind))
    # The whole model's state dict loads unchanged: the RNN's parameter names are torch's.
    mine.load_state_dict(reference.state_dict())
    want, got = curve(reference), curve(mine)
    for i in range(5):
        assert abs(got[i] - want[i]) <= 1e-5 * want[i], (i, got[i], want[i])
    late_want = sum(want[200:]) / len(want[200:])
    late_got = sum(got[200:]) / len(got[200:])
    assert abs(late_got - late_want) <= 0.05 * late_want, (late_got, late_want)
    # And it learnt: well below the memoryless baseline's loss (Var(y) = 1/6).
    assert late_want < 0.75 * (1 / 6)
