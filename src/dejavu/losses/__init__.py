"""Regeneration losses of DejaVu (docs/method.md section 4): l1, l2, charbonnier, l1+ssim.

Example:
    >>> import torch
    >>> from dejavu.losses import RegenerationLoss
    >>> loss = RegenerationLoss("l1+ssim", redacted_weight=2.0)
    >>> pred, target = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
    >>> loss(pred, target, keep=torch.ones(2, 1, 16, 24)).ndim
    0
"""

from __future__ import annotations

from dejavu.losses.regeneration import REGEN_LOSSES, RegenerationLoss, regeneration_loss
from dejavu.losses.ssim import SSIM, gaussian_window, ssim

__all__ = [
    "REGEN_LOSSES",
    "SSIM",
    "RegenerationLoss",
    "gaussian_window",
    "regeneration_loss",
    "ssim",
]
