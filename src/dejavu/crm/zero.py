"""CRM-0, the parameter-free regenerator: fill redacted pixels with class colours.

Our definition (not in the paper): with ``P_k`` the conditioning's class
probabilities (soft masks, or straight-through one-hot masks) and ``V`` the
visible pixels, every redacted pixel ``x`` becomes

    ``I_hat(x) = sum_k P_k(x) * mu_k(t(x))``

where ``mu_k(t)`` is the ``P_k``-weighted mean colour of the *visible* pixels
of tile ``t`` (the whole image when ``tile`` is None). A class with few
visible pixels in a tile falls back smoothly to its image-level mean, and a
class with none in the image to the image's mean visible colour (shrinkage
with a prior weight of ``prior`` pixels):

    ``mu_k(t) = (sum_{x in t} P_k(x) keep(x) I(x) + prior * mu_k(image)) /
               (sum_{x in t} P_k(x) keep(x) + prior)``.

Kept pixels stay as they are. CRM-0 has no weights, so it cannot learn to
work around the conditioning: its error falls only when the predicted regions
line up with the image's colour regions, and the gradient of the
regeneration loss moves each pixel's probability towards the class whose
visible colour matches it (a colour-consistency signal). It needs a spatial
redaction (a ``keep`` mask) and class-probability conditioning.

At the working resolution (area averaging of both) the kept fraction of a
cell is ``keep_w`` and the redacted image is ``I_r_w = keep_w * (mean visible
colour)``, so the visible sums are ``sum P_k I_r_w`` and ``sum P_k keep_w`` and
the output is ``I_r_w + (1 - keep_w) * fill``.

Example:
    >>> crm = ZeroCRM(cond_channels=2, scale=1.0, prior=1e-6)
    >>> image = torch.cat([torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)], dim=-1)
    >>> masks = torch.cat([torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)], dim=-1)
    >>> cond = torch.cat([masks, 1 - masks], dim=1)  # class 0 left, class 1 right
    >>> keep = torch.ones(1, 1, 4, 8); keep[..., 1:3] = 0; keep[..., 5:7] = 0
    >>> out = crm(image * keep, cond, keep)
    >>> torch.allclose(out, image, atol=1e-6)  # both halves refilled exactly
    True
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dejavu._validation import check_in_range
from dejavu.crm.base import CRMBase, _check_int
from dejavu.crm.factory import register_crm

__all__ = ["ZeroCRM", "class_colour_fill"]


def _tile_sum(x: Tensor, tile: int | None) -> Tensor:
    """Sum over each ``tile x tile`` tile (the whole image when ``tile`` is None)."""
    if tile is None:
        return x.sum(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    pad = (0, (-w) % tile, 0, (-h) % tile)
    return F.avg_pool2d(F.pad(x, pad), tile, stride=tile) * (tile * tile)


def _untile(x: Tensor, tile: int | None, size: tuple[int, int]) -> Tensor:
    """Spread per-tile values back over the pixels of each tile."""
    if tile is None:
        return x
    up = x.repeat_interleave(tile, dim=-2).repeat_interleave(tile, dim=-1)
    return up[..., : size[0], : size[1]]


def class_colour_fill(
    redacted: Tensor, probs: Tensor, keep: Tensor, tile: int | None = None, prior: float = 1.0
) -> Tensor:
    """The CRM-0 fill ``sum_k P_k(x) mu_k(t(x))`` for every pixel (see the module docstring).

    Args:
        redacted: ``B x C x H x W`` redacted image ``keep * I`` (removed pixels 0).
        probs: ``B x K x H x W`` class probabilities (or one-hot masks).
        keep: ``B x 1 x H x W`` kept fraction of each pixel, in ``[0, 1]``.
        tile: side of the tiles the class colours are averaged over (None: the image).
        prior: weight, in pixels, of the image-level colour a tile's colour shrinks to.

    Returns:
        ``B x C x H x W`` fill colours (differentiable in ``probs`` and ``redacted``).

    Example:
        >>> image = torch.rand(1, 3, 8, 8)
        >>> fill = class_colour_fill(image, torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
        >>> torch.allclose(fill, image.mean(dim=(2, 3), keepdim=True).expand_as(image), atol=1e-5)
        True
    """
    size = (redacted.shape[-2], redacted.shape[-1])
    b, c = redacted.shape[:2]
    k = probs.shape[1]
    # Visible colour mass and visible weight of every class: B x K x C and B x K.
    weight = probs * keep  # B x K x H x W
    colour_sum = (probs.unsqueeze(2) * redacted.unsqueeze(1)).flatten(1, 2)  # B x KC x H x W
    img_w = weight.sum(dim=(-2, -1))  # B x K
    img_c = colour_sum.sum(dim=(-2, -1)).view(b, k, c)
    visible = keep.sum(dim=(-2, -1)).clamp_min(1e-6)  # B x 1
    mean_all = redacted.sum(dim=(-2, -1)) / visible  # B x C
    mu_img = (img_c + prior * mean_all[:, None]) / (img_w[..., None] + prior)  # B x K x C
    if tile is None:
        mu = mu_img[..., None, None]  # B x K x C x 1 x 1
    else:
        t_w = _tile_sum(weight, tile)  # B x K x h' x w'
        t_c = _tile_sum(colour_sum, tile).view(b, k, c, *t_w.shape[-2:])
        mu = (t_c + prior * mu_img[..., None, None]) / (t_w[:, :, None] + prior)
        mu = _untile(mu.flatten(1, 2), tile, size).view(b, k, c, *size)
    return (probs.unsqueeze(2) * mu).sum(dim=1)


@register_crm
class ZeroCRM(CRMBase):
    """CRM-0: fill redacted pixels with the class colours of the visible pixels; no weights.

    Args:
        cond_channels: channels of ``phi(C)``; the class probabilities are
            ``cond[:, class_channels]``.
        image_channels: image channels.
        scale: working resolution as a fraction of the input, in ``(0, 1]``.
        tile: side, in working-resolution pixels, of the tiles over which class
            colours are averaged (None: one colour per class and image).
        prior: shrinkage weight (pixels) towards the image-level class colour.
        class_channels: which conditioning channels are class probabilities
            (default: all); the others (e.g. a boundary map) are ignored.

    Example:
        >>> crm = ZeroCRM(cond_channels=3, tile=4)
        >>> keep = (torch.rand(2, 1, 16, 24) < 0.5).float()
        >>> cond = torch.softmax(torch.randn(2, 3, 16, 24), dim=1)
        >>> crm(torch.randn(2, 3, 16, 24) * keep, cond, keep).shape
        torch.Size([2, 3, 8, 12])
        >>> sum(p.numel() for p in crm.parameters())
        0
    """

    name = "zero"

    def __init__(
        self,
        cond_channels: int,
        image_channels: int = 3,
        scale: float = 0.5,
        tile: int | None = None,
        prior: float = 1.0,
        class_channels: slice | None = None,
    ) -> None:
        super().__init__(cond_channels, image_channels, scale, use_keep=True)
        self.tile = None if tile is None else _check_int(tile, "tile", 1)
        self.prior = check_in_range(prior, "prior", 0.0, float("inf"), low_inclusive=False)
        if class_channels is not None and not isinstance(class_channels, slice):
            raise ValueError(f"class_channels must be a slice or None, got {class_channels!r}")
        if not range(self.cond_channels)[class_channels or slice(None)]:
            raise ValueError(
                f"class_channels {class_channels!r} selects none of the "
                f"{self.cond_channels} conditioning channels"
            )
        self.class_channels = class_channels

    def forward(self, redacted: Tensor, cond: Tensor, keep: Tensor | None = None) -> Tensor:
        """Regenerate the image.

        Args:
            redacted: ``B x image_channels x H x W`` redacted image ``I_r`` (removed pixels 0).
            cond: ``B x cond_channels x H' x W'`` conditioning (resized to the working size).
            keep: ``B x 1 x H x W`` kept-pixel mask; required (CRM-0 fills redacted
                pixels from the visible ones, so it needs a spatial redaction).

        Returns:
            ``B x image_channels x h x w`` regenerated image, ``(h, w) = working_size(H, W)``.
        """
        if keep is None:
            raise ValueError(
                "the 'zero' CRM (CRM-0) needs a keep mask: use a spatial redaction "
                "('random', 'checkerboard', 'blocks'), not a spectral one"
            )
        _, cond_w, keep_w = self._prepare(redacted, cond, keep)
        # Area averaging (not the antialiased bilinear resize of _prepare) keeps the
        # colour mass and the kept fraction of every cell consistent: a bilinear kernel
        # leaks visible colour into fully redacted cells, inflating the class means.
        size = (keep_w.shape[-2], keep_w.shape[-1])
        redacted_w = F.interpolate(redacted, size=size, mode="area").to(keep_w.dtype)
        probs = cond_w[:, self.class_channels or slice(None)]
        fill = class_colour_fill(redacted_w, probs, keep_w, self.tile, self.prior)
        return redacted_w + (1.0 - keep_w) * fill

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tile={self.tile}, prior={self.prior}"
