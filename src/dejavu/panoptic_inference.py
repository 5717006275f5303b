"""Mask2Former's inference: query outputs to a panoptic map or a semantic map.

A mask-classification network (:mod:`dejavu.mask_classification`) predicts
``Q`` queries: class logits ``B x Q x (K + 1)`` (last: no object) and mask
logits ``B x Q x h x w``. The masks are first resized to the output size
(bilinear) and passed through the sigmoid, ``m_q``; ``p_q`` is the softmax of
the class logits.

**Panoptic** (:func:`panoptic_inference`), Mask2Former's ``panoptic_inference``
(Cheng et al. 2022, the reference detectron2 code), per image:

1. each query's class and score are the argmax and max of ``p_q`` over all
   ``K + 1`` entries; a query is kept when its class is not "no object" and
   its score is ``> threshold`` (Mask2Former's ``object_mask_threshold``, 0.8);
2. each pixel goes to the kept query with the largest ``score_q * m_q``
   (ties to the lower query index);
3. in query order, query ``q``'s segment is its pixels where also
   ``m_q >= mask_threshold`` (0.5); it is dropped when it is empty, when
   ``m_q >= mask_threshold`` nowhere, or when the fraction of those pixels
   that the assignment gave it, ``#(assigned to q) / #(m_q >= mask_threshold)``,
   is below ``overlap_threshold`` (0.8), or (ours; 0 = off, Mask2Former's
   behaviour) when it has fewer than ``min_area`` pixels;
4. segments of one *stuff* class merge into one segment (the id of the first);
   every *thing* segment is its own instance. Segment ids count from 1 in
   query order; pixels in no segment are VOID.

The result is the ``B x 2 x H x W`` encoding of :mod:`dejavu.metrics.panoptic`:
channel 0 the class (``void_label`` on VOID), channel 1 the segment id (0 on
VOID), ready for :class:`~dejavu.metrics.PanopticQuality`.

Differences from ``transformers``' ``post_process_panoptic_segmentation``
(which the tests compare against where they agree): it thresholds
``score_q * m_q`` instead of ``m_q`` for the area of step 3, does not intersect
the segment with ``m_q >= mask_threshold``, merges only the classes in
``label_ids_to_fuse``, first resizes the masks to 384 x 384, and keeps a
segment when the fraction is ``> overlap_threshold`` (here: not ``<``).

**Semantic** (:func:`semantic_inference`): the argmax over ``K`` of
``sum_q p_q[k] m_q`` (:func:`dejavu.mask_classification.semantic_scores`),
Mask2Former's ``semantic_inference``.

Example:
    >>> cls = torch.tensor([[[9.0, -9.0, -9.0], [-9.0, 9.0, -9.0]]])  # query 0: class 0, 1: 1
    >>> masks = torch.tensor([[[[9.0, 9.0, -9.0]], [[-9.0, -9.0, 9.0]]]])  # 1 x 3 image
    >>> panoptic_inference(cls, masks, isthing=[False, True])[0].tolist()
    [[[0, 0, 1]], [[1, 1, 2]]]
    >>> semantic_inference(cls, masks)[0].tolist()
    [[0, 0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dejavu._validation import check_in_range
from dejavu.mask_classification import check_query_outputs, resize_query_masks, semantic_scores

__all__ = ["PanopticInference", "panoptic_inference", "semantic_inference"]


def _isthing(isthing: Sequence[bool] | Tensor, num_classes: int) -> Tensor:
    flags = torch.as_tensor(isthing)
    if flags.ndim != 1 or flags.numel() != num_classes:
        raise ValueError(
            f"isthing must hold one flag per class ({num_classes} classes, from class_logits' "
            f"K + 1 = {num_classes + 1} entries), got shape {tuple(flags.shape)}"
        )
    if flags.is_floating_point():
        raise ValueError("isthing must hold booleans (or 0/1 integers), not floats")
    return flags.bool()


def _check_options(
    threshold: float, overlap_threshold: float, min_area: int, mask_threshold: float
) -> None:
    check_in_range(threshold, "threshold", 0.0, 1.0)
    check_in_range(overlap_threshold, "overlap_threshold", 0.0, 1.0)
    check_in_range(mask_threshold, "mask_threshold", 0.0, 1.0, low_inclusive=False)
    if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 0:
        raise ValueError(f"min_area must be an int >= 0 (pixels; 0 = off), got {min_area!r}")


def _one_image(
    cls: Tensor,
    masks: Tensor,
    isthing: Tensor,
    threshold: float,
    overlap_threshold: float,
    min_area: int,
    mask_threshold: float,
    void_label: int,
) -> Tensor:
    """``2 x H x W`` panoptic map of one image (``cls``: ``Q x (K + 1)``, ``masks``: sigmoids)."""
    q, k1 = cls.shape
    num_classes = k1 - 1
    h, w = masks.shape[-2:]
    out = torch.zeros(2, h, w, dtype=torch.long, device=masks.device)
    out[0] = void_label
    scores, labels = torch.softmax(cls.float(), dim=-1).max(dim=-1)
    keep = (labels != num_classes) & (scores > threshold)
    if not bool(keep.any()):
        return out
    m = masks.float()
    weighted = torch.where(keep[:, None, None], scores[:, None, None] * m, -1.0)
    assign = weighted.argmax(dim=0)  # H x W, a kept query everywhere
    on_mask = m.gather(0, assign[None])[0] >= mask_threshold
    mask_area = torch.bincount(assign.flatten(), minlength=q)
    original_area = (m >= mask_threshold).flatten(1).sum(dim=1)
    region_area = torch.bincount(assign[on_mask], minlength=q)
    ratio = mask_area.double() / original_area.clamp_min(1).double()
    valid = (
        keep
        & (mask_area > 0)
        & (original_area > 0)
        & (region_area > 0)
        & ~(ratio < overlap_threshold)
        & (region_area >= min_area)
    )
    label = labels.clamp(max=num_classes - 1)  # "no object" queries are never valid
    thing = isthing.to(label.device)[label]
    index = torch.arange(q, device=label.device)
    # The first valid stuff query of each class gives the class's merged segment.
    big = torch.full((num_classes,), q, dtype=torch.long, device=label.device)
    stuff = valid & ~thing
    first = big.scatter_reduce(0, label[stuff], index[stuff], reduce="amin")
    new_segment = valid & (thing | (first[label] == index))
    number = torch.cumsum(new_segment.long(), dim=0)  # ids 1, 2, ... in query order
    segment_id = torch.where(thing, number, number[first[label].clamp(max=q - 1)])
    pixel_on = valid[assign] & on_mask
    out[0] = torch.where(pixel_on, label[assign], out[0])
    out[1] = torch.where(pixel_on, segment_id[assign], out[1])
    return out


def panoptic_inference(
    class_logits: Tensor,
    mask_logits: Tensor,
    isthing: Sequence[bool] | Tensor,
    size: tuple[int, int] | None = None,
    *,
    threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    min_area: int = 0,
    mask_threshold: float = 0.5,
    void_label: int = 255,
) -> Tensor:
    """Panoptic maps from query outputs, as Mask2Former defines them (module docstring).

    Args:
        class_logits: ``B x Q x (K + 1)`` (last: no object).
        mask_logits: ``B x Q x h x w``.
        isthing: ``K`` flags, True for a thing class (its segments stay apart).
        size: the output ``(H, W)``; the masks are resized to it first (default: ``h x w``).
        threshold: a query is kept when its class score is ``> threshold``.
        overlap_threshold: a segment is dropped when less than this fraction of
            its mask survives the pixel assignment.
        min_area: a segment with fewer pixels is dropped (0: off).
        mask_threshold: a mask covers a pixel where its probability is ``>=`` this.
        void_label: the class written on VOID pixels (not a class index).

    Returns:
        ``B x 2 x H x W`` int64: class per pixel (``void_label`` on VOID) and
        segment id (``>= 1``; 0 on VOID).

    Raises:
        ValueError: for malformed query outputs, ``isthing`` of the wrong
            length, or options out of range.

    Example:
        >>> cls = torch.tensor([[[9.0, -9.0], [-9.0, 9.0]]])  # query 1 says "no object"
        >>> panoptic_inference(cls, torch.zeros(1, 2, 1, 2) + 9, isthing=[True])[0, 1].tolist()
        [[1, 1]]
    """
    _, _, num_classes = check_query_outputs(class_logits, mask_logits)
    flags = _isthing(isthing, num_classes)
    _check_options(threshold, overlap_threshold, min_area, mask_threshold)
    if isinstance(void_label, bool) or not isinstance(void_label, int) or void_label < num_classes:
        raise ValueError(
            f"void_label must be an int >= the number of classes ({num_classes}), "
            f"got {void_label!r}"
        )
    masks = torch.sigmoid(resize_query_masks(mask_logits, size).float())
    maps = [
        _one_image(
            class_logits[i],
            masks[i],
            flags,
            threshold,
            overlap_threshold,
            min_area,
            mask_threshold,
            void_label,
        )
        for i in range(class_logits.shape[0])
    ]
    return torch.stack(maps)


def semantic_inference(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Mask2Former's semantic map: the argmax over ``K`` of the semantic scores.

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)`` (masks resized first; default ``h x w``).

    Returns:
        ``B x H x W`` int64 class indices.

    Example:
        >>> cls = torch.tensor([[[0.0, 3.0, 0.0]]])
        >>> semantic_inference(cls, torch.zeros(1, 1, 2, 2)).tolist()
        [[[1, 1], [1, 1]]]
    """
    return semantic_scores(class_logits, mask_logits, size).argmax(dim=1)


class PanopticInference(nn.Module):
    """Module form of :func:`panoptic_inference` (the options fixed at construction).

    Args:
        isthing: ``K`` flags, True for thing classes.
        threshold, overlap_threshold, min_area, mask_threshold, void_label: see
            :func:`panoptic_inference`.

    Example:
        >>> post = PanopticInference([False, True], threshold=0.5)
        >>> post(torch.randn(2, 4, 3), torch.randn(2, 4, 8, 8), size=(16, 16)).shape
        torch.Size([2, 2, 16, 16])
    """

    isthing: Tensor

    def __init__(
        self,
        isthing: Sequence[bool] | Tensor,
        *,
        threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        min_area: int = 0,
        mask_threshold: float = 0.5,
        void_label: int = 255,
    ) -> None:
        super().__init__()
        flags = torch.as_tensor(isthing)
        self.register_buffer("isthing", _isthing(flags, int(flags.numel())), persistent=False)
        _check_options(threshold, overlap_threshold, min_area, mask_threshold)
        self.threshold = float(threshold)
        self.overlap_threshold = float(overlap_threshold)
        self.min_area = int(min_area)
        self.mask_threshold = float(mask_threshold)
        self.void_label = int(void_label)

    def forward(
        self, class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
    ) -> Tensor:
        return panoptic_inference(
            class_logits,
            mask_logits,
            self.isthing,
            size,
            threshold=self.threshold,
            overlap_threshold=self.overlap_threshold,
            min_area=self.min_area,
            mask_threshold=self.mask_threshold,
            void_label=self.void_label,
        )

    def extra_repr(self) -> str:
        return (
            f"classes={self.isthing.numel()}, threshold={self.threshold}, "
            f"overlap_threshold={self.overlap_threshold}, min_area={self.min_area}"
        )
