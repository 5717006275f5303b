"""The small U-Net that both CRMs use as their regenerator ``g``.

Double 3x3 conv blocks, stride-2 convolutions to go down, bilinear
upsampling plus skip concatenation to go up, width doubling per level. Any
``H x W`` works: the input is padded (replicate) to a multiple of
``2 ** depth`` and the output cropped back.

Example:
    >>> net = UNet(in_channels=7, out_channels=3, width=8, depth=2)
    >>> net(torch.randn(2, 7, 15, 21)).shape
    torch.Size([2, 3, 15, 21])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image

__all__ = ["NORMS", "UNet"]

#: Normalisation layers the U-Net offers.
NORMS: tuple[str, ...] = ("group", "batch", "none")


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class _GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that computes the same function for every batch size.

    With one channel per group on a 1 x 1 map (a small U-Net's bottleneck on a
    tiny image) each group holds a single value, which GroupNorm maps to 0
    (the output is the bias). PyTorch computes that for a batch of two or
    more but refuses a batch of one ("Expected more than 1 value per
    channel"), a check meant for batch statistics that group statistics do
    not need. This calls the kernel directly; the weights and their names are
    those of ``nn.GroupNorm``.
    """

    def forward(self, input: Tensor) -> Tensor:
        return torch.group_norm(
            input, self.num_groups, self.weight, self.bias, self.eps, torch.backends.cudnn.enabled
        )


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        # Up to 8 groups that divide the channel count: stable at batch size 1-2,
        # which is what the CRM often sees per GPU.
        return _GroupNorm(math.gcd(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, norm: str, stride: int = 1) -> None:
        bias = norm == "none"  # a bias before a normalisation layer is redundant
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(),
        )


class UNet(nn.Module):
    """A small U-Net for any ``H x W``.

    Level ``i`` (``0 <= i <= depth``) has ``width * 2**i`` channels; levels
    ``1..depth`` are reached by a stride-2 double-conv block.

    Args:
        in_channels: input channels.
        out_channels: output channels (3 for an RGB image).
        width: channels of the first level (>= 1).
        depth: number of down/up-sampling levels (>= 0; 0 = a plain conv block).
        norm: ``"group"``, ``"batch"`` or ``"none"``.

    Example:
        >>> UNet(4, 3, width=8, depth=3)(torch.randn(1, 4, 9, 10)).shape
        torch.Size([1, 3, 9, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        width: int = 32,
        depth: int = 3,
        norm: str = "group",
    ) -> None:
        super().__init__()
        self.in_channels = _check_int(in_channels, "in_channels", 1)
        self.out_channels = _check_int(out_channels, "out_channels", 1)
        self.width = _check_int(width, "width", 1)
        self.depth = _check_int(depth, "depth", 0)
        self.norm = check_choice(norm, "norm", NORMS)
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = _DoubleConv(in_channels, chans[0], norm)
        self.down = nn.ModuleList(
            _DoubleConv(chans[i], chans[i + 1], norm, stride=2) for i in range(depth)
        )
        # up[i] fuses level i+1 (upsampled) with the skip of level i.
        self.up = nn.ModuleList(
            _DoubleConv(chans[i + 1] + chans[i], chans[i], norm) for i in range(depth)
        )
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Run the U-Net.

        Args:
            x: ``B x in_channels x H x W``.

        Returns:
            ``B x out_channels x H x W``.
        """
        check_image(x, "x", channels=self.in_channels)
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in reversed(self.up):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = self.head(y)
        return y[..., :h, :w]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, norm={self.norm!r}"
