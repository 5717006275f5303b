"""Monocular depth metrics (aErr of the NYUD multi-task tables, AbsRel, RMSE, delta).

Every metric here **pools over all valid pixels of the dataset**: sums and
counts are accumulated across batches and divided once at the end (so
``rmse = sqrt(sum sq err / n_valid_pixels)``), as the NYUD-v2 multi-task
codebases (MTI-Net, ATRC, Vandenhende et al.'s toolbox) do. This is *not* the
mean of per-image scores, which weights small-valid-area images up.

A pixel is valid when its target depth is finite and ``> 0`` (0 marks missing
depth) and, if given, the extra ``valid`` mask is true there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from dejavu._validation import check_image, check_in_range

__all__ = ["DEPTH_METRIC_NAMES", "DepthMetrics", "depth_errors"]

DEPTH_METRIC_NAMES: tuple[str, ...] = (
    "abs_err",
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "delta1",
    "delta2",
    "delta3",
)

# Accumulated sums, in the order _depth_sums returns them.
_SUM_NAMES: tuple[str, ...] = (
    "n",
    "abs",
    "abs_rel",
    "sq_rel",
    "sq",
    "sq_log",
    "abs_log10",
    "delta1",
    "delta2",
    "delta3",
)


def _check_inputs(pred: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    """Validate shapes and return the boolean mask of valid pixels."""
    check_image(pred, "pred", channels=1)
    check_image(target, "target", channels=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred of shape {tuple(pred.shape)} must match target of shape {tuple(target.shape)}"
        )
    mask = torch.isfinite(target) & (target > 0)
    if valid is not None:
        if not isinstance(valid, Tensor) or valid.dtype != torch.bool:
            got = valid.dtype if isinstance(valid, Tensor) else type(valid)
            raise ValueError(f"valid must be a bool tensor, got {got}")
        if valid.shape != target.shape:
            raise ValueError(
                f"valid of shape {tuple(valid.shape)} must match target of shape "
                f"{tuple(target.shape)}"
            )
        mask = mask & valid
    return mask


def _depth_sums(pred: Tensor, target: Tensor, mask: Tensor, eps: float) -> Tensor:
    """Float64 vector of the sums in ``_SUM_NAMES`` over the masked pixels."""
    # Per-pixel terms in (at least) float32, sums in float64: a dataset holds
    # ~1e8 pixels and float32 accumulation would lose digits.
    dtype = torch.promote_types(pred.dtype, torch.float32)
    p = pred[mask].to(dtype)
    t = target[mask].to(dtype)
    diff = p - t
    # A non-positive prediction has no log or ratio; clamp it (only there) to
    # eps, so it counts as a very bad but finite error, as the NYUD toolboxes do.
    p_pos = p.clamp_min(eps)
    log_diff = torch.log(p_pos) - torch.log(t)
    ratio = torch.maximum(p_pos / t, t / p_pos)
    f64 = torch.float64
    return torch.stack(
        [
            torch.tensor(float(p.numel()), dtype=f64, device=p.device),
            diff.abs().sum(dtype=f64),
            (diff.abs() / t).sum(dtype=f64),
            (diff.square() / t).sum(dtype=f64),
            diff.square().sum(dtype=f64),
            log_diff.square().sum(dtype=f64),
            log_diff.abs().sum(dtype=f64) / math.log(10.0),
            (ratio < 1.25).sum().to(f64),
            (ratio < 1.25**2).sum().to(f64),
            (ratio < 1.25**3).sum().to(f64),
        ]
    )


def _depth_from_sums(sums: Tensor) -> dict[str, Tensor]:
    n, s_abs, s_rel, s_sqrel, s_sq, s_sqlog, s_log10, d1, d2, d3 = sums.unbind()
    # n == 0 gives 0 / 0 = NaN everywhere: no valid pixel, no score.
    return {
        "abs_err": s_abs / n,
        "abs_rel": s_rel / n,
        "sq_rel": s_sqrel / n,
        "rmse": torch.sqrt(s_sq / n),
        "rmse_log": torch.sqrt(s_sqlog / n),
        "log10": s_log10 / n,
        "delta1": d1 / n,
        "delta2": d2 / n,
        "delta3": d3 / n,
    }


def depth_errors(
    pred: Tensor, target: Tensor, valid: Tensor | None = None, eps: float = 1e-9
) -> dict[str, Tensor]:
    """Depth errors of a batch, pooled over all its valid pixels.

    With ``d`` the prediction, ``g`` the target and the mean taken over the
    valid pixels of the whole batch (not per image):

    - ``abs_err`` = mean |d - g| (metres; "aErr" in the NYUD multi-task tables)
    - ``abs_rel`` = mean |d - g| / g, ``sq_rel`` = mean (d - g)^2 / g
    - ``rmse`` = sqrt(mean (d - g)^2), ``rmse_log`` = sqrt(mean (ln d - ln g)^2)
    - ``log10`` = mean |log10 d - log10 g|
    - ``delta{k}`` = fraction of pixels with max(d / g, g / d) < 1.25^k, k = 1, 2, 3

    A prediction ``<= 0`` at a valid pixel is clamped to ``eps`` for the
    log and ratio terms only (``rmse_log``, ``log10``, ``delta``); the linear
    terms use it as is. With no valid pixel every value is NaN.

    Args:
        pred: ``B x 1 x H x W`` predicted depth in metres.
        target: ``B x 1 x H x W`` target depth in metres, 0 (or non-finite) = invalid.
        valid: optional ``B x 1 x H x W`` bool mask, and-ed with ``target > 0``.
        eps: floor for non-positive predictions in the log/ratio terms.

    Returns:
        dict of float64 0-d tensors, keys :data:`DEPTH_METRIC_NAMES`.

    Example:
        >>> pred = torch.tensor([1.0, 2.0, 5.0]).view(1, 1, 1, 3)
        >>> target = torch.tensor([1.0, 2.5, 0.0]).view(1, 1, 1, 3)
        >>> float(depth_errors(pred, target)["abs_err"])
        0.25
    """
    eps = check_in_range(eps, "eps", 0.0, 1.0, low_inclusive=False)
    mask = _check_inputs(pred, target, valid)
    return _depth_from_sums(_depth_sums(pred, target, mask, eps))


class DepthMetrics(Metric):
    """Depth errors pooled over all valid pixels of the dataset (DDP-synced).

    Accumulates float64 sums of the per-pixel terms and the valid-pixel count
    (sum-reduced across ranks) and divides once in :meth:`compute`, so the
    result equals :func:`depth_errors` on the concatenation of all batches.
    See :func:`depth_errors` for the definitions and the validity rule.

    Args:
        eps: floor for non-positive predictions in the log/ratio terms.

    Example:
        >>> m = DepthMetrics()
        >>> m.update(torch.rand(2, 1, 4, 4) + 0.5, torch.rand(2, 1, 4, 4) + 0.5)
        >>> sorted(m.compute()) == sorted(DEPTH_METRIC_NAMES)
        True
    """

    is_differentiable = False
    higher_is_better = None  # mixed: errors go down, delta goes up
    full_state_update = False

    def __init__(self, eps: float = 1e-9, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.eps = check_in_range(eps, "eps", 0.0, 1.0, low_inclusive=False)
        for name in _SUM_NAMES:
            self.add_state(
                f"sum_{name}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add a batch: ``pred``, ``target`` (and ``valid``) all B x 1 x H x W."""
        mask = _check_inputs(pred, target, valid)
        sums = _depth_sums(pred, target, mask, self.eps)
        for name, value in zip(_SUM_NAMES, sums.unbind(), strict=True):
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + value)

    def compute(self) -> dict[str, Tensor]:
        """Pooled depth errors (keys :data:`DEPTH_METRIC_NAMES`)."""
        return _depth_from_sums(torch.stack([getattr(self, f"sum_{n}") for n in _SUM_NAMES]))
