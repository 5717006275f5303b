"""torchvision's segmentation models as base networks.

The torchvision model is built offline (``weights=None, weights_backbone=None``,
``aux_loss=None``) with ``num_classes = sum(heads.values())``; its ``"out"``
(already at the input resolution) is split along the channels into one output
per head (:func:`~dejavu.toolkit.models.heads.split_channels`). So every task
is supported: the tasks share the whole network except the final 1x1
convolution (for LR-ASPP, its two final 1x1 convolutions), which is in effect
one per task. torchvision handles any input size itself, so no padding is
applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn
from torchvision.models import segmentation

from dejavu._validation import check_choice
from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import split_channels

__all__ = ["TORCHVISION_MODELS", "TorchvisionSegmentation"]

#: Our names (torchvision's) -> torchvision builders.
TORCHVISION_MODELS: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3_mobilenet_v3_large": segmentation.deeplabv3_mobilenet_v3_large,
    "deeplabv3_resnet50": segmentation.deeplabv3_resnet50,
    "deeplabv3_resnet101": segmentation.deeplabv3_resnet101,
    "fcn_resnet50": segmentation.fcn_resnet50,
    "fcn_resnet101": segmentation.fcn_resnet101,
    "lraspp_mobilenet_v3_large": segmentation.lraspp_mobilenet_v3_large,
}


class TorchvisionSegmentation(DenseNet):
    """A torchvision segmentation model with one output per head (channel split).

    Args:
        heads: head name -> output channels.
        name: one of :data:`TORCHVISION_MODELS`.
        depth_activation: ``"softplus"`` or ``"exp"``.
        **kwargs: passed to the torchvision builder.

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``.

    Example:
        >>> net = TorchvisionSegmentation({"seg": 21}, "lraspp_mobilenet_v3_large").eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 21, 45, 61])
    """

    def __init__(
        self,
        heads: Mapping[str, int],
        name: str = "deeplabv3_mobilenet_v3_large",
        depth_activation: str = "softplus",
        **kwargs: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        check_choice(name, "name", TORCHVISION_MODELS)
        self.name = name
        # aux_loss=None leaves out the auxiliary classifier (LR-ASPP has none to leave out)
        if not name.startswith("lraspp"):
            kwargs.setdefault("aux_loss", None)
        self.model = TORCHVISION_MODELS[name](
            weights=None,
            weights_backbone=None,
            num_classes=sum(self.heads.values()),
            **kwargs,
        )

    def get_backbone(self) -> nn.Module:
        backbone = self.model.backbone
        assert isinstance(backbone, nn.Module)
        return backbone

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        return [
            ("whole network", self),
            (f"torchvision {self.name}", self.model),
            ("backbone", self.get_backbone()),
        ]

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        return split_channels(self.model(image)["out"], self.heads)


# ----------------------------------------------------------------------- registry
def _register(name: str) -> None:
    def build(heads: Mapping[str, int], **kwargs: Any) -> TorchvisionSegmentation:
        return TorchvisionSegmentation(heads, name, **kwargs)

    register_model(build, name=name)


for _name in TORCHVISION_MODELS:
    _register(_name)
