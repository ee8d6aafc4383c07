"""The LAQ hook's defaults per bit width: block size, rule weight, error feedback, warm-up;
and the lazy downlink per number of ranks.

Each function maps ``bits`` (or the world size) to the value that ``"auto"`` stands for in
:class:`~laqcore.torch.laq_state.LAQState` (re-exported there; the measurements behind each
choice are in docs/ddp.md).
"""

from __future__ import annotations

from .._validate import check_bits, check_positive_int

__all__ = [
    "auto_block_size",
    "auto_ck",
    "auto_error_feedback",
    "auto_lazy_downlink",
    "auto_warmup_steps",
]


def __dir__() -> list[str]:
    return __all__


def auto_block_size(bits: int) -> int:
    """The hook's default radius block for ``bits`` bits: 32 at 1-2 bits, 64 at 3, else 256.

    In minibatch training the innovation ``g_k - q_prev`` is mostly the difference of two
    minibatch noises, and a block's coordinates round to a grid of step ``2R / (2^b - 1)``
    set by its largest one. At 2 bits in blocks of 256 the error of the returned average was
    3x the average itself on the bench CNN (docs/ddp.md, "Low bits") and training diverged;
    blocks of 32 trained it to the no-hook accuracy. A radius costs 32 bits: 1 bit per
    coordinate at blocks of 32, 0.125 at 256.

    Examples
    --------
    >>> [auto_block_size(b) for b in (1, 2, 3, 4, 8)]
    [32, 32, 64, 256, 256]
    """
    b = check_bits(bits)
    return 32 if b <= 2 else 64 if b == 3 else 256


def auto_ck(bits: int) -> float:
    """The hook's default rule weight ``ck`` for ``bits`` bits: 1.2 from 4 bits on, else 0.8.

    The rule skips when ``||dQ||^2 < ck mean_d ||g^{k-d}||^2 + err_coef (||eps||^2 +
    ||eps_hat||^2)``. With minibatch noise in the innovation the paper's 0.8 skipped 22-33%
    of the uploads on the bench CNN at 4 bits, 1.2 skips 38-42% at the no-hook accuracy
    (1.6 diverged; docs/ddp.md, "Bytes per step"). At 1-3 bits the error term is a large
    part of the threshold already, and 1.2 lost 2.5 points on the 2-bit row of
    tests/test_torch_hook_trainers.py, so those widths keep 0.8.

    Examples
    --------
    >>> [auto_ck(b) for b in (2, 3, 4, 8)]
    [0.8, 0.8, 1.2, 1.2]
    """
    return 1.2 if check_bits(bits) >= 4 else 0.8


def auto_error_feedback(bits: int) -> float:
    """The hook's default error-feedback weight for ``bits`` bits: 0 at 1 bit, 1 at 2 bits,
    0.5 from 3 bits on.

    With error feedback the rank adds what its previous steps failed to deliver (its
    *residual*: the gradient it meant to contribute minus the ``q_prev`` the aggregate holds
    for it) to the next gradient, so quantization and staleness errors are paid back instead
    of lost. At 2 bits an upload's quantization error is 10-40% of the innovation and, in
    minibatch training, about the size of the gradient itself; without the feedback the 2-bit
    hook lost 1.0-1.3 points on the bench MLP at 2 and 4 ranks, with it every measured 2-bit
    run ended within 0.3 points and at the no-hook training loss (docs/ddp.md, "Error
    feedback at 2 bits"). The residual also enters the rule's innovation, so at weight 1 the
    rule skips almost nothing at 2 bits.

    From 3 bits on, where the quantization error is small, the residual is mostly what the
    skips withheld, and half of it is paid back at the rank's next upload ("compensated
    skips", docs/ddp.md): the rule still skips a third of the uploads on the bench CNN
    (33-38%, at TernGrad's bytes, within 1.0 point of all-reduce on five seeds), and on the
    tasks where the paper's LAQ (weight 0, the default until session 40) was not safe the
    loss shrank: a small transformer -1.3 points on average over ten seeds (-3.0 at worst)
    against -14.0 (-37.2), a batch-norm CNN -3.0 against -9.0. Weight 1 was safer still on
    that CNN (-0.9) but skipped only 23-26% on the digits CNN, below issue 15.3's 30%.

    Not at 1 bit: error feedback pays back only what a compressor whose error is smaller
    than its input left behind, and the 1-bit grid ``{-R, +R}`` leaves more than it sends
    (1.66 times the innovation's norm for Gaussian innovations in blocks of 32), so the
    residual grows without bound. In an outside-style trainer (an MLP, plain SGD, 2 ranks;
    session 24) the returned average grew linearly to NaN at lr 0.1 and to 150-900 times the
    true gradient at lr 0.005-0.05; without the feedback the same run trained (loss 1.64, no
    hook 1.14, 2 bits 1.15).

    Examples
    --------
    >>> [auto_error_feedback(b) for b in (1, 2, 3, 4, 8)]
    [0.0, 1.0, 0.5, 0.5, 0.5]
    """
    b = check_bits(bits)
    return 0.0 if b == 1 else 1.0 if b == 2 else 0.5


def auto_warmup_steps(bits: int) -> int:
    """The hook's default number of plain all-reduce steps first: 10 at 1-2 bits, else 0.

    From 3 bits on the hook compresses from the first iteration, as the paper's LAQ and the
    simulator do (the warm-up sets neither ``q_prev`` nor the aggregate, and the rule's
    weights already cover a short history); on a link-bound model the 10 all-reduce steps
    were 62-65% of LAQ's time to a target. At 2 bits the first steps are fragile: without
    the warm-up one of eight bench runs lost 2.7 points (the CNN at seed 0), with it every
    2-bit run ended within 0.3 points of no hook (docs/ddp.md, "Warm-up").

    Examples
    --------
    >>> [auto_warmup_steps(b) for b in (1, 2, 3, 4, 8)]
    [10, 10, 0, 0, 0]
    """
    return 10 if check_bits(bits) <= 2 else 0


def auto_lazy_downlink(world_size: int) -> float:
    """``lazy_downlink="auto"`` on ``world_size`` ranks: 0 on 1-2 ranks, 0.25 from 3 on.

    The two-phase exchange publishes the aggregate's change in every step in which *some*
    rank uploaded, and that happens more often the more ranks there are (36-40% skipped
    uploads per rank: 83-86% of the steps at 2 ranks, 94-98% at 4), so without a lazy
    downlink the bytes a rank receives grow with the ranks (issue 15.4: 1.14x from 2 to 4
    ranks on average, up to 1.28x). A lazy downlink of 0.25 from 3 ranks on, none at 2,
    gives 1.060x (CNN, at most 1.101x) and 1.066x (MLP, at most 1.225x) over the bench's
    seeds 0-4, within 1.0 point of all-reduce at 4 ranks (docs/ddp.md, "Lazy downlink";
    measured at 2 and 4 ranks, 3 ranks follow the same reasoning). At 2 ranks a lazy
    downlink saves little and cost one MLP seed 2.4 points, so it stays off there.

    Examples
    --------
    >>> [auto_lazy_downlink(n) for n in (1, 2, 3, 4, 64)]
    [0.0, 0.0, 0.25, 0.25, 0.25]
    """
    return 0.25 if check_positive_int(world_size, "world_size") >= 3 else 0.0
