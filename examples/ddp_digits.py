"""Train an MLP on the digits data with DDP and laqcore's LAQ communication hook.

Run on CPU with 2 local processes (gloo)::

    python examples/ddp_digits.py --nproc 2 --method laq

or under torchrun (one process per rank; NCCL and one GPU per rank where CUDA is present,
else gloo)::

    torchrun --nproc-per-node 4 examples/ddp_digits.py --method qsgd

With mixed precision (``--amp fp16``: autocast and a ``torch.amp.GradScaler``) the state also
takes the scaler. The lines a trainer adds are marked ``# <- laqcore``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from laqcore.problems.datasets import load_digits
from laqcore.torch import HOOKS, register_hook


def train(
    rank: int, world: int, method: str, steps: int, lr: float, amp: str = "none"
) -> dict[str, float]:
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":  # torchrun on a CUDA machine: one GPU per rank
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    data = load_digits()
    X_all = torch.tensor(np.asarray(data.X), dtype=torch.float32, device=device)
    y_all = torch.tensor(np.asarray(data.y), dtype=torch.int64, device=device)
    X, y, Xt, yt = X_all[:1400], y_all[:1400], X_all[1400:], y_all[1400:]  # train / test
    lo, hi = rank * len(X) // world, (rank + 1) * len(X) // world  # this rank's shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model.to(device)
    ddp = DDP(model)
    dtype = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is not None)
    state = None
    if method != "none":
        # <- laqcore: the hook by name (e.g. LAQState() and laq_hook) registered in DDP's
        # group; under mixed precision it follows the scaler's loss scale.
        state = register_hook(ddp, method, grad_scaler=scaler)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(ddp(X[lo:hi]), y[lo:hi])
        scaler.scale(loss).backward()  # without --amp the scaler is disabled: loss.backward()
        scaler.step(opt)
        scaler.update()
        if rank == 0 and (step % 50 == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        acc = float((model(Xt).argmax(1) == yt).float().mean())
    out = {"test_accuracy": acc, "final_loss": float(loss.item())}
    if state is not None:
        out.update(state.stats())  # <- laqcore: bytes sent, uploads skipped, compression ratio
    return out


def _rank(rank: int, world: int, method: str, steps: int, lr: float, amp: str) -> dict[str, float]:
    return train(rank, world, method, steps, lr, amp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2, help="local processes (without torchrun)")
    ap.add_argument("--method", choices=[*HOOKS, "none"], default="laq")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--amp", choices=["none", "fp16", "bf16"], default="none")
    args = ap.parse_args()
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        world = dist.get_world_size()
        out = train(dist.get_rank(), world, args.method, args.steps, args.lr, args.amp)
        if dist.get_rank() == 0:
            print(out)
        dist.barrier()  # before the teardown: docs/ddp.md, "Faults" (a PyTorch exit race)
        dist.destroy_process_group()
        return
    from laqcore.distributed import run_processes

    outs = run_processes(
        _rank, args.nproc, args.method, args.steps, args.lr, args.amp, deadline_s=600
    )
    stats = outs[0].result
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()})


if __name__ == "__main__":
    main()
