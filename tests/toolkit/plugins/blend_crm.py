"""A CRM: one 3 x 3 convolution over [redacted image, conditioning, keep]."""

import torch
from torch import nn

from dejavu.crm import CRMBase, register_crm


@register_crm
class BlendCRM(CRMBase):
    name = "blend"  # dejavu.crm: {kind: blend, scale: 0.5}

    def __init__(self, cond_channels: int, scale: float = 0.5) -> None:
        super().__init__(cond_channels, scale=scale)
        self.conv = nn.Conv2d(3 + cond_channels + 1, 3, 3, padding=1)

    def forward(
        self, redacted: torch.Tensor, cond: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        image, cond, keep = self._prepare(redacted, cond, keep)  # at the working resolution
        filled = self.conv(torch.cat([image, cond, keep], dim=1))
        return keep * image + (1 - keep) * filled  # kept pixels pass through
