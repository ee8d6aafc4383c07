"""One rank of bench/bench_hooks.py: an ordinary DDP trainer, written the way a user would.

Nothing here uses laqcore internals: the model is the user's own ``nn.Module``, the data a
``TensorDataset`` behind a ``DistributedSampler``/``DataLoader``, the optimizer and scheduler
stock PyTorch, and every hook (PyTorch's or laqcore's) is attached with
``DistributedDataParallel.register_comm_hook``. The rank reads the torchrun environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and one JSON config; it runs the
configured hooks one after the other in the same process group (a fresh model, optimizer and
hook state each, same seed) and prints one JSON line per run.

Measured per run and rank (the driver combines the ranks):

* ``step_ms``: wall time of one training step (forward, backward incl. the hook, optimizer),
  mean over the steps after the ``warm`` first ones (hook warm-up: laqcore's all-reduce steps,
  PowerSGD's ``start_powerSGD_iter``);
* ``hook_ms``: time spent inside the hook function itself (all buckets of a step), and
  ``span_ms``: from the first bucket handed to the hook until ``backward()`` returns (DDP waits
  for the hooks' futures; this includes asynchronous collectives and PowerSGD's callbacks);
* ``sent``/``recv``: bytes per step this rank sends and receives, counted by wrapping the
  ``torch.distributed`` collectives the hook calls (see :class:`CommMeter`); without a hook
  DDP all-reduces the float32 buckets in C++, counted from the parameter sizes;
* the hook's own ``stats()`` where it has one, the final training loss (whole training set)
  and the test accuracy.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from hook_meter import CommMeter, HookTimer
from laqcore.torch import HOOKS as LAQCORE_HOOKS
from laqcore.torch import make_hook

#: laqcore's table (laqcore.torch.HOOKS: laq, qsgd, terngrad, rotation), extended with
#: PyTorch's own hooks and laq variants.
HOOKS = (
    "allreduce",
    "local",
    "fp16",
    "powersgd1",
    "powersgd4",
    "laq2",
    "laq4",
    "laq8",
    *LAQCORE_HOOKS,
    "qsgd_l2",
    "laq_lr",
    "laq2d2",
    "laq_plain",
    "laq_paper",
    "laq_auto",
    "laq_cap1",
    "laq_streak",
    "laq_ef",
    "laq_ef5",
    "laq_ef0",
    "laq_fallback",
    "laq_ag",
    "laq_ag_plain",
    "laq_2p",
)

# --------------------------------------------------------------------------------------
# data and models
# --------------------------------------------------------------------------------------
Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_data(model: str, seed: int) -> Data:
    """(x_train, y_train, x_test, y_test) of ``model``'s task (:data:`MODELS`), shuffled or
    drawn with ``seed``."""
    return _TASKS[_spec(model).task](np.random.default_rng(seed))


def _digits(g: np.random.Generator, images: bool) -> Data:
    """The embedded digits (8x8, 1,797), shuffled; 297 held out for the test. ``images``:
    as 1x8x8 images for the CNNs, else rows of 64."""
    path = resources.files("laqcore.problems") / "data" / "digits.npz"
    with path.open("rb") as fh, np.load(fh) as z:
        x = z["images"].astype(np.float32) / 16.0
        y = z["labels"].astype(np.int64)
    order = g.permutation(len(x))
    x, y = x[order], y[order]
    if images:
        x = x.reshape(-1, 1, 8, 8)
    return _split(torch.from_numpy(x), torch.from_numpy(y), 297)


def _teacher(g: np.random.Generator) -> Data:
    """A learnable synthetic task for ``big``: labels from a fixed random two-layer teacher
    on 512 Gaussian features; 10,000 training and 2,000 test rows."""
    d, n = 512, 12000
    x = g.standard_normal((n, d)).astype(np.float32)
    w1 = g.standard_normal((d, 64)).astype(np.float32) / np.sqrt(d)
    w2 = g.standard_normal((64, 10)).astype(np.float32)
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1).astype(np.int64)
    return _split(torch.from_numpy(x), torch.from_numpy(y), 2000)


def _split(x: torch.Tensor, y: torch.Tensor, n_test: int) -> Data:
    """The first ``n_test`` rows are the test set."""
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


#: The token task of the ``tf`` model: sequences of TOKEN_LEN tokens from a vocabulary of
#: TOKEN_VOCAB; the class is the "marker" token c < TOKEN_CLASSES with the most weight, where
#: token c counts 3 and token c + TOKEN_CLASSES counts 1 (ties: the smallest c). Solving it
#: needs attention over the whole sequence (a count), not one position.
TOKEN_VOCAB, TOKEN_LEN, TOKEN_CLASSES = 32, 24, 4


def _token_task(g: np.random.Generator) -> Data:
    n, n_test = 5120, 1024
    x = torch.from_numpy(g.integers(0, TOKEN_VOCAB, (n, TOKEN_LEN)))
    weight = torch.stack(
        [3 * (x == c).sum(1) + (x == c + TOKEN_CLASSES).sum(1) for c in range(TOKEN_CLASSES)], 1
    )
    y = weight.argmax(1)
    return _split(x, y, n_test)


def _noisy_images(g: np.random.Generator) -> Data:
    """The ``bncnn`` task: 12x12 images, each a fixed random class template (10 classes, the
    same for every seed) plus Gaussian noise of 2.6 times the templates' scale, so that about
    85% test accuracy is reachable and minibatch gradients are noisy (unlike digits, where
    every hook ends at 98-99%). 9,600 training and 2,000 test images."""
    templates = np.random.default_rng(123).standard_normal((10, 1, 12, 12)).astype(np.float32)
    n, n_test = 11600, 2000
    y = g.integers(0, 10, n)
    x = templates[y] + 2.6 * g.standard_normal((n, 1, 12, 12)).astype(np.float32)
    return _split(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), n_test)


class BNCNN(nn.Module):
    """conv3x3(1->16) - BatchNorm - ReLU - maxpool2 - conv3x3(16->32) - ReLU - maxpool2 -
    dropout 0.1 - fc(288->64) - ReLU - fc(64->10): 24k parameters, the layers an ordinary
    image trainer adds (batch norm, dropout), for ``bncnn``; without the batch norm
    (``batch_norm=False``, the same initial weights) for ``noisycnn``."""

    def __init__(self, batch_norm: bool = True) -> None:
        super().__init__()
        # BatchNorm's affine weights start at 1 and 0, so leaving it out draws the same
        # initial convolution and linear weights.
        norm = [nn.BatchNorm2d(16)] if batch_norm else []
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            *norm,
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(288, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]


class TinyTransformer(nn.Module):
    """Token embedding + learned positions, two pre-built ``nn.TransformerEncoderLayer``
    (width 64, 4 heads, feed-forward 128, no dropout), LayerNorm, mean over positions,
    linear classifier: 71k parameters."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(TOKEN_VOCAB, width)
        self.position = nn.Parameter(torch.zeros(TOKEN_LEN, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, TOKEN_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.position)
        return self.head(self.norm(h.mean(1)))  # type: ignore[no-any-return]


class SmallCNN(nn.Module):
    """conv3x3(1->16) - ReLU - conv3x3(16->32) - ReLU - maxpool2 - fc(512->46) - ReLU - fc(46->10);
    with ``batch_norm=True`` (``cnn_bn``) a BatchNorm after the first convolution, the same
    initial weights otherwise."""

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        norm = [nn.BatchNorm2d(16)] if batch_norm else []
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            *norm,
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Linear(512, 46), nn.ReLU(), nn.Linear(46, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]


def _mlp(d_in: int, width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


@dataclass(frozen=True)
class ModelSpec:
    """A bench model: its task (a key of ``_TASKS``), how to build it for a ``scale`` (which
    divides the hidden widths: the smoke tests' tiny sizes), and what it is."""

    task: str
    build: Callable[[int], nn.Module]
    about: str


#: The bench models by name (``--model``), each with the task it trains on. ``cnn_bn`` and
#: ``noisycnn`` are controls for what makes ``bncnn`` fragile, its data or its batch norm.
MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("digits", lambda k: _mlp(64, 256 // k), "MLP 64-256-256-10 (85k) on digits"),
    "cnn": ModelSpec("digit_images", lambda k: SmallCNN(), "SmallCNN (29k) on digits"),
    "big": ModelSpec(
        "teacher", lambda k: _mlp(512, 2048 // k), "MLP 512-2048-2048-10 (5.3M) on a teacher task"
    ),
    # 4 heads divide the width
    "tf": ModelSpec(
        "tokens",
        lambda k: TinyTransformer(max(4, 64 // k // 4 * 4)),
        "TinyTransformer (71k) on a token task",
    ),
    "bncnn": ModelSpec("noisy_images", lambda k: BNCNN(), "BNCNN (24k) on noisy images"),
    "cnn_bn": ModelSpec(
        "digit_images", lambda k: SmallCNN(batch_norm=True), "cnn with a BatchNorm (control)"
    ),
    "noisycnn": ModelSpec(
        "noisy_images", lambda k: BNCNN(batch_norm=False), "bncnn without its BatchNorm (control)"
    ),
}

#: The tasks by the name MODELS gives them: (rng) -> Data.
_TASKS: dict[str, Callable[[np.random.Generator], Data]] = {
    "digits": lambda g: _digits(g, images=False),
    "digit_images": lambda g: _digits(g, images=True),
    "teacher": _teacher,
    "tokens": _token_task,
    "noisy_images": _noisy_images,
}


def _spec(model: str) -> ModelSpec:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    return MODELS[model]


def models_help() -> str:
    """The models for a ``--model`` help text: each name with what it is."""
    return "; ".join(f"{name}: {spec.about}" for name, spec in MODELS.items())


def build_model(model: str, scale: int = 1) -> nn.Module:
    """A fresh ``model`` (:data:`MODELS`); ``scale`` divides the hidden widths."""
    return _spec(model).build(scale)


# --------------------------------------------------------------------------------------
# hooks, optimizers, precision
# --------------------------------------------------------------------------------------
def local_hook(state: Any, bucket: Any) -> Any:
    """A hook that communicates nothing: every rank keeps its own gradient (not training
    that means anything; the step time of DDP, forward, backward and optimizer alone)."""
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


def attach_hook(ddp: DDP, name: str, warm: int, lr: float, timer: HookTimer) -> Any:
    """Register hook ``name`` (HOOKS) on ``ddp``; returns its state (None for PyTorch's).

    laqcore's hooks come from ``laqcore.torch.make_hook``: ``laq``, ``qsgd``, ``terngrad``
    and ``rotation`` with every default, ``qsgd_l2`` with the paper's ``norm="l2"``,
    ``laqB`` with ``bits=B``, ``laq_lr`` with the optimizer's learning
    rate (``LAQState(lr=lr)``, the README's pattern), ``laq2d2`` with 2-bit uploads, a
    2-bit downlink and no warm-up, ``laq_plain`` with ``entropy=False``, ``laq_paper`` with
    the paper's rule (the default before the stale cap: ``rule_scale="average"``,
    ``stale_cap=None``), ``laq_auto`` with ``lazy_downlink="auto"`` (the default since it
    became one), ``laq_cap1`` with ``stale_cap=1``, ``laq_streak`` with
    ``streak_penalty=0.75``, ``laq_ef`` / ``laq_ef5`` / ``laq_ef0`` with ``error_feedback=1`` /
    ``0.5`` (compensated skips, docs/ddp.md; the default from 3 bits on since session 40) /
    ``0`` (the paper's LAQ, the default before), ``laq_ag`` with ``exchange="all-gather"`` and
    ``laq_ag_plain`` with that and ``entropy=False``, ``laq_2p`` with ``exchange="two-phase"``
    (on 2 ranks the default before ``"auto"``); ``local`` is
    :func:`local_hook` (no communication). The others are PyTorch's own hooks.
    """
    if name == "allreduce":
        return None
    if name == "local":  # no communication: the compute + DDP floor of any hook
        ddp.register_comm_hook(None, timer.wrap(local_hook))
        return None
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    state: Any
    if name == "fp16":
        state, hook = None, default_hooks.fp16_compress_hook
    elif name.startswith("powersgd"):
        state = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=int(name[len("powersgd") :]),
            start_powerSGD_iter=max(warm, 2),
        )
        hook = powerSGD_hook.powerSGD_hook
    elif name == "qsgd_l2":  # the paper's quantizer (the QSGD hook's default before "max")
        state, hook = make_hook("qsgd", norm="l2")
    elif name == "laq_lr":
        state, hook = make_hook("laq", lr=lr)
    elif name == "laq2d2":  # the fewest bytes per step of the defaults' family
        state, hook = make_hook("laq", bits=2, downlink_bits=2, warmup_steps=0)
    elif name == "laq_plain":  # the default without entropy coding (its CPU against its bytes)
        state, hook = make_hook("laq", entropy=False)
    elif name == "laq_paper":  # the earlier default: the paper's rule on the averages
        state, hook = make_hook("laq", rule_scale="average", stale_cap=None)
    elif name == "laq_auto":  # the lazy downlink chosen by the number of ranks (now default)
        state, hook = make_hook("laq", lazy_downlink="auto")
    elif name == "laq_cap1":  # the setting for transformers (docs/results_hooks.md)
        state, hook = make_hook("laq", stale_cap=1)
    elif name == "laq_streak":  # the streak penalty (docs/ddp.md, "Streak penalty")
        state, hook = make_hook("laq", streak_penalty=0.75)
    elif name in ("laq_ef", "laq_ef5", "laq_ef0"):  # docs/ddp.md, "Compensated skips"
        weight = {"laq_ef": 1.0, "laq_ef5": 0.5, "laq_ef0": 0.0}[name]
        state, hook = make_hook("laq", error_feedback=weight)
    elif name == "laq_fallback":  # DDP's all-reduce where it is faster (docs/ddp.md)
        state, hook = make_hook("laq", fallback=True)
    elif name == "laq_ag":  # every upload to every rank: 2 collectives, no downlink
        state, hook = make_hook("laq", exchange="all-gather")
    elif name == "laq_ag_plain":  # the same without entropy coding
        state, hook = make_hook("laq", exchange="all-gather", entropy=False)
    elif name == "laq_2p":  # the two-phase exchange on any number of ranks (the default
        # from 3 on; on 2 it was the default before exchange="auto")
        state, hook = make_hook("laq", exchange="two-phase")
    elif name.startswith("laq") and name[3:].isdigit():
        state, hook = make_hook("laq", bits=int(name[3:]))
    elif name in LAQCORE_HOOKS:
        state, hook = make_hook(name)
    else:
        raise ValueError(f"unknown hook {name!r}; one of {HOOKS}")
    ddp.register_comm_hook(state, timer.wrap(hook))
    return state


def make_optimizer(
    optim: str, params: Iterator[nn.Parameter], lr: float, steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    """``sgd``, ``momentum`` (0.9), ``momentum_wd_steplr`` (0.9, wd 5e-4, StepLR(100, 0.5)),
    ``adam_steplr`` (Adam, StepLR(100, 0.5)), ``nesterov_onecycle`` (Nesterov SGD, wd 5e-4,
    OneCycleLR with its defaults to a peak of ``2 lr`` at 30% of ``steps``, momentum cycled
    0.95 -> 0.85 -> 0.95 by it: the super-convergence recipe)."""
    if optim == "nesterov_onecycle":
        # momentum=0.9 only to allow nesterov: OneCycleLR sets the momentum at every step
        opt_n = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        return opt_n, torch.optim.lr_scheduler.OneCycleLR(opt_n, max_lr=2 * lr, total_steps=steps)
    if optim == "sgd":
        return torch.optim.SGD(params, lr=lr), None
    if optim == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9), None
    if optim == "momentum_wd_steplr":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    elif optim == "adam_steplr":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optim!r}")
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.5)


def _median_ms(v: list[float]) -> float | None:
    return 1e3 * float(np.median(v)) if v else None


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on (x, y)."""
    model.eval()
    with torch.no_grad():
        out = model(x).float()
        loss = float(nn.functional.cross_entropy(out, y))
        acc = float((out.argmax(1) == y).float().mean())
    model.train()
    return loss, acc


# --------------------------------------------------------------------------------------
# one training run
# --------------------------------------------------------------------------------------
def train_one(cfg: dict[str, Any], hook: str, data: Data, meter: CommMeter) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    x_tr, y_tr, x_te, y_te = data
    warm, steps = int(cfg["warm"]), int(cfg["steps"])
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], int(cfg.get("scale", 1)))
    cap_mb = 25.0  # DDP's default
    if hook.startswith("powersgd"):
        # One bucket: with several, PowerSGD launches a bucket's second all-reduce from the
        # first one's callback thread, so the collectives' order differs between ranks and
        # gloo aborts ("op.preamble.length <= op.nbytes"; seen on the 5.3M model).
        cap_mb = max(cap_mb, 4 * sum(p.numel() for p in model.parameters()) / 2**20 + 1)
    ddp = DDP(model, bucket_cap_mb=cap_mb)
    timer = HookTimer()
    state = attach_hook(ddp, hook, warm, float(cfg["lr"]), timer)
    opt, sched = make_optimizer(cfg.get("optim", "momentum"), ddp.parameters(), cfg["lr"], steps)
    amp = cfg.get("amp")  # None, "fp16" or "bf16"
    scaler = None
    if amp:
        scaler = torch.amp.GradScaler("cpu", init_scale=float(cfg.get("init_scale", 2.0**16)))
        # laqcore's hooks follow the scale when given the scaler (PyTorch's have no such
        # argument); "attach_scaler": false measures them without it.
        if hasattr(state, "grad_scaler") and cfg.get("attach_scaler", True):
            state.grad_scaler = scaler
    sampler = DistributedSampler(
        TensorDataset(x_tr, y_tr), num_replicas=world, rank=rank, seed=cfg["seed"], drop_last=True
    )
    loader = DataLoader(
        TensorDataset(x_tr, y_tr), batch_size=cfg["batch"], sampler=sampler, drop_last=True
    )
    target = cfg.get("target")
    reference = bool(cfg.get("reference"))  # the all-reduce run that sets the target
    tracking = target is not None or reference
    eval_every = int(cfg.get("eval_every", 10))
    # The training loss that decides the target: on the first ``eval_samples`` training rows
    # (the 5.3M model's 10,000 rows cost seconds per evaluation on one thread), else all.
    n_eval = cfg.get("eval_samples")
    x_ev, y_ev = (x_tr, y_tr) if n_eval is None else (x_tr[: int(n_eval)], y_tr[: int(n_eval)])
    dense = 4 * sum(p.numel() for p in model.parameters())
    step_s: list[float] = []
    # With cfg["step_log"]: per step, whether this rank uploaded (laqcore's hooks; None else).
    log_steps = bool(cfg.get("step_log"))
    uploads_seen = 0.0
    uploaded: list[bool | None] = []
    losses: list[float] = []
    evals: list[tuple[int, float, float]] = []  # (step, seconds of training so far, loss)
    c0 = meter.snapshot()
    reached: int | None = None
    # (step, new scale) each time the GradScaler's scale changed: back-offs after overflows.
    scale_log: list[tuple[int, float]] = []
    epoch, step = 0, 0
    while step < steps and reached is None:
        sampler.set_epoch(epoch)
        epoch += 1
        for xb, yb in loader:
            if step == warm:
                c0 = meter.snapshot()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            ctx = (
                torch.autocast("cpu", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)
                if amp
                else contextlib.nullcontext()
            )
            with ctx:
                loss = nn.functional.cross_entropy(ddp(xb), yb)
            if scaler is not None:
                scaler.scale(loss).backward()
                timer.end_backward()
                scaler.step(opt)
                before = scaler.get_scale()
                scaler.update()
                if scaler.get_scale() != before:
                    scale_log.append((step + 1, float(scaler.get_scale())))
            else:
                loss.backward()
                timer.end_backward()
                opt.step()
            if sched is not None:
                sched.step()
            step_s.append(time.perf_counter() - t0)
            if log_steps:  # after the clock: stats() is not part of the step
                up = state.stats().get("uploads") if hasattr(state, "stats") else None
                uploaded.append(None if up is None else up > uploads_seen)
                uploads_seen = up if up is not None else uploads_seen
            losses.append(float(loss.detach()))
            step += 1
            if tracking and step % eval_every == 0:
                # Paused clock: the global training loss decides, identically on every rank
                # (the models are identical; the MAX all-reduce keeps the ranks in lockstep).
                ev, _ = evaluate(model, x_ev, y_ev)
                hit = target is not None and ev <= target
                stop = torch.tensor([1.0 if hit or not math.isfinite(ev) else 0.0])
                meter.orig["all_reduce"](stop, op=dist.ReduceOp.MAX)
                evals.append((step, sum(step_s), ev))
                if hit:
                    reached = step
                elif stop.item() > 0:
                    break
            if step >= steps or reached is not None:
                break
    c1 = meter.snapshot()
    n_after = max(len(step_s) - warm, 1)
    final_loss, _ = evaluate(model, x_ev, y_ev)
    _, acc = evaluate(model, x_te, y_te)
    res: dict[str, Any] = {
        "steps": len(step_s),
        "params": dense // 4,
        # Medians: the machine may be shared, and a median ignores steps a neighbour stalled.
        "step_ms": _median_ms(step_s[warm:]),
        "step_mean_ms": 1e3 * sum(step_s[warm:]) / n_after,
        "total_s": sum(step_s),
        "hook_ms": _median_ms(timer.calls[warm:]),
        "span_ms": _median_ms(timer.spans[warm:]),
        "final_loss": _finite(final_loss),
        "last_batch_loss": _finite(losses[-1]) if losses else None,
        "test_acc": acc,
        "time_to_target_s": sum(step_s) if reached is not None or reference else None,
        "steps_to_target": len(step_s) if reference else reached,
        "evals": [(s, t, _finite(v)) for s, t, v in evals],
    }
    if log_steps:
        res["step_log"] = {"seconds": step_s, "uploaded": uploaded}
    if hook == "allreduce":
        per_step = 2.0 * dense * (world - 1) / world  # DDP's C++ ring all-reduce of fp32
        res["sent_per_step"] = res["recv_per_step"] = per_step
    else:
        res["sent_per_step"] = (c1[0] - c0[0]) / n_after
        res["recv_per_step"] = (c1[1] - c0[1]) / n_after
    if state is not None and hasattr(state, "stats"):
        res["stats"] = {
            k: v if isinstance(v, list) else _finite(float(v)) for k, v in state.stats().items()
        }
        if getattr(state, "fallback_decision", None) is not None:  # LAQState(fallback=True)
            res["fallback"] = {"mode": state.fallback_decision, "times": state.probe_times}
    if scaler is not None:
        res["final_scale"] = float(scaler.get_scale())
        res["scale_changes"] = scale_log
    return res


def worker(cfg: dict[str, Any]) -> None:
    """Entry of one rank (torchrun environment); prints one JSON line per hook run."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=cfg.get("timeout", 300)))
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.get("idle_gloo_loop"):  # bench_hooks.py --idle-gloo-loop
        from laqcore.distributed import idle_gloo_loop

        idle_gloo_loop()
    meter = CommMeter(rank, world)
    meter.install()
    data = load_data(cfg["model"], cfg["seed"])
    target = None
    if cfg.get("warmup_run", True):  # untimed: the first run in a process pays for caches
        warm_steps = min(int(cfg.get("warmup_steps", 20)), int(cfg["steps"]))
        train_one({**cfg, "steps": warm_steps}, "allreduce", data, meter)
    for run in cfg["runs"]:
        run_cfg = {**cfg, **run}
        if not run.get("reference") and cfg.get("time_to_target"):
            run_cfg["target"] = target
        t, io0 = time.time(), _iface_counters(cfg.get("iface"))
        try:
            res = train_one(run_cfg, run["hook"], data, meter)
        except Exception as err:  # a hook that fails is a result, not the end of the bench
            text = f"{type(err).__name__}: {err}"
            res = {"error": text if len(text) <= 600 else text[:200] + " ... " + text[-400:]}
        if run.get("reference"):
            # The target: the loss all-reduce reaches (rank 0's value, identical everywhere).
            ref = torch.tensor([float(res.get("final_loss", math.inf))], dtype=torch.float64)
            meter.orig["broadcast"](ref, 0)
            target = float(ref.item())
            res["target"] = target
        io1 = _iface_counters(cfg.get("iface"))
        res.update(rank=rank, world=world, run=run, wall_s=time.time() - t)
        if io0 is not None and io1 is not None:
            res["iface_tx"], res["iface_rx"] = io1[0] - io0[0], io1[1] - io0[1]
        print(json.dumps(res), flush=True)
    # Leave without the interpreter's teardown (gloo threads sometimes abort while being
    # destroyed, after every result is already out).
    os._exit(0)


def _iface_counters(iface: str | None) -> list[int] | None:
    if not iface:
        return None
    base = f"/sys/class/net/{iface}/statistics/"
    with open(base + "tx_bytes") as a, open(base + "rx_bytes") as b:
        return [int(a.read()), int(b.read())]


if __name__ == "__main__":  # torchrun bench/hook_trainer.py CONFIG.json
    import sys

    with open(sys.argv[1]) as fh:
        worker(json.load(fh))
