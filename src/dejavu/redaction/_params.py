"""Per-sample parameters: parse ``value | (lo, hi)`` and draw one value per sample.

Random numbers are drawn on the generator's device (the global RNG of the
image's device when there is no generator) and then moved to the image's
device, so a CPU generator gives the same redaction on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from dejavu._validation import as_range, is_pair_like

__all__ = ["as_int_range", "draw_device", "sample_int", "sample_uniform"]


def as_int_range(
    value: int | Sequence[int], name: str, low: int, high: float = math.inf
) -> tuple[int, int]:
    """Like :func:`dejavu._validation.as_range` for integer parameters.

    Example:
        >>> as_int_range((8, 16), "cell", 1)
        (8, 16)
    """
    items = value if is_pair_like(value) else (value,)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, Real):
            raise ValueError(f"{name} must be an integer or a (low, high) pair, got {value!r}")
        if not float(item).is_integer():
            raise ValueError(f"{name} must be an integer or a (low, high) pair, got {value!r}")
    lo, hi = as_range(value, name, low, high)
    return int(lo), int(hi)


def draw_device(image: Tensor, generator: torch.Generator | None) -> torch.device:
    """The device random numbers for ``image`` are drawn on."""
    return generator.device if generator is not None else image.device


def sample_uniform(
    lo: float,
    hi: float,
    n: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """``n`` float64 values uniform in ``[lo, hi]`` (all ``lo`` when ``lo == hi``)."""
    if lo == hi:
        return torch.full((n,), lo, dtype=torch.float64, device=device)
    u = torch.rand(n, dtype=torch.float64, generator=generator, device=device)
    return lo + (hi - lo) * u


def sample_int(
    lo: int,
    hi: int,
    n: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """``n`` int64 values uniform over the inclusive range ``lo..hi``."""
    if lo == hi:
        return torch.full((n,), lo, dtype=torch.int64, device=device)
    return torch.randint(lo, hi + 1, (n,), generator=generator, device=device)
