"""laqcore's DDP hook under Hugging Face Accelerate (2 CPU processes, gloo): docs/ddp.md,
"Lightning and Accelerate".

Needs ``pip install accelerate`` (laqcore does not depend on it; without it this script says
so and exits with status 0). Start it with torchrun: ``accelerate launch --cpu
--num_processes 2`` starts one process on one machine (Accelerate 1.16), which DDP never
wraps::

    torchrun --nproc-per-node 2 examples/accelerate_hook.py --hook laq
    torchrun --nproc-per-node 2 examples/accelerate_hook.py --hook none   # plain DDP
    torchrun --nproc-per-node 2 examples/accelerate_hook.py --hook laq --mixed-precision bf16
    torchrun --nproc-per-node 2 examples/accelerate_hook.py --hook laq --epochs 5 --save /tmp/ck
    torchrun --nproc-per-node 2 examples/accelerate_hook.py --hook laq --resume /tmp/ck --from-epoch 5

Each rank prints one ``RESULT {...}`` line: test loss and accuracy, the step count and the
hook's ``stats()``. The lines a trainer adds are marked ``# <- laqcore``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

try:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
except ImportError:
    print("skipped: this example needs Accelerate (pip install accelerate)", file=sys.stderr)
    raise SystemExit(0) from None

import numpy as np
import torch

from laqcore.problems.datasets import load_digits
from laqcore.torch import HOOKS, register_hook


class HookCheckpoint:
    """The hook's state for ``accelerator.register_for_checkpointing``: Accelerate calls
    ``state_dict()`` on every rank but writes rank 0's file, which every rank loads."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state.state_dict(all_ranks=True)  # every rank's state, gathered

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.state.load_state_dict(sd)  # takes this rank's entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hook", choices=[*HOOKS, "none"], default="laq")
    ap.add_argument("--mixed-precision", default="no", help="no or bf16 (fp16 needs a GPU)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--accumulate", type=int, default=1, help="gradient_accumulation_steps")
    ap.add_argument("--clip", type=float, default=None, help="accelerator.clip_grad_norm_")
    ap.add_argument("--save", help="accelerator.save_state(dir) after the last epoch")
    ap.add_argument("--resume", help="accelerator.load_state(dir) before training")
    ap.add_argument("--from-epoch", type=int, default=0, help="first epoch (with --resume)")
    args = ap.parse_args()

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.accumulate,
        cpu=True,
        # epoch-seeded shuffling (set_epoch below), so a resumed run sees the same batches
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    data = load_digits()
    x = torch.tensor(np.asarray(data.X), dtype=torch.float32)
    y = torch.tensor(np.asarray(data.y), dtype=torch.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:1400], y[:1400]), batch_size=32, shuffle=True
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    state = None
    if args.hook != "none":
        state = register_hook(model, args.hook)  # <- laqcore: prepare() made model a DDP
        if accelerator.scaler is not None:  # <- laqcore: fp16 on a GPU
            state.grad_scaler = accelerator.scaler
        accelerator.register_for_checkpointing(HookCheckpoint(state))  # <- laqcore
    if args.resume:
        accelerator.load_state(args.resume)
    steps = 0
    for epoch in range(args.from_epoch, args.epochs):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            with accelerator.accumulate(model):
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    steps += 1
                    if args.clip is not None:
                        accelerator.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                optimizer.zero_grad()
    if args.save:
        accelerator.save_state(args.save)
    net = accelerator.unwrap_model(model)
    with torch.no_grad():
        out = net(x[1400:]).float()
    result: dict[str, Any] = {
        "rank": accelerator.process_index,
        "optimizer_steps": steps,
        "test_loss": round(float(torch.nn.functional.cross_entropy(out, y[1400:])), 4),
        "test_acc": round(float((out.argmax(1) == y[1400:]).float().mean()), 4),
        "param_sum": float(sum(p.double().sum() for p in net.parameters())),
    }
    if state is not None:
        result.update(state.stats())  # iteration, uploads, bytes_sent, bytes_received, ...
    print("RESULT", json.dumps(result), flush=True)
    accelerator.end_training()


if __name__ == "__main__":
    main()
