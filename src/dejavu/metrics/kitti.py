"""KITTI depth metrics: the Eigen-split evaluation of the monocular-depth literature.

This is the evaluation that Eigen et al. (NIPS 2014) introduced for KITTI and
that the depth codebases (Monodepth2, BTS, AdaBins, ...) share, in their
``compute_errors`` form:

1. the prediction is capped to ``[min_depth, max_depth]`` (a NaN becomes
   ``min_depth``, ``+inf`` becomes ``max_depth``);
2. a pixel is valid when its target is finite and ``min_depth < target <
   max_depth`` (0 marks a pixel without LiDAR depth), it lies inside the
   chosen crop (Garg or Eigen, fractions of the image's height and width,
   see :data:`KITTI_CROPS`) and, when given, the extra ``valid`` mask is true;
3. every error is computed **per image** over that image's valid pixels, and
   the dataset's score is the **mean over images** (an image with no valid
   pixel is left out).

This is *not* how :mod:`dejavu.metrics.depth` pools (over all valid pixels of
the dataset): on KITTI, where the number of LiDAR points differs from frame
to frame, the two give different numbers, and published KITTI tables use
the per-image mean.

The crop is taken of the target's own ``H x W``: give full-size, unpadded
images (an evaluation batch of one image, or images of one size).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from dejavu._validation import check_in_range
from dejavu.metrics.depth import DEPTH_METRIC_NAMES, _check_inputs

__all__ = [
    "KITTI_CROPS",
    "KITTI_METRIC_NAMES",
    "KittiDepthMetrics",
    "kitti_crop_mask",
    "kitti_depth_errors",
]

KITTI_CROPS: dict[str, tuple[float, float, float, float]] = {
    # (top, bottom, left, right) as fractions of H, H, W, W; rows int(top * H):int(bottom * H).
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),  # Garg et al., ECCV 2016
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),  # Eigen et al., NIPS 2014
}
"""The standard evaluation crops (``top, bottom, left, right`` fractions of the image)."""

KITTI_METRIC_NAMES: tuple[str, ...] = DEPTH_METRIC_NAMES
"""The names :class:`KittiDepthMetrics` returns: those of :mod:`dejavu.metrics.depth`
(``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``delta1..3`` are the KITTI table's;
``abs_err`` and ``log10`` come along, also per image)."""

# Per-image terms, in the order _per_image returns them.
_TERMS: tuple[str, ...] = (
    "abs_err",
    "abs_rel",
    "sq_rel",
    "sq",
    "sq_log",
    "log10",
    "delta1",
    "delta2",
    "delta3",
)


def kitti_crop_mask(
    height: int, width: int, crop: str | None, device: torch.device | str | None = None
) -> Tensor:
    """The ``height x width`` bool mask of a KITTI evaluation crop.

    Rows ``int(top * H)`` to ``int(bottom * H)`` (exclusive) and columns
    ``int(left * W)`` to ``int(right * W)``, with the fractions of
    :data:`KITTI_CROPS`, truncated as the reference code does. ``crop=None``
    keeps every pixel.

    Example:
        >>> m = kitti_crop_mask(375, 1242, "garg")
        >>> m.nonzero()[0].tolist(), m.nonzero()[-1].tolist()
        ([153, 44], [370, 1196])
    """
    if crop is None:
        return torch.ones(height, width, dtype=torch.bool, device=device)
    top, bottom, left, right = KITTI_CROPS[_check_crop(crop)]
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    return mask


def _check_crop(crop: object) -> str:
    if not isinstance(crop, str) or crop not in KITTI_CROPS:
        allowed = ", ".join(map(repr, KITTI_CROPS))
        raise ValueError(f"unknown crop {crop!r}; allowed: {allowed} or None (no crop)")
    return crop


def _check_options(
    crop: str | None, min_depth: float, max_depth: float | None
) -> tuple[str | None, float, float]:
    if crop is not None:
        _check_crop(crop)
    lo = check_in_range(min_depth, "min_depth", 0.0, math.inf, low_inclusive=False)
    if max_depth is None:
        return crop, lo, math.inf
    hi = check_in_range(max_depth, "max_depth", lo, math.inf, low_inclusive=False)
    return crop, lo, hi


def _per_image(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None,
    crop: str | None,
    min_depth: float,
    max_depth: float,
) -> tuple[Tensor, Tensor]:
    """``(n, terms)``: each image's valid-pixel count ``(B,)`` and float64 sums ``(B, 9)``."""
    mask = _check_inputs(pred, target, valid)  # finite target > 0, and `valid`
    h, w = target.shape[-2:]
    mask = mask & (target > min_depth) & (target < max_depth)
    mask = mask & kitti_crop_mask(h, w, crop, device=target.device)
    dtype = torch.promote_types(pred.dtype, torch.float32)
    p = pred.to(dtype).nan_to_num(nan=min_depth, posinf=max_depth, neginf=min_depth)
    p = p.clamp(min_depth, max_depth)
    t = torch.where(mask, target.to(dtype), torch.ones((), dtype=dtype, device=target.device))
    diff = p - t
    log_diff = torch.log(p) - torch.log(t)
    ratio = torch.maximum(p / t, t / p)
    per_pixel = (
        diff.abs(),
        diff.abs() / t,
        diff.square() / t,
        diff.square(),
        log_diff.square(),
        log_diff.abs() / math.log(10.0),
        (ratio < 1.25).to(dtype),
        (ratio < 1.25**2).to(dtype),
        (ratio < 1.25**3).to(dtype),
    )
    f64 = torch.float64
    zero = torch.zeros((), dtype=dtype, device=p.device)
    sums = torch.stack(
        [torch.where(mask, x, zero).sum(dim=(1, 2, 3), dtype=f64) for x in per_pixel], dim=1
    )
    return mask.sum(dim=(1, 2, 3)).to(f64), sums


def _from_means(means: Tensor) -> Tensor:
    """Per-image means of the terms ``(..., 9)`` -> the metrics, in KITTI_METRIC_NAMES order."""
    abs_err, abs_rel, sq_rel, sq, sq_log, log10, d1, d2, d3 = means.unbind(-1)
    return torch.stack(
        [abs_err, abs_rel, sq_rel, sq.sqrt(), sq_log.sqrt(), log10, d1, d2, d3], dim=-1
    )


def kitti_depth_errors(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    *,
    crop: str | None = "garg",
    min_depth: float = 1e-3,
    max_depth: float | None = 80.0,
) -> dict[str, Tensor]:
    """KITTI depth errors of each image of a batch (see the module docs for the protocol).

    With ``d`` the capped prediction, ``g`` the target and the mean over one
    image's valid pixels: ``abs_rel`` = mean |d - g| / g, ``sq_rel`` = mean
    (d - g)^2 / g, ``rmse`` = sqrt(mean (d - g)^2), ``rmse_log`` =
    sqrt(mean (ln d - ln g)^2), ``delta{k}`` = fraction with max(d / g, g / d)
    < 1.25^k; also ``abs_err`` = mean |d - g| and ``log10`` = mean
    |log10 d - log10 g|.

    Args:
        pred: ``B x 1 x H x W`` predicted depth in metres.
        target: ``B x 1 x H x W`` target depth in metres, 0 (or non-finite) = no depth.
        valid: optional ``B x 1 x H x W`` bool mask, and-ed with the rules above.
        crop: ``"garg"``, ``"eigen"`` or None (no crop), taken of ``H x W``.
        min_depth: targets ``<= min_depth`` are invalid; predictions are capped
            below at it (must be > 0).
        max_depth: targets ``>= max_depth`` are invalid; predictions are capped
            above at it; None: no cap.

    Returns:
        dict of float64 ``(B,)`` tensors, keys :data:`KITTI_METRIC_NAMES`; an
        image without a valid pixel has NaN everywhere. Their mean over images
        (leaving NaN out) is the dataset score (:class:`KittiDepthMetrics`).

    Example:
        >>> pred = torch.tensor([[2.0, 4.0], [90.0, 1.0]]).view(1, 1, 2, 2)
        >>> target = torch.tensor([[2.0, 5.0], [0.0, 100.0]]).view(1, 1, 2, 2)
        >>> [round(v, 6) for v in kitti_depth_errors(pred, target, crop=None)["abs_rel"].tolist()]
        [0.1]
    """
    crop, lo, hi = _check_options(crop, min_depth, max_depth)
    n, sums = _per_image(pred, target, valid, crop, lo, hi)
    values = _from_means(sums / n.unsqueeze(1))  # 0 / 0 = NaN for an image without depth
    return dict(zip(KITTI_METRIC_NAMES, values.unbind(1), strict=True))


class KittiDepthMetrics(Metric):
    """KITTI depth errors, per image, averaged over images (DDP-synced).

    Accumulates, in float64, the sum over images of each per-image score and
    the number of images that have at least one valid pixel (all
    sum-reduced across ranks); :meth:`compute` divides once. The result
    equals the NaN-skipping mean of :func:`kitti_depth_errors` over all the
    images seen, whatever the batching.

    Args:
        crop: ``"garg"`` (default), ``"eigen"`` or None: the evaluation crop.
        min_depth: lower depth bound (metres, > 0), 1e-3 by default.
        max_depth: upper depth bound (metres), 80 by default; None: none.

    Example:
        >>> m = KittiDepthMetrics(crop=None)
        >>> target = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2)
        >>> m.update(target * 1.1, target)
        >>> m.update(torch.full((1, 1, 1, 2), 3.0), torch.tensor([3.0, 0.0]).view(1, 1, 1, 2))
        >>> round(float(m.compute()["abs_rel"]), 6)  # (0.1 + 0.0) / 2 images
        0.05
    """

    is_differentiable = False
    higher_is_better = None  # mixed: errors go down, delta goes up
    full_state_update = False
    images: Tensor
    sums: Tensor

    def __init__(
        self,
        crop: str | None = "garg",
        min_depth: float = 1e-3,
        max_depth: float | None = 80.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.crop, self.min_depth, self.max_depth = _check_options(crop, min_depth, max_depth)
        self.add_state("images", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "sums", torch.zeros(len(KITTI_METRIC_NAMES), dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add a batch: ``pred``, ``target`` (and ``valid``) all ``B x 1 x H x W``."""
        n, sums = _per_image(pred, target, valid, self.crop, self.min_depth, self.max_depth)
        has = n > 0
        per_image = _from_means(sums[has] / n[has].unsqueeze(1))
        self.images = self.images + has.sum().to(torch.float64)
        self.sums = self.sums + per_image.sum(dim=0)

    def compute(self) -> dict[str, Tensor]:
        """Mean over images of each score (keys :data:`KITTI_METRIC_NAMES`; NaN if none)."""
        means = self.sums / self.images
        return dict(zip(KITTI_METRIC_NAMES, means.unbind(), strict=True))
