"""Spatial (inpainting-style) redaction: remove pixels, fill them with 0.

Images are normalised with the dataset mean and std, so 0 is the mean
colour. Every redaction draws one mask per sample, shared by all channels,
and returns it as ``keep`` (``B x 1 x H x W``, 1 = kept). Parameters accept a
number or a ``(lo, hi)`` pair; with a pair each sample draws its own value
(integers uniformly over the inclusive range).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dejavu._validation import as_range, check_image
from dejavu.redaction._params import as_int_range, draw_device, sample_int, sample_uniform
from dejavu.redaction.factory import register_redaction
from dejavu.redaction.types import Redacted, Redaction

__all__ = [
    "BlocksRedaction",
    "CheckerboardRedaction",
    "RandomRedaction",
    "blocks_redaction",
    "checkerboard_redaction",
    "random_redaction",
]

Range = float | Sequence[float]
IntRange = int | Sequence[int]


def _apply(image: Tensor, keep: Tensor) -> Redacted:
    keep = keep.to(device=image.device, dtype=image.dtype)
    return Redacted(image * keep, keep)


def _check_size(lo_hi: tuple[int, int], name: str, image: Tensor) -> None:
    H, W = image.shape[-2:]
    if lo_hi[1] > max(H, W):
        given = lo_hi if lo_hi[0] != lo_hi[1] else lo_hi[0]
        raise ValueError(
            f"{name} must be at most max(H, W) = {max(H, W)} for a {H} x {W} image "
            f"(a larger {name} makes the whole image one cell), got {given}"
        )


def random_redaction(
    image: Tensor, p: Range = 0.25, generator: torch.Generator | None = None
) -> Redacted:
    """Keep each pixel independently with probability ``p``.

    Args:
        image: ``B x C x H x W`` floating-point batch.
        p: keep probability in ``(0, 1]``, or a ``(lo, hi)`` range drawn per sample.
        generator: generator for the random choices (``None``: global RNG).

    Returns:
        :class:`Redacted` with the image (removed pixels set to 0) and
        ``keep`` (``B x 1 x H x W``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> r = random_redaction(torch.ones(2, 3, 64, 64), p=0.5, generator=g)
        >>> 0.45 < r.keep.mean().item() < 0.55
        True
    """
    check_image(image)
    lo, hi = as_range(p, "p", 0.0, 1.0, low_inclusive=False)
    B, _, H, W = image.shape
    dev = draw_device(image, generator)
    prob = sample_uniform(lo, hi, B, generator, dev).view(B, 1, 1, 1)
    u = torch.rand(B, 1, H, W, generator=generator, device=dev)
    return _apply(image, u < prob)


def checkerboard_redaction(
    image: Tensor, cell: IntRange = 16, generator: torch.Generator | None = None
) -> Redacted:
    """Keep alternate ``cell x cell`` squares of a checkerboard.

    Cells are aligned to the top-left corner: pixel ``(i, j)`` is in cell
    ``(i // cell, j // cell)`` and is kept when ``(i // cell + j // cell) % 2``
    equals the sample's phase (0 or 1, drawn per sample).

    Args:
        image: ``B x C x H x W`` floating-point batch.
        cell: cell side in pixels (integer in ``[1, max(H, W)]``), or a range.
        generator: generator for the random choices (``None``: global RNG).

    Returns:
        :class:`Redacted`; about half of the pixels are kept.

    Example:
        >>> r = checkerboard_redaction(torch.ones(1, 3, 4, 4), cell=2)
        >>> r.keep[0, 0].tolist() in ([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]],
        ...                           [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
        True
    """
    check_image(image)
    lo, hi = as_int_range(cell, "cell", 1)
    _check_size((lo, hi), "cell", image)
    B, _, H, W = image.shape
    dev = draw_device(image, generator)
    size = sample_int(lo, hi, B, generator, dev).to(image.device).view(B, 1, 1)
    phase = torch.randint(0, 2, (B,), generator=generator, device=dev).to(image.device)
    i = torch.arange(H, device=image.device).view(1, H, 1)
    j = torch.arange(W, device=image.device).view(1, 1, W)
    parity = (i // size + j // size) % 2
    return _apply(image, (parity == phase.view(B, 1, 1)).unsqueeze(1))


def blocks_redaction(
    image: Tensor,
    block: IntRange = 32,
    ratio: Range = 0.5,
    generator: torch.Generator | None = None,
) -> Redacted:
    """Drop whole ``block x block`` cells of an aligned grid (MAE-style).

    The grid starts at the top-left corner; when ``H`` or ``W`` is not a
    multiple of ``block`` the last row/column of cells is partial. Each
    sample drops ``round(ratio * n_cells)`` cells (Python's ``round``, half
    to even) chosen uniformly at random.

    Args:
        image: ``B x C x H x W`` floating-point batch.
        block: cell side in pixels (integer in ``[1, max(H, W)]``), or a range.
        ratio: fraction of cells dropped, in ``[0, 1]``, or a range.
        generator: generator for the random choices (``None``: global RNG).

    Returns:
        :class:`Redacted` with the image and ``keep`` (``B x 1 x H x W``).

    Example:
        >>> r = blocks_redaction(torch.ones(2, 3, 64, 64), block=16, ratio=0.25)
        >>> r.keep.mean().item()  # 4 of the 16 cells dropped
        0.75
    """
    check_image(image)
    b_lo, b_hi = as_int_range(block, "block", 1)
    r_lo, r_hi = as_range(ratio, "ratio", 0.0, 1.0)
    _check_size((b_lo, b_hi), "block", image)
    B, _, H, W = image.shape
    dev = draw_device(image, generator)
    sizes = sample_int(b_lo, b_hi, B, generator, dev)
    ratios = sample_uniform(r_lo, r_hi, B, generator, dev)
    keep = torch.empty(B, 1, H, W, dtype=torch.bool, device=image.device)
    # Samples that share a block size share a grid: draw their cells together.
    for s in sorted(set(sizes.tolist())):
        idx = (sizes == s).nonzero().flatten()
        nh, nw = -(-H // s), -(-W // s)  # ceil in integers
        n_drop = torch.round(ratios[idx] * (nh * nw))
        # Ranks of uniform scores are a uniform random permutation of the cells. float32
        # scores tie often on large grids (~2e-4 per sample for 64 cells, ~0.1 for 2048);
        # a stable sort breaks ties by cell index, the same on every device and CPU.
        scores = torch.rand(idx.numel(), nh * nw, generator=generator, device=dev)
        ranks = scores.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
        cells = (ranks >= n_drop[:, None]).view(-1, nh, nw)
        pixels = cells.repeat_interleave(s, dim=1).repeat_interleave(s, dim=2)[:, :H, :W]
        keep[idx.to(image.device), 0] = pixels.to(image.device)
    return _apply(image, keep)


@register_redaction
class RandomRedaction(Redaction):
    """Module form of :func:`random_redaction`.

    Args:
        p: keep probability in ``(0, 1]`` or a ``(lo, hi)`` range (default 0.25).

    Example:
        >>> r = RandomRedaction(p=(0.2, 0.4))(torch.randn(2, 3, 16, 16))
        >>> r.keep.shape
        torch.Size([2, 1, 16, 16])
    """

    name = "random"
    family = "spatial"

    def __init__(self, p: Range = 0.25) -> None:
        super().__init__()
        as_range(p, "p", 0.0, 1.0, low_inclusive=False)
        self.p = p

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact ``image`` (``B x C x H x W``); see :func:`random_redaction`."""
        return random_redaction(image, p=self.p, generator=generator)

    def extra_repr(self) -> str:
        return f"p={self.p!r}"


@register_redaction
class CheckerboardRedaction(Redaction):
    """Module form of :func:`checkerboard_redaction`.

    Args:
        cell: cell side in pixels or a ``(lo, hi)`` range (default 16).

    Example:
        >>> r = CheckerboardRedaction(cell=8)(torch.randn(2, 3, 32, 32))
        >>> r.keep.mean().item()
        0.5
    """

    name = "checkerboard"
    family = "spatial"

    def __init__(self, cell: IntRange = 16) -> None:
        super().__init__()
        as_int_range(cell, "cell", 1)
        self.cell = cell

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact ``image`` (``B x C x H x W``); see :func:`checkerboard_redaction`."""
        return checkerboard_redaction(image, cell=self.cell, generator=generator)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}"


@register_redaction
class BlocksRedaction(Redaction):
    """Module form of :func:`blocks_redaction`.

    Args:
        block: cell side in pixels or a ``(lo, hi)`` range (default 32).
        ratio: fraction of cells dropped or a ``(lo, hi)`` range (default 0.5).

    Example:
        >>> r = BlocksRedaction(block=8, ratio=0.5)(torch.randn(2, 3, 32, 32))
        >>> r.keep.mean().item()
        0.5
    """

    name = "blocks"
    family = "spatial"

    def __init__(self, block: IntRange = 32, ratio: Range = 0.5) -> None:
        super().__init__()
        as_int_range(block, "block", 1)
        as_range(ratio, "ratio", 0.0, 1.0)
        self.block = block
        self.ratio = ratio

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact ``image`` (``B x C x H x W``); see :func:`blocks_redaction`."""
        return blocks_redaction(image, block=self.block, ratio=self.ratio, generator=generator)

    def extra_repr(self) -> str:
        return f"block={self.block!r}, ratio={self.ratio!r}"
