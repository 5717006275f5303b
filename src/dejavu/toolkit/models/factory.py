"""The model registry and ``create_model(name, ...)``: base networks by name, offline.

timm style (``register_model`` / ``create_model`` / ``list_models``): each
builder registers itself where it is defined, under its own name, so adding a
model is one file; nothing else keeps a list of the names.

- :func:`register_model` registers a builder ``builder(heads, **kwargs) ->
  DenseNet`` under the function's name (or ``name=``), e.g. ``hrnet18``.
- :func:`register_model_family` registers an open-ended family of names with a
  common prefix: ``builder(suffix, heads, **kwargs)`` builds ``<prefix><suffix>``,
  e.g. ``fpn_<timm model>``, ``smp_<arch>_<encoder>``, ``mtl_<model>``.

Names:

- ``hrnet18`` (timm ``hrnet_w18_small``), ``hrnet18_v2`` (``hrnet_w18_small_v2``),
  ``hrnet18_full`` (``hrnet_w18``), ``hrnet48`` (``hrnet_w48``): HRNet with the
  HRNetV2 segmentation head (:mod:`~dejavu.toolkit.models.hrnet`).
- ``deeplabv3_mobilenet_v3_large``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
  ``fcn_resnet50``, ``fcn_resnet101``, ``lraspp_mobilenet_v3_large``: torchvision.
- ``segformer_b0`` ... ``segformer_b5``: SegFormer from ``transformers``.
- ``fpn_<timm name>``: any hierarchical timm backbone with an FPN decoder,
  e.g. ``fpn_resnet18``, ``fpn_mobilenetv3_large_100``, ``fpn_convnext_atto``.
- ``smp_<arch>_<encoder>``: segmentation_models_pytorch, e.g. ``smp_unet_resnet18``,
  ``smp_fpn_resnet34``, ``smp_unet_tu-convnext_atto``.
- ``mtl_<name>``: ``<name>`` as a multi-task network (shared encoder, one head
  per task), e.g. ``mtl_hrnet18``; its default task is ``"multitask"``.
- ``sa_hrnet18``, ``sa_hrnet18_v2``, ``sa_hrnet18_full``: ``hrnet18``, ``hrnet18_v2``,
  ``hrnet18_full`` with a DejaVu-SA shared-attention block in the head.
- ``hrnet18_ocr``, ``hrnet48_ocr``: HRNet-OCR, the OCR head on ``hrnet18`` / ``hrnet48``
  (:mod:`~dejavu.toolkit.models.ocr`; in training they also return ``"seg_aux"``,
  the soft object regions, for the auxiliary loss).
- ``hrnet18_ocr_hms``, ``hrnet48_ocr_hms``, ``hms_<model>``: hierarchical multi-scale
  attention around a base network (:mod:`~dejavu.toolkit.models.hms`).
- ``mask2former_tiny``, ``mask2former_swin_t``, ``_swin_s``, ``_swin_b``, ``_swin_l``:
  Mask2Former from ``transformers`` (:mod:`~dejavu.toolkit.models.mask2former`), a
  mask-classification network for the ``panoptic`` task (or ``segmentation``).
- ``denseclip_tiny``, ``denseclip_vit_b16``, ``denseclip_r50``: DenseCLIP on an open_clip
  CLIP model (:mod:`~dejavu.toolkit.models.denseclip`; they need ``class_names``, and in
  training also return the pixel-text score maps as ``"seg_aux"``).

Every network follows :mod:`dejavu.toolkit.models.base`: ``image -> dict`` of
task outputs at the input resolution, any input size, a ``heads`` attribute.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from dejavu.toolkit.models.base import DenseNet, check_heads
from dejavu.toolkit.models.pretrained import load_pretrained
from dejavu.toolkit.tasks.heads import head_spec

__all__ = [
    "ModelFamily",
    "build_model",
    "check_model_name",
    "create_model",
    "family_patterns",
    "heads_for_task",
    "list_models",
    "register_model",
    "register_model_family",
]

#: ``builder(heads, **kwargs) -> DenseNet``.
ModelBuilder = Callable[..., DenseNet]
#: ``builder(suffix, heads, **kwargs) -> DenseNet`` for the names ``<prefix><suffix>``.
FamilyBuilder = Callable[..., DenseNet]
F = TypeVar("F", bound=Callable[..., DenseNet])


@dataclass(frozen=True)
class ModelFamily:
    """An open-ended family of model names ``<prefix><suffix>``.

    Attributes:
        prefix: e.g. ``"fpn_"``.
        pattern: how the docs and errors write the family, e.g. ``"fpn_<timm model>"``.
        builder: ``builder(suffix, heads, **kwargs) -> DenseNet``.
        check: ``check(suffix)`` returns why ``suffix`` is not a member (``None``: it is);
            cheap, without building anything.
        examples: members :func:`list_models` shows (each is tested to build).
    """

    prefix: str
    pattern: str
    builder: FamilyBuilder
    check: Callable[[str], str | None]
    examples: tuple[str, ...] = ()


# The one list of models: name -> builder, and prefix -> family.
_MODELS: dict[str, ModelBuilder] = {}
_FAMILIES: dict[str, ModelFamily] = {}


def register_model(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a model builder ``fn(heads, **kwargs) -> DenseNet`` (a decorator).

    Args:
        fn: the builder; its ``__name__`` is the model name unless ``name`` is given.
        name: the model name (for builders made in a loop).

    Raises:
        ValueError: when the name is taken by another builder.

    Example:
        >>> @register_model
        ... def my_tiny_net(heads, **kwargs):
        ...     return create_model("fpn_test_resnet", heads=heads, **kwargs)
        >>> "my_tiny_net" in list_models()
        True
        >>> _ = _MODELS.pop("my_tiny_net")  # (keep the registry as it was)
    """

    def register(builder: F) -> F:
        key = name or builder.__name__
        if not key or not isinstance(key, str):
            raise ValueError(f"a model needs a non-empty name, got {key!r}")
        if key in _MODELS and _MODELS[key] is not builder:
            raise ValueError(f"model name {key!r} is already registered")
        _MODELS[key] = builder
        return builder

    return register if fn is None else register(fn)


def register_model_family(
    prefix: str,
    *,
    pattern: str,
    check: Callable[[str], str | None] = lambda suffix: None,
    examples: tuple[str, ...] = (),
) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Register an open-ended family of names ``<prefix><suffix>`` (a decorator).

    Args:
        prefix: the names' common prefix, e.g. ``"fpn_"``.
        pattern: how docs and errors write the family, e.g. ``"fpn_<timm model>"``.
        check: ``check(suffix)`` -> why it is not a member, or ``None``.
        examples: members that :func:`list_models` lists.

    Raises:
        ValueError: when the prefix is taken.
    """

    def register(builder: FamilyBuilder) -> FamilyBuilder:
        if prefix in _FAMILIES and _FAMILIES[prefix].builder is not builder:
            raise ValueError(f"model family {prefix!r} is already registered")
        _FAMILIES[prefix] = ModelFamily(prefix, pattern, builder, check, tuple(examples))
        return builder

    return register


def family_patterns() -> tuple[str, ...]:
    """The open-ended families, as the docs write them (``fpn_<timm model>``, ...)."""
    return tuple(f.pattern for f in _FAMILIES.values())


def list_models(pattern: str | None = None) -> list[str]:
    """Model names :func:`create_model` accepts, optionally filtered by a glob ``pattern``.

    The families (``fpn_``, ``smp_``, ``mtl_``) are open-ended (any timm
    backbone, any smp architecture and encoder, any base network); a few
    members of each are listed.

    Example:
        >>> list_models("hrnet18*")
        ['hrnet18', 'hrnet18_full', 'hrnet18_ocr', 'hrnet18_ocr_hms', 'hrnet18_v2']
    """
    names = sorted({*_MODELS, *(e for f in _FAMILIES.values() for e in f.examples)})
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def _unknown(name: str, why: str = "") -> ValueError:
    return ValueError(
        f"unknown model name {name!r}{why}; allowed: {', '.join(list_models())} "
        f"(and the families {', '.join(family_patterns())})"
    )


def _family(name: str) -> tuple[ModelFamily, str] | None:
    for prefix, family in _FAMILIES.items():
        if name.startswith(prefix):
            return family, name[len(prefix) :]
    return None


def check_model_name(name: object) -> str:
    """``name`` if :func:`create_model` knows it (without building anything).

    Raises:
        ValueError: naming the allowed names and families.

    Example:
        >>> check_model_name("fpn_resnet18")
        'fpn_resnet18'
    """
    if not isinstance(name, str):
        raise _unknown(repr(name))
    if name in _MODELS:
        return name
    found = _family(name)
    if found is None:
        raise _unknown(name)
    family, suffix = found
    why = family.check(suffix)
    if why is not None:
        raise _unknown(name, f": {why}")
    return name


def build_model(name: str, heads: Mapping[str, int], **kwargs: Any) -> DenseNet:
    """Build the registered network ``name`` with ``heads`` (no pretrained weights, no checks
    of the task): what :func:`create_model` and the families use."""
    check_model_name(name)
    if name in _MODELS:
        return _MODELS[name](dict(heads), **kwargs)
    found = _family(name)
    assert found is not None  # check_model_name passed
    family, suffix = found
    return family.builder(suffix, dict(heads), **kwargs)


def heads_for_task(task: str, num_classes: int | None = None) -> dict[str, int]:
    """The heads a task needs: segmentation -> ``{"seg": K}``, depth -> ``{"depth": 1}``,
    normals -> ``{"normals": 3}``, multitask -> all three (see :mod:`dejavu.toolkit.tasks`).

    Raises:
        ValueError: for an unknown task, or a task with a class head without a positive
            ``num_classes``.

    Example:
        >>> heads_for_task("multitask", 40)
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    from dejavu.toolkit.tasks import task_heads

    return task_heads(task, num_classes)


def create_model(
    name: str,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    heads: Mapping[str, int] | None = None,
    pretrained: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a base network by name, randomly initialised or from a local file.

    Args:
        name: a model name (see :func:`list_models` and the module docstring).
        task: a registered task name (:func:`dejavu.toolkit.tasks.list_tasks`:
            ``"segmentation"``, ``"depth"``, ``"normals"``, ``"multitask"``, ...);
            it chooses the heads (see :func:`heads_for_task`) unless ``heads``
            is given. Default: ``"multitask"`` for ``mtl_`` names, else
            ``"segmentation"``.
        num_classes: segmentation classes (needed by segmentation and multitask;
            ignored by depth and normals).
        heads: head name -> output channels; overrides ``task``'s heads
            (e.g. ``{"seg": 40, "depth": 1}``).
        pretrained: a local state_dict file (``.pth``/``.pt``/``.safetensors``)
            loaded into the whole network or its backbone, whichever it fits
            (see :mod:`~dejavu.toolkit.models.pretrained`); or, for a network with
            a ``load_pretrained_directory`` method (Mask2Former), a folder written
            by ``transformers``' ``save_pretrained``. What did not load is
            reported in a ``UserWarning`` and in ``model.pretrained_report``.
            Nothing is ever downloaded.
        **kwargs: passed to the network's constructor (e.g. ``depth_activation``,
            ``head_channels``, ``fpn_channels``, or timm/torchvision/smp options).

    Returns:
        A :class:`~dejavu.toolkit.models.base.DenseNet`: ``image (B x 3 x H x W)
        -> dict`` of task outputs at ``H x W``.

    Raises:
        ValueError: unknown ``name`` or ``task``, missing ``num_classes``, bad
            ``heads``, ``pretrained`` not a path, or a file that does not fit.
        FileNotFoundError: ``pretrained`` does not exist.

    Example:
        >>> net = create_model("hrnet18", num_classes=19).eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 19, 45, 61])
        >>> create_model("mtl_hrnet18", num_classes=40).heads
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    check_model_name(name)
    if task is None:
        task = "multitask" if name.startswith("mtl_") else "segmentation"
    if heads is None:
        resolved = heads_for_task(task, num_classes)
    else:
        heads_for_task(task, 1)  # the task must exist even when heads are given
        resolved = check_heads(heads)
        for key, channels in resolved.items():
            per_class = head_spec(key).channels is None
            if num_classes is not None and per_class and channels != num_classes:
                raise ValueError(
                    f"num_classes={num_classes} contradicts heads[{key!r}]={channels}; "
                    "give one of them"
                )
    if isinstance(pretrained, bool) and pretrained:
        raise ValueError(
            "pretrained must be a path to a local state_dict file (or None); "
            "dejavu never downloads weights, got pretrained=True"
        )
    if isinstance(pretrained, bool):
        pretrained = None
    if pretrained is not None and not isinstance(pretrained, str | os.PathLike):
        raise ValueError(f"pretrained must be a file path or None, got {pretrained!r}")

    model = build_model(name, resolved, **kwargs)
    model.model_name = name
    _check_mask_classification(name, resolved, model)
    if pretrained is not None:
        load_directory = getattr(model, "load_pretrained_directory", None)
        if os.path.isdir(pretrained) and callable(load_directory):
            report = load_directory(pretrained)
        else:
            report = load_pretrained(model, pretrained)
        model.pretrained_report = report
        if not report.complete:
            warnings.warn(report.summary(), UserWarning, stacklevel=2)
    return model


def _check_mask_classification(name: str, heads: Mapping[str, int], model: nn.Module) -> None:
    """A head that is trained by mask classification only (``panoptic``) needs a network
    that returns query outputs (``mask_classification = True``)."""
    needs = [k for k in heads if head_spec(k).loss is None]
    if needs and not getattr(model, "mask_classification", False):
        raise ValueError(
            f"model {name!r} cannot predict the {needs} head: it is predicted by mask "
            f"classification; use one of {', '.join(list_models('mask2former_*'))}"
        )
