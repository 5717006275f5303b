"""Structural similarity (SSIM) with a Gaussian window, as a differentiable map.

The regeneration loss ``l1+ssim`` needs SSIM *per pixel* so that it can be
weighted by the redaction mask. torchmetrics' ``structural_similarity_index_measure``
can return the full map, but it derives the window size from ``sigma``
(ignoring ``kernel_size`` for Gaussian windows) and the core of this library
depends on torch only, so SSIM is computed here with a separable Gaussian
convolution. With the same settings it matches torchmetrics' value (the tests
check this): the inputs are reflect-padded by ``window_size // 2`` so the map
has the input's size, and the variances are clamped at 0.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image, check_in_range

__all__ = ["SSIM", "gaussian_window", "ssim"]

_REDUCTIONS = ("mean", "none")


def gaussian_window(
    window_size: int, sigma: float, *, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """Return a normalised 1-D Gaussian window of odd length ``window_size``.

    Args:
        window_size: odd, positive number of taps.
        sigma: standard deviation in pixels (> 0).
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        Tensor of shape ``(window_size,)`` summing to 1.

    Example:
        >>> w = gaussian_window(5, 1.0)
        >>> w.shape, round(float(w.sum()), 6)
        (torch.Size([5]), 1.0)
    """
    _check_window(window_size, sigma)
    dist = torch.arange(window_size, dtype=dtype, device=device) - (window_size - 1) / 2
    g = torch.exp(-0.5 * (dist / sigma) ** 2)
    return g / g.sum()


def _check_window(window_size: int, sigma: float) -> None:
    if isinstance(window_size, bool) or not isinstance(window_size, int):
        raise ValueError(f"window_size must be an odd positive int, got {window_size!r}")
    if window_size <= 0 or window_size % 2 == 0:
        raise ValueError(f"window_size must be an odd positive int, got {window_size!r}")
    check_in_range(sigma, "sigma", 0.0, float("inf"), low_inclusive=False, high_inclusive=False)


def ssim(
    x: Tensor,
    y: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float | None = None,
    reduction: Literal["mean", "none"] = "mean",
    *,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    r"""Structural similarity of two image batches, per channel, with a Gaussian window.

    ``SSIM = (2 mu_x mu_y + c1)(2 sigma_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(sigma_x^2 +
    sigma_y^2 + c2))`` with ``c1 = (k1 L)^2``, ``c2 = (k2 L)^2`` and ``L`` the data range.
    Local statistics use a separable Gaussian window over reflect-padded
    inputs (pad ``window_size // 2``), so the map has the input's spatial size.
    It is computed in float32 (float64 inputs stay float64) with autocast
    disabled, because ``E[x^2] - E[x]^2`` cancels catastrophically in half
    precision; the result has that computation dtype.

    Args:
        x: ``B x C x H x W`` floating tensor.
        y: tensor of the same shape as ``x``.
        window_size: odd Gaussian window length (taps).
        sigma: Gaussian standard deviation in pixels.
        data_range: dynamic range ``L`` of the data. ``None`` uses
            ``max(x.max() - x.min(), y.max() - y.min())`` over the batch
            (as torchmetrics does), detached from the graph.
        reduction: ``"mean"`` for a scalar (mean over every element of the map),
            ``"none"`` for the ``B x C x H x W`` map (usable for weighting).
        k1: SSIM luminance constant.
        k2: SSIM contrast constant.

    Returns:
        Scalar tensor (``"mean"``) or ``B x C x H x W`` map (``"none"``), values in ``[-1, 1]``.

    Raises:
        ValueError: on non-image inputs, mismatched shapes, an even or
            non-positive window, ``sigma <= 0``, ``data_range <= 0``, an
            unknown reduction, or an image not larger than ``window_size // 2``
            in each spatial dimension (reflect padding needs that).

    Example:
        >>> x = torch.rand(2, 3, 16, 24)
        >>> round(float(ssim(x, x)), 4)
        1.0
        >>> ssim(x, torch.rand(2, 3, 16, 24), reduction="none").shape
        torch.Size([2, 3, 16, 24])
    """
    check_image(x, "x")
    check_image(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    _check_window(window_size, sigma)
    check_choice(reduction, "reduction", _REDUCTIONS)
    pad = window_size // 2
    H, W = x.shape[-2:]
    if pad >= H or pad >= W:
        raise ValueError(
            f"images must be larger than window_size // 2 = {pad} in both spatial dimensions "
            f"(reflect padding), got H x W = {H} x {W}; use a smaller window_size"
        )

    if data_range is not None:
        data_range = check_in_range(
            data_range, "data_range", 0.0, float("inf"), low_inclusive=False
        )
    smap = _ssim_map(x, y, window_size, sigma, data_range, k1, k2)
    return smap.mean() if reduction == "mean" else smap


def _ssim_map(
    x: Tensor,
    y: Tensor,
    window_size: int,
    sigma: float,
    data_range: float | Tensor | None,
    k1: float,
    k2: float,
) -> Tensor:
    """Unchecked SSIM map; ``data_range`` may be a 0-d tensor (avoids a host sync)."""
    pad = window_size // 2
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        y = y.to(dtype)
        L: float | Tensor
        if data_range is None:
            with torch.no_grad():
                L = torch.maximum(x.max() - x.min(), y.max() - y.min())
        else:
            L = data_range
        c1 = (k1 * L) ** 2
        c2 = (k2 * L) ** 2

        C = x.shape[1]
        g = gaussian_window(window_size, sigma, dtype=dtype, device=x.device)
        g_h = g.view(1, 1, -1, 1).expand(C, 1, -1, 1)
        g_w = g.view(1, 1, 1, -1).expand(C, 1, 1, -1)
        # One conv pass over the five moments stacked along the batch.
        stack = torch.cat((x, y, x * x, y * y, x * y))
        stack = F.pad(stack, (pad, pad, pad, pad), mode="reflect")
        stats = F.conv2d(F.conv2d(stack, g_h, groups=C), g_w, groups=C)
        mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(x.shape[0])

        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        var_x = (e_xx - mu_xx).clamp_min(0.0)
        var_y = (e_yy - mu_yy).clamp_min(0.0)
        cov = e_xy - mu_xy
        return ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


class SSIM(nn.Module):
    """Module form of :func:`ssim`.

    Args:
        window_size: odd Gaussian window length.
        sigma: Gaussian standard deviation in pixels.
        data_range: dynamic range of the data (``None``: from the inputs).
        reduction: ``"mean"`` or ``"none"``.

    Example:
        >>> m = SSIM(reduction="none")
        >>> m(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        data_range: float | None = None,
        reduction: Literal["mean", "none"] = "mean",
    ) -> None:
        super().__init__()
        _check_window(window_size, sigma)
        check_choice(reduction, "reduction", _REDUCTIONS)
        if data_range is not None:
            check_in_range(data_range, "data_range", 0.0, float("inf"), low_inclusive=False)
        self.window_size = window_size
        self.sigma = float(sigma)
        self.data_range = data_range
        self.reduction = reduction

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Compute SSIM of ``x`` and ``y`` (``B x C x H x W`` each)."""
        return ssim(x, y, self.window_size, self.sigma, self.data_range, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"window_size={self.window_size}, sigma={self.sigma}, "
            f"data_range={self.data_range}, reduction={self.reduction!r}"
        )
