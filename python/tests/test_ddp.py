"""bptt.torch.RNN under torch.nn.parallel.DistributedDataParallel (gloo): two processes on
127.0.0.1, each with half a batch; the all-reduced gradients equal the single-process gradients
of the whole batch (to f32 rounding). The processes meet through a file (no port to race other
programs for) and gloo connects them over the loopback interface."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import bptt.torch as bt

T, B, D, H = 12, 8, 3, 16


class Model(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = bt.RNN(D, H, device_kind=kind)
        self.out = nn.Linear(H, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.out(out)


def data():
    gen = torch.Generator().manual_seed(3)
    return torch.randn(T, B, D, generator=gen), torch.randn(T, B, 1, generator=gen)


def gradients(model, x, y):
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def worker(rank, world, rendezvous, kind, path):
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # 127.0.0.1
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same initial weights in every process
        model = nn.parallel.DistributedDataParallel(Model(kind))
        x, y = data()
        half = B // world
        rows = slice(rank * half, (rank + 1) * half)
        # DDP averages the gradients of the halves' mean losses: the whole batch's mean loss.
        grads = gradients(model, x[:, rows], y[:, rows])
        if rank == 0:
            torch.save({n.removeprefix("module."): g for n, g in grads.items()}, path)
        dist.barrier()  # neither process tears gloo down while the other still uses it
    finally:
        dist.destroy_process_group()
    # DDP keeps the process group, and gloo's threads, alive past destroy_process_group; one of
    # them that lets go of a finished all-reduce while the interpreter finalizes needs the GIL
    # there and aborts the process (SIGABRT, "terminate called without an active exception":
    # about 1 run in 40 on a 2-core machine). The work is done and saved: leave without
    # finalizing. (An exception above still reaches mp.spawn as a failure.)
    os._exit(0)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_two_processes_all_reduce_to_the_whole_batch_gradients(gpu, kind, tmp_path):
    path = str(tmp_path / "grads.pt")
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous"), kind, path), nprocs=2, join=True)
    distributed = torch.load(path)
    torch.manual_seed(0)
    single = gradients(Model(kind), *data())
    assert distributed.keys() == single.keys() and "rnn.weight_hh_l0" in single
    for name, g in single.items():
        err = ((distributed[name] - g).norm() / g.norm()).item()
        assert err < 1e-5, (name, err)
