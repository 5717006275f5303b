"""The multi-task ("MTL") baseline: a shared encoder with one head per task.

This is the "MTL" row of the NYUD-v2 multi-task tables: one network, one
encoder and decoder shared by all tasks, and a separate prediction head for
each of semantic segmentation, depth and surface normals. Every base network
of this package already builds one head per entry of ``heads``, so
``mtl_<base>`` is ``<base>`` with several heads; ``mtl_hrnet18`` is ``hrnet18``
with ``heads={"seg": K, "depth": 1, "normals": 3}`` (an HRNetV2 head per task
on the shared concatenated HRNet features). This module makes that explicit
and refuses single-task head sets for ``mtl_`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dejavu.toolkit.models.base import DenseNet, check_heads
from dejavu.toolkit.models.factory import build_model, check_model_name, register_model_family

__all__ = ["MTL_PREFIX", "build_multitask", "multitask_heads"]

#: Model names ``mtl_<base>`` build ``<base>`` as a multi-task network.
MTL_PREFIX = "mtl_"


def multitask_heads(num_classes: int) -> dict[str, int]:
    """The NYUD-v2 multi-task heads: segmentation, depth and normals.

    Example:
        >>> multitask_heads(40)
        {'seg': 40, 'depth': 1, 'normals': 3}
    """
    from dejavu.toolkit.tasks import task_heads

    return check_heads(task_heads("multitask", num_classes))


def build_multitask(
    base: str,
    heads: Mapping[str, int],
    build_base: Callable[[str, dict[str, int]], DenseNet],
) -> DenseNet:
    """Build the base network ``base`` with a shared encoder and one head per task.

    Args:
        base: the base network's name (e.g. ``"hrnet18"``).
        heads: head name -> channels; at least two heads.
        build_base: ``(name, heads) -> network``, the single-network builder.

    Returns:
        The network; its ``heads`` attribute lists the tasks.

    Raises:
        ValueError: if fewer than two heads are given.
    """
    heads = check_heads(heads)
    if len(heads) < 2:
        raise ValueError(
            f"{MTL_PREFIX}{base} is a multi-task network: heads must name two or more tasks "
            f"(e.g. task='multitask': seg, depth and normals); got heads={heads}"
        )
    return build_base(base, heads)


# ----------------------------------------------------------------------- registry
def _check_base(base: str) -> str | None:
    if base.startswith(MTL_PREFIX) or base.startswith("sa_"):
        return f"{MTL_PREFIX} takes a plain base network, got {base!r}"
    try:
        check_model_name(base)
    except ValueError:
        return f"{base!r} is not a model name"
    return None


@register_model_family(
    MTL_PREFIX,
    pattern=f"{MTL_PREFIX}<model>",
    check=_check_base,
    examples=(
        "mtl_hrnet18",
        "mtl_hrnet18_v2",
        "mtl_hrnet48",
        "mtl_fpn_resnet18",
        "mtl_segformer_b0",
    ),
)
def mtl(base: str, heads: Mapping[str, int], **kwargs: Any) -> DenseNet:
    """``mtl_<model>``: ``<model>`` with a shared encoder and one head per task."""
    return build_multitask(base, heads, lambda name, h: build_model(name, h, **kwargs))
