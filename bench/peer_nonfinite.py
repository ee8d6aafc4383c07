"""One non-finite gradient, then finite ones: which hooks recover?

A GradScaler overflow hands the communication hook a gradient holding Inf once; the scaler
skips that step and goes on with finite gradients. This script feeds one Inf gradient (step
4 of 8) through PyTorch's PowerSGD hook (rank 4, compression from step 2) and laqcore's LAQ
and QSGD hooks on a one-rank gloo group, and prints per step whether the averaged gradient
is finite. PowerSGD keeps ``input - approximation`` as error feedback, so the Inf becomes a
NaN in its memory and every later output is NaN: the scaler then skips every later step and
backs off to 0 (docs/results_hooks.md, "Loss scaling"). laqcore's hooks leave their state as
if the dropped step had not happened.

Usage: ``python bench/peer_nonfinite.py`` (CPU, about a second).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
from torch.nn.parallel import DistributedDataParallel as DDP

from laqcore.torch import make_hook

STEPS, BAD_STEP = 8, 4


def finite_steps(name: str) -> list[bool]:
    """Per step: whether the hook returned a finite average."""
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    ddp = DDP(model)
    if name == "powersgd4":
        state = psgd.PowerSGDState(None, matrix_approximation_rank=4, start_powerSGD_iter=2)
        ddp.register_comm_hook(state, psgd.powerSGD_hook)
    else:
        state, hook = make_hook(name, warmup_steps=1)
        state.grad_scaler = _UnitScaler()  # as under a GradScaler: no warning
        ddp.register_comm_hook(state, hook)
    x = torch.randn(8, 64)
    out = []
    for k in range(STEPS):
        ddp.zero_grad()
        factor = float("inf") if k == BAD_STEP else 1.0
        (ddp(x).sum() * factor).backward()
        out.append(bool(torch.isfinite(model.weight.grad).all()))
    return out


class _UnitScaler:
    """A GradScaler stand-in at scale 1 (this script has no loss scaling)."""

    def get_scale(self) -> float:
        return 1.0


def main() -> None:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    print(f"finite average per step (Inf gradient at step {BAD_STEP}):")
    for name in ("powersgd4", "laq", "qsgd"):
        flags = finite_steps(name)
        print(f"  {name:10s} " + " ".join("ok " if f else "NaN" for f in flags))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
