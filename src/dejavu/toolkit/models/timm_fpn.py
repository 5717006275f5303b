"""Any hierarchical timm backbone with an FPN decoder (the panoptic-FPN semantic head).

The backbone is ``timm.create_model(name, features_only=True, pretrained=False)``;
of its feature levels we keep one per stride among 4, 8, 16 and 32 (the last
level of each stride). The decoder is

1. a standard FPN (``torchvision.ops.FeaturePyramidNetwork``: lateral 1x1
   convs, nearest-neighbour top-down pathway, 3x3 smoothing convs), then
2. the semantic branch of Panoptic FPN (Kirillov et al., 2019): each level goes
   through ``log2(stride / finest)`` blocks of ``3x3 conv -> GroupNorm -> ReLU
   -> 2x bilinear upsample`` (one block without upsampling for the finest
   level) and the results are summed into one map at the finest stride
   (stride 4 when the backbone has it), then
3. one :class:`~dejavu.toolkit.models.heads.ConvHead` (3x3) per task.

Inputs are zero-padded to a multiple of the coarsest kept stride (32 for
the usual backbones) and the outputs cropped back. Backbones without several
strides (plain ViTs, all at stride 16) are refused with a ``ValueError``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import timm
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model_family
from dejavu.toolkit.models.heads import TaskHeads

__all__ = ["FPN_STRIDES", "SemanticFPNMerge", "TimmFPN", "select_fpn_levels"]

#: The strides an FPN level may have.
FPN_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


def select_fpn_levels(reductions: Sequence[int]) -> list[int]:
    """Indices of the feature levels to feed the FPN: the last level of each stride in 4..32.

    Args:
        reductions: the stride of each feature level (timm's ``feature_info.reduction()``).

    Returns:
        Indices into ``reductions``, finest first.

    Raises:
        ValueError: if fewer than two distinct strides in 4..32 are available.

    Example:
        >>> select_fpn_levels([2, 4, 8, 16, 32])
        [1, 2, 3, 4]
    """
    last: dict[int, int] = {}
    for i, r in enumerate(reductions):
        if r in FPN_STRIDES:
            last[r] = i
    if len(last) < 2:
        raise ValueError(
            "an FPN needs a hierarchical backbone with features at two or more of the strides "
            f"{list(FPN_STRIDES)}; this backbone's feature strides are {list(reductions)}"
        )
    return [last[r] for r in sorted(last)]


class SemanticFPNMerge(nn.Module):
    """Panoptic-FPN semantic branch: bring every level to the finest stride and sum.

    Args:
        in_channels: channels of every FPN level.
        out_channels: channels of the merged map.
        strides: stride of each level, finest first (powers of two).

    Shape:
        - Input: list of ``B x in_channels x h_i x w_i``, finest first.
        - Output: ``B x out_channels x h_0 x w_0``.

    Example:
        >>> merge = SemanticFPNMerge(32, 16, [4, 8])
        >>> merge([torch.zeros(1, 32, 8, 8), torch.zeros(1, 32, 4, 4)]).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, strides: Sequence[int]) -> None:
        super().__init__()
        groups = math.gcd(32, out_channels)
        self.levels = nn.ModuleList()
        for stride in strides:
            steps = max(1, round(math.log2(stride / strides[0])))
            blocks = nn.ModuleList()
            for s in range(steps):
                blocks.append(
                    nn.Sequential(
                        nn.Conv2d(
                            in_channels if s == 0 else out_channels,
                            out_channels,
                            3,
                            padding=1,
                            bias=False,
                        ),
                        nn.GroupNorm(groups, out_channels),
                        nn.ReLU(inplace=True),
                    )
                )
            self.levels.append(blocks)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        sizes = [f.shape[-2:] for f in features]
        merged: Tensor | None = None
        for i, (x, blocks) in enumerate(zip(features, self.levels, strict=True)):
            for step, block in enumerate(cast(nn.ModuleList, blocks)):
                x = block(x)
                if i > 0:
                    # each block doubles the resolution: go to the next finer level's size
                    x = F.interpolate(
                        x, size=sizes[i - step - 1], mode="bilinear", align_corners=False
                    )
            merged = x if merged is None else merged + x
        assert merged is not None
        return merged


class TimmFPN(DenseNet):
    """A timm backbone (``features_only``) + FPN + Panoptic-FPN merge + per-task heads.

    Args:
        heads: head name -> output channels.
        backbone: a timm model name with ``features_only`` support
            (``"resnet18"``, ``"mobilenetv3_large_100"``, ``"convnext_atto"``, ...).
        fpn_channels: channels of the FPN levels.
        decoder_channels: channels of the merged map and the heads' hidden layer.
        depth_activation: ``"softplus"`` or ``"exp"``.
        **timm_kwargs: passed to ``timm.create_model``.

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``.

    Example:
        >>> net = TimmFPN({"seg": 19}, backbone="resnet18").eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 19, 45, 61])
    """

    def __init__(
        self,
        heads: Mapping[str, int],
        backbone: str = "resnet18",
        fpn_channels: int = 128,
        decoder_channels: int = 128,
        depth_activation: str = "softplus",
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        if not timm.is_model(backbone):
            raise ValueError(f"backbone must be a timm model name, got {backbone!r}")
        self.backbone_name = backbone
        net = timm.create_model(backbone, features_only=True, pretrained=False, **timm_kwargs)
        info: Any = net.feature_info  # timm's FeatureInfo (untyped attribute of the module)
        reductions = list(info.reduction())
        keep = select_fpn_levels(reductions)
        if keep[-1] != len(reductions) - 1:
            # levels deeper than the last kept one would hold parameters without a
            # gradient (DDP refuses those): rebuild without them
            out_indices = tuple(info.out_indices[i] for i in keep)
            net = timm.create_model(
                backbone,
                features_only=True,
                pretrained=False,
                out_indices=out_indices,
                **timm_kwargs,
            )
            keep = list(range(len(keep)))
        self.backbone = net
        # finer levels we drop (e.g. the stride-2 stem) lie on the path to the kept ones
        # anyway, so they are computed and simply not used
        self.levels: list[int] = keep
        info = net.feature_info
        self.strides: list[int] = [info.reduction()[i] for i in keep]
        in_channels = [info.channels()[i] for i in keep]
        self.pad_multiple = max(self.strides)
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels)
        self.merge = SemanticFPNMerge(fpn_channels, decoder_channels, self.strides)
        self.decoder = TaskHeads(decoder_channels, self.heads, decoder_channels, kernel_size=3)

    def get_backbone(self) -> nn.Module:
        return self.backbone

    def forward_features(self, image: Tensor) -> Tensor:
        """The merged decoder map at the finest kept stride (``B x decoder_channels x h x w``)."""
        feats = self.backbone(image)
        pyramid = self.fpn(OrderedDict((str(i), feats[i]) for i in self.levels))
        return self.merge(list(pyramid.values()))

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        return self.decoder(self.forward_features(image))


# ----------------------------------------------------------------------- registry
def _check_backbone(backbone: str) -> str | None:
    return (
        None
        if timm.is_model(backbone)
        else f"{backbone!r} is not a timm model (see timm.list_models())"
    )


@register_model_family(
    "fpn_",
    pattern="fpn_<timm model>",
    check=_check_backbone,
    examples=(
        "fpn_resnet18",
        "fpn_resnet50",
        "fpn_mobilenetv3_large_100",
        "fpn_convnext_atto",
        "fpn_convnext_tiny",
    ),
)
def fpn(backbone: str, heads: Mapping[str, int], **kwargs: Any) -> TimmFPN:
    """``fpn_<timm model>``: any hierarchical timm backbone with the FPN decoder."""
    return TimmFPN(heads, backbone=backbone, **kwargs)
