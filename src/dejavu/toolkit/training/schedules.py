"""Learning-rate schedules: poly decay with an optional linear warm-up, stepped per batch."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["PolyLR", "poly_factor", "poly_scheduler", "total_training_steps"]

# Warm-up starts from this fraction of the peak learning rate.
WARMUP_START = 0.01


def poly_factor(step: int, total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based).

    During warm-up (``step < warmup_steps``) the factor rises linearly from
    ``0.01`` towards 1; afterwards it is the poly schedule of torchvision's
    segmentation references, ``(1 - t / T) ** power`` with ``t`` the steps
    since warm-up and ``T = total_steps - warmup_steps`` (0 at the end).

    Args:
        step: optimiser steps taken so far.
        total_steps: steps of the whole run.
        power: poly exponent (0 gives a constant rate after warm-up).
        warmup_steps: linear warm-up length.

    Example:
        >>> poly_factor(0, 10), poly_factor(5, 10, power=1.0), poly_factor(10, 10)
        (1.0, 0.5, 0.0)
        >>> poly_factor(1, 10, warmup_steps=2)
        0.505
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    if warmup_steps < 0 or power < 0:
        raise ValueError(f"warmup_steps and power must be >= 0, got {warmup_steps!r}, {power!r}")
    if step < warmup_steps:
        return WARMUP_START + (1.0 - WARMUP_START) * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0), span)
    return (1.0 - t / span) ** power


class PolyLR:
    """Picklable ``LambdaLR`` multiplier wrapping :func:`poly_factor`.

    Example:
        >>> PolyLR(total_steps=4, power=1.0)(2)
        0.5
    """

    def __init__(self, total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> None:
        poly_factor(0, total_steps, power, warmup_steps)  # validates the arguments
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        return poly_factor(step, self.total_steps, self.power, self.warmup_steps)


def poly_scheduler(
    optimizer: Optimizer, total_steps: int, power: float = 0.9, warmup_steps: int = 0
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`poly_factor` to every param group (step it per batch).

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = poly_scheduler(opt, total_steps=2, power=1.0)
        >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 4)
        0.05
    """
    return LambdaLR(optimizer, PolyLR(total_steps, power, warmup_steps))


def total_training_steps(
    batches_per_epoch: int,
    max_epochs: int,
    *,
    max_steps: int = -1,
    limit_train_batches: int | float = 1.0,
    accumulate_grad_batches: int = 1,
) -> int:
    """Optimiser steps of a whole run (the poly schedule's length), as Lightning will take them.

    ``max_steps`` when positive; otherwise the epochs times the optimiser
    steps per epoch (the training batches per process, limited by
    ``limit_train_batches``, divided by ``accumulate_grad_batches``, rounded up).

    Example:
        >>> total_training_steps(45, max_epochs=10), total_training_steps(45, 1, max_steps=7)
        (450, 7)
        >>> total_training_steps(45, max_epochs=2, limit_train_batches=0.5,
        ...                      accumulate_grad_batches=4)
        12
    """
    if max_steps > 0:
        return int(max_steps)
    limit = limit_train_batches
    batches = (
        min(batches_per_epoch, limit) if isinstance(limit, int) else int(batches_per_epoch * limit)
    )
    return max(1, math.ceil(batches / accumulate_grad_batches) * max_epochs)
