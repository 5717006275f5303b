"""Heads predicted by mask classification (Mask2Former): targets, loss, panoptic decoding.

A mask-classification network (``mask2former_*``) returns, for its class head
``key`` (``"seg"`` or ``"panoptic"``), the query outputs under
:func:`dejavu.mask_classification.query_keys` ``(key)`` besides the dense map
under ``key`` (see :mod:`dejavu.mask_classification`). The task then trains the
head with Mask2Former's own loss instead of the head's per-pixel loss
(:meth:`dejavu.toolkit.tasks.Task.loss`):

- **targets** (:func:`semantic_mask_targets`, :func:`panoptic_mask_targets`):
  per image, binary masks and their classes. Semantic segmentation: one mask
  per class present. Panoptic: one mask per thing instance and one per stuff
  class present; crowd regions (thing pixels with instance 0) and VOID are in
  no mask.
- **loss** (:func:`mask_classification_loss`): ``transformers``' Mask2Former
  criterion (Hungarian matching on class + sigmoid-BCE + dice costs over
  ``num_points`` sampled points; matched queries learn their target's class
  with cross-entropy, unmatched ones "no object" with weight 0.1; mask BCE and
  dice over importance-sampled points), weighted ``2 * CE + 5 * BCE + 5 * dice``
  and summed over the final and every intermediate decoder layer, with
  Mask2Former's defaults (:data:`MASK2FORMER_LOSS`; ``task.mask_loss`` in a config
  overrides them, checked by :func:`check_mask_loss`).
- **panoptic decoding** (:func:`decode_panoptic`): the query outputs become the
  ``B x 2 x H x W`` panoptic map (:func:`dejavu.panoptic_inference.panoptic_inference`)
  that the metric, the panels and ``dejavu predict`` read.

Example:
    >>> seg = torch.tensor([[[0, 0, 2], [255, 2, 2]]])
    >>> masks, classes = semantic_mask_targets(seg, 255, num_classes=3)[0]
    >>> classes.tolist(), masks.sum(dim=(1, 2)).tolist()
    ([0, 2], [2.0, 3.0])
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dejavu.mask_classification import check_query_outputs, query_keys
from dejavu.panoptic_inference import PanopticInference

__all__ = [
    "MASK2FORMER_LOSS",
    "POSTPROCESS_DEFAULTS",
    "MaskTargets",
    "check_mask_loss",
    "check_postprocess",
    "decode_panoptic",
    "isthing_flags",
    "mask_classification_loss",
    "panoptic_mask_targets",
    "panoptic_segments",
    "panoptic_target",
    "segment_ids_to_rgb",
    "semantic_mask_targets",
    "write_panoptic",
]

#: One image's mask-classification target: ``N x H x W`` float masks and their ``N`` classes.
MaskTargets = tuple[Tensor, Tensor]

#: Mask2Former's loss settings (Cheng et al. 2022; the transformers defaults).
MASK2FORMER_LOSS: Mapping[str, float] = {
    "class_weight": 2.0,
    "mask_weight": 5.0,
    "dice_weight": 5.0,
    "no_object_weight": 0.1,
    "num_points": 12544,
    "oversample_ratio": 3.0,
    "importance_sample_ratio": 0.75,
}

#: The panoptic post-processing's options and defaults (Mask2Former's COCO settings);
#: a config changes them with ``task.postprocess: {panoptic: {threshold: 0.5, ...}}``.
POSTPROCESS_DEFAULTS: Mapping[str, float | int] = {
    "threshold": 0.8,
    "overlap_threshold": 0.8,
    "min_area": 0,
    "mask_threshold": 0.5,
}


def _check_labels(labels: Tensor, num_classes: int, ignore_index: int, name: str) -> None:
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:10].tolist()
        raise ValueError(
            f"{name} holds labels {values} outside the classes 0..{num_classes - 1} and the "
            f"ignore index {ignore_index}"
        )


def semantic_mask_targets(seg: Tensor, ignore_index: int, num_classes: int) -> list[MaskTargets]:
    """One binary mask per class present in each image (ignored pixels in none).

    Args:
        seg: ``B x H x W`` int64 labels in ``[0, K)`` or ``ignore_index``.
        ignore_index: the ignored label.
        num_classes: ``K``.

    Returns:
        Per image, ``(N x H x W`` float masks, ``N`` int64 classes``)``, classes ascending.

    Raises:
        ValueError: for a label outside ``0..K-1`` that is not ``ignore_index``.
    """
    if not isinstance(seg, Tensor) or seg.ndim != 3 or seg.is_floating_point():
        raise ValueError(f"seg must be a B x H x W integer tensor, got {_describe(seg)}")
    _check_labels(seg, num_classes, ignore_index, "seg")
    out: list[MaskTargets] = []
    for labels in seg:
        classes = torch.unique(labels[labels != ignore_index])
        masks = (labels[None] == classes[:, None, None]).float()
        out.append((masks, classes.long()))
    return out


def panoptic_mask_targets(
    target: Tensor, ignore_index: int, isthing: Sequence[bool] | Tensor
) -> list[MaskTargets]:
    """One mask per thing instance and per stuff class present; crowd and VOID in none.

    Args:
        target: ``B x 2 x H x W`` int64: class (``ignore_index`` = VOID) and
            instance id (on a thing class: ``>= 1`` an instance, 0 its crowd region).
        ignore_index: the VOID class.
        isthing: ``K`` flags.

    Returns:
        Per image, ``(N x H x W`` float masks, ``N`` int64 classes``)``: stuff
        classes (ascending), then thing instances (by class, then instance id).

    Raises:
        ValueError: for a class outside ``0..K-1`` that is not ``ignore_index``,
            or a negative instance id.

    Example:
        >>> t = torch.tensor([[[[0, 1, 1, 1]], [[0, 4, 4, 0]]]])  # stuff 0, thing 1
        >>> masks, classes = panoptic_mask_targets(t, 255, [False, True])[0]
        >>> classes.tolist(), masks[:, 0].tolist()  # the crowd pixel is in no mask
        ([0, 1], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    """
    flags = torch.as_tensor(isthing, dtype=torch.bool)
    if not isinstance(target, Tensor) or target.ndim != 4 or target.shape[1] != 2:
        raise ValueError(
            f"a panoptic target must be B x 2 x H x W (class, instance), got {_describe(target)}"
        )
    num_classes = int(flags.numel())
    _check_labels(target[:, 0], num_classes, ignore_index, "the panoptic target's class map")
    if bool((target[:, 1] < 0).any()):
        raise ValueError("the panoptic target's instance ids must be >= 0")
    flags = flags.to(target.device)
    out: list[MaskTargets] = []
    for cls, inst in target.long():
        valid = cls != ignore_index
        thing = valid & flags[cls.clamp(0, num_classes - 1)]
        stuff = valid & ~thing
        stuff_classes = torch.unique(cls[stuff])
        masks = [(cls[None] == stuff_classes[:, None, None]) & stuff[None]]
        classes = [stuff_classes]
        instance = thing & (inst > 0)  # instance 0 on a thing class: crowd, left out
        if bool(instance.any()):
            span = int(inst.max()) + 1
            key_map = torch.where(instance, cls * span + inst, -1)
            keys = torch.unique(key_map[instance])
            masks.append(key_map[None] == keys[:, None, None])
            classes.append(keys // span)
        out.append((torch.cat(masks).float(), torch.cat(classes).long()))
    return out


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"shape {tuple(x.shape)}, dtype {x.dtype}"
    return repr(type(x))


@functools.lru_cache(maxsize=8)
def _criterion(num_classes: int, settings: tuple[tuple[str, float], ...]) -> Any:
    """transformers' Mask2Former criterion for ``num_classes`` (built once per setting)."""
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

    s = dict(settings)
    config = Mask2FormerConfig(  # type: ignore[call-arg]  # num_labels: a PreTrainedConfig field
        num_labels=num_classes,
        class_weight=s["class_weight"],
        mask_weight=s["mask_weight"],
        dice_weight=s["dice_weight"],
        no_object_weight=s["no_object_weight"],
        train_num_points=int(s["num_points"]),
        oversample_ratio=s["oversample_ratio"],
        importance_sample_ratio=s["importance_sample_ratio"],
    )
    weights = {
        "loss_cross_entropy": s["class_weight"],
        "loss_mask": s["mask_weight"],
        "loss_dice": s["dice_weight"],
    }
    return Mask2FormerLoss(config=config, weight_dict=weights)


def check_mask_loss(settings: Mapping[str, Any]) -> dict[str, float]:
    """Check overrides of :data:`MASK2FORMER_LOSS` (``task.mask_loss`` in a config).

    Args:
        settings: a subset of its keys: the weights >= 0, ``num_points`` a whole
            number >= 1, ``oversample_ratio`` >= 1, ``importance_sample_ratio`` in [0, 1].

    Returns:
        The settings as floats.

    Raises:
        ValueError: naming an unknown key (and the allowed ones) or a bad value.

    Example:
        >>> check_mask_loss({"num_points": 512})
        {'num_points': 512.0}
    """
    unknown = sorted(set(settings) - set(MASK2FORMER_LOSS))
    if unknown:
        raise ValueError(f"unknown loss settings {unknown}; allowed: {sorted(MASK2FORMER_LOSS)}")
    ranges: dict[str, tuple[float, float | None]] = {
        "num_points": (1.0, None),
        "oversample_ratio": (1.0, None),
        "importance_sample_ratio": (0.0, 1.0),
    }
    out: dict[str, float] = {}
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"loss setting {key!r} must be a number, got {value!r}")
        low, high = ranges.get(key, (0.0, None))
        if value < low or (high is not None and value > high):
            allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"loss setting {key!r} must be {allowed}, got {value!r}")
        if key == "num_points" and int(value) != value:
            raise ValueError(f"loss setting 'num_points' must be a whole number, got {value!r}")
        out[key] = float(value)
    return out


def mask_classification_loss(
    pred: Mapping[str, Tensor],
    key: str,
    targets: Sequence[MaskTargets],
    **settings: float,
) -> Tensor:
    """Mask2Former's loss of head ``key``'s query outputs against per-image mask targets.

    Args:
        pred: the network's outputs with ``query_keys(key)``'s class and mask
            logits (and, in training, the intermediate layers').
        key: the head.
        targets: per image ``(N x H x W masks, N classes)``
            (:func:`semantic_mask_targets`, :func:`panoptic_mask_targets`); the
            mask grid covers the input from the top-left at an integer stride,
            so the targets are zero-padded at the bottom/right to the grid's
            extent before points are sampled from both.
        **settings: overrides of :data:`MASK2FORMER_LOSS`.

    Returns:
        The weighted sum over the final and the intermediate layers (a scalar).

    Raises:
        ValueError: for missing or malformed query outputs, a target count
            other than the batch size, a class outside ``0..K-1``, or an unknown setting.
    """
    settings = check_mask_loss(settings)
    keys = query_keys(key)
    for name in (keys.class_logits, keys.mask_logits):
        if name not in pred:
            raise ValueError(f"prediction has no {name!r} output; outputs: {sorted(pred)}")
    cls, masks = pred[keys.class_logits], pred[keys.mask_logits]
    b, _, num_classes = check_query_outputs(cls, masks)
    if len(targets) != b:
        raise ValueError(f"got {len(targets)} mask targets for a batch of {b}")
    h, w = int(masks.shape[-2]), int(masks.shape[-1])
    mask_labels, class_labels = [], []
    for m, c in targets:
        if bool(((c < 0) | (c >= num_classes)).any()):
            raise ValueError(f"mask target classes {c.tolist()} outside 0..{num_classes - 1}")
        th, tw = int(m.shape[-2]), int(m.shape[-1])
        # The grid covers stride * (h, w) input pixels: pad the targets to that extent.
        sh, sw = max(1, round(th / h)), max(1, round(tw / w))
        m = F.pad(m, (0, max(0, sw * w - tw), 0, max(0, sh * h - th)))
        mask_labels.append(m.to(device=masks.device, dtype=masks.dtype))
        class_labels.append(c.to(cls.device))
    layers = None
    if keys.class_layers in pred and keys.mask_layers in pred:
        cl, ml = pred[keys.class_layers], pred[keys.mask_layers]
        layers = [
            {"class_queries_logits": cl[:, i], "masks_queries_logits": ml[:, i]}
            for i in range(cl.shape[1])
        ]
    s = {**MASK2FORMER_LOSS, **settings}
    criterion = _criterion(num_classes, tuple(sorted(s.items()))).to(cls.device)
    parts = criterion(masks, cls, mask_labels, class_labels, auxiliary_predictions=layers)
    weights = {"loss_cross_entropy": "class_weight", "loss_mask": "mask_weight"}
    weights["loss_dice"] = "dice_weight"
    total = cls.new_zeros(())
    for name, value in parts.items():
        base = next(k for k in weights if name.startswith(k))
        total = total + s[weights[base]] * value
    return total


def panoptic_target(batch: Mapping[str, Any]) -> Tensor:
    """The panoptic target ``B x 2 x H x W`` (class, instance) from ``seg`` and ``instance``.

    Works for one sample (``H x W`` each, giving ``2 x H x W``) too.

    Example:
        >>> panoptic_target({"seg": torch.zeros(1, 2, dtype=torch.long),
        ...                  "instance": torch.ones(1, 2, dtype=torch.long)}).tolist()
        [[[0, 0]], [[1, 1]]]
    """
    from dejavu.metrics import panoptic_from_labels

    return panoptic_from_labels(batch["seg"], batch["instance"])


def isthing_flags(categories: Sequence[Mapping[str, Any]] | None, what: str) -> list[bool]:
    """The ``isthing`` flag of each category, in order.

    Raises:
        ValueError: without categories, saying that ``what`` needs them.

    Example:
        >>> isthing_flags([{"id": 0, "isthing": False}, {"id": 1, "isthing": True}], "x")
        [False, True]
    """
    if not categories:
        raise ValueError(
            f"{what} needs the dataset's panoptic categories ({{id, name, isthing}} per class: "
            "a dataset with a thing/stuff split)"
        )
    return [bool(c["isthing"]) for c in categories]


def decode_panoptic(
    pred: Mapping[str, Tensor],
    key: str,
    categories: Sequence[Mapping[str, Any]] | None,
    ignore_index: int = 255,
    **options: Any,
) -> Tensor:
    """The panoptic maps of a batch from head ``key``'s query outputs.

    The masks are brought to the size of ``pred[key]`` (the input resolution).

    Args:
        pred: the network's outputs.
        key: the head.
        categories: the dataset's ``{"id", "name", "isthing"}`` per class.
        ignore_index: written as the class of VOID pixels.
        **options: :data:`POSTPROCESS_DEFAULTS` overrides.

    Returns:
        ``B x 2 x H x W`` int64 (class, segment id).
    """
    keys = query_keys(key)
    if keys.class_logits not in pred or keys.mask_logits not in pred:
        raise ValueError(
            f"head {key!r} is decoded from query outputs {keys.class_logits!r} and "
            f"{keys.mask_logits!r} (a mask-classification network); outputs: {sorted(pred)}"
        )
    post = PanopticInference(
        isthing_flags(categories, f"decoding head {key!r}"),
        void_label=ignore_index,
        **{**POSTPROCESS_DEFAULTS, **options},
    )
    size = (int(pred[key].shape[-2]), int(pred[key].shape[-1]))
    return post(pred[keys.class_logits], pred[keys.mask_logits], size)


def check_postprocess(options: Mapping[str, Any], num_classes: int = 1) -> dict[str, Any]:
    """Check post-processing options (names and values); returns them as a dict.

    Raises:
        ValueError: naming an unknown option (with the allowed ones) or a bad value.
    """
    unknown = sorted(set(options) - set(POSTPROCESS_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown panoptic post-processing options {unknown}; allowed: "
            f"{sorted(POSTPROCESS_DEFAULTS)}"
        )
    PanopticInference([False] * num_classes, **{**POSTPROCESS_DEFAULTS, **options})
    return dict(options)


# ------------------------------------------------------------------ COCO panoptic files
def segment_ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours of a segment-id map: ``id = R + 256 G + 256^2 B``.

    (The reader is :func:`dejavu.toolkit.data.coco_panoptic.rgb_to_segment_ids`.)

    Example:
        >>> segment_ids_to_rgb(np.array([[1, 256 + 2]]))[0].tolist()
        [[1, 0, 0], [2, 1, 0]]
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError("segment ids must lie in [0, 256**3) to fit a COCO panoptic PNG")
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1)
    return rgb.astype(np.uint8)


def panoptic_segments(
    panoptic: Tensor | np.ndarray, categories: Sequence[Mapping[str, Any]], void_label: int = 255
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A ``2 x H x W`` panoptic map as COCO's ``(segment-id map, segments_info)``.

    Every distinct (class, instance) pair of the non-VOID pixels is one segment
    (a stuff class's pixels form one segment whatever their instance ids),
    numbered 1, 2, ... in order of (class, instance); VOID pixels get id 0.

    Returns:
        ``H x W`` int64 ids and, per segment, ``{"id", "category_id" (the class,
        i.e. the category's ``id``), "category_name", "isthing", "area", "iscrowd": 0}``.

    Example:
        >>> cats = [{"id": 0, "name": "wall", "isthing": False},
        ...         {"id": 1, "name": "box", "isthing": True}]
        >>> ids, info = panoptic_segments(torch.tensor([[[0, 1, 1, 255]], [[5, 2, 3, 0]]]), cats)
        >>> ids.tolist(), [(s["id"], s["category_name"], s["area"]) for s in info]
        ([[1, 2, 3, 0]], [(1, 'wall', 1), (2, 'box', 1), (3, 'box', 1)])
    """
    x = panoptic.detach().cpu().numpy() if isinstance(panoptic, Tensor) else np.asarray(panoptic)
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError(f"panoptic must be 2 x H x W (class, instance), got shape {x.shape}")
    cls, inst = x[0].astype(np.int64), x[1].astype(np.int64)
    by_id = {int(c["id"]): c for c in categories}
    valid = cls != void_label
    unknown = sorted(set(np.unique(cls[valid]).tolist()) - set(by_id))
    if unknown:
        raise ValueError(f"panoptic holds classes {unknown} that are not in the categories")
    thing_ids = np.array([int(c["id"]) for c in categories if c["isthing"]], dtype=np.int64)
    inst = np.where(valid & np.isin(cls, thing_ids), inst, 0)
    span = int(inst.max()) + 1 if inst.size else 1
    key = np.where(valid, cls * span + inst, -1)
    uniq, inverse, area = np.unique(key[valid], return_inverse=True, return_counts=True)
    ids = np.zeros(cls.shape, dtype=np.int64)
    ids[valid] = inverse + 1
    info = []
    for i, (k, a) in enumerate(zip(uniq.tolist(), area.tolist(), strict=True)):
        cat = by_id[k // span]
        info.append(
            {
                "id": i + 1,
                "category_id": int(cat["id"]),
                "category_name": str(cat.get("name", cat["id"])),
                "isthing": bool(cat["isthing"]),
                "area": int(a),
                "iscrowd": 0,
            }
        )
    return ids, info


def write_panoptic(
    name: str,
    panoptic: Tensor,
    categories: Sequence[Mapping[str, Any]],
    out_dir: Path,
    void_label: int = 255,
) -> list[Path]:
    """Write one panoptic prediction in the COCO panoptic format.

    ``<name>_panoptic.png``: the segment ids as RGB (``id = R + 256 G + 256^2 B``,
    0 = VOID) and ``<name>_panoptic.json``: ``{"file_name", "segments_info"}``
    (:func:`panoptic_segments`; ``category_id`` is the dataset's class id,
    e.g. the train id, 0..132 for COCO).

    Returns:
        The two paths.
    """
    from PIL import Image

    ids, info = panoptic_segments(panoptic, categories, void_label)
    png = out_dir / f"{name}_panoptic.png"
    js = out_dir / f"{name}_panoptic.json"
    Image.fromarray(segment_ids_to_rgb(ids)).save(png)
    js.write_text(json.dumps({"file_name": png.name, "segments_info": info}, indent=1))
    return [png, js]
