"""Semantic segmentation metrics: confusion matrix, mIoU, pixel and class accuracy.

All scores here are **dataset-level**: pixels are pooled into one confusion
matrix over the whole dataset (as the torchvision references and mmseg do),
and IoU / accuracy are read off that matrix at the end. They are *not*
per-image averages.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dejavu._validation import check_image
from dejavu.metrics._per_class import PerClassMetric

__all__ = ["SegmentationMetrics", "confusion_matrix", "segmentation_scores"]


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    return num_classes


def _check_ignore_index(ignore_index: object) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    return ignore_index


def _labels_from(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Turn ``pred`` (labels or logits) into a label map shaped like ``target``."""
    if not isinstance(pred, Tensor):
        raise ValueError(f"pred must be a torch.Tensor, got {type(pred)!r}")
    if pred.is_floating_point():
        check_image(pred, "pred", channels=num_classes)
        if pred.shape[:1] + pred.shape[2:] != target.shape:
            raise ValueError(
                f"pred logits of shape {tuple(pred.shape)} (B x K x H x W) do not match "
                f"target of shape {tuple(target.shape)} (B x H x W)"
            )
        return pred.argmax(dim=1)
    if pred.dtype == torch.bool or pred.is_complex():
        raise ValueError(
            f"pred must hold integer labels or floating logits, got dtype {pred.dtype}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred labels of shape {tuple(pred.shape)} must match target of shape "
            f"{tuple(target.shape)}"
        )
    return pred


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255
) -> Tensor:
    """Pixel confusion matrix of a batch (rows = target class, columns = prediction).

    Pixels whose target equals ``ignore_index`` are left out. Summing the
    matrices of all batches gives the dataset-level matrix that
    :func:`segmentation_scores` reads.

    Args:
        pred: ``B x H x W`` integer labels, or ``B x K x H x W`` floating
            logits/probabilities (the arg-max over ``K`` is taken).
        target: ``B x H x W`` integer labels in ``[0, K)`` or ``ignore_index``.
        num_classes: ``K``.
        ignore_index: target label to exclude (None: exclude nothing).

    Returns:
        ``K x K`` int64 tensor; entry ``[i, j]`` counts pixels of class ``i``
        predicted as ``j``.

    Raises:
        ValueError: on shape/dtype mismatch, or when ``target`` (or ``pred`` at
            a counted pixel) holds a label outside ``[0, K)`` other than
            ``ignore_index``; the message lists the offending values.

    Example:
        >>> pred = torch.tensor([[[0, 1], [1, 1]]])
        >>> target = torch.tensor([[[0, 1], [0, 255]]])
        >>> confusion_matrix(pred, target, num_classes=2)
        tensor([[1, 1],
                [0, 1]])
    """
    num_classes = _check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index)
    if not isinstance(target, Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target)!r}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    labels = _labels_from(pred, target, num_classes)

    counted = (
        target != ignore_index
        if ignore_index is not None
        else torch.ones_like(target, dtype=torch.bool)
    )
    t = target[counted].long()
    p = labels[counted].long()
    for name, values in (("target", t), ("pred", p)):
        bad = (values < 0) | (values >= num_classes)
        if bool(bad.any()):
            offending = torch.unique(values[bad])[:10].tolist()
            allowed = f"[0, {num_classes - 1}]"
            if name == "target" and ignore_index is not None:
                allowed += f" or ignore_index={ignore_index}"
            raise ValueError(
                f"{name} holds labels outside the allowed range {allowed}: {offending}"
            )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(confmat: Tensor) -> dict[str, Tensor]:
    """Scores read off a (dataset-level) confusion matrix.

    A class with no pixels in either target or prediction (union 0) has an
    undefined IoU (NaN) and is left out of ``miou``; a class with no target
    pixels has an undefined accuracy (NaN) and is left out of ``macc``. All
    values are fractions in ``[0, 1]`` (multiply by 100 for the percentages
    the tables print).

    Args:
        confmat: ``K x K`` counts, rows = target class, columns = prediction.

    Returns:
        dict with float64 tensors: ``miou``, ``aacc`` (overall pixel
        accuracy), ``macc`` (mean per-class accuracy) as 0-d tensors, and
        ``iou_per_class``, ``acc_per_class`` of shape ``K``.

    Example:
        >>> cm = torch.tensor([[3, 1], [0, 2]])
        >>> s = segmentation_scores(cm)
        >>> [round(float(s[k]), 4) for k in ("miou", "aacc", "macc")]
        [0.7083, 0.8333, 0.875]
    """
    if not isinstance(confmat, Tensor) or confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        shape = tuple(confmat.shape) if isinstance(confmat, Tensor) else type(confmat)
        raise ValueError(f"confmat must be a square K x K tensor, got {shape}")
    cm = confmat.double()
    tp = cm.diagonal()
    gt_count = cm.sum(dim=1)
    union = gt_count + cm.sum(dim=0) - tp
    # 0 / 0 -> NaN marks the undefined classes that nanmean then skips (and an
    # all-NaN vector gives NaN: nothing was ever seen).
    iou = tp / union
    acc = tp / gt_count
    return {
        "miou": torch.nanmean(iou),
        "aacc": tp.sum() / cm.sum(),
        "macc": torch.nanmean(acc),
        "iou_per_class": iou,
        "acc_per_class": acc,
    }


class SegmentationMetrics(PerClassMetric):
    """mIoU, overall and mean class accuracy, pooled over the whole dataset.

    Accumulates one ``K x K`` confusion matrix (sum-reduced across DDP ranks)
    and reports :func:`segmentation_scores` of it: dataset-level, not a mean
    of per-image scores. Values are fractions in ``[0, 1]``.

    Args:
        num_classes: ``K``.
        ignore_index: target label excluded from the counts (default 255).

    Example:
        >>> m = SegmentationMetrics(num_classes=3)
        >>> m.update(torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)))
        >>> sorted(m.compute())
        ['aacc', 'acc_per_class', 'iou_per_class', 'macc', 'miou']
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(self, num_classes: int, ignore_index: int | None = 255, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.add_state(
            "confmat",
            torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` B x H x W labels or B x K x H x W logits, ``target`` B x H x W."""
        self.confmat += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Tensor]:
        """Scores of the accumulated confusion matrix (see :func:`segmentation_scores`)."""
        return segmentation_scores(self.confmat)
