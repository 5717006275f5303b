"""HRNet (timm backbone) with the standard HRNet semantic-segmentation head.

The backbone is timm's HRNet in ``features_only`` mode with
``feature_location=""``, which returns the four raw branch outputs of the last
stage (strides 4, 8, 16, 32). timm's default, ``feature_location="incre"``,
would instead return them after the classification head's channel-increasing
bottlenecks (128/256/512/1024 channels), which is not what the HRNet
segmentation head uses.

The head is the one of HRNetV2 for semantic segmentation: every branch is
upsampled (bilinear) to the stride-4 branch and the four are concatenated
(``C = c1 + c2 + c3 + c4`` channels, 16+32+64+128 = 240 for ``hrnet18``), then
``1x1 conv (C -> C) -> BN -> ReLU -> 1x1 conv (C -> K)``, one such head per task,
and the stride-4 predictions are upsampled to the input size.

Inputs are zero-padded to a multiple of 32 (HRNet's fuse layers need each
branch to be exactly half the size of the one above) and the outputs cropped
back; see :mod:`dejavu.toolkit.models.base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice
from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import TaskHeads

__all__ = ["HRNET_VARIANTS", "HRNet", "concat_branches"]

#: Our names -> timm HRNet variants. ``hrnet18`` is timm's ``hrnet_w18_small``
#: (HRNet-W18-Small-V1, branch widths 16/32/64/128); ``hrnet18_v2`` is
#: HRNet-W18-Small-V2 (18/36/72/144); ``hrnet18_full`` is the full HRNet-W18
#: (18/36/72/144, four stages of full depth); ``hrnet48`` is HRNet-W48.
HRNET_VARIANTS: dict[str, str] = {
    "hrnet18": "hrnet_w18_small",
    "hrnet18_v2": "hrnet_w18_small_v2",
    "hrnet18_full": "hrnet_w18",
    "hrnet48": "hrnet_w48",
}


def concat_branches(features: Sequence[Tensor]) -> Tensor:
    """Upsample every branch to the first (highest-resolution) one and concatenate.

    Args:
        features: ``B x c_i x h_i x w_i`` tensors, the first at the highest resolution.

    Returns:
        ``B x sum(c_i) x h_0 x w_0``.

    Example:
        >>> feats = [torch.zeros(1, 16, 16, 16), torch.zeros(1, 32, 8, 8)]
        >>> concat_branches(feats).shape
        torch.Size([1, 48, 16, 16])
    """
    size = features[0].shape[-2:]
    resized = [features[0]] + [
        F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
    ]
    return torch.cat(resized, dim=1)


class HRNet(DenseNet):
    """HRNet backbone + the HRNetV2 segmentation head, one head per task.

    Args:
        heads: head name -> output channels, e.g. ``{"seg": 19}``.
        variant: a timm HRNet name (``"hrnet_w18_small"``, ``"hrnet_w18_small_v2"``,
            ``"hrnet_w18"``, ``"hrnet_w48"``, ...).
        head_channels: hidden width of each head (default: the concatenated
            width, as in HRNetV2).
        depth_activation: ``"softplus"`` or ``"exp"`` (see :mod:`~dejavu.toolkit.models.base`).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``.

    Example:
        >>> net = HRNet({"seg": 19}).eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 19, 45, 61])
    """

    pad_multiple = 32

    def __init__(
        self,
        heads: Mapping[str, int],
        variant: str = "hrnet_w18_small",
        head_channels: int | None = None,
        depth_activation: str = "softplus",
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        hrnets = [n for n in timm.list_models("hrnet_*") if "ssld" not in n]
        check_choice(variant, "variant", hrnets)
        self.variant = variant
        self.backbone = timm.create_model(
            variant,
            features_only=True,
            pretrained=False,
            feature_location="",
            out_indices=(1, 2, 3, 4),
            **timm_kwargs,
        )
        #: Channels of the four branches (strides 4, 8, 16, 32), from timm's feature_info.
        info: Any = self.backbone.feature_info  # timm's FeatureInfo
        self.branch_channels: list[int] = list(info.channels())
        self.feature_channels = sum(self.branch_channels)
        self.decoder = TaskHeads(self.feature_channels, self.heads, head_channels)

    def get_backbone(self) -> nn.Module:
        return self.backbone

    def forward_features(self, image: Tensor) -> Tensor:
        """The concatenated branch features, ``B x feature_channels x H/4 x W/4``.

        ``image`` must already be padded to a multiple of 32.
        """
        return concat_branches(self.backbone(image))

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        return self.decoder(self.forward_features(image))


# ----------------------------------------------------------------------- registry
@register_model
def hrnet18(heads: Mapping[str, int], **kwargs: Any) -> HRNet:
    """HRNet-W18-Small-V1 (timm ``hrnet_w18_small``): the paper's HRNet18 baseline."""
    return HRNet(heads, variant=HRNET_VARIANTS["hrnet18"], **kwargs)


@register_model
def hrnet18_v2(heads: Mapping[str, int], **kwargs: Any) -> HRNet:
    """HRNet-W18-Small-V2 (timm ``hrnet_w18_small_v2``)."""
    return HRNet(heads, variant=HRNET_VARIANTS["hrnet18_v2"], **kwargs)


@register_model
def hrnet18_full(heads: Mapping[str, int], **kwargs: Any) -> HRNet:
    """The full HRNet-W18 (timm ``hrnet_w18``)."""
    return HRNet(heads, variant=HRNET_VARIANTS["hrnet18_full"], **kwargs)


@register_model
def hrnet48(heads: Mapping[str, int], **kwargs: Any) -> HRNet:
    """HRNet-W48 (timm ``hrnet_w48``)."""
    return HRNet(heads, variant=HRNET_VARIANTS["hrnet48"], **kwargs)
