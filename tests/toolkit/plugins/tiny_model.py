"""A model: two convolutions and one 1 x 1 head per task."""

from collections.abc import Mapping

import torch
from torch import nn

from dejavu.toolkit.models import DenseNet, TaskHeads, register_model


class TinyConvNet(DenseNet):
    pad_multiple = 2  # inputs are padded to a multiple of the largest stride

    def __init__(self, heads: Mapping[str, int], width: int = 8, **kwargs) -> None:
        super().__init__(heads, **kwargs)  # checks heads; keeps depth_activation
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.decoder = TaskHeads(width, self.heads, width)

    def forward_heads(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        # raw outputs at any stride: DenseNet resizes, crops and activates them per head spec
        return self.decoder(self.encoder(image))

    def get_backbone(self) -> nn.Module:
        return self.encoder


@register_model
def tiny_convnet(heads: Mapping[str, int], **kwargs) -> TinyConvNet:  # model.name: tiny_convnet
    return TinyConvNet(heads, **kwargs)
