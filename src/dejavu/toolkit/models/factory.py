"""``create_model(name, ...)``: base networks by name, offline, with per-task heads.

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
- ``sa_hrnet18``: HRNet-18 with a DejaVu-SA shared-attention block in its head.

Every network follows :mod:`dejavu.toolkit.models.base`: ``image -> dict`` of
task outputs at the input resolution, any input size, a ``heads`` attribute.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from dejavu._validation import check_choice
from dejavu.toolkit.models.base import DenseNet, check_heads
from dejavu.toolkit.models.hrnet import HRNET_VARIANTS, HRNet
from dejavu.toolkit.models.multitask import MTL_PREFIX, build_multitask, multitask_heads
from dejavu.toolkit.models.pretrained import load_pretrained
from dejavu.toolkit.models.segformer import SEGFORMER_VARIANTS, SegFormer
from dejavu.toolkit.models.torchvision_models import TORCHVISION_MODELS, TorchvisionSegmentation

__all__ = ["FAMILY_PATTERNS", "TASKS", "create_model", "heads_for_task", "list_models"]

#: Allowed values of ``task``.
TASKS: tuple[str, ...] = ("segmentation", "depth", "normals", "multitask")

#: Open-ended name families (any timm backbone, any smp arch/encoder, any base).
FAMILY_PATTERNS: tuple[str, ...] = (
    "fpn_<timm model>",
    "smp_<arch>_<encoder>",
    f"{MTL_PREFIX}<model>",
)

Builder = Callable[[dict[str, int], dict[str, Any]], DenseNet]


def _hrnet(variant: str) -> Builder:
    return lambda heads, kw: HRNet(heads, variant=variant, **kw)


def _torchvision(name: str) -> Builder:
    return lambda heads, kw: TorchvisionSegmentation(heads, name, **kw)


def _segformer(variant: str) -> Builder:
    return lambda heads, kw: SegFormer(heads, variant, **kw)


def _sa_hrnet(variant: str) -> Builder:
    def build(heads: dict[str, int], kw: dict[str, Any]) -> DenseNet:
        # imported here: it needs dejavu.shared_attention, which other models do not
        from dejavu.toolkit.models.shared_attention_net import SharedAttentionHRNet

        return SharedAttentionHRNet(heads, variant=variant, **kw)

    return build


_MODELS: dict[str, Builder] = {
    **{name: _hrnet(variant) for name, variant in HRNET_VARIANTS.items()},
    **{name: _torchvision(name) for name in TORCHVISION_MODELS},
    **{f"segformer_{v}": _segformer(v) for v in SEGFORMER_VARIANTS},
    "sa_hrnet18": _sa_hrnet(HRNET_VARIANTS["hrnet18"]),
}

# Members of the open families that list_models() shows (all are tested to build).
_FAMILY_EXAMPLES: tuple[str, ...] = (
    "fpn_resnet18",
    "fpn_resnet50",
    "fpn_mobilenetv3_large_100",
    "fpn_convnext_atto",
    "fpn_convnext_tiny",
    "smp_unet_resnet18",
    "smp_fpn_resnet34",
    "smp_deeplabv3plus_resnet50",
    "mtl_hrnet18",
    "mtl_hrnet18_v2",
    "mtl_hrnet48",
    "mtl_fpn_resnet18",
    "mtl_segformer_b0",
)


def list_models(pattern: str | None = None) -> list[str]:
    """Model names :func:`create_model` accepts, optionally filtered by a glob ``pattern``.

    The ``fpn_``, ``smp_`` and ``mtl_`` families are open-ended (any timm
    backbone, any smp architecture and encoder, any base network); a few
    members of each are listed.

    Example:
        >>> list_models("hrnet*")
        ['hrnet18', 'hrnet18_full', 'hrnet18_v2', 'hrnet48']
    """
    names = sorted({*_MODELS, *_FAMILY_EXAMPLES})
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def heads_for_task(task: str, num_classes: int | None = None) -> dict[str, int]:
    """The heads a task needs: segmentation -> ``{"seg": K}``, depth -> ``{"depth": 1}``,
    normals -> ``{"normals": 3}``, multitask -> all three.

    Raises:
        ValueError: for an unknown task, or a segmentation/multitask task without
            a positive ``num_classes``.

    Example:
        >>> heads_for_task("multitask", 40)
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    check_choice(task, "task", TASKS)
    if task == "depth":
        return {"depth": 1}
    if task == "normals":
        return {"normals": 3}
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive int for task {task!r} "
            f"(tasks that need it: 'segmentation', 'multitask'), got {num_classes!r}"
        )
    if task == "multitask":
        return multitask_heads(num_classes)
    return {"seg": num_classes}


def _unknown(name: str, why: str = "") -> ValueError:
    return ValueError(
        f"unknown model name {name!r}{why}; allowed: {', '.join(list_models())} "
        f"(and the families {', '.join(FAMILY_PATTERNS)})"
    )


def _build(name: str, heads: dict[str, int], kwargs: dict[str, Any]) -> DenseNet:
    if name in _MODELS:
        return _MODELS[name](heads, kwargs)
    if name.startswith(MTL_PREFIX):
        base = name[len(MTL_PREFIX) :]
        if base.startswith(MTL_PREFIX) or base.startswith("sa_"):
            raise _unknown(name, f": {MTL_PREFIX} takes a plain base network, got {base!r}")
        return build_multitask(base, heads, lambda n, h: _build(n, h, kwargs))
    if name.startswith("fpn_"):
        import timm

        from dejavu.toolkit.models.timm_fpn import TimmFPN

        backbone = name[len("fpn_") :]
        if not timm.is_model(backbone):
            raise _unknown(name, f": {backbone!r} is not a timm model (see timm.list_models())")
        return TimmFPN(heads, backbone=backbone, **kwargs)
    if name.startswith("smp_"):
        from dejavu.toolkit.models.smp_models import SMPModel

        arch, sep, encoder = name[len("smp_") :].partition("_")
        if not sep or not encoder:
            raise _unknown(name, ": smp names are smp_<arch>_<encoder>, e.g. smp_unet_resnet18")
        return SMPModel(heads, arch, encoder, **kwargs)
    raise _unknown(name)


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
        task: ``"segmentation"``, ``"depth"``, ``"normals"`` or ``"multitask"``;
            it chooses the heads (see :func:`heads_for_task`) unless ``heads``
            is given. Default: ``"multitask"`` for ``mtl_`` names, else
            ``"segmentation"``.
        num_classes: segmentation classes (needed by segmentation and multitask;
            ignored by depth and normals).
        heads: head name -> output channels; overrides ``task``'s heads
            (e.g. ``{"seg": 40, "depth": 1}``).
        pretrained: a local state_dict file (``.pth``/``.pt``/``.safetensors``)
            loaded into the whole network or its backbone, whichever it fits
            (see :mod:`~dejavu.toolkit.models.pretrained`); what did not load is
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
    if not isinstance(name, str):
        raise _unknown(repr(name))
    if task is None:
        task = "multitask" if name.startswith(MTL_PREFIX) else "segmentation"
    check_choice(task, "task", TASKS)
    if heads is None:
        resolved = heads_for_task(task, num_classes)
    else:
        resolved = check_heads(heads)
        if num_classes is not None and "seg" in resolved and resolved["seg"] != num_classes:
            raise ValueError(
                f"num_classes={num_classes} contradicts heads['seg']={resolved['seg']}; "
                "give one of them"
            )
    if pretrained is True:
        raise ValueError(
            "pretrained must be a path to a local state_dict file (or None); "
            "dejavu never downloads weights, got pretrained=True"
        )
    if pretrained is False:
        pretrained = None
    if pretrained is not None and not isinstance(pretrained, str | os.PathLike):
        raise ValueError(f"pretrained must be a file path or None, got {pretrained!r}")

    model = _build(name, resolved, dict(kwargs))
    model.model_name = name
    if pretrained is not None:
        report = load_pretrained(model, pretrained)
        model.pretrained_report = report
        if not report.complete:
            warnings.warn(report.summary(), UserWarning, stacklevel=2)
    return model
