"""Batching samples of different sizes by padding them to a common size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import default_collate

from dejavu.toolkit.data.transforms import Sample, pad_sample, sample_size

__all__ = ["pad_collate"]


def pad_collate(
    batch: Sequence[Sample], multiple: int = 1, image_fill: float = 0.0
) -> dict[str, Any]:
    """Pad every sample (bottom/right) to the batch's largest size, then stack.

    Padding follows :func:`~dejavu.toolkit.data.transforms.pad_sample`: the
    image with ``image_fill`` (0 = the mean of a normalised image), ``seg``
    with 255, ``instance``, ``depth`` and ``normals`` with 0, so padded pixels
    are ignored by the losses and metrics. The size is rounded up to a
    multiple of ``multiple`` (e.g. a network's output stride). Non-tensor
    values (``name``) are collected into lists, as ``default_collate`` does.
    Use with ``functools.partial(pad_collate, multiple=32)`` as a
    ``DataLoader``'s ``collate_fn``.

    Example:
        >>> import torch
        >>> a = {"image": torch.zeros(3, 4, 5), "seg": torch.zeros(4, 5).long(), "name": "a"}
        >>> b = {"image": torch.zeros(3, 6, 3), "seg": torch.zeros(6, 3).long(), "name": "b"}
        >>> out = pad_collate([a, b], multiple=4)
        >>> out["image"].shape, out["name"], int(out["seg"][0, 5, 0])
        (torch.Size([2, 3, 8, 8]), ['a', 'b'], 255)
    """
    if not batch:
        raise ValueError("batch must hold at least one sample")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    sizes = [sample_size(s) for s in batch]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    h, w = h + (-h % multiple), w + (-w % multiple)
    padded = [
        pad_sample(s, (0, 0, w - sw, h - sh), image_fill) if (sh, sw) != (h, w) else s
        for s, (sh, sw) in zip(batch, sizes, strict=True)
    ]
    return default_collate(padded)
