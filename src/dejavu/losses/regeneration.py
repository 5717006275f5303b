"""The DejaVu regeneration loss ``L_regen = mean(w * l(I_hat - I))`` (docs/method.md section 4).

Definitions (this project's; the paper gives no formula):

- ``d = pred - target``, per element of ``B x C x H x W``.
- ``l1``: ``|d|``; ``l2``: ``d^2``; ``charbonnier``: ``sqrt(d^2 + eps^2)``;
  ``l1+ssim``: ``(1 - a) |d| + a * clamp((1 - SSIM) / 2, 0, 1)`` with
  ``a = ssim_weight`` and the per-pixel, per-channel SSIM map of
  :func:`dejavu.losses.ssim.ssim` (the monodepth-style mix, here with a
  Gaussian window).
- ``gradient``: ``|dx(d)| + |dy(d)|``, the L1 distance between the image
  gradients (forward differences; 0 in the last column/row), so only edges
  count: a regenerator whose regions are flat is rewarded when its region
  boundaries sit on the image's edges.
- ``w = kept_weight * keep + redacted_weight * (1 - keep)`` (``w = 1`` when
  ``keep`` is None), broadcast over channels.
- The result is ``sum(w * l) / (B * C * H * W)``: the weighted sum normalised
  by the number of elements (not by ``sum(w)``), so with ``keep=None`` or
  unit weights it is the plain mean, and weights scale the loss linearly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image, check_in_range
from dejavu.losses.ssim import _ssim_map

__all__ = ["REGEN_LOSSES", "RegenerationLoss", "regeneration_loss"]

REGEN_LOSSES: tuple[str, ...] = ("l1", "l2", "charbonnier", "l1+ssim", "gradient")

RegenLossKind = Literal["l1", "l2", "charbonnier", "l1+ssim", "gradient"]

_INF = float("inf")
# SSIM window of the l1+ssim loss (the standard Wang et al. setting).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def _check_ssim_size(pred: Tensor) -> None:
    pad = _SSIM_WINDOW // 2
    if min(pred.shape[-2:]) <= pad:
        raise ValueError(
            f"kind 'l1+ssim' needs images larger than {pad} pixels in both spatial dimensions "
            f"(SSIM window {_SSIM_WINDOW}), got pred of shape {tuple(pred.shape)}"
        )


def _check_params(
    kind: str, redacted_weight: float, kept_weight: float, eps: float, ssim_weight: float
) -> None:
    check_choice(kind, "kind", REGEN_LOSSES)
    check_in_range(redacted_weight, "redacted_weight", 0.0, _INF, high_inclusive=False)
    check_in_range(kept_weight, "kept_weight", 0.0, _INF, high_inclusive=False)
    check_in_range(eps, "eps", 0.0, _INF, low_inclusive=False, high_inclusive=False)
    check_in_range(ssim_weight, "ssim_weight", 0.0, 1.0)


def _prepare_keep(keep: object, pred: Tensor) -> Tensor:
    """Return ``keep`` as a float ``B x (1|C) x H x W`` tensor at ``pred``'s size."""
    if not isinstance(keep, Tensor):
        raise ValueError(f"keep must be a tensor (B x 1 x H x W) or None, got {type(keep)!r}")
    if keep.ndim == 3:
        keep = keep.unsqueeze(1)
    B, C = pred.shape[:2]
    if keep.ndim != 4 or keep.shape[0] != B or keep.shape[1] not in (1, C):
        raise ValueError(
            f"keep must have shape B x 1 x H' x W' (or B x {C} x H' x W') with B = {B}, "
            f"got {tuple(keep.shape)}"
        )
    keep = keep.to(dtype=pred.dtype)
    if keep.shape[-2:] != pred.shape[-2:]:
        # Area resizing turns a full-resolution binary mask into the kept
        # fraction of each low-resolution pixel, which is the right weight.
        keep = F.interpolate(keep, size=tuple(pred.shape[-2:]), mode="area")
    return keep


def regeneration_loss(
    pred: Tensor,
    target: Tensor,
    kind: RegenLossKind = "l1",
    keep: Tensor | None = None,
    redacted_weight: float = 1.0,
    kept_weight: float = 1.0,
    eps: float = 1e-3,
    ssim_weight: float = 0.85,
    *,
    ssim_data_range: float | None = None,
) -> Tensor:
    """Weighted regeneration loss between a regenerated image and the original.

    See the module docstring for the exact definition. Computed in float32
    (float64 stays float64) with autocast disabled.

    Args:
        pred: regenerated image ``I_hat``, ``B x C x H x W``.
        target: original image ``I``, same shape as ``pred``.
        kind: one of :data:`REGEN_LOSSES`.
        keep: kept-pixel mask ``B x 1 x H' x W'`` (1 = kept, 0 = redacted;
            ``B x H' x W'`` and ``B x C x H' x W'`` are accepted too), or None.
            A mask at another resolution is resized to ``H x W`` with area
            interpolation.
        redacted_weight: weight of redacted pixels (``keep = 0``), >= 0.
        kept_weight: weight of kept pixels (``keep = 1``), >= 0.
        eps: Charbonnier smoothing constant (> 0).
        ssim_weight: weight ``a`` of the SSIM term in ``l1+ssim``, in ``[0, 1]``.
        ssim_data_range: data range for SSIM; ``None`` uses the target's range
            (``target.max() - target.min()`` over the batch, detached), so a
            badly scaled prediction cannot inflate the SSIM constants.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: on non-image inputs, ``pred``/``target`` shape mismatch,
            an unknown ``kind``, negative weights, ``eps <= 0``, or a ``keep``
            of the wrong shape.

    Example:
        >>> pred, target = torch.zeros(2, 3, 16, 24), torch.ones(2, 3, 16, 24)
        >>> float(regeneration_loss(pred, target, "l2"))
        1.0
        >>> keep = torch.zeros(2, 1, 16, 24)
        >>> float(regeneration_loss(pred, target, "l1", keep, redacted_weight=2.0))
        2.0
    """
    check_image(pred, "pred")
    check_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    _check_params(kind, redacted_weight, kept_weight, eps, ssim_weight)
    if ssim_data_range is not None:
        check_in_range(ssim_data_range, "ssim_data_range", 0.0, _INF, low_inclusive=False)

    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred = pred.to(dtype)
        target = target.to(dtype)
        d = pred - target
        if kind == "l1":
            per_elem = d.abs()
        elif kind == "l2":
            per_elem = d.square()
        elif kind == "charbonnier":
            per_elem = torch.sqrt(d.square() + eps * eps)
        elif kind == "gradient":
            dx = F.pad((d[..., :, 1:] - d[..., :, :-1]).abs(), (0, 1))
            dy = F.pad((d[..., 1:, :] - d[..., :-1, :]).abs(), (0, 0, 0, 1))
            per_elem = dx + dy
        else:  # "l1+ssim"
            _check_ssim_size(pred)
            L: float | Tensor
            if ssim_data_range is None:
                with torch.no_grad():
                    # Kept as a tensor (no host sync). A constant target has
                    # zero range; fall back to 1 so the SSIM constants stay > 0.
                    rng = target.max() - target.min()
                    L = torch.where(rng > 0, rng, torch.ones_like(rng))
            else:
                L = float(ssim_data_range)
            smap = _ssim_map(pred, target, _SSIM_WINDOW, _SSIM_SIGMA, L, 0.01, 0.03)
            dssim = ((1.0 - smap) / 2).clamp(0.0, 1.0)
            per_elem = (1.0 - ssim_weight) * d.abs() + ssim_weight * dssim

        if keep is None:
            return per_elem.mean()
        k = _prepare_keep(keep, pred)
        w = kept_weight * k + redacted_weight * (1.0 - k)
        # Normalised by the element count, not by sum(w): see the module docstring.
        return (w * per_elem).mean()


class RegenerationLoss(nn.Module):
    """Module form of :func:`regeneration_loss` with the options fixed at construction.

    Args:
        kind: one of :data:`REGEN_LOSSES`.
        redacted_weight: weight of redacted pixels (>= 0).
        kept_weight: weight of kept pixels (>= 0).
        eps: Charbonnier smoothing constant (> 0).
        ssim_weight: weight of the SSIM term for ``l1+ssim`` (in ``[0, 1]``).
        ssim_data_range: SSIM data range (``None``: the target's range).

    Example:
        >>> loss = RegenerationLoss("charbonnier", redacted_weight=2.0)
        >>> pred, target = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
        >>> keep = (torch.rand(2, 1, 16, 24) > 0.5).float()
        >>> loss(pred, target, keep).shape
        torch.Size([])
    """

    def __init__(
        self,
        kind: RegenLossKind = "l1",
        redacted_weight: float = 1.0,
        kept_weight: float = 1.0,
        eps: float = 1e-3,
        ssim_weight: float = 0.85,
        *,
        ssim_data_range: float | None = None,
    ) -> None:
        super().__init__()
        _check_params(kind, redacted_weight, kept_weight, eps, ssim_weight)
        if ssim_data_range is not None:
            check_in_range(ssim_data_range, "ssim_data_range", 0.0, _INF, low_inclusive=False)
        self.kind = kind
        self.redacted_weight = float(redacted_weight)
        self.kept_weight = float(kept_weight)
        self.eps = float(eps)
        self.ssim_weight = float(ssim_weight)
        self.ssim_data_range = ssim_data_range

    def forward(self, pred: Tensor, target: Tensor, keep: Tensor | None = None) -> Tensor:
        """Return the scalar loss; shapes as in :func:`regeneration_loss`."""
        return regeneration_loss(
            pred,
            target,
            self.kind,
            keep,
            self.redacted_weight,
            self.kept_weight,
            self.eps,
            self.ssim_weight,
            ssim_data_range=self.ssim_data_range,
        )

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, redacted_weight={self.redacted_weight}, "
            f"kept_weight={self.kept_weight}, eps={self.eps}, ssim_weight={self.ssim_weight}"
        )
