"""Experiment configuration: nested dataclasses, YAML files with ``_base_`` inheritance.

A run is described by one :class:`ExperimentConfig`. It is plain data (every
field typed and documented below), so it can be built in Python, loaded from
YAML, changed from the command line and written back next to the run's
checkpoints, which makes a run reproducible from its run directory alone.

YAML files
    Keys mirror the dataclasses (``optim: {lr: 0.01}``). A file may start
    from others with ``_base_: ../base.yaml`` (a path relative to the file,
    or a list of them, merged in order); bases are resolved recursively and
    the file's own keys are deep-merged on top, so a "with DejaVu" and a
    "without DejaVu" config share everything but ``dejavu.enabled``. Free-form
    mappings (``dejavu.redaction``, ``model.kwargs``, ...) merge too (starting
    from their defaults, whose keys every variant accepts); put
    ``_replace_: true`` in a mapping to replace the inherited one instead
    (e.g. to switch the redaction kind without keeping the old kind's options).
    ``name`` defaults to the file's stem when no file in the chain sets it.

Overrides
    ``a.b.c=value`` with ``value`` parsed by YAML (``dejavu.enabled=false``,
    ``optim.lr=1e-3``, ``data.crop_size=[96,128]``). A mapping value assigned
    to a free-form mapping field replaces it (``dejavu.redaction={name:
    blocks}``); assigned to a section, it is merged into it.

Errors
    Every problem with a config is a :class:`~dejavu.toolkit.errors.ConfigError`
    (a ``ValueError``; a missing file is a ``UserPathError``, also a
    ``FileNotFoundError``), raised before any training starts, which the
    command line reports in one line with exit status 2: an unknown key (in a
    file or an override) names its dotted path and lists the valid keys at
    that level; a value of the wrong type names the key, the expected type and
    what was given; unknown names (task, dataset, model, redaction, CRM) list
    the registered ones; out-of-range values (negative learning rate, unknown
    optimiser) say what is allowed.

Example:
    >>> cfg = load_config(None, ["task.name=depth", "optim.lr=1e-3"])
    >>> cfg.task.name, cfg.optim.lr
    ('depth', 0.001)
    >>> config_from_dict(config_to_dict(cfg)) == cfg
    True
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from dejavu._validation import check_choice, check_in_range
from dejavu.crm import check_crm_options, list_crms
from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = [
    "ConfigError",
    "DataConfig",
    "DejaVuConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TaskConfig",
    "TrainerConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_yaml",
    "save_config",
    "validate_config",
]

T = TypeVar("T")

OPTIMIZERS = ("adamw", "sgd")


# --------------------------------------------------------------------------- sections
@dataclass
class TaskConfig:
    """What the network predicts and how the task loss is weighted."""

    name: str = "segmentation"
    """A registered task (``dejavu.toolkit.tasks.list_tasks()``): ``segmentation``, ``depth``,
    ``normals`` or ``multitask`` (seg + depth + normals)."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Per-head weights of the summed task loss, e.g. ``{seg: 1.0, depth: 0.5}`` (default 1)."""
    ignore_index: int = 255
    """Segmentation label that is ignored by the loss and the metrics."""


@dataclass
class DataConfig:
    """Dataset, splits, loaders and augmentation."""

    name: str = "scenes"
    """Dataset name for ``dejavu.toolkit.data.create_dataset`` (``scenes`` needs no files)."""
    root: str | None = None
    """Dataset folder (relative paths are relative to the working directory)."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str = "val"
    """Split used for validation during training (and ``validate``)."""
    test_split: str = "test"
    """Split used by ``test``."""
    batch_size: int = 8
    """Training batch size per process (the global batch is this x devices x nodes)."""
    val_batch_size: int | None = None
    """Evaluation batch size per process; ``None``: same as ``batch_size``."""
    num_workers: int = 2
    """DataLoader worker processes per training process (0: load in the main process)."""
    crop_size: list[int] | None = None
    """Training crop ``[H, W]`` (padded with ignore/invalid where the image is smaller);
    ``None``: no crop (then ``scale_range`` must be ``[1, 1]`` so samples collate)."""
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Random rescale factor range ``[lo, hi]`` applied before the crop."""
    flip: bool = True
    """Random horizontal flip (p = 0.5) during training; normals' x component is mirrored."""
    color_jitter: float = 0.0
    """Brightness/contrast/saturation jitter strength during training (0: off)."""
    pad_to_multiple: int | None = None
    """Pad every batch (bottom/right; image with the mean, targets with ignore/invalid) to
    a multiple of this; ``None``: to the largest image of the batch (images of different
    sizes are always padded to batch). The models pad internally, so this is optional."""
    num_train: int | None = None
    """Use only the first N training samples (``scenes``: render N images); ``None``: all."""
    num_val: int | None = None
    """Use only the first N samples of the validation and test splits; ``None``: all."""
    tasks: list[str] | None = None
    """Targets to load (``seg``, ``depth``, ``normals``, ``instance``); ``None``: those the
    task needs."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``create_dataset`` arguments (e.g. ``size: [96, 128]`` for ``scenes``)."""
    labeled_fraction: float = 1.0
    """Semi-supervised training: the fraction in (0, 1] of the training split that keeps
    its labels, a fixed subset of ``round(fraction * N)`` images (at least 1) drawn from
    ``seed`` (the same seed gives the same subset; a smaller fraction's subset is contained
    in a larger one's). With DejaVu the other images join the unlabelled pool; without,
    they are not used. An epoch keeps the full split's number of steps (see the docs)."""
    unlabeled_root: str | None = None
    """A folder of extra unlabelled training images (any size; searched recursively for
    png, jpg, jpeg, bmp, tif, tiff, webp), e.g. your own video frames; used only with
    DejaVu (the regeneration loss needs no labels). ``None``: none."""
    unlabeled_batch_size: int | None = None
    """Unlabelled images per training batch and process, after the ``batch_size`` labelled
    ones, when there is an unlabelled pool; ``None``: equal to ``batch_size``."""


@dataclass
class ModelConfig:
    """The base network (all that runs at inference)."""

    name: str = "hrnet18"
    """Name for ``dejavu.toolkit.models.create_model``."""
    pretrained: str | None = None
    """A local weights file (``.pth``/``.safetensors``) for the network or its backbone;
    ``None``: random initialisation. Nothing is ever downloaded."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``create_model`` arguments."""


@dataclass
class DejaVuConfig:
    """The DejaVu objective (see ``dejavu.dejavu.DejaVu``); off gives the plain baseline."""

    enabled: bool = True
    """``false`` trains with the task loss only (same model, data and schedule)."""
    redaction: dict[str, Any] = field(default_factory=lambda: {"name": "random"})
    """``create_redaction`` arguments: ``name`` plus that redaction's options."""
    crm: dict[str, Any] = field(default_factory=lambda: {"kind": "forward"})
    """CRM: ``kind`` (a name of ``dejavu.crm.list_crms()``: ``forward``, ``recursive``,
    ``zero``, ...) plus its constructor options (their defaults are the class's)."""
    conditioning: dict[str, Any] = field(
        default_factory=lambda: {"temperature": 1.0, "hard": False}
    )
    """``Conditioning`` options: softmax ``temperature``; ``hard`` straight-through masks."""
    regen_loss: dict[str, Any] = field(
        default_factory=lambda: {"kind": "l1", "redacted_weight": 1.0, "kept_weight": 1.0}
    )
    """``RegenerationLoss`` options: ``kind`` (l1, l2, charbonnier, l1+ssim) and weights."""
    regen_weight: float = 1.0
    """Weight of the regeneration loss after warm-up."""
    regen_warmup_steps: int = 0
    """Steps of linear warm-up of the regeneration weight from 0."""
    cyclic_weight: float = 0.0
    """Weight of DejaVu-CL (the regenerated image through the base network again); 0: off."""
    text: dict[str, Any] = field(
        default_factory=lambda: {"weight": 0.0, "model_name": "ViT-B-32", "pretrained": None}
    )
    """DejaVu-TS: ``weight`` (0: off) plus ``TextSupervision`` options."""
    sa_weight: float = 1.0
    """Weight of the shared-attention regeneration loss (only for ``*_sa`` base networks)."""
    stop_gradient: bool = False
    """Ablation: detach the conditioning so only the CRM learns from regeneration."""
    crm_truth_weight: float = 0.0
    """Anchor a learned CRM to the truth: it also regenerates labelled images from their
    ground-truth conditioning, with this weight (only the CRM learns from it); 0: off."""


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: str = "adamw"
    """``adamw`` or ``sgd`` (with momentum)."""
    lr: float = 1e-3
    """Peak learning rate of the base network."""
    weight_decay: float = 1e-4
    """Weight decay (not applied to normalisation weights and biases)."""
    momentum: float = 0.9
    """SGD momentum (and AdamW's beta1)."""
    poly_power: float = 0.9
    """Poly schedule ``lr * (1 - step / total_steps) ** poly_power`` per step; 0: constant."""
    warmup_steps: int = 0
    """Linear warm-up steps from ``lr / 100`` before the poly decay."""
    crm_lr_mult: float = 1.0
    """Learning-rate multiplier of the regeneration parts (CRM, ...) relative to ``lr``."""


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings and checkpoint/logging cadence."""

    max_epochs: int = 10
    """Training epochs (used when ``max_steps`` is -1)."""
    max_steps: int = -1
    """Train for this many optimiser steps instead of ``max_epochs`` (-1: off)."""
    accelerator: str = "auto"
    """``auto``, ``cpu``, ``gpu``, ..."""
    devices: int | str | list[int] = 1
    """Devices per node (an int, ``auto`` or a list of indices)."""
    strategy: str = "auto"
    """``auto``, ``ddp``, ``ddp_spawn``, ... (``ddp`` for several devices; see the docs)."""
    num_nodes: int = 1
    """Machines; with ``torchrun`` / SLURM, Lightning reads the rank from the environment."""
    sync_batchnorm: bool = False
    """Synchronise BatchNorm statistics across processes (CUDA only)."""
    precision: str = "32-true"
    """``32-true``, ``16-mixed``, ``bf16-mixed``, ..."""
    gradient_clip_val: float | None = None
    """Clip the gradient norm to this value (``None``: no clipping)."""
    accumulate_grad_batches: int = 1
    """Batches per optimiser step."""
    val_every_n_epochs: int = 1
    """Validate (and save ``last``/``best`` checkpoints) every this many epochs."""
    log_every_n_steps: int = 10
    """Scalar logging cadence."""
    image_log_every_n_steps: int = 200
    """Cadence of the input/target/prediction/redacted/regenerated image panels (0: off)."""
    deterministic: bool = False
    """Ask PyTorch for deterministic kernels (slower on GPU)."""
    limit_train_batches: int | float = 1.0
    """Training batches per epoch: a fraction (float) or a count (int)."""
    limit_val_batches: int | float = 1.0
    """Validation batches per validation: a fraction (float) or a count (int)."""
    monitor: str | None = None
    """Validation metric that picks ``best.ckpt``: any metric that is logged (without
    ``val/``), e.g. ``seg/miou``, ``seg/iou_per_class/3``, ``depth/abs_rel`` or ``loss``;
    ``None``: the task's main metric (``seg/miou`` for segmentation and multi-task,
    ``depth/rmse``, ``normals/mean``)."""


@dataclass
class ExperimentConfig:
    """Everything that defines a run.

    The run directory is ``output_dir / name``: it holds ``config.yaml``,
    ``last.ckpt``, ``best.ckpt``, ``base.safetensors`` + ``base.json``,
    ``metrics.json``, the TensorBoard and CSV logs and the image panels.
    """

    name: str = "experiment"
    """Run name (the run directory's name)."""
    seed: int = 0
    """Seed of every random choice: weights, data order, augmentation, redaction."""
    output_dir: str = "runs"
    """Parent folder of run directories."""
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dejavu: DejaVuConfig = field(default_factory=DejaVuConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @property
    def run_dir(self) -> Path:
        """``output_dir / name``."""
        return Path(self.output_dir) / self.name


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float.

    YAML 1.1 (PyYAML) needs a dot in a float's mantissa, so ``1e-3`` would be
    the string "1e-3"; YAML 1.2 and every user expect a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML file and resolve its ``_base_`` chain into one mapping.

    Args:
        path: the YAML file.

    Returns:
        The merged mapping (no ``_base_`` keys left; ``name`` set to the
        file's stem when no file in the chain sets it).

    Raises:
        UserPathError: when the file or one of its bases is missing.
        ConfigError: on invalid YAML, a non-mapping document or a ``_base_`` cycle.
    """
    path = Path(path)
    data = _load_chain(path, ())
    data.setdefault("name", path.stem)
    return data


def _load_chain(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"_base_ cycle: {chain}")
    if not path.is_file():
        raise UserPathError(f"config file not found: {path}")
    data = _parse_yaml(path.read_text(), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _deep_merge(merged, _load_chain(path.parent / base, (*seen, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``base`` (mappings recursively; anything else replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in new.items():
        if isinstance(value, Mapping):
            value = dict(value)
            if value.pop("_replace_", False):
                out[key] = copy.deepcopy(value)
            elif isinstance(out.get(key), Mapping):
                out[key] = _deep_merge(out[key], value)
            else:
                out[key] = _deep_merge({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- dict <-> dataclass
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        return "mapping"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


class _MismatchError(Exception):
    pass


def _convert(value: Any, tp: Any) -> Any:
    """``value`` checked against (and lightly converted to) the annotation ``tp``."""
    if tp is Any:
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg)
            except _MismatchError:
                continue
        raise _MismatchError
    if tp is type(None):
        if value is None:
            return None
        raise _MismatchError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _MismatchError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _MismatchError
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _MismatchError
    if tp is str:
        if isinstance(value, str):
            return value
        raise _MismatchError
    if origin is list:
        (arg,) = typing.get_args(tp)
        if isinstance(value, list | tuple):
            return [_convert(v, arg) for v in value]
        raise _MismatchError
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if isinstance(value, Mapping):
            return {_convert(k, key_tp): _convert(v, val_tp) for k, v in value.items()}
        raise _MismatchError
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module


def _from_mapping(cls: type[T], data: Any, path: str) -> T:
    where = path or "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r} ({type(data).__name__})")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    defaults = {
        f.name: f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default_factory is not dataclasses.MISSING
        and not dataclasses.is_dataclass(hints[f.name])
    }
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {key_path!r}; valid keys at {where}: {names}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _from_mapping(tp, value, key_path)
            continue
        if isinstance(value, Mapping) and key in defaults:
            # Free-form mappings start from their defaults, whose keys every variant accepts.
            value = {**defaults[key], **value}
        try:
            kwargs[key] = _convert(value, tp)
        except _MismatchError:
            raise ConfigError(
                f"config key {key_path!r} must be {_type_name(tp)}, "
                f"got {value!r} ({type(value).__name__})"
            ) from None
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a (possibly partial) mapping.

    Missing keys take their defaults.

    Raises:
        ConfigError: on unknown keys, wrong types or invalid values (see module docs).

    Example:
        >>> config_from_dict({"optim": {"lr": 0.01}}).optim.lr
        0.01
    """
    cfg = _from_mapping(ExperimentConfig, data, "")
    validate_config(cfg)
    return cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The full config as plain Python data (what ``config.yaml`` holds).

    Example:
        >>> config_to_dict(ExperimentConfig())["optim"]["name"]
        'adamw'
    """
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the full resolved config as YAML (loadable with :func:`load_config`), atomically.

    Returns:
        The path written.
    """
    from dejavu.toolkit.artifact import atomic_write

    path = Path(path)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    with atomic_write(path, "w") as f:  # a reader never sees a half-written config
        f.write(text)
    return path


# --------------------------------------------------------------------------- overrides
def _section_fields(path: Sequence[str]) -> tuple[type | None, dict[str, Any]]:
    """Walk the dataclass tree along ``path``; return the last dataclass and its hints."""
    cls: type | None = ExperimentConfig
    for part in path:
        assert cls is not None
        tp = _hints(cls).get(part)
        cls = tp if dataclasses.is_dataclass(tp) else None
        if cls is None:
            return None, {}
    return cls, _hints(cls) if cls is not None else {}


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a config mapping.

    The value is parsed as YAML. Keys that name dataclass fields are checked
    here so that a typo is reported with the valid keys; a mapping assigned to
    a free-form mapping field (``dejavu.redaction``) replaces it, one assigned
    to a section (``optim``) is merged into it.

    Example:
        >>> apply_overrides({}, ["optim.lr=0.1", "dejavu.enabled=false"])
        {'optim': {'lr': 0.1}, 'dejavu': {'enabled': False}}
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override must look like 'a.b.c=value', got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override key must be a dotted path like 'optim.lr', got {key!r}")
        value = _parse_yaml(text, f"override {item!r}") if text.strip() else None

        # Check every part that lies inside the dataclass tree (not inside free-form dicts).
        for depth in range(len(parts)):
            cls, hints = _section_fields(parts[:depth])
            if cls is None:
                break
            if parts[depth] not in hints:
                where = ".".join(parts[:depth]) or "the top level"
                valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
                raise ConfigError(
                    f"unknown config key {'.'.join(parts[: depth + 1])!r} in override {item!r}; "
                    f"valid keys at {where}: {valid}"
                )

        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        leaf_cls, _ = _section_fields(parts)
        if (
            isinstance(value, Mapping)
            and leaf_cls is not None
            and isinstance(node.get(parts[-1]), dict)
        ):
            node[parts[-1]] = _deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: a YAML file (its ``_base_`` chain is resolved), or None.
        overrides: ``a.b.c=value`` strings applied after the file.

    Returns:
        The validated config.

    Raises:
        UserPathError: when a file is missing.
        ConfigError: on unknown keys, wrong types or invalid values.

    Example:
        >>> load_config(None, ["dejavu.enabled=false"]).dejavu.enabled
        False
    """
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a sequence of 'key=value' strings, got {overrides!r}")
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data)


# --------------------------------------------------------------------------- validation
def _conditioning_spec(cfg: ExperimentConfig) -> dict[str, str]:
    from dejavu.toolkit.tasks import head_spec, task_spec

    return {key: head_spec(key).conditioning for key in task_spec(cfg.task.name).heads}


def _positive_int(value: int, name: str) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check value ranges, names and options that the types alone do not capture.

    Names are checked against the registries (tasks, datasets, models,
    redactions, CRMs and their option names), ``trainer.monitor`` against the
    names the task logs, and the redaction, conditioning and regeneration-loss
    options by building those (cheap, parameter-free) objects; the CRM's and
    the network's option values are checked when the run is built.

    Returns:
        ``cfg`` unchanged.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    try:
        _validate(cfg)
    except ConfigError:
        raise
    except ValueError as exc:  # from a registry or a constructor: the config's fault
        raise ConfigError(str(exc)) from None
    return cfg


def _validate(cfg: ExperimentConfig) -> None:
    if not cfg.name or "/" in cfg.name or "\\" in cfg.name:
        raise ConfigError(f"name must be a non-empty folder name without '/', got {cfg.name!r}")
    from dejavu.conditioning import Conditioning
    from dejavu.losses import RegenerationLoss
    from dejavu.redaction import check_redaction_options, create_redaction
    from dejavu.toolkit.data import list_datasets
    from dejavu.toolkit.models import check_model_name
    from dejavu.toolkit.tasks import list_tasks, metric_direction, task_spec

    check_choice(cfg.task.name, "task.name", list_tasks())
    if cfg.trainer.monitor is not None:
        try:
            metric_direction(cfg.trainer.monitor, task_spec(cfg.task.name).heads)
        except ValueError as exc:
            raise ConfigError(f"trainer.monitor: {exc}") from None
    for key, w in cfg.task.loss_weights.items():
        check_in_range(w, f"task.loss_weights.{key}", 0.0, float("inf"))

    d = cfg.data
    check_choice(d.name, "data.name", list_datasets())
    _positive_int(d.batch_size, "data.batch_size")
    if d.val_batch_size is not None:
        _positive_int(d.val_batch_size, "data.val_batch_size")
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {d.num_workers}")
    if d.crop_size is not None and (len(d.crop_size) != 2 or min(d.crop_size) < 1):
        raise ConfigError(f"data.crop_size must be [H, W] of positive ints, got {d.crop_size}")
    if len(d.scale_range) != 2 or not 0 < d.scale_range[0] <= d.scale_range[1]:
        raise ConfigError(
            f"data.scale_range must be [lo, hi] with 0 < lo <= hi, got {d.scale_range}"
        )
    if d.crop_size is None and d.scale_range != [1.0, 1.0]:
        raise ConfigError(
            f"data.scale_range {d.scale_range} needs data.crop_size (rescaled samples of "
            "different sizes cannot be batched without a crop)"
        )
    check_in_range(d.color_jitter, "data.color_jitter", 0.0, 1.0)
    for name in ("pad_to_multiple", "num_train", "num_val", "unlabeled_batch_size"):
        if getattr(d, name) is not None:
            _positive_int(getattr(d, name), f"data.{name}")
    check_in_range(d.labeled_fraction, "data.labeled_fraction", 0.0, 1.0, low_inclusive=False)
    if d.unlabeled_root is not None and not d.unlabeled_root.strip():
        raise ConfigError(
            "data.unlabeled_root must be a folder of images or null, got an empty string"
        )

    try:
        check_model_name(cfg.model.name)
    except ValueError as exc:
        raise ConfigError(f"model.name: {exc}") from None

    dj = cfg.dejavu
    if "name" not in dj.redaction:
        raise ConfigError(f"dejavu.redaction needs a 'name' entry, got {dj.redaction}")
    redaction = dict(dj.redaction)
    try:
        check_redaction_options(redaction.pop("name"), redaction)
    except ValueError as exc:
        raise ConfigError(f"dejavu.redaction: {exc}") from None
    crm = dict(dj.crm)
    kind = check_choice(crm.pop("kind", "forward"), "dejavu.crm.kind", list_crms())
    try:
        check_crm_options(kind, crm)
    except ValueError as exc:
        raise ConfigError(f"dejavu.crm: {exc}") from None
    # The option values of the parameter-free parts, by building them.
    for key, build in (
        ("redaction", lambda: create_redaction(**dj.redaction)),
        ("conditioning", lambda: Conditioning(_conditioning_spec(cfg), **dj.conditioning)),
        ("regen_loss", lambda: RegenerationLoss(**dj.regen_loss)),
    ):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"dejavu.{key}: {exc}") from None
    for name in ("regen_weight", "cyclic_weight", "sa_weight", "crm_truth_weight"):
        check_in_range(getattr(dj, name), f"dejavu.{name}", 0.0, float("inf"))
    check_in_range(dj.text.get("weight", 0.0), "dejavu.text.weight", 0.0, float("inf"))
    if dj.regen_warmup_steps < 0:
        raise ConfigError(f"dejavu.regen_warmup_steps must be >= 0, got {dj.regen_warmup_steps}")

    o = cfg.optim
    check_choice(o.name, "optim.name", OPTIMIZERS)
    check_in_range(o.lr, "optim.lr", 0.0, float("inf"), low_inclusive=False)
    check_in_range(o.weight_decay, "optim.weight_decay", 0.0, float("inf"))
    check_in_range(o.momentum, "optim.momentum", 0.0, 1.0, high_inclusive=False)
    check_in_range(o.poly_power, "optim.poly_power", 0.0, float("inf"))
    check_in_range(o.crm_lr_mult, "optim.crm_lr_mult", 0.0, float("inf"))
    if o.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {o.warmup_steps}")

    t = cfg.trainer
    if t.max_epochs < 1 and t.max_steps < 1:
        raise ConfigError(
            f"trainer.max_epochs ({t.max_epochs}) or trainer.max_steps ({t.max_steps}) "
            "must be positive"
        )
    _positive_int(t.num_nodes, "trainer.num_nodes")
    _positive_int(t.accumulate_grad_batches, "trainer.accumulate_grad_batches")
    _positive_int(t.val_every_n_epochs, "trainer.val_every_n_epochs")
    _positive_int(t.log_every_n_steps, "trainer.log_every_n_steps")
    if t.image_log_every_n_steps < 0:
        raise ConfigError(
            f"trainer.image_log_every_n_steps must be >= 0, got {t.image_log_every_n_steps}"
        )
    for name in ("limit_train_batches", "limit_val_batches"):
        v = getattr(t, name)
        if (isinstance(v, float) and not 0.0 <= v <= 1.0) or (isinstance(v, int) and v < 0):
            raise ConfigError(
                f"trainer.{name} must be a fraction in [0, 1] or a batch count >= 0, got {v!r}"
            )
    if t.gradient_clip_val is not None:
        check_in_range(t.gradient_clip_val, "trainer.gradient_clip_val", 0.0, float("inf"))
