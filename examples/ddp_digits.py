"""Train an MLP on the digits data with DDP and laqcore's LAQ communication hook.

Run on CPU with 2 local processes (gloo)::

    python examples/ddp_digits.py --nproc 2 --method laq

or under torchrun (one process per rank, NCCL or gloo)::

    torchrun --nproc-per-node 4 examples/ddp_digits.py --method qsgd

The three lines a trainer adds are marked ``# <- laqcore``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from laqcore.problems.datasets import load_digits
from laqcore.torch import HOOKS, make_hook


def train(rank: int, world: int, method: str, steps: int, lr: float) -> dict[str, float]:
    data = load_digits()
    X_all = torch.tensor(np.asarray(data.X), dtype=torch.float32)
    y_all = torch.tensor(np.asarray(data.y), dtype=torch.int64)
    X, y, Xt, yt = X_all[:1400], y_all[:1400], X_all[1400:], y_all[1400:]  # train / test
    lo, hi = rank * len(X) // world, (rank + 1) * len(X) // world  # this rank's shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    ddp = DDP(model)
    state = None
    if method != "none":
        state, hook = make_hook(method)  # <- laqcore: e.g. LAQState(), laq_hook
        ddp.register_comm_hook(state, hook)  # <- laqcore
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(X[lo:hi]), y[lo:hi])
        loss.backward()
        opt.step()
        if rank == 0 and (step % 50 == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        acc = float((model(Xt).argmax(1) == yt).float().mean())
    out = {"test_accuracy": acc, "final_loss": float(loss.item())}
    if state is not None:
        out.update(state.stats())  # <- laqcore: bytes sent, uploads skipped, compression ratio
    return out


def _rank(rank: int, world: int, method: str, steps: int, lr: float) -> dict[str, float]:
    return train(rank, world, method, steps, lr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2, help="local processes (without torchrun)")
    ap.add_argument("--method", choices=[*HOOKS, "none"], default="laq")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        out = train(dist.get_rank(), dist.get_world_size(), args.method, args.steps, args.lr)
        if dist.get_rank() == 0:
            print(out)
        dist.destroy_process_group()
        return
    from laqcore.distributed import run_processes

    outs = run_processes(_rank, args.nproc, args.method, args.steps, args.lr, deadline_s=600)
    stats = outs[0].result
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()})


if __name__ == "__main__":
    main()
