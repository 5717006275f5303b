"""``sa_hrnet18`` (and its wider ``_v2``, ``_full``): HRNet whose head contains a
DejaVu-SA shared-attention block.

The network is :class:`~dejavu.toolkit.models.hrnet.HRNet` with a
:class:`dejavu.shared_attention.SharedAttention` block inserted between the
concatenated branch features and the task heads:

1. ``f = concat(branches)``: ``B x C x H/4 x W/4`` (C = 240 for HRNet-W18-Small).
2. ``z = pool(reduce(f))``: a ``1x1 conv -> BN -> ReLU`` to ``sa_dim`` channels,
   average-pooled to stride ``sa_stride`` (default 16): global attention costs
   ``O((HW / sa_stride^2)^2)``, which stride 4 would make prohibitive
   (32768 tokens for a 512 x 1024 crop at stride 4, 2048 at stride 16).
3. ``SA(z)`` (task branch), upsampled back to stride 4 and concatenated to
   ``f`` as global context: the heads see ``C + sa_dim`` channels.
4. In training with a ``redacted`` image, the redacted image goes through the
   same backbone, ``reduce`` and ``pool`` to ``z_r``, and the SA block's
   regeneration branch decodes an image from ``z_r`` using the attention map
   of the clean features. The regenerated image is upsampled to the input
   size (bilinear, padded then cropped like every output) and returned under
   ``"regenerated"`` (``B x 3 x H x W``), so the loss is computed against the
   image at its own resolution. The redacted pass normalises with its own
   batch statistics but leaves BatchNorm running statistics untouched, so
   the statistics used at inference are those of clean images.

At inference (eval mode, or no ``redacted``) only steps 1 to 3 run; unlike the
rest of DejaVu the SA block is inference compute (``sa_dim`` channels of global
attention at stride ``sa_stride``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_image
from dejavu.batchnorm import frozen_bn_stats
from dejavu.shared_attention import SharedAttention
from dejavu.toolkit.models.base import decode_outputs, pad_to_multiple, resize_outputs
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import TaskHeads
from dejavu.toolkit.models.hrnet import HRNET_VARIANTS, HRNet

__all__ = ["SA_STRIDES", "SharedAttentionHRNet"]

#: Allowed strides of the attention map (the padded input is a multiple of 32).
SA_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


class SharedAttentionHRNet(HRNet):
    """HRNet + a DejaVu-SA block in the head (see the module docstring).

    Args:
        heads: head name -> output channels.
        variant: timm HRNet variant (default ``"hrnet_w18_small"``).
        sa_dim: channels of the attention block (divisible by ``sa_heads``).
        sa_heads: attention heads.
        sa_stride: stride of the attention map: 4, 8, 16 (default) or 32.
        regen_hidden: width of the SA block's regeneration decoder.
        head_channels: hidden width of each task head (default: its input width).
        depth_activation: ``"softplus"`` or ``"exp"``.
        **timm_kwargs: passed to ``timm.create_model``.

    Attributes:
        supports_shared_attention: ``True``: :class:`dejavu.DejaVu` calls
            ``forward(image, redacted=...)``.

    Example:
        >>> net = SharedAttentionHRNet({"seg": 19})
        >>> x = torch.randn(2, 3, 45, 61)
        >>> out = net(x, redacted=torch.zeros_like(x))  # training: regenerates
        >>> out["seg"].shape, out["regenerated"].shape
        (torch.Size([2, 19, 45, 61]), torch.Size([2, 3, 45, 61]))
        >>> sorted(net.eval()(x))
        ['seg']
    """

    supports_shared_attention = True

    def __init__(
        self,
        heads: Mapping[str, int],
        variant: str = "hrnet_w18_small",
        sa_dim: int = 64,
        sa_heads: int = 4,
        sa_stride: int = 16,
        regen_hidden: int = 64,
        head_channels: int | None = None,
        depth_activation: str = "softplus",
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(heads, variant, head_channels, depth_activation, **timm_kwargs)
        if sa_stride not in SA_STRIDES:
            raise ValueError(f"sa_stride must be one of {list(SA_STRIDES)}, got {sa_stride!r}")
        self.sa_stride = sa_stride
        self.reduce = nn.Sequential(
            nn.Conv2d(self.feature_channels, sa_dim, 1, bias=False),
            nn.BatchNorm2d(sa_dim),
            nn.ReLU(inplace=True),
        )
        self.attention = SharedAttention(
            sa_dim, num_heads=sa_heads, regen_channels=3, regen_hidden=regen_hidden
        )
        self.decoder = TaskHeads(self.feature_channels + sa_dim, self.heads, head_channels)

    def _tokens(self, features: Tensor) -> Tensor:
        z = self.reduce(features)
        pool = self.sa_stride // 4  # features are at stride 4
        return F.avg_pool2d(z, pool) if pool > 1 else z

    def forward(self, image: Tensor, redacted: Tensor | None = None) -> dict[str, Tensor]:
        """Predict every head; in training with ``redacted``, also regenerate the image.

        Args:
            image: ``B x 3 x H x W`` normalised image, any ``H x W``.
            redacted: ``B x 3 x H x W`` redacted image (used in training only).

        Returns:
            head name -> ``B x C x H x W``, plus ``"regenerated"`` (``B x 3 x H x W``)
            in training mode when ``redacted`` is given.
        """
        check_image(image, "image", channels=3)
        regenerate = self.training and redacted is not None
        if regenerate and redacted is not None:
            check_image(redacted, "redacted", channels=3)
            if redacted.shape != image.shape:
                raise ValueError(
                    f"redacted must have the shape of image {tuple(image.shape)}, "
                    f"got {tuple(redacted.shape)}"
                )
        size = (image.shape[-2], image.shape[-1])
        padded = pad_to_multiple(image, self.pad_multiple)
        padded_size = (padded.shape[-2], padded.shape[-1])

        features = self.forward_features(padded)
        z = self._tokens(features)
        z_r = None
        if regenerate and redacted is not None:
            with frozen_bn_stats(self):
                z_r = self._tokens(
                    self.forward_features(pad_to_multiple(redacted, self.pad_multiple))
                )
        raw, regenerated = self._decode(features, z, z_r)
        out = decode_outputs(raw, padded_size, size, self.depth_activation)
        if regenerated is not None:
            out["regenerated"] = resize_outputs({"image": regenerated}, padded_size, size)["image"]
        return out

    def _decode(
        self, features: Tensor, z: Tensor, z_r: Tensor | None = None
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        sa = self.attention(z, z_r)
        context = F.interpolate(
            sa.features, size=features.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.decoder(torch.cat([features, context], dim=1)), sa.regenerated

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        features = self.forward_features(image)
        return self._decode(features, self._tokens(features))[0]


# ----------------------------------------------------------------------- registry
# One SA network per HRNet width, so that SA can be set against simply widening the
# base (issue 13, study 4): each is its plain namesake (``hrnet18``, ``hrnet18_v2``,
# ``hrnet18_full``) plus the block.
@register_model
def sa_hrnet18(heads: Mapping[str, int], **kwargs: Any) -> SharedAttentionHRNet:
    """HRNet-W18-Small (``hrnet18``) with a DejaVu-SA shared-attention block in its head."""
    return SharedAttentionHRNet(heads, variant=HRNET_VARIANTS["hrnet18"], **kwargs)


@register_model
def sa_hrnet18_v2(heads: Mapping[str, int], **kwargs: Any) -> SharedAttentionHRNet:
    """HRNet-W18-Small-V2 (``hrnet18_v2``) with a DejaVu-SA block in its head."""
    return SharedAttentionHRNet(heads, variant=HRNET_VARIANTS["hrnet18_v2"], **kwargs)


@register_model
def sa_hrnet18_full(heads: Mapping[str, int], **kwargs: Any) -> SharedAttentionHRNet:
    """HRNet-W18 (``hrnet18_full``) with a DejaVu-SA block in its head."""
    return SharedAttentionHRNet(heads, variant=HRNET_VARIANTS["hrnet18_full"], **kwargs)
