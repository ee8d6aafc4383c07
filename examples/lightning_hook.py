"""laqcore's DDP hook under PyTorch Lightning (2 CPU processes, gloo): docs/ddp.md,
"Lightning and Accelerate".

Needs ``pip install lightning`` (laqcore does not depend on it; without it this script says
so and exits with status 0). Lightning starts the second process itself::

    python examples/lightning_hook.py --hook laq
    python examples/lightning_hook.py --hook none                       # Lightning's plain DDP
    python examples/lightning_hook.py --hook laq --precision bf16-mixed
    python examples/lightning_hook.py --hook laq --precision fp16-scaler  # fp16 + GradScaler
    python examples/lightning_hook.py --hook laq --epochs 5 --save /tmp/ck.ckpt
    python examples/lightning_hook.py --hook laq --epochs 10 --resume /tmp/ck.ckpt

Each rank prints one ``RESULT {...}`` line: test loss and accuracy, the step count and the
hook's ``stats()``. The lines a Lightning trainer adds are the ``HookCallback`` class.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

try:
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision
except ImportError:
    print("skipped: this example needs PyTorch Lightning (pip install lightning)", file=sys.stderr)
    raise SystemExit(0) from None

import numpy as np
import torch

from laqcore.problems.datasets import load_digits
from laqcore.torch import HOOKS, register_hook


class HookCallback(L.Callback):
    """Registers a laqcore hook on Lightning's DDP model and checkpoints its state.

    On CPU, ``DDPStrategy(ddp_comm_hook=...)`` registers nothing (Lightning 2.6 registers
    hooks on CUDA only), so the hook is registered here, once Lightning has built its DDP
    model. Lightning writes rank 0's checkpoint only: the state is saved with
    ``all_ranks=True`` (every rank's in the one file) and each rank loads its own.
    """

    def __init__(self, name: str = "laq", **kwargs: Any) -> None:
        self.name, self.kwargs = name, kwargs
        self.state: Any = None
        self._loaded: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = register_hook(trainer.strategy.model, self.name, **self.kwargs)
        scaler = getattr(trainer.precision_plugin, "scaler", None)  # fp16 only
        if scaler is not None:
            self.state.grad_scaler = scaler
        if self._loaded is not None:  # ckpt_path=: on_load_checkpoint ran before this
            self.state.load_state_dict(self._loaded)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        checkpoint["laqcore_hook"] = self.state.state_dict(all_ranks=True)  # every rank calls

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self._loaded = checkpoint.get("laqcore_hook")


def _digits() -> tuple[torch.Tensor, ...]:
    data = load_digits()
    x = torch.tensor(np.asarray(data.X), dtype=torch.float32)
    y = torch.tensor(np.asarray(data.y), dtype=torch.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hook", choices=[*HOOKS, "none"], default="laq")
    ap.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, fp16-scaler")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--accumulate", type=int, default=1, help="accumulate_grad_batches")
    ap.add_argument("--clip", type=float, default=None, help="gradient_clip_val")
    ap.add_argument("--save", help="trainer.save_checkpoint(path) after fit")
    ap.add_argument("--resume", help="fit(ckpt_path=path)")
    args = ap.parse_args()

    x, y, xt, yt = _digits()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True
    )
    callbacks = [] if args.hook == "none" else [HookCallback(args.hook)]
    precision: Any = args.precision
    plugins = None
    if args.precision == "fp16-scaler":  # Lightning maps "16-mixed" to bf16 on CPU
        scaler = torch.amp.GradScaler("cpu")
        plugins, precision = [MixedPrecision("16-mixed", "cpu", scaler)], None
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",  # gloo on CPU
        precision=precision,
        plugins=plugins,
        max_epochs=args.epochs,
        accumulate_grad_batches=args.accumulate,
        gradient_clip_val=args.clip,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier()
    trainer.fit(model, loader, ckpt_path=args.resume)
    if args.save:
        trainer.save_checkpoint(args.save)  # on every rank; Lightning writes rank 0's
    with torch.no_grad():
        out = model.net.float()(xt)
    result: dict[str, Any] = {
        "rank": trainer.global_rank,
        "optimizer_steps": trainer.global_step,
        "test_loss": round(float(torch.nn.functional.cross_entropy(out, yt)), 4),
        "test_acc": round(float((out.argmax(1) == yt).float().mean()), 4),
        "param_sum": float(sum(p.double().sum() for p in model.parameters())),
    }
    if callbacks:
        state = callbacks[0].state
        result.update(state.stats())  # iteration, uploads, bytes_sent, bytes_received, ...
    print("RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
