"""Per-task supervised losses (the ``L_task`` of the DejaVu objective)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["depth_l1_loss", "normals_cosine_loss", "segmentation_ce_loss"]


def segmentation_ce_loss(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Pixel-wise cross-entropy that skips ``ignore_index``.

    Args:
        logits: B x K x H x W.
        target: B x H x W int64 in ``[0, K)`` or ``ignore_index``.

    Returns:
        Scalar mean over the non-ignored pixels (0 if there are none).

    Example:
        >>> segmentation_ce_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
        tensor(0.6931)
    """
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"segmentation loss needs logits B x K x H x W and target B x H x W of the same H x W, "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index)


def depth_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between predicted and true depth over valid pixels (``target > 0``).

    Args:
        pred: B x 1 x H x W predicted depth (metres).
        target: B x 1 x H x W true depth, 0 where invalid.

    Example:
        >>> depth_l1_loss(torch.ones(1, 1, 2, 2), torch.tensor([[[[2.0, 0.0], [1.0, 1.0]]]]))
        tensor(0.3333)
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"depth loss needs pred and target of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    valid = (target > 0) & torch.isfinite(target)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return (pred.float() - target.float()).abs()[valid].mean()


def normals_cosine_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 - cos`` between predicted and true normals over valid pixels.

    Valid pixels are those whose target vector is non-zero.

    Args:
        pred: B x 3 x H x W (normalised here).
        target: B x 3 x H x W unit vectors, all-zero where invalid.

    Example:
        >>> t = torch.zeros(1, 3, 1, 2); t[:, 2] = 1.0
        >>> normals_cosine_loss(t.clone(), t)
        tensor(0.)
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"normals loss needs pred and target B x 3 x H x W, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    valid = target.abs().sum(dim=1) > 0
    if not bool(valid.any()):
        return pred.sum() * 0.0
    cos = F.cosine_similarity(pred.float(), target.float(), dim=1, eps=1e-6)
    return (1.0 - cos)[valid].mean()
