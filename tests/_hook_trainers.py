"""Small, ordinary DDP trainers for tests/test_torch_hook_trainers.py (run in spawned ranks).

Each case trains a tiny model on a synthetic 3-class problem (each rank its own samples,
minibatches of 16) the way an outside trainer would: an optimizer, optionally a scheduler,
autocast and a GradScaler, and one of laqcore's hooks or none. It returns the test accuracy
and the hook's statistics. Kept here (not in the test module) so that ``spawn`` can import it.
"""

from __future__ import annotations

from typing import Any

_DIM, _CLASSES = 16, 3


def _data(seed: int, n: int) -> tuple[Any, Any]:
    """Gaussian blobs around fixed class centres (the same centres for every seed)."""
    import torch

    centres = torch.randn(_CLASSES, _DIM, generator=torch.Generator().manual_seed(99)) * 0.45
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, _CLASSES, (n,), generator=g)
    x = centres[y] + torch.randn(n, _DIM, generator=g)
    return x, y


def _branchy() -> Any:
    """An MLP with a head used every third call and one never used: DDP needs
    ``find_unused_parameters=True``, and their gradients are the zeros DDP fills in."""
    import torch

    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(_DIM, 32)
            self.head = torch.nn.Linear(32, _CLASSES)
            self.sometimes = torch.nn.Linear(32, _CLASSES)
            self.never = torch.nn.Linear(32, _CLASSES)
            self.calls = 0

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.body(x))
            self.calls += 1
            out = self.head(h)
            return out + self.sometimes(h) if self.calls % 3 == 0 else out

    return Branchy()


def _transformer() -> Any:
    """The 16 features as 4 tokens of 4: a linear embedding, learned positions, one
    ``nn.TransformerEncoderLayer`` (width 16, 2 heads), LayerNorm, mean over the tokens."""
    import torch

    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Linear(4, 16)
            self.position = torch.nn.Parameter(torch.zeros(4, 16))
            self.layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.norm = torch.nn.LayerNorm(16)
            self.head = torch.nn.Linear(16, _CLASSES)

        def forward(self, x: Any) -> Any:
            h = self.layer(self.embed(x.reshape(-1, 4, 4)) + self.position)
            return self.head(self.norm(h.mean(1)))

    return Tokens()


def _model(kind: str) -> Any:
    import torch

    torch.manual_seed(0)
    if kind == "branchy":
        return _branchy()
    if kind == "transformer":
        return _transformer()
    if kind == "cnn":  # the 16 features as a 1x4x4 image
        return torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 4, 4)),
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(128, _CLASSES),
        )
    return torch.nn.Sequential(
        torch.nn.Linear(_DIM, 32), torch.nn.ReLU(), torch.nn.Linear(32, _CLASSES)
    )


def _optimizer(name: str, params: Any) -> Any:
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if name == "momentum_wd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    raise ValueError(name)


def train(rank: int, world: int, spec: dict[str, Any]) -> dict[str, Any]:
    """One training run; ``spec`` keys: method, kwargs, opt, steps, model, sched, amp,
    scale (GradScaler init scale), checkpoint_at, resume_from, and what outside trainers
    add: all_ranks_checkpoint (the hook's checkpoint is ``state_dict(all_ranks=True)``, as
    for a trainer that writes rank 0's file only), accum (micro-batches per step, all but the last under ``no_sync()``), clip
    (``scaler.unscale_`` then ``clip_grad_norm_`` to this norm), bucket_cap_mb (DDP's
    bucket size: small values give several buckets per step), compile (``torch.compile``
    of the DDP model), params (``"bf16"``: the model's parameters, hence its gradients and
    buckets, in bfloat16), wrap (``"fp16"``: the hook inside PyTorch's
    ``fp16_compress_wrapper``), uneven (rank 1 stops after this many steps; the loop runs
    inside DDP's ``join()``, whose joined rank runs the hook on zero buckets until the
    others finish)."""
    import contextlib
    import copy

    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    steps = spec.get("steps", 60)
    kind = spec.get("model", "mlp")
    model = _model(kind)
    pdtype = torch.bfloat16 if spec.get("params") == "bf16" else torch.float32
    model = model.to(pdtype)
    ddp = DDP(
        model,
        find_unused_parameters=kind == "branchy",
        bucket_cap_mb=spec.get("bucket_cap_mb", 25.0),
    )
    opt = _optimizer(spec.get("opt", "sgd"), ddp.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 20, 0.5) if spec.get("sched") else None
    amp = spec.get("amp")  # None, "fp16" or "bf16"
    scaler = torch.amp.GradScaler("cpu", init_scale=spec.get("scale", 2.0**8)) if amp else None
    state = None
    if spec["method"] != "none":
        from laqcore.torch import make_hook

        state, hook = make_hook(spec["method"], **spec.get("kwargs", {}))
        if spec.get("wrap") == "fp16":  # PyTorch's wrapper: the hook sees an fp16 bucket
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

            hook = default_hooks.fp16_compress_wrapper(hook)
        ddp.register_comm_hook(state, hook)
        if scaler is not None:  # as docs/ddp.md asks: the state follows the scale
            state.grad_scaler = scaler
    net = torch.compile(ddp) if spec.get("compile") else ddp
    start, scales, checkpoint = 0, [], None
    if spec.get("resume_from") is not None:
        ck = spec["resume_from"]
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        if scaler is not None:
            scaler.load_state_dict(ck["scaler"])
        if state is not None:
            state.load_state_dict(ck["hook"][rank])
        start = ck["step"]
    accum, clip = spec.get("accum", 1), spec.get("clip")
    x, y = _data(1 + rank, 16 * steps)
    joined = contextlib.ExitStack()
    if "uneven" in spec:
        joined.enter_context(ddp.join())
    last = spec["uneven"] if "uneven" in spec and rank == 1 else steps
    for step in range(start, last):
        opt.zero_grad()
        for micro in range(accum):  # the step's 16 samples in `accum` micro-batches
            lo, hi = 16 * step + micro * 16 // accum, 16 * step + (micro + 1) * 16 // accum
            xb, yb = x[lo:hi], y[lo:hi]
            sync = micro == accum - 1  # earlier micro-batches accumulate without the hook
            with contextlib.nullcontext() if sync else ddp.no_sync():
                if amp:
                    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
                    with torch.autocast("cpu", dtype=dtype):
                        loss = torch.nn.functional.cross_entropy(net(xb), yb) / accum
                    scaler.scale(loss).backward()  # type: ignore[union-attr]
                else:
                    out = net(xb.to(pdtype)).float()
                    (torch.nn.functional.cross_entropy(out, yb) / accum).backward()
        if clip is not None:
            if scaler is not None:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(ddp.parameters(), clip)
        if amp:
            scaler.step(opt)  # type: ignore[union-attr]
            scaler.update()  # type: ignore[union-attr]
            scales.append(float(scaler.get_scale()))  # type: ignore[union-attr]
        else:
            opt.step()
        if sched is not None:
            sched.step()
        if spec.get("checkpoint_at") == step + 1:
            checkpoint = {
                "model": {k: v.clone() for k, v in model.state_dict().items()},
                # a copy: state_dict() returns the live momentum buffers, which later steps change
                "opt": copy.deepcopy(opt.state_dict()),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "hook": None
                if state is None
                else state.state_dict(all_ranks=spec.get("all_ranks_checkpoint", False)),
                "step": step + 1,
            }
    joined.close()  # a joined rank shadows the steps it has no data for
    xt, yt = _data(1000, 600)
    with torch.no_grad():
        acc = float((model(xt.to(pdtype)).argmax(1) == yt).float().mean())
    params = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    return {
        "acc": acc,
        "stats": state.stats() if state is not None else None,
        "scales": scales,
        "checkpoint": checkpoint,
        "params": params.numpy().copy(),
    }


def train_gan(rank: int, world: int, spec: dict[str, Any]) -> dict[str, Any]:
    """A GAN as an outside trainer writes one: two DDP models in one process group, each
    with its own hook state (``spec["method"]``, ``spec["kwargs"]``), Adam on both. The
    generator learns N(3, 0.5) from 4-d noise. The discriminator's reducer runs its hook twice
    per iteration: on its own step and again when the generator's loss backpropagates through
    it, so the two states' exchanges interleave on the same peers."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    steps = spec.get("steps", 120)
    torch.manual_seed(0)
    gen = DDP(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    disc = DDP(
        torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
    )
    states = []
    if spec["method"] != "none":
        from laqcore.torch import make_hook

        for model in (gen, disc):
            state, hook = make_hook(spec["method"], **spec.get("kwargs", {}))
            model.register_comm_hook(state, hook)
            states.append(state)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(100 + rank)
    ones, zeros = torch.ones(32, 1), torch.zeros(32, 1)
    for _ in range(steps):
        real = 3.0 + 0.5 * torch.randn(32, 1, generator=g)
        fake = gen(torch.randn(32, 4, generator=g))
        opt_d.zero_grad()
        loss_d = F.binary_cross_entropy_with_logits(disc(real), ones)
        loss_d = loss_d + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        F.binary_cross_entropy_with_logits(disc(fake), ones).backward()
        opt_g.step()
    with torch.no_grad():
        sample = gen(torch.randn(4000, 4, generator=torch.Generator().manual_seed(7)))
    params = torch.cat([p.detach().reshape(-1) for m in (gen, disc) for p in m.parameters()])
    return {
        "mean": float(sample.mean()),
        "stats": [s.stats() for s in states],
        "params": params.numpy().copy(),
    }


def expect_error(rank: int, world: int, case: str) -> tuple[str, str]:
    """Run a model the hooks must refuse; return the error's type and text."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import LAQState, laq_hook

    torch.manual_seed(0)
    if case == "sparse":
        emb = torch.nn.Embedding(10, 4, sparse=True)
        model: Any = torch.nn.Sequential(emb, torch.nn.Flatten(), torch.nn.Linear(8, 2))
        inp: Any = torch.tensor([[1, 2], [3, 4]])
    else:
        raise ValueError(case)
    ddp = DDP(model)
    ddp.register_comm_hook(LAQState(warmup_steps=0), laq_hook)
    try:
        ddp(inp).sum().backward()
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return type(err).__name__, str(err)
    return "no error", ""


def load_error(method: str, hook_checkpoint: Any) -> tuple[str, str]:
    """Load ``hook_checkpoint`` into a fresh state of ``method``; the error's type and text."""
    from laqcore.torch import make_hook

    try:
        make_hook(method)[0].load_state_dict(hook_checkpoint)
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return type(err).__name__, str(err)
    return "no error", ""


def needs(spec: dict[str, Any]) -> list[str]:
    """The features of :func:`needs_torch.torch_gaps` that :func:`train` uses for ``spec``:
    any autocast makes a GradScaler, and bfloat16 parameters go through gloo as bfloat16."""
    return [
        feature
        for feature, used in (
            ("cpu_grad_scaler", bool(spec.get("amp"))),
            ("gloo_bfloat16", spec.get("params") == "bf16"),
        )
        if used
    ]


def runs(rank: int, world: int, specs: list[dict[str, Any]]) -> list[Any]:
    """Several runs in one process group (one spawn); ``{"error": case}`` runs expect_error,
    ``{"gan": True, ...}`` runs train_gan;
    a spec with ``"skip": reason`` (a feature this torch lacks) is not run, its result is
    ``{"skipped": reason}``.

    ``resume_of: i`` resumes from run i's checkpoint, each rank from its own hook state;
    ``resume_of_rank0: i`` as a trainer that writes rank 0's checkpoint file only
    (Lightning, Accelerate): every rank reads rank 0's; ``load_rank0_of: i`` only loads rank
    0's hook state of run i into a fresh state and returns the error."""
    import torch.distributed as dist

    out: list[Any] = []
    for spec in specs:
        if "skip" in spec:
            out.append({"skipped": spec["skip"]})
        elif "error" in spec:
            out.append(expect_error(rank, world, spec["error"]))
        elif spec.get("gan"):
            out.append(train_gan(rank, world, spec))
        elif "resume_of" in spec:  # resume from the checkpoint of an earlier run in this list
            ck = out[spec["resume_of"]]["checkpoint"]
            hooks: list[Any] = [None] * world
            dist.all_gather_object(hooks, ck["hook"])
            out.append(train(rank, world, {**spec, "resume_from": {**ck, "hook": hooks}}))
        elif "resume_of_rank0" in spec or "load_rank0_of" in spec:
            i = spec.get("resume_of_rank0", spec.get("load_rank0_of"))
            ck = out[i]["checkpoint"]
            file = [ck["hook"]]  # what rank 0 wrote, read by every rank
            dist.broadcast_object_list(file, src=0)
            if "load_rank0_of" in spec:
                out.append(load_error(spec["method"], file[0]))
            else:
                out.append(
                    train(rank, world, {**spec, "resume_from": {**ck, "hook": file * world}})
                )
        else:
            out.append(train(rank, world, spec))
    return out


class _Linear:
    """A module whose loss ``<theta, g>`` has gradient ``g`` whatever theta is; ``split = k``
    makes theta two parameter tensors, the first ``dim - k`` coordinates and the last ``k``."""

    @staticmethod
    def make(dim: int, split: int = 0) -> Any:
        import torch

        class Dot(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.theta = torch.nn.Parameter(torch.zeros(dim - split))
                self.tail = torch.nn.Parameter(torch.zeros(split)) if split else None

            def forward(self, g: Any) -> Any:
                loss = (self.theta * g[: dim - split]).sum()
                return loss if self.tail is None else loss + (self.tail * g[dim - split :]).sum()

            def grad(self) -> Any:
                return torch.cat([p.grad for p in self.parameters()])

        return Dot()


def given_gradients(
    rank: int, world: int, grads: Any, kwargs: dict[str, Any], split: int = 0
) -> dict[str, Any]:
    """DDP on a model whose gradient at step k on rank m is exactly ``grads[k, m]`` (as two
    parameter tensors, the last ``split`` coordinates the second, if ``split``).

    Returns this rank's upload decision per step, the averaged gradients, the final
    aggregate, ``q_prev`` and error-feedback residual.
    """
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import LAQState, laq_hook

    module = _Linear.make(grads.shape[2], split)
    ddp = DDP(module)
    state = LAQState(**kwargs)
    ddp.register_comm_hook(state, laq_hook)
    uploads, means = [], []
    for k in range(grads.shape[0]):
        before = state.stats()["uploads"]
        ddp.zero_grad()
        ddp(torch.from_numpy(grads[k, rank])).backward()
        uploads.append(state.stats()["uploads"] > before)
        means.append(module.grad().numpy().copy())
    residual = state._residual_now()
    return {
        "uploads": uploads,
        "aggregate": state.aggregate.copy(),
        "means": means,
        "q_prev": state.q_prev.copy(),
        "residual": residual,
    }
