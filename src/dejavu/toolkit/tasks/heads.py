"""Head specifications: everything the toolkit knows about one kind of prediction head.

A *head* is one output of a base network and the target it is trained on
(``"seg"``, ``"depth"``, ``"normals"``, ``"panoptic"``). Its :class:`HeadSpec`
says, in one place, everything that differs from head to head:

============== ================================ =====================================
field          seg                              depth / normals
============== ================================ =====================================
channels       one per class (``None``)         1 / 3
activations    none (logits)                    softplus or exp / unit length
loss           cross-entropy, ignore label      L1 / ``1 - cos`` on valid pixels
metric         confusion-matrix mIoU, ...       depth errors / angular errors
conditioning   ``"segmentation"``               ``"depth"`` / ``"normals"``
target         int64 H x W, pad 255 (ignore)    float 1 (3) x H x W, pad 0 (invalid)
resampling     nearest                          nearest (normals' x flips with the image)
colouriser     palette                          colormap / ``(n + 1) / 2``
monitor        ``miou``, max                    ``rmse``, min / ``mean``, min
============== ================================ =====================================

Every place that used to switch on a head's name (the task loss and metrics,
the networks' activations, the joint transforms, the panels, prediction files,
the checkpoint monitor) asks the spec instead, and an unregistered head is an
error (:func:`head_spec`), never a silent default. Adding a head is one
:func:`register_head` call (with its :class:`TargetSpec`), in one file.

:class:`TargetSpec` alone describes a dense target the data code must carry
through transforms and padding, also when no head predicts it (``instance``).

**Heads predicted by mask classification** (Mask2Former, ``mask2former_*``).
Such a network returns, besides the dense map under the head's key, the query
outputs under :func:`dejavu.mask_classification.query_keys` ``(key)``; the task
then trains the head with Mask2Former's loss on targets built by the spec's
:attr:`HeadSpec.mask_targets` (``seg``: one mask per class present;
``panoptic``: one per thing instance and stuff class) instead of
:attr:`HeadSpec.loss` (:mod:`dejavu.toolkit.tasks.mask_classification`). The
``panoptic`` head exists only that way (its ``loss`` is None):

- its target is built from the batch's ``seg`` and ``instance``
  (:attr:`HeadSpec.target_from`, :attr:`HeadSpec.target_sources`), a
  ``B x 2 x H x W`` (class, instance) map (a sample may also carry it as
  ``panoptic``);
- what the metric, the panels and ``dejavu predict`` read is the head's
  :attr:`HeadSpec.decode` of the outputs: the panoptic map of Mask2Former's
  post-processing, configured by ``task.postprocess.panoptic`` (threshold,
  overlap_threshold, min_area, mask_threshold) and the dataset's categories
  (:attr:`HeadSpec.uses_categories`);
- the CRM is conditioned on the query outputs (kind ``"mask_classification"``:
  semantic probabilities and an instance-boundary map);
- ``dejavu predict`` writes COCO panoptic PNG + JSON (:attr:`HeadSpec.write`).

**Auxiliary outputs.** A network may return, *in training mode only*, an
auxiliary prediction of a head under :func:`aux_key` (``"seg_aux"`` for
``"seg"``): a deep-supervision output such as HRNet-OCR's soft object regions.
It has the head's layout and activation and is trained with the head's loss
against the head's target, weighted by :attr:`HeadSpec.aux_weight` (0.4, the
OCR and PSPNet auxiliary weight) relative to the head's own loss weight
(:meth:`dejavu.toolkit.tasks.Task.loss`; ``task.loss_weights`` may set
``seg_aux`` itself). It is never a head of its own: no metric, no
conditioning, and an eval-mode network does not return it, so validation,
export and DejaVu's conditioning see only the heads. :func:`output_spec` finds
the spec of either kind of key.

Example:
    >>> head_spec("depth").conditioning, head_spec("depth").monitor
    ('depth', ('rmse', 'min'))
    >>> list_heads()
    ['depth', 'normals', 'panoptic', 'seg']
    >>> head_spec("edges")
    Traceback (most recent call last):
    ...
    ValueError: unknown head 'edges'; allowed: 'seg', 'depth', 'normals', 'panoptic'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice
from dejavu.metrics import (
    DEPTH_METRIC_NAMES,
    HIGHER_IS_BETTER,
    NORMALS_METRIC_NAMES,
    DepthMetrics,
    KittiDepthMetrics,
    NormalsMetrics,
    PanopticQuality,
    SegmentationMetrics,
)
from dejavu.toolkit.colorize import (
    colorize_depth,
    colorize_normals,
    colorize_panoptic,
    colorize_segmentation,
    to_numpy,
)
from dejavu.toolkit.tasks import mask_classification as mc
from dejavu.toolkit.tasks.losses import depth_l1_loss, normals_cosine_loss, segmentation_ce_loss

__all__ = [
    "AUX_SUFFIX",
    "IGNORE_INDEX",
    "HeadSpec",
    "TargetSpec",
    "aux_key",
    "head_spec",
    "list_heads",
    "list_targets",
    "logged_metric_names",
    "metric_direction",
    "output_spec",
    "register_head",
    "register_target",
    "target_spec",
]

#: The default segmentation ignore label (``task.ignore_index``).
IGNORE_INDEX = 255

#: A head's auxiliary (training-only) prediction is ``pred[key + AUX_SUFFIX]``.
AUX_SUFFIX = "_aux"

#: ``colorize(value, num_classes, value_range) -> H x W x 3 uint8`` for one sample.
Colorizer = Callable[[Any, "int | None", "tuple[float, float] | None"], np.ndarray]


# --------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class TargetSpec:
    """How a dense target is stored in a sample, resampled, padded and flipped.

    Attributes:
        key: the sample/batch key (``"seg"``, ``"depth"``, ``"normals"``, ``"instance"``).
        channels: ``None`` for an ``H x W`` map (class or instance ids), else
            the ``C`` of a ``C x H x W`` tensor.
        dtype: the dtype a sample holds.
        fill: the "no label" value used for padding and for images without
            labels (invalid depth 0, no instance 0, ...).
        fill_is_ignore_index: the fill is the task's ``ignore_index`` instead
            (segmentation: 255 unless configured otherwise).
        resample: ``"nearest"`` (no value is invented across a boundary) or
            ``"bilinear"``.
        flip_x_channel: the channel that changes sign when the image is
            mirrored left-right (normals: x), or ``None``.
    """

    key: str
    channels: int | None
    dtype: torch.dtype
    fill: float = 0.0
    fill_is_ignore_index: bool = False
    resample: str = "nearest"
    flip_x_channel: int | None = None

    @property
    def ndim(self) -> int:
        """Dimensions of one sample's tensor: 2 (``H x W``) or 3 (``C x H x W``)."""
        return 2 if self.channels is None else 3

    def fill_value(self, ignore_index: int = IGNORE_INDEX) -> float:
        """The padding / "no label" value (``ignore_index`` when :attr:`fill_is_ignore_index`)."""
        return float(ignore_index) if self.fill_is_ignore_index else float(self.fill)


# --------------------------------------------------------------------------- heads
@dataclass(frozen=True)
class HeadSpec:
    """Everything about one kind of head (see the module docstring's table).

    Attributes:
        key: the prediction key (and the target's key), e.g. ``"seg"``.
        target: how its target is stored (:class:`TargetSpec`).
        channels: the network's output channels; ``None``: one per class.
        activations: name -> ``fn(raw) -> output``, applied per pixel after
            resizing; the first is the default. ``{"none": identity}`` for
            logits.
        activation_option: the network keyword that picks among
            :attr:`activations` (``"depth_activation"``), or ``None``.
        loss: ``loss(pred, target, ignore_index) -> scalar``.
        metric: ``metric(num_classes, ignore_index) -> module`` with ``update(pred, target)``
            and ``compute() -> dict``.
        metric_input: what the metric gets from a prediction (``seg``: argmax labels).
        metric_names: the scalar names ``metric.compute()`` returns.
        higher_is_better: metric name -> whether higher is better, for names that
            :data:`dejavu.metrics.HIGHER_IS_BETTER` does not know.
        per_class_metrics: vector (one value per class) names -> higher is better.
        conditioning: the :class:`dejavu.conditioning.Conditioning` kind of the head.
        colorize: ``colorize(value, num_classes, value_range) -> H x W x 3 uint8``
            for one sample of the output or the target.
        colour_range: ``fn(target) -> (lo, hi) | None``: the value range a
            prediction is coloured with so that it matches its target, or ``None``.
        to_array: one sample of the output -> the array ``dejavu predict`` writes.
        metric_variants: other metrics a config can choose for this head
            (``task.metrics: {<head>: {name: <variant>, ...options}}``): name ->
            ``fn(**options) -> module``, returning the same :attr:`metric_names`
            (depth: ``kitti``, the per-image KITTI protocol); see :meth:`make_metric`.
        monitor: ``(metric name, "max" | "min")``: what picks ``best.ckpt``.
        aux_weight: weight of the head's auxiliary prediction (``pred[aux_key(key)]``,
            returned by some networks in training only) relative to the head's own
            loss weight; the auxiliary loss is :attr:`loss` against the same target.
        target_sources: the batch keys :attr:`target_from` builds the target
            from when the batch has none under :attr:`key` (``panoptic``:
            ``("seg", "instance")``); also what a dataset must load for the head.
        target_from: ``fn(batch) -> target`` (see :attr:`target_sources`), or None.
        mask_targets: ``fn(target, ignore_index, num_classes, categories) ->
            [(N x H x W masks, N classes)]`` per image: the head's target for
            mask classification (a network that returns query outputs); None:
            the head cannot be trained that way.
        decode: ``fn(pred, key, categories, ignore_index, **postprocess) -> value``:
            what the metric, the panels and ``dejavu predict`` read from the
            network's outputs (``panoptic``: the post-processed panoptic map);
            None: ``pred[key]``.
        check_postprocess: ``fn(options) -> options``: checks the options of
            :attr:`decode` (``task.postprocess.<key>``); None: it takes none.
        uses_categories: the metric and :attr:`decode` need the dataset's
            categories (``{"id", "name", "isthing"}`` per class).
        write: ``fn(name, value, meta, out_dir) -> paths``: how ``dejavu
            predict`` writes one decoded sample (``meta``: the run's ``base.json``
            metadata); None: a colourised PNG and :attr:`to_array` as ``.npy``.
    """

    key: str
    target: TargetSpec
    channels: int | None
    activations: Mapping[str, Callable[[Tensor], Tensor]]
    loss: Callable[[Tensor, Tensor, int], Tensor] | None
    metric: Callable[..., nn.Module]
    metric_names: tuple[str, ...]
    conditioning: str
    colorize: Colorizer
    monitor: tuple[str, str]
    metric_input: Callable[[Tensor], Tensor] = lambda pred: pred
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    per_class_metrics: Mapping[str, bool] = field(default_factory=dict)
    activation_option: str | None = None
    colour_range: Callable[[Tensor], tuple[float, float] | None] = lambda target: None
    to_array: Callable[[Tensor], np.ndarray] = lambda value: value.numpy().astype(np.float32)
    metric_variants: Mapping[str, Callable[..., nn.Module]] = field(default_factory=dict)
    aux_weight: float = 0.4
    target_sources: tuple[str, ...] = ()
    target_from: Callable[[Mapping[str, Any]], Tensor] | None = None
    mask_targets: Callable[..., list[tuple[Tensor, Tensor]]] | None = None
    decode: Callable[..., Tensor] | None = None
    check_postprocess: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    uses_categories: bool = False
    write: Callable[[str, Tensor, Mapping[str, Any], Path], list[Path]] | None = None

    @property
    def data_keys(self) -> tuple[str, ...]:
        """The batch keys a dataset must provide for this head (its target's sources).

        Example:
            >>> head_spec("panoptic").data_keys, head_spec("seg").data_keys
            (('seg', 'instance'), ('seg',))
        """
        return self.target_sources if self.target_from is not None else (self.key,)

    def has_target(self, batch: Mapping[str, Any]) -> bool:
        """Whether ``batch`` (or one sample) holds this head's target or all its sources."""
        return self.key in batch or (
            self.target_from is not None and all(k in batch for k in self.target_sources)
        )

    def target_value(self, batch: Mapping[str, Any]) -> Tensor:
        """The head's target: ``batch[key]``, else built by :attr:`target_from`.

        Raises:
            ValueError: when the batch has neither (naming the keys present).

        Example:
            >>> batch = {"seg": torch.zeros(1, 2, 2, dtype=torch.long),
            ...          "instance": torch.ones(1, 2, 2, dtype=torch.long)}
            >>> head_spec("panoptic").target_value(batch).shape
            torch.Size([1, 2, 2, 2])
        """
        if self.key in batch:
            return batch[self.key]
        if self.target_from is not None and self.has_target(batch):
            return self.target_from(batch)
        sources = f" (or {' and '.join(map(repr, self.target_sources))})" * bool(
            self.target_from is not None
        )
        raise ValueError(f"batch has no {self.key!r} target{sources}; keys: {sorted(batch)}")

    def prediction(
        self,
        pred: Mapping[str, Tensor],
        categories: Sequence[Mapping[str, Any]] | None = None,
        ignore_index: int = IGNORE_INDEX,
        postprocess: Mapping[str, Any] | None = None,
    ) -> Tensor:
        """What the metric, panels and ``dejavu predict`` read: :attr:`decode` or ``pred[key]``."""
        if self.decode is None:
            return pred[self.key]
        return self.decode(pred, self.key, categories, ignore_index, **dict(postprocess or {}))

    def make_metric(
        self,
        num_classes: int | None,
        ignore_index: int,
        options: Mapping[str, Any] | None = None,
        categories: Sequence[Mapping[str, Any]] | None = None,
    ) -> nn.Module:
        """A fresh metric: :attr:`metric`, or the variant ``options["name"]`` with the rest
        of ``options`` as its keyword arguments (``name: default`` is :attr:`metric`).

        ``categories`` (the dataset's ``{"id", "name", "isthing"}`` per class) go to
        the default metric of a head with :attr:`uses_categories`.

        Raises:
            ValueError: for an unknown variant (listing them), options it does not
                take, or missing ``categories``.

        Example:
            >>> type(head_spec("depth").make_metric(None, 255, {"name": "kitti", "crop": "eigen"}))
            <class 'dejavu.metrics.kitti.KittiDepthMetrics'>
        """
        opts = dict(options or {})
        name = opts.pop("name", "default")
        check_choice(name, f"{self.key} metric", ("default", *self.metric_variants))
        if name == "default":
            if opts:
                raise ValueError(
                    f"the default {self.key} metric takes no options, got {sorted(opts)}"
                )
            if self.uses_categories:
                if not categories:
                    raise ValueError(
                        f"the {self.key} metric needs the dataset's categories ({{id, name, "
                        "isthing}} per class: a dataset with a thing/stuff split)"
                    )
                return self.metric(num_classes, ignore_index, categories)
            return self.metric(num_classes, ignore_index)
        try:
            return self.metric_variants[name](**opts)
        except TypeError as exc:  # an option the variant does not take
            raise ValueError(f"{self.key} metric {name!r}: {exc}") from None

    def higher_is_better_for(self, metric: str) -> bool:
        """Whether a higher value of the scalar ``metric`` is better.

        Raises:
            KeyError: for a metric with no known direction.
        """
        if metric in self.higher_is_better:
            return bool(self.higher_is_better[metric])
        return bool(HIGHER_IS_BETTER[metric])

    def activate(self, raw: Tensor, options: Mapping[str, Any] | None = None) -> Tensor:
        """Apply the activation that ``options[activation_option]`` names (default: the first)."""
        names = tuple(self.activations)
        name = names[0]
        if self.activation_option is not None and options:
            name = options.get(self.activation_option) or name
        return self.activations[check_choice(name, self.activation_option or "activation", names)](
            raw
        )


_TARGETS: dict[str, TargetSpec] = {}
_HEADS: dict[str, HeadSpec] = {}


def register_target(spec: TargetSpec) -> TargetSpec:
    """Register a :class:`TargetSpec` under its own ``key``; returns it.

    Raises:
        ValueError: when the key is taken by a different spec.
    """
    if spec.key in _TARGETS and _TARGETS[spec.key] != spec:
        raise ValueError(f"target {spec.key!r} is already registered")
    if spec.resample not in ("nearest", "bilinear"):
        raise ValueError(f"resample must be 'nearest' or 'bilinear', got {spec.resample!r}")
    _TARGETS[spec.key] = spec
    return spec


def register_head(spec: HeadSpec) -> HeadSpec:
    """Register a :class:`HeadSpec` (and its target) under its own ``key``; returns it.

    Raises:
        ValueError: when the key is taken by a different spec, or the spec's
            monitor names a metric it does not log.
    """
    if spec.key in _HEADS and _HEADS[spec.key] is not spec:
        raise ValueError(f"head {spec.key!r} is already registered")
    if spec.target.key != spec.key:
        raise ValueError(
            f"head {spec.key!r} needs a target of the same key, got {spec.target.key!r}"
        )
    if spec.loss is None and spec.mask_targets is None:
        raise ValueError(f"head {spec.key!r} needs a loss or mask_targets (mask classification)")
    if spec.monitor[0] not in spec.metric_names or spec.monitor[1] not in ("max", "min"):
        raise ValueError(
            f"head {spec.key!r}: monitor must be (one of {spec.metric_names}, 'max'|'min'), "
            f"got {spec.monitor!r}"
        )
    unknown = [m for m in spec.metric_names if m not in spec.higher_is_better]
    unknown = [m for m in unknown if m not in HIGHER_IS_BETTER]
    if unknown:
        raise ValueError(
            f"head {spec.key!r}: say in higher_is_better whether higher is better for {unknown}"
        )
    register_target(spec.target)
    _HEADS[spec.key] = spec
    return spec


def head_spec(key: str) -> HeadSpec:
    """The :class:`HeadSpec` of ``key``.

    Raises:
        ValueError: for an unregistered head (listing the registered ones).
    """
    return _HEADS[check_choice(key, "head", tuple(_HEADS))]


def aux_key(key: str) -> str:
    """The prediction key of head ``key``'s auxiliary (training-only) output.

    Example:
        >>> aux_key("seg")
        'seg_aux'
    """
    return f"{key}{AUX_SUFFIX}"


def output_spec(name: str) -> HeadSpec:
    """The :class:`HeadSpec` of a prediction key: a head's own key or its :func:`aux_key`.

    Raises:
        ValueError: when ``name`` is neither (listing the registered heads).

    Example:
        >>> output_spec("seg_aux") is head_spec("seg")
        True
    """
    if name not in _HEADS and name.endswith(AUX_SUFFIX) and name[: -len(AUX_SUFFIX)] in _HEADS:
        return _HEADS[name[: -len(AUX_SUFFIX)]]
    return head_spec(name)


def target_spec(key: str) -> TargetSpec:
    """The :class:`TargetSpec` of ``key`` (every head's target, plus target-only keys).

    Raises:
        ValueError: for an unregistered target key.
    """
    return _TARGETS[check_choice(key, "target", tuple(_TARGETS))]


def list_heads() -> list[str]:
    """The registered head keys, sorted."""
    return sorted(_HEADS)


def list_targets() -> list[str]:
    """The registered target keys (heads' targets and target-only ones), sorted."""
    return sorted(_TARGETS)


def logged_metric_names(heads: Sequence[str], num_classes: int | None = None) -> list[str]:
    """Every validation metric name the training module logs for ``heads`` (without ``val/``).

    ``loss``, ``<head>/<metric>`` for each scalar metric and, with
    ``num_classes``, ``<head>/<per-class metric>/<class>``.

    Example:
        >>> logged_metric_names(["seg"], num_classes=2)[:4]
        ['loss', 'seg/miou', 'seg/aacc', 'seg/macc']
        >>> "seg/iou_per_class/1" in logged_metric_names(["seg"], num_classes=2)
        True
    """
    names = ["loss"]
    for key in heads:
        spec = head_spec(key)
        names += [f"{key}/{m}" for m in spec.metric_names]
        if num_classes is not None:
            names += [f"{key}/{m}/{i}" for m in spec.per_class_metrics for i in range(num_classes)]
    return names


def metric_direction(name: str, heads: Sequence[str], num_classes: int | None = None) -> str:
    """``"max"`` or ``"min"`` for a metric name logged for ``heads`` (:func:`logged_metric_names`).

    Without ``num_classes`` any class index is accepted for a per-class metric.

    Raises:
        ValueError: when ``name`` is not a metric that is logged for ``heads``.

    Example:
        >>> metric_direction("seg/iou_per_class/3", ["seg"]), metric_direction("loss", ["seg"])
        ('max', 'min')
    """
    if name == "loss":
        return "min"
    key, _, rest = name.partition("/")
    if key in heads and key in _HEADS:
        spec = _HEADS[key]
        metric, _, index = rest.partition("/")
        if not index and metric in spec.metric_names:
            return "max" if spec.higher_is_better_for(metric) else "min"
        in_range = index.isdigit() and (num_classes is None or int(index) < num_classes)
        if metric in spec.per_class_metrics and in_range:
            return "max" if spec.per_class_metrics[metric] else "min"
    examples = logged_metric_names(heads, num_classes if num_classes is not None else 1)
    raise ValueError(
        f"{name!r} is not a logged metric of heads {list(heads)}; allowed: 'loss', "
        f"'<head>/<metric>' or '<head>/<per-class metric>/<class>', e.g. "
        f"{', '.join(map(repr, examples))}"
    )


# --------------------------------------------------------------------------- built-ins
def _seg_colorize(value: Any, num_classes: int | None, _range: Any) -> np.ndarray:
    x = to_numpy(value, "seg")
    if x.ndim == 3:  # K x H x W logits
        x = x.argmax(axis=0)
    k = num_classes if num_classes is not None else int(x.max()) + 1
    return colorize_segmentation(x, k)


def _depth_colorize(value: Any, _k: int | None, value_range: Any) -> np.ndarray:
    lo, hi = value_range if value_range is not None else (None, None)
    return colorize_depth(value, lo, hi)


def _depth_range(target: Tensor) -> tuple[float, float] | None:
    t = to_numpy(target, "depth")
    v = t[np.isfinite(t) & (t > 0)]
    return (float(v.min()), float(v.max())) if v.size else None


def _seg_array(value: Tensor) -> np.ndarray:
    labels = value.argmax(dim=0).numpy()
    return labels.astype(np.uint8 if value.shape[0] <= 256 else np.int32)


# Keeps depth strictly positive where softplus underflows to 0 in float32.
_DEPTH_EPS = 1e-6

SEG = register_head(
    HeadSpec(
        key="seg",
        target=TargetSpec("seg", None, torch.int64, fill_is_ignore_index=True),
        channels=None,
        activations={"none": lambda x: x},
        loss=segmentation_ce_loss,
        metric=lambda k, ignore: SegmentationMetrics(_classes(k), ignore_index=ignore),
        metric_input=lambda pred: pred.argmax(dim=1),
        metric_names=("miou", "aacc", "macc"),
        per_class_metrics={"iou_per_class": True, "acc_per_class": True},
        conditioning="segmentation",
        colorize=_seg_colorize,
        to_array=_seg_array,
        monitor=("miou", "max"),
        mask_targets=lambda seg, ignore, k, _cats: mc.semantic_mask_targets(seg, ignore, k),
    )
)

DEPTH = register_head(
    HeadSpec(
        key="depth",
        target=TargetSpec("depth", 1, torch.float32),
        channels=1,
        activations={
            "softplus": lambda x: F.softplus(x) + _DEPTH_EPS,
            "exp": torch.exp,
        },
        activation_option="depth_activation",
        loss=lambda pred, target, _ignore: depth_l1_loss(pred, target),
        metric=lambda _k, _ignore: DepthMetrics(),
        metric_variants={"kitti": KittiDepthMetrics},  # per image, Garg / Eigen crop
        metric_names=DEPTH_METRIC_NAMES,
        conditioning="depth",
        colorize=_depth_colorize,
        colour_range=_depth_range,
        to_array=lambda value: value[0].numpy().astype(np.float32),
        monitor=("rmse", "min"),
    )
)

NORMALS = register_head(
    HeadSpec(
        key="normals",
        target=TargetSpec("normals", 3, torch.float32, flip_x_channel=0),
        channels=3,
        activations={"unit": lambda x: F.normalize(x, dim=1)},
        loss=lambda pred, target, _ignore: normals_cosine_loss(pred, target),
        metric=lambda _k, _ignore: NormalsMetrics(),
        metric_names=NORMALS_METRIC_NAMES,
        conditioning="normals",
        colorize=lambda value, _k, _r: colorize_normals(value),
        monitor=("mean", "min"),
    )
)

# Instance ids (panoptic data): carried through transforms and padding; with ``seg`` they
# make the panoptic target.
INSTANCE = register_target(TargetSpec("instance", None, torch.int64, fill=0.0))


def _panoptic_colorize(value: Any, num_classes: int | None, _range: Any) -> np.ndarray:
    x = to_numpy(value, "panoptic")
    k = num_classes if num_classes is not None else int(x[0][x[0] < 255].max(initial=0)) + 1
    return colorize_panoptic(x, k)


def _panoptic_write(name: str, value: Tensor, meta: Mapping[str, Any], out_dir: Path) -> list[Path]:
    from PIL import Image

    categories = meta.get("categories") or []
    written = mc.write_panoptic(
        name, value, categories, out_dir, int(meta.get("ignore_index", IGNORE_INDEX))
    )
    png = out_dir / f"{name}_panoptic_color.png"
    Image.fromarray(_panoptic_colorize(value, meta.get("num_classes"), None)).save(png)
    return [*written, png]


_PQ_NAMES = tuple(f"{m}{g}" for g in ("", "_things", "_stuff") for m in ("pq", "sq", "rq"))

PANOPTIC = register_head(
    HeadSpec(
        key="panoptic",
        # A sample may carry the (class, instance) map itself; padded pixels are VOID.
        target=TargetSpec("panoptic", 2, torch.int64, fill_is_ignore_index=True),
        channels=None,
        activations={"none": lambda x: x},
        loss=None,  # mask classification only (mask2former_*)
        mask_targets=lambda t, ignore, _k, cats: mc.panoptic_mask_targets(
            t, ignore, mc.isthing_flags(cats, "the panoptic loss")
        ),
        target_sources=("seg", "instance"),
        target_from=mc.panoptic_target,
        decode=mc.decode_panoptic,
        check_postprocess=mc.check_postprocess,
        uses_categories=True,
        metric=lambda _k, ignore, cats: PanopticQuality(cats, void_label=ignore),
        metric_names=_PQ_NAMES,
        per_class_metrics={"pq_per_class": True, "sq_per_class": True, "rq_per_class": True},
        conditioning="mask_classification",
        colorize=_panoptic_colorize,
        to_array=lambda value: value.numpy().astype(np.int32),
        write=_panoptic_write,
        monitor=("pq", "max"),
    )
)


def _classes(num_classes: int | None) -> int:
    if num_classes is None or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"a class head needs num_classes >= 1, got {num_classes!r}")
    return int(num_classes)
