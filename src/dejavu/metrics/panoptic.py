"""Panoptic quality (PQ, SQ, RQ) exactly as the COCO panopticapi defines it.

Encoding. A panoptic map is a ``B x 2 x H x W`` integer tensor: channel 0 the
category id of each pixel (``void_label`` = VOID, no label), channel 1 its
instance id. A *segment* is the set of pixels of one image sharing
``(category, instance)``; for a stuff category the instance id is ignored (all
its pixels in an image form one segment). In the **target** only, a pixel of a
thing category with instance id 0 belongs to that category's crowd region
(``iscrowd = 1``), as in the Cityscapes panoptic conversion; in a prediction
instance 0 is an ordinary instance id. :func:`panoptic_from_segments` converts
a COCO-style ``(segment-id map, segments_info)`` pair into this encoding,
:func:`panoptic_from_labels` a ``(seg, instance)`` pair of the toolkit's samples.

Definition (panopticapi ``pq_compute_single_core``), per image:

- a predicted and a target segment of the same category match iff
  ``IoU > 0.5``, where the union leaves out the predicted pixels that fall on
  target VOID; crowd target segments never match. Matches are unique.
- an unmatched, non-crowd target segment is a false negative (FN);
- an unmatched predicted segment is a false positive (FP) unless more than
  half of its area lies on target VOID plus the same-category crowd region.

Per category, over the **whole dataset** (TP/FP/FN counts and the IoU sum of
the TPs are pooled over images; not a per-image average):
``PQ = sum IoU(TP) / (TP + FP/2 + FN/2)``, ``SQ = sum IoU(TP) / TP`` (0 if no
TP), ``RQ = TP / (TP + FP/2 + FN/2)``; the overall, things and stuff scores
are plain means over the categories with ``TP + FP + FN > 0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeGuard

import torch
from torch import Tensor

from dejavu.metrics._per_class import PerClassMetric

__all__ = [
    "PanopticQuality",
    "PanopticStats",
    "panoptic_from_labels",
    "panoptic_from_segments",
    "panoptic_quality",
    "panoptic_scores",
    "panoptic_stats",
]


class PanopticStats(NamedTuple):
    """Per-category matching statistics (each a ``C`` tensor, categories in given order)."""

    iou: Tensor  # float64, sum of the IoUs of the true positives
    tp: Tensor  # int64
    fp: Tensor  # int64
    fn: Tensor  # int64


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_categories(
    categories: Sequence[Mapping[str, Any]], void_label: int
) -> tuple[Tensor, Tensor]:
    """Category ids (given order) and is-thing flags, both ``C`` tensors."""
    if not _is_int(void_label):
        raise ValueError(f"void_label must be an int, got {void_label!r}")
    if isinstance(categories, (str, Mapping)) or not isinstance(categories, Sequence):
        raise ValueError(
            "categories must be a sequence of mappings with keys 'id' and 'isthing', "
            f"got {type(categories)!r}"
        )
    if len(categories) == 0:
        raise ValueError("categories must not be empty")
    ids: list[int] = []
    things: list[bool] = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, Mapping) or "id" not in cat or "isthing" not in cat:
            raise ValueError(
                f"categories[{i}] must be a mapping with keys 'id' and 'isthing', got {cat!r}"
            )
        cid = cat["id"]
        if not _is_int(cid) or cid < 0:
            raise ValueError(f"categories[{i}]['id'] must be an int >= 0, got {cid!r}")
        if cid == void_label:
            raise ValueError(
                f"categories[{i}]['id'] = {cid} equals void_label; choose another void_label"
            )
        ids.append(cid)
        things.append(bool(cat["isthing"]))
    if len(set(ids)) != len(ids):
        dup = sorted({c for c in ids if ids.count(c) > 1})
        raise ValueError(f"categories must have unique ids, got duplicates {dup}")
    return torch.tensor(ids, dtype=torch.long), torch.tensor(things, dtype=torch.bool)


def _check_panoptic(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape B x 2 x H x W, got {type(x)!r}")
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape B x 2 x H x W (category, instance), got {tuple(x.shape)}"
        )
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    return x


class _Segments(NamedTuple):
    # B x H x W, segment index per pixel, -1 on VOID (the field shadows tuple.index)
    index: Tensor  # type: ignore[assignment]
    category: Tensor  # S, category index (position in the category list)
    area: Tensor  # S, pixel count
    crowd: Tensor  # S, bool


def _segments(
    x: Tensor, name: str, cat_ids: Tensor, isthing: Tensor, void_label: int, crowd: bool
) -> _Segments:
    """Find the segments of a batch of panoptic maps (keyed per image)."""
    cat, inst = x[:, 0].long(), x[:, 1].long()
    valid = cat != void_label
    c = cat[valid]
    num_cats = cat_ids.numel()
    sorted_ids, order = cat_ids.sort()
    pos = torch.searchsorted(sorted_ids, c).clamp_(max=num_cats - 1)
    known = sorted_ids[pos] == c
    if not bool(known.all()):
        bad = torch.unique(c[~known])[:10].tolist()
        raise ValueError(
            f"{name} holds category ids {bad} that are neither in categories "
            f"{sorted_ids.tolist()} nor void_label={void_label}"
        )
    ci = order[pos]
    i = inst[valid]
    if bool((i < 0).any()):
        raise ValueError(
            f"{name} instance ids must be >= 0, got {torch.unique(i[i < 0])[:10].tolist()}"
        )
    i = torch.where(isthing[ci], i, 0)  # stuff: one segment per category and image
    b = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1).expand_as(cat)[valid]
    span = int(i.max()) + 1 if i.numel() else 1
    if x.shape[0] * num_cats * span >= 2**62:
        # Huge instance ids would overflow the int64 key: renumber them (order
        # kept, so instance 0, the crowd marker, stays 0).
        uniq_i, i = torch.unique(i, return_inverse=True)
        i = i + (uniq_i[0] != 0).long()
        span = int(i.max()) + 1
    key = (b * num_cats + ci) * span + i
    uniq, inverse, area = torch.unique(key, return_inverse=True, return_counts=True)
    index = torch.full_like(cat, -1)
    index[valid] = inverse
    seg_cat = (uniq // span) % num_cats
    is_crowd = (
        isthing[seg_cat] & (uniq % span == 0)
        if crowd
        else torch.zeros_like(seg_cat, dtype=torch.bool)
    )
    return _Segments(index, seg_cat, area, is_crowd)


def _stats(
    pred: Tensor, target: Tensor, cat_ids: Tensor, isthing: Tensor, void_label: int
) -> PanopticStats:
    _check_panoptic(pred, "pred")
    _check_panoptic(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred of shape {tuple(pred.shape)} must match target of shape {tuple(target.shape)}"
        )
    num_cats = cat_ids.numel()
    gt = _segments(target, "target", cat_ids, isthing, void_label, crowd=True)
    pr = _segments(pred, "pred", cat_ids, isthing, void_label, crowd=False)
    num_pred = pr.area.numel()

    # Sparse gt x pred intersection table over the predicted pixels; gt index
    # -1 (VOID) is kept as its own row, hence the + 1.
    on_pred = pr.index >= 0
    stride = max(num_pred, 1)
    codes, inter = torch.unique(
        (gt.index[on_pred] + 1) * stride + pr.index[on_pred], return_counts=True
    )
    pg, pp = codes // stride - 1, codes % stride
    on_void = pg < 0
    void_area = torch.zeros_like(pr.area).index_add_(0, pp[on_void], inter[on_void])
    pg, pp, inter = pg[~on_void], pp[~on_void], inter[~on_void]

    same_cat = gt.category[pg] == pr.category[pp]
    union = pr.area[pp] + gt.area[pg] - inter - void_area[pp]
    iou = inter.double() / union.double()
    match = same_cat & ~gt.crowd[pg] & (iou > 0.5)

    match_cat = gt.category[pg[match]]
    tp = torch.bincount(match_cat, minlength=num_cats)
    iou_sum = torch.zeros(num_cats, dtype=torch.float64, device=iou.device)
    iou_sum.index_add_(0, match_cat, iou[match])

    gt_matched = torch.zeros_like(gt.crowd)
    gt_matched[pg[match]] = True
    fn = torch.bincount(gt.category[~gt_matched & ~gt.crowd], minlength=num_cats)

    pred_matched = torch.zeros_like(pr.crowd)
    pred_matched[pp[match]] = True
    on_crowd = same_cat & gt.crowd[pg]
    crowd_area = torch.zeros_like(pr.area).index_add_(0, pp[on_crowd], inter[on_crowd])
    ignored = (void_area + crowd_area).double() / pr.area.double() > 0.5
    fp = torch.bincount(pr.category[~pred_matched & ~ignored], minlength=num_cats)
    return PanopticStats(iou_sum, tp, fp, fn)


def panoptic_stats(
    pred: Tensor,
    target: Tensor,
    categories: Sequence[Mapping[str, Any]],
    void_label: int = 255,
) -> PanopticStats:
    """Per-category TP/FP/FN counts and TP IoU sums of a batch (panopticapi matching).

    Args:
        pred: ``B x 2 x H x W`` integer panoptic maps (category, instance).
        target: ``B x 2 x H x W`` integer panoptic maps; thing pixels with
            instance 0 form the crowd region of their category.
        categories: sequence of ``{"id": int, "isthing": bool, ...}`` (COCO's
            category list); the output follows its order.
        void_label: category id meaning VOID (not in ``categories``).

    Returns:
        :class:`PanopticStats` of ``C`` tensors, summable over batches.

    Example:
        >>> cats = [{"id": 1, "isthing": True}, {"id": 2, "isthing": False}]
        >>> x = torch.tensor([[[[1, 2]], [[7, 0]]]])  # 1 x 2 x 1 x 2
        >>> panoptic_stats(x, x, cats).tp
        tensor([1, 1])
    """
    cat_ids, isthing = _parse_categories(categories, void_label)
    dev = target.device if isinstance(target, Tensor) else None
    return _stats(pred, target, cat_ids.to(dev), isthing.to(dev), void_label)


def panoptic_scores(stats: PanopticStats, isthing: Tensor) -> dict[str, Tensor]:
    """PQ, SQ, RQ (fractions 0..1) from dataset-level per-category statistics.

    Categories with ``TP + FP + FN = 0`` are absent: NaN in the per-class
    outputs (panopticapi prints 0 for them) and left out of every average.
    An average over no category is NaN.

    Args:
        stats: :class:`PanopticStats` of ``C`` tensors.
        isthing: ``C`` bool tensor.

    Returns:
        dict of float64 tensors: ``pq``, ``sq``, ``rq`` (all categories),
        ``pq_things`` ... ``rq_stuff`` (0-d), and ``pq_per_class``,
        ``sq_per_class``, ``rq_per_class`` (``C``).

    Example:
        >>> s = PanopticStats(torch.tensor([1.8, 0.0], dtype=torch.float64),
        ...                   torch.tensor([2, 0]), torch.tensor([1, 1]), torch.tensor([1, 0]))
        >>> round(float(panoptic_scores(s, torch.tensor([True, False]))["pq"]), 4)
        0.3
    """
    iou = stats.iou.double()
    tp, fp, fn = (t.double() for t in (stats.tp, stats.fp, stats.fn))
    present = (tp + fp + fn) > 0
    denom = tp + 0.5 * fp + 0.5 * fn
    nan = torch.full_like(iou, float("nan"))
    per_class = {
        "pq": torch.where(present, iou / denom, nan),
        "sq": torch.where(present, torch.where(tp > 0, iou / tp.clamp_min(1), 0.0), nan),
        "rq": torch.where(present, tp / denom, nan),
    }
    out: dict[str, Tensor] = {}
    for group, sel in (("", None), ("_things", isthing), ("_stuff", ~isthing)):
        for k, v in per_class.items():
            out[k + group] = torch.nanmean(v if sel is None else v[sel])
    for k, v in per_class.items():
        out[f"{k}_per_class"] = v
    return out


def panoptic_quality(
    pred: Tensor,
    target: Tensor,
    categories: Sequence[Mapping[str, Any]],
    void_label: int = 255,
) -> dict[str, Tensor]:
    """PQ/SQ/RQ of one batch, its images pooled as a dataset (see the module docstring).

    Args:
        pred: ``B x 2 x H x W`` integer panoptic maps (category, instance).
        target: ``B x 2 x H x W``; thing pixels with instance 0 are crowd.
        categories: sequence of ``{"id": int, "isthing": bool, ...}``.
        void_label: category id meaning VOID.

    Returns:
        dict of :func:`panoptic_scores`.

    Example:
        >>> cats = [{"id": 1, "isthing": True}, {"id": 2, "isthing": False}]
        >>> x = torch.tensor([[[[1, 2]], [[7, 0]]]])
        >>> float(panoptic_quality(x, x, cats)["pq"])
        1.0
    """
    _, isthing = _parse_categories(categories, void_label)
    stats = panoptic_stats(pred, target, categories, void_label)
    return panoptic_scores(stats, isthing.to(stats.tp.device))


def panoptic_from_segments(
    segment_ids: Tensor, segments: Sequence[Mapping[str, Any]], void_label: int = 255
) -> Tensor:
    """Convert a COCO-style panoptic annotation to the ``2 x H x W`` encoding used here.

    Pixels with id 0 (panopticapi's VOID) become ``void_label``; a segment
    with ``iscrowd = 1`` gets instance 0 (crowd), any other its own id. Stack
    the results for a batch. Multiple crowd segments of one category in an
    image merge into one crowd region, and the crowd flag of a stuff segment
    has no effect (COCO has neither).

    Args:
        segment_ids: ``H x W`` integer map of segment ids (``rgb2id`` of the PNG).
        segments: the ``segments_info`` list, ``{"id", "category_id", "iscrowd"
            (optional, default 0)}`` each.
        void_label: category id to write on VOID pixels.

    Returns:
        ``2 x H x W`` int64 tensor (category, instance).

    Raises:
        ValueError: if a non-zero id of the map is not in ``segments``, or a
            segment has id 0 or category ``void_label``.

    Example:
        >>> ids = torch.tensor([[0, 5], [9, 9]])
        >>> segs = [{"id": 5, "category_id": 1}, {"id": 9, "category_id": 3, "iscrowd": 1}]
        >>> panoptic_from_segments(ids, segs).tolist()
        [[[255, 1], [3, 3]], [[0, 5], [0, 0]]]
    """
    if not isinstance(segment_ids, Tensor) or segment_ids.ndim != 2:
        got = tuple(segment_ids.shape) if isinstance(segment_ids, Tensor) else type(segment_ids)
        raise ValueError(f"segment_ids must be an H x W integer tensor, got {got}")
    if segment_ids.is_floating_point() or segment_ids.dtype == torch.bool:
        raise ValueError(f"segment_ids must be an integer tensor, got dtype {segment_ids.dtype}")
    ids, cats, insts = [], [], []
    for k, seg in enumerate(segments):
        sid, cid = seg.get("id"), seg.get("category_id")
        if not _is_int(sid) or sid <= 0:
            raise ValueError(f"segments[{k}]['id'] must be an int > 0 (0 is VOID), got {sid!r}")
        if not _is_int(cid) or cid == void_label:
            raise ValueError(
                f"segments[{k}]['category_id'] must be an int other than "
                f"void_label={void_label}, got {cid!r}"
            )
        ids.append(sid)
        cats.append(cid)
        insts.append(0 if seg.get("iscrowd", 0) else sid)
    out = torch.empty(2, *segment_ids.shape, dtype=torch.long, device=segment_ids.device)
    out[0] = void_label
    out[1] = 0
    sid_map = segment_ids.long()
    labelled = sid_map != 0
    if ids:
        table = torch.tensor(ids, dtype=torch.long, device=sid_map.device)
        sorted_ids, order = table.sort()
        pos = torch.searchsorted(sorted_ids, sid_map).clamp_(max=len(ids) - 1)
        known = sorted_ids[pos] == sid_map
        seg_of = order[pos]
        out[0][known] = torch.tensor(cats, device=sid_map.device)[seg_of[known]]
        out[1][known] = torch.tensor(insts, device=sid_map.device)[seg_of[known]]
    else:
        known = torch.zeros_like(labelled)
    if bool((labelled & ~known).any()):
        bad = torch.unique(sid_map[labelled & ~known])[:10].tolist()
        raise ValueError(f"segment_ids holds ids {bad} that are not in segments")
    return out


def panoptic_from_labels(seg: Tensor, instance: Tensor) -> Tensor:
    """Stack a semantic map and an instance map into the encoding used here.

    The toolkit's panoptic samples hold ``seg`` (category per pixel, VOID =
    the metric's ``void_label``, 255 by default) and ``instance`` (0 = none;
    on a thing category, 0 = crowd), which is this module's encoding one
    channel each: the result is ``torch.stack([seg, instance], dim=-3)``
    after the checks below.

    Args:
        seg: ``H x W`` or ``B x H x W`` integer category ids.
        instance: integer instance ids (``>= 0``) of the same shape.

    Returns:
        ``2 x H x W`` or ``B x 2 x H x W`` int64 tensor (category, instance).

    Raises:
        ValueError: for non-integer tensors, different shapes, a dimension
            other than 2 or 3, or a negative instance id.

    Example:
        >>> seg = torch.tensor([[[0, 0, 255]]])
        >>> inst = torch.tensor([[[3, 0, 0]]])
        >>> panoptic_from_labels(seg, inst).tolist()
        [[[[0, 0, 255]], [[3, 0, 0]]]]
    """
    for name, x in (("seg", seg), ("instance", instance)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x)!r}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} must be H x W or B x H x W, got shape {tuple(x.shape)}")
    if seg.shape != instance.shape:
        raise ValueError(
            f"seg of shape {tuple(seg.shape)} and instance of shape "
            f"{tuple(instance.shape)} must have the same shape"
        )
    if bool((instance < 0).any()):
        raise ValueError("instance ids must be >= 0 (0 = no instance or crowd)")
    return torch.stack([seg.long(), instance.long()], dim=-3)


class PanopticQuality(PerClassMetric):
    """COCO panoptic quality pooled over the whole dataset (DDP-synced).

    Accumulates per-category TP/FP/FN counts and TP IoU sums (sum-reduced
    across ranks) and reports :func:`panoptic_scores` of them, so the result
    equals panopticapi's ``pq_compute`` over all images seen. Values are
    fractions 0..1. See the module docstring for the input encoding.

    Args:
        categories: sequence of ``{"id": int, "isthing": bool, ...}``; the
            per-class outputs follow its order.
        void_label: category id meaning VOID (default 255).

    Example:
        >>> cats = [{"id": 1, "isthing": True}, {"id": 2, "isthing": False}]
        >>> m = PanopticQuality(cats)
        >>> x = torch.tensor([[[[1, 2]], [[7, 0]]]])
        >>> m.update(x, x)
        >>> float(m.compute()["pq_stuff"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    iou: Tensor
    tp: Tensor
    fp: Tensor
    fn: Tensor
    category_ids: Tensor
    isthing: Tensor

    def __init__(
        self,
        categories: Sequence[Mapping[str, Any]],
        void_label: int = 255,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        cat_ids, isthing = _parse_categories(categories, void_label)
        self.void_label = void_label
        self.register_buffer("category_ids", cat_ids, persistent=False)
        self.register_buffer("isthing", isthing, persistent=False)
        n = cat_ids.numel()
        self.add_state("iou", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of ``B x 2 x H x W`` panoptic maps (category, instance)."""
        s = _stats(pred, target, self.category_ids, self.isthing, self.void_label)
        self.iou += s.iou
        self.tp += s.tp
        self.fp += s.fp
        self.fn += s.fn

    def compute(self) -> dict[str, Tensor]:
        """PQ/SQ/RQ overall, things, stuff and per class (see :func:`panoptic_scores`)."""
        return panoptic_scores(PanopticStats(self.iou, self.tp, self.fp, self.fn), self.isthing)
