"""Dense-prediction tasks: heads, loss, DejaVu conditioning, redaction and metrics.

A task kind is a :class:`TaskSpec` (its heads and its default redaction),
registered under its own name with :func:`register_task` (timm style: adding a
task is one file; nothing else keeps a list of the names). :func:`create_task`
builds a :class:`Task` from a registered name: it gathers what differs between
segmentation, depth, normals and multi-task learning, so the training code is
the same for all of them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from dejavu._validation import check_choice
from dejavu.mask_classification import has_query_outputs, query_keys
from dejavu.toolkit.tasks.heads import aux_key, head_spec, metric_direction
from dejavu.toolkit.tasks.mask_classification import check_mask_loss, mask_classification_loss

__all__ = [
    "Task",
    "TaskMetrics",
    "TaskSpec",
    "create_task",
    "list_tasks",
    "register_task",
    "task_heads",
    "task_spec",
]


@dataclass(frozen=True)
class TaskSpec:
    """A kind of task: which heads the network predicts and the redaction that suits it.

    Attributes:
        name: the registry name (``task.name`` in a config).
        heads: the prediction keys, in order (e.g. ``("seg", "depth", "normals")``).
        default_redaction: the redaction the paper's findings suggest for it
            (spatial for segmentation, a spectral band-stop for geometry).
    """

    name: str
    heads: tuple[str, ...]
    default_redaction: str = "random"

    @property
    def monitor(self) -> tuple[str, str]:
        """The default metric (without ``val/``) and mode that pick ``best.ckpt``: the
        first head's (``seg/miou``, max; ``depth/rmse``, min; ``normals/mean``, min)."""
        key = self.heads[0]
        return f"{key}/{head_spec(key).monitor[0]}", head_spec(key).monitor[1]

    @property
    def data_keys(self) -> tuple[str, ...]:
        """The targets a dataset must load for this task, in order (``panoptic``: ``seg``
        and ``instance``; otherwise the heads).

        Example:
            >>> task_spec("panoptic").data_keys, task_spec("multitask").data_keys
            (('seg', 'instance'), ('seg', 'depth', 'normals'))
        """
        keys = [k for key in self.heads for k in head_spec(key).data_keys]
        return tuple(dict.fromkeys(keys))


# name -> spec, in registration order: the one list of tasks.
_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a :class:`TaskSpec` under its own ``name``; returns it.

    Raises:
        ValueError: when the name is empty, taken by another spec, or names no head.
    """
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"a task needs a non-empty name, got {spec.name!r}")
    if spec.name in _TASKS and _TASKS[spec.name] != spec:
        raise ValueError(f"task name {spec.name!r} is already registered")
    if not spec.heads:
        raise ValueError(f"task {spec.name!r} must name at least one head")
    for key in spec.heads:
        head_spec(key)  # every head must be registered
    _TASKS[spec.name] = spec
    return spec


def list_tasks(pattern: str | None = None) -> list[str]:
    """The registered task names, sorted, optionally filtered by a glob ``pattern``.

    Example:
        >>> list_tasks()
        ['depth', 'multitask', 'normals', 'panoptic', 'segmentation']
    """
    names = sorted(_TASKS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatch(n, pattern)]


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` registered as ``name``.

    Raises:
        ValueError: for an unknown name (listing the registered ones).
    """
    return _TASKS[check_choice(name, "task", tuple(_TASKS))]


# Paper finding: spatial redaction suits segmentation, a spectral band-stop
# (middle frequencies removed) suits depth and normals.
register_task(TaskSpec("segmentation", ("seg",), default_redaction="random"))
register_task(TaskSpec("depth", ("depth",), default_redaction="bandstop"))
register_task(TaskSpec("normals", ("normals",), default_redaction="bandstop"))
# The NYUD-v2 multi-task setting.
register_task(TaskSpec("multitask", ("seg", "depth", "normals"), default_redaction="bandstop"))
# COCO / Cityscapes panoptic segmentation with a mask-classification network (mask2former_*).
register_task(TaskSpec("panoptic", ("panoptic",), default_redaction="random"))


@dataclass
class Task:
    """What a dense-prediction task needs beyond the network.

    Attributes:
        name: a registered task name (:func:`list_tasks`).
        heads: prediction key -> output channels, e.g. ``{"seg": 19}``.
        loss_weights: prediction key -> weight of its loss in the sum (default 1); an
            auxiliary key (``"seg_aux"``) sets the auxiliary output's weight itself
            (default: its head's weight times the head spec's ``aux_weight``).
        num_classes: segmentation classes (``None`` without a ``seg`` head).
        ignore_index: segmentation label to ignore.
        default_redaction: redaction the paper's findings suggest for the task
            (spatial for segmentation, spectral band-stop for geometry).
        metric_options: head -> the metric variant and its options
            (:meth:`~dejavu.toolkit.tasks.heads.HeadSpec.make_metric`), e.g.
            ``{"depth": {"name": "kitti", "crop": "garg"}}``; a head not listed
            uses its spec's default metric.
        categories: the dataset's ``{"id", "name", "isthing"}`` per class, for heads
            whose spec ``uses_categories`` (``panoptic``); None otherwise.
        postprocess: head -> options of its decoding (``panoptic``: threshold,
            overlap_threshold, min_area, mask_threshold; see
            :data:`~dejavu.toolkit.tasks.mask_classification.POSTPROCESS_DEFAULTS`).
        mask_loss: overrides of Mask2Former's loss settings for the heads trained by
            mask classification
            (:data:`~dejavu.toolkit.tasks.mask_classification.MASK2FORMER_LOSS`).

    Example:
        >>> task = create_task("segmentation", num_classes=3)
        >>> pred = {"seg": torch.zeros(1, 3, 2, 2)}
        >>> batch = {"seg": torch.zeros(1, 2, 2, dtype=torch.long)}
        >>> round(float(task.loss(pred, batch)["loss"]), 4)
        1.0986
    """

    name: str
    heads: dict[str, int]
    loss_weights: dict[str, float] = field(default_factory=dict)
    num_classes: int | None = None
    ignore_index: int = 255
    default_redaction: str = "random"
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: list[dict[str, Any]] | None = None
    postprocess: dict[str, dict[str, Any]] = field(default_factory=dict)
    mask_loss: dict[str, float] = field(default_factory=dict)

    def target(self, batch: Mapping[str, Any], key: str) -> Tensor:
        """Head ``key``'s target in ``batch`` (``batch[key]``, or built from its sources:
        the panoptic map from ``seg`` and ``instance``)."""
        return head_spec(key).target_value(batch)

    def prediction(self, pred: Mapping[str, Tensor], key: str) -> Tensor:
        """What the metric, the panels and ``dejavu predict`` read of head ``key``:
        ``pred[key]``, or its decoding (``panoptic``: the post-processed panoptic map)."""
        return head_spec(key).prediction(
            pred, self.categories, self.ignore_index, self.postprocess.get(key)
        )

    @property
    def conditioning(self) -> dict[str, str]:
        """Conditioning spec for :class:`dejavu.conditioning.Conditioning`."""
        return {key: head_spec(key).conditioning for key in self.heads}

    @property
    def target_keys(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def loss(self, pred: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Weighted sum of the per-head losses, auxiliary outputs included.

        A prediction may carry a head's auxiliary output under
        :func:`~dejavu.toolkit.tasks.heads.aux_key` (``"seg_aux"``; networks return
        it in training mode only, e.g. HRNet-OCR's soft object regions). It is
        trained with the head's loss against the head's target, weighted by
        ``loss_weights["seg_aux"]`` if given, else by the head's weight times its
        spec's ``aux_weight`` (0.4). Without it (eval mode) the loss is the heads' alone.

        A head whose query outputs are in the prediction (a mask-classification
        network, :func:`dejavu.mask_classification.query_keys`) is trained with
        Mask2Former's loss (every decoder layer the prediction holds) against its
        spec's ``mask_targets`` instead of its per-pixel loss
        (:mod:`~dejavu.toolkit.tasks.mask_classification`).

        Returns:
            ``{"loss": total, "<head>": that head's unweighted loss, ...}``, plus
            ``"<head>_aux"`` (unweighted) for each auxiliary output present.

        Example:
            >>> task = create_task("segmentation", num_classes=3)
            >>> batch = {"seg": torch.zeros(1, 2, 2, dtype=torch.long)}
            >>> pred = {"seg": torch.zeros(1, 3, 2, 2), "seg_aux": torch.zeros(1, 3, 2, 2)}
            >>> out = task.loss(pred, batch)
            >>> round(float(out["loss"]), 4), round(float(out["seg"] * 1.4), 4)
            (1.5381, 1.5381)
        """
        parts: dict[str, Tensor] = {}
        weights: dict[str, float] = {}
        for key in self.heads:
            spec = head_spec(key)
            if has_query_outputs(pred, key) and spec.mask_targets is not None:
                targets = spec.mask_targets(
                    self.target(batch, key), self.ignore_index, self.num_classes, self.categories
                )
                parts[key] = mask_classification_loss(pred, key, targets, **self.mask_loss)
                weights[key] = self.loss_weights.get(key, 1.0)
                continue
            if key not in pred:
                raise ValueError(f"prediction has no {key!r} output; outputs: {sorted(pred)}")
            target = self.target(batch, key)
            if spec.loss is None:
                keys = query_keys(key)
                raise ValueError(
                    f"head {key!r} is trained by mask classification only: its network must "
                    f"return the query outputs {keys.class_logits!r} and {keys.mask_logits!r} "
                    f"(a mask2former_* model); outputs: {sorted(pred)}"
                )
            parts[key] = spec.loss(pred[key], target, self.ignore_index)
            weights[key] = self.loss_weights.get(key, 1.0)
            aux = aux_key(key)
            if aux in pred:  # a training-only auxiliary output of this head
                parts[aux] = spec.loss(pred[aux], target, self.ignore_index)
                weights[aux] = self.loss_weights.get(aux, weights[key] * spec.aux_weight)
        weighted = [weights[k] * v for k, v in parts.items()]
        total = sum(weighted[1:], start=weighted[0])  # = sum(weighted), typed as a Tensor
        return {"loss": total, **parts}

    __call__ = loss

    def metrics(self) -> TaskMetrics:
        """Fresh (DDP-synced) metrics for this task."""
        return TaskMetrics(self)

    def monitor_mode(self, name: str) -> str:
        """``"max"`` or ``"min"`` for a metric this task logs (``seg/miou``, ``loss``,
        ``seg/iou_per_class/3``, ...).

        Raises:
            ValueError: for a name that is not logged (listing what is).
        """
        return metric_direction(name, tuple(self.heads), self.num_classes)


class TaskMetrics(nn.Module):
    """The metrics of every head of a task, updated from predictions only.

    ``compute()`` returns flat floats named ``<head>/<metric>``, e.g.
    ``seg/miou``, ``depth/abs_err``, ``normals/mean``; segmentation scores are
    fractions (0..1), per-class IoU is ``seg/iou_per_class/<class index>``
    (:func:`~dejavu.toolkit.tasks.heads.logged_metric_names` lists them all).
    """

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.metrics = nn.ModuleDict(
            {
                key: head_spec(key).make_metric(
                    task.num_classes,
                    task.ignore_index,
                    task.metric_options.get(key),
                    task.categories,
                )
                for key in task.heads
            }
        )

    def _each(self) -> list[tuple[str, Any]]:
        # (head, metric) pairs; each metric is its head spec's (update / compute / reset).
        return list(self.metrics.items())

    def update(self, pred: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> None:
        for key, metric in self._each():
            value = self.task.prediction(pred, key).detach()
            metric.update(head_spec(key).metric_input(value), self.task.target(batch, key))

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, metric in self._each():
            for name, value in metric.compute().items():
                if value.numel() == 1:
                    out[f"{key}/{name}"] = float(value)
                else:
                    for i, v in enumerate(value.flatten().tolist()):
                        out[f"{key}/{name}/{i}"] = float(v)
        return out

    def reset(self) -> None:
        for _, metric in self._each():
            metric.reset()


def task_heads(name: str, num_classes: int | None = None) -> dict[str, int]:
    """Head name -> output channels of the registered task ``name``.

    Raises:
        ValueError: for an unknown task, or a task with a class head (``seg``)
            without a positive ``num_classes``.

    Example:
        >>> task_heads("multitask", 40)
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    spec = task_spec(name)
    heads: dict[str, int] = {}
    for key in spec.heads:
        channels = head_spec(key).channels
        if channels is not None:
            heads[key] = channels
            continue
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"num_classes must be a positive int for task {name!r} (its {key!r} head has "
                f"one channel per class), got {num_classes!r}"
            )
        heads[key] = num_classes
    return heads


def create_task(
    name: str,
    *,
    num_classes: int | None = None,
    loss_weights: Mapping[str, float] | None = None,
    ignore_index: int = 255,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    categories: Sequence[Mapping[str, Any]] | None = None,
    postprocess: Mapping[str, Mapping[str, Any]] | None = None,
    mask_loss: Mapping[str, float] | None = None,
) -> Task:
    """Build a :class:`Task` by name.

    Args:
        name: a registered task (:func:`list_tasks`): ``"segmentation"``,
            ``"depth"``, ``"normals"`` or ``"multitask"`` (segmentation + depth +
            normals, NYUD-v2 style), ...
        num_classes: required by tasks with a class head (segmentation, multitask).
        loss_weights: per-head weights of the summed loss (default 1 each); a head's
            auxiliary key (``"seg_aux"``) sets its auxiliary output's weight.
        ignore_index: segmentation ignore label.
        metrics: per head, a metric variant and its options instead of the
            head's default metric, e.g. ``{"depth": {"name": "kitti", "crop": "garg"}}``
            (``task.metrics`` in a config); checked by building them.
        categories: the dataset's ``{"id", "name", "isthing"}`` per class; required by
            a head that uses them (``panoptic``), one per class.
        postprocess: per head, options of its decoding (``task.postprocess`` in a
            config), e.g. ``{"panoptic": {"threshold": 0.5}}``; checked here.
        mask_loss: overrides of Mask2Former's loss settings (``task.mask_loss``), e.g.
            ``{"num_points": 512}``, used by heads trained by mask classification;
            checked here (:func:`~dejavu.toolkit.tasks.mask_classification.check_mask_loss`).

    Example:
        >>> create_task("multitask", num_classes=40).heads
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    spec = task_spec(name)
    heads = task_heads(name, num_classes)
    weights = dict(loss_weights or {})
    allowed = [*heads, *(aux_key(k) for k in heads)]
    unknown = set(weights) - set(allowed)
    if unknown:
        raise ValueError(
            f"loss_weights has unknown heads {sorted(unknown)}; heads: {list(heads)} "
            f"(and their auxiliary outputs {[aux_key(k) for k in heads]})"
        )
    metric_options = {key: dict(opts) for key, opts in (metrics or {}).items()}
    unknown = set(metric_options) - set(heads)
    if unknown:
        raise ValueError(f"metrics has unknown heads {sorted(unknown)}; heads: {list(heads)}")
    needs_classes = any(head_spec(key).channels is None for key in heads)
    cats = _check_categories(name, heads, categories, num_classes)
    post = {key: dict(opts) for key, opts in (postprocess or {}).items()}
    for key, opts in post.items():
        check = head_spec(key).check_postprocess if key in heads else None
        if check is None:
            takes = [k for k in heads if head_spec(k).check_postprocess is not None]
            raise ValueError(
                f"postprocess has options for {key!r}, which is not a head of task {name!r} "
                f"with a post-processing; heads that have one: {takes}"
            )
        check(opts)
    for key, opts in metric_options.items():  # built once here: bad names and options fail
        head_spec(key).make_metric(num_classes, ignore_index, opts, cats)
    return Task(
        name=name,
        heads=heads,
        loss_weights=weights,
        num_classes=num_classes if needs_classes else None,
        ignore_index=ignore_index,
        default_redaction=spec.default_redaction,
        metric_options=metric_options,
        categories=cats,
        postprocess=post,
        mask_loss=check_mask_loss(mask_loss or {}),
    )


def _check_categories(
    name: str,
    heads: Mapping[str, int],
    categories: Sequence[Mapping[str, Any]] | None,
    num_classes: int | None,
) -> list[dict[str, Any]] | None:
    """``categories`` as plain dicts, checked when a head of the task uses them."""
    users = [k for k in heads if head_spec(k).uses_categories]
    if not users:
        return [dict(c) for c in categories] if categories else None
    if not categories:
        raise ValueError(
            f"task {name!r} needs the dataset's panoptic categories ({{id, name, isthing}} per "
            f"class) for its {users} head: use a dataset with a thing/stuff split"
        )
    cats = [dict(c) for c in categories]
    if num_classes is not None and len(cats) != num_classes:
        raise ValueError(f"got {len(cats)} categories for {num_classes} classes")
    for i, c in enumerate(cats):
        if c.get("id") != i or "isthing" not in c:
            raise ValueError(
                f"categories[{i}] must be {{'id': {i}, 'isthing': bool, ...}} (ids are the "
                f"train ids, in order), got {c!r}"
            )
    return cats
