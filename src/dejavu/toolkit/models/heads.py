"""Per-task prediction heads shared by the base networks.

Two ways to give a network one output per task:

- :class:`TaskHeads`: one small conv head per task on a shared feature map
  (HRNet, the timm FPNs, the shared-attention HRNet).
- :func:`split_channels`: the wrapped library model (torchvision, SegFormer,
  smp) is built with ``sum(heads.values())`` output channels and its output
  is split along the channels. Its last layer is a convolution, and the
  output channels of a convolution are independent of one another, so this is
  exactly one final conv per task on top of a shared decoder.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

__all__ = ["ConvHead", "TaskHeads", "split_channels"]


def split_channels(x: Tensor, heads: Mapping[str, int]) -> dict[str, Tensor]:
    """Split ``x`` along dim 1 into one tensor per head, in the order of ``heads``.

    Args:
        x: ``B x sum(heads.values()) x H x W``.
        heads: head name -> channels.

    Returns:
        head name -> ``B x heads[name] x H x W``.

    Raises:
        ValueError: if the channel count of ``x`` is not ``sum(heads.values())``.

    Example:
        >>> out = split_channels(torch.zeros(2, 5, 4, 4), {"seg": 4, "depth": 1})
        >>> out["seg"].shape, out["depth"].shape
        (torch.Size([2, 4, 4, 4]), torch.Size([2, 1, 4, 4]))
    """
    total = sum(heads.values())
    if x.shape[1] != total:
        raise ValueError(
            f"x must have sum(heads.values()) = {total} channels for heads {dict(heads)}, "
            f"got {x.shape[1]}"
        )
    parts = x.split(list(heads.values()), dim=1)
    return dict(zip(heads, parts, strict=True))


class ConvHead(nn.Sequential):
    """``conv(k x k) -> BatchNorm -> ReLU -> conv 1x1``: the HRNet segmentation head.

    With ``kernel_size=1`` and ``hidden_channels = in_channels`` this is the
    ``last_layer`` of the official HRNet semantic-segmentation code.

    Args:
        in_channels: channels of the input feature map.
        out_channels: channels of the prediction.
        hidden_channels: channels after the first conv (default ``in_channels``).
        kernel_size: kernel of the first conv (odd; padded to keep the size).

    Example:
        >>> head = ConvHead(270, 19)
        >>> head(torch.zeros(1, 270, 8, 8)).shape
        torch.Size([1, 19, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        kernel_size: int = 1,
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        hidden = in_channels if hidden_channels is None else hidden_channels
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )


class TaskHeads(nn.Module):
    """One :class:`ConvHead` per task on a shared feature map.

    Args:
        in_channels: channels of the shared feature map.
        heads: head name -> output channels.
        hidden_channels: hidden width of every head (default ``in_channels``).
        kernel_size: kernel of each head's first conv.

    Shape:
        - Input: ``B x in_channels x h x w``.
        - Output: dict head name -> ``B x heads[name] x h x w`` (raw, before any activation).

    Example:
        >>> heads = TaskHeads(64, {"seg": 40, "depth": 1, "normals": 3})
        >>> {k: tuple(v.shape) for k, v in heads(torch.zeros(1, 64, 8, 8)).items()}
        {'seg': (1, 40, 8, 8), 'depth': (1, 1, 8, 8), 'normals': (1, 3, 8, 8)}
    """

    def __init__(
        self,
        in_channels: int,
        heads: Mapping[str, int],
        hidden_channels: int | None = None,
        kernel_size: int = 1,
    ) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                name: ConvHead(in_channels, channels, hidden_channels, kernel_size)
                for name, channels in heads.items()
            }
        )

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {name: head(features) for name, head in self.heads.items()}
