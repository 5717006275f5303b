"""CRM-F, the forward conditional regeneration module: ``I_hat = g([I_r, phi(C), keep])``.

Example:
    >>> crm = ForwardCRM(cond_channels=5, width=8, depth=2, scale=0.5)
    >>> redacted, cond = torch.randn(2, 3, 16, 24), torch.rand(2, 5, 16, 24)
    >>> crm(redacted, cond).shape
    torch.Size([2, 3, 8, 12])
"""

from __future__ import annotations

import torch
from torch import Tensor

from dejavu.crm.base import CRMBase
from dejavu.crm.factory import register_crm
from dejavu.crm.unet import UNet

__all__ = ["ForwardCRM"]


@register_crm
class ForwardCRM(CRMBase):
    """CRM-F: one pass of a small U-Net over the redacted image, conditioning and keep mask.

    The U-Net input is ``[I_r, phi(C), keep]`` (``keep`` only when
    ``use_keep``), all at the working resolution; the output is ``I_hat`` at
    the working resolution.

    Args:
        cond_channels: channels of ``phi(C)``.
        image_channels: image channels.
        width: U-Net width (channels of its first level).
        depth: U-Net depth (number of down-sampling levels).
        scale: working resolution as a fraction of the input, in ``(0, 1]``.
        use_keep: feed the kept-pixel mask (spatial redaction) to ``g``.
        norm: U-Net normalisation, ``"group"``, ``"batch"`` or ``"none"``.

    Example:
        >>> crm = ForwardCRM(cond_channels=3, width=8, depth=1, scale=1.0)
        >>> keep = (torch.rand(1, 1, 9, 9) > 0.5).float()
        >>> crm(torch.randn(1, 3, 9, 9) * keep, torch.rand(1, 3, 9, 9), keep).shape
        torch.Size([1, 3, 9, 9])
    """

    name = "forward"

    def __init__(
        self,
        cond_channels: int,
        image_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        scale: float = 0.5,
        use_keep: bool = True,
        norm: str = "group",
    ) -> None:
        super().__init__(cond_channels, image_channels, scale, use_keep)
        in_channels = self.image_channels + self.cond_channels + int(self.use_keep)
        self.unet = UNet(in_channels, self.image_channels, width=width, depth=depth, norm=norm)

    def forward(self, redacted: Tensor, cond: Tensor, keep: Tensor | None = None) -> Tensor:
        """Regenerate the image.

        Args:
            redacted: ``B x image_channels x H x W`` redacted image ``I_r``.
            cond: ``B x cond_channels x H' x W'`` conditioning (any spatial size;
                resized bilinearly to the working resolution).
            keep: ``B x 1 x H x W`` kept-pixel mask, or None for "nothing removed".

        Returns:
            ``B x image_channels x h x w`` regenerated image, ``(h, w) = working_size(H, W)``.
        """
        redacted_w, cond_w, keep_w = self._prepare(redacted, cond, keep)
        parts = [redacted_w, cond_w] + ([keep_w] if self.use_keep else [])
        return self.unet(torch.cat(parts, dim=1))
