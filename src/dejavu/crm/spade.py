"""The SPADE CRM: an image path starved by a bottleneck, a decoder driven by ``phi(C)``.

Our architecture (not the paper's; the paper does not publish its CRM). The
motivation: CRM-F (a U-Net over ``[I_r, phi(C), keep]``) can regenerate the
redacted image from the visible pixels alone and barely needs the
conditioning, so the regeneration loss barely rewards a better prediction.
Here the redacted image can reach the output only through a low-resolution
code, and the structure at every resolution has to come from ``phi(C)``:

- **encoder** over ``[I_r, keep]`` only (never the conditioning): a 3x3 conv
  stem at the working resolution, then ``depth`` stride-2 double-conv blocks
  (width doubling per level) down to ``1 / 2**depth`` of the working
  resolution. Only its last output, the *bottleneck code*, goes on to the
  decoder (unless ``image_skip``).
- **decoder**: ``depth + 1`` SPADE blocks, one at the bottleneck and one after
  each 2x bilinear upsampling back to the working resolution. Each block is
  SPADE (Park et al., "Semantic Image Synthesis with Spatially-Adaptive
  Normalization", CVPR 2019) on the level's ``width * 2**level`` channels,
  then a 3x3 conv to the next level's channels and a ReLU. SPADE normalises the
  features without learned affine parameters (``GroupNorm(affine=False)``) and
  re-modulates them per pixel with a scale and shift predicted from the
  conditioning at that level::

      a = relu(conv3x3(cond_l)),  gamma = conv3x3(a),  beta = conv3x3(a)
      SPADE(x) = norm(x) * (1 + gamma) + beta

  where ``cond_l`` is the (padded) working-resolution conditioning
  average-pooled to the level's resolution.
- **head**: a 1x1 conv to ``image_channels``.

With ``image_skip=True`` the stem's full-resolution features are concatenated
to the input of the last (full-resolution) decoder block, which lets the image
path bypass the bottleneck (an ablation: it turns the CRM back into one that
can copy visible pixels).

Any ``H x W`` works: the inputs are padded (replicate) to a multiple of
``2 ** depth`` at the working resolution and the output is cropped back.

Example:
    >>> crm = SpadeCRM(cond_channels=5, width=8, depth=2, hidden=8)
    >>> redacted, cond = torch.randn(2, 3, 15, 21), torch.rand(2, 5, 15, 21)
    >>> crm(redacted, cond).shape
    torch.Size([2, 3, 8, 10])
    >>> crm(redacted, cond).shape == crm.resize_to_working(redacted).shape
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu.crm.base import CRMBase, _check_int
from dejavu.crm.factory import register_crm
from dejavu.crm.unet import _GroupNorm

__all__ = ["SPADE", "SpadeCRM"]


def _groups(channels: int) -> int:
    # Up to 8 groups that divide the channel count (as the U-Net does): stable
    # at the batch sizes of 1-2 the CRM often sees per GPU.
    return math.gcd(8, channels)


class _ConvNormAct(nn.Sequential):
    """3x3 conv (optionally strided), GroupNorm, ReLU: the encoder's unit."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            _GroupNorm(_groups(c_out), c_out),
            nn.ReLU(),
        )


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (Park et al. 2019).

    ``GroupNorm(affine=False)(x) * (1 + gamma) + beta`` with ``gamma, beta``
    predicted per pixel from the conditioning by a two-layer conv net
    (``conv3x3 -> ReLU -> conv3x3``, one output conv each for ``gamma`` and
    ``beta``, fused into one conv here).

    Args:
        channels: channels of the features ``x``.
        cond_channels: channels of the conditioning.
        hidden: channels of the conditioning net's hidden layer.

    Example:
        >>> spade = SPADE(channels=8, cond_channels=3, hidden=4)
        >>> spade(torch.randn(2, 8, 6, 7), torch.rand(2, 3, 6, 7)).shape
        torch.Size([2, 8, 6, 7])
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.channels = _check_int(channels, "channels", 1)
        self.cond_channels = _check_int(cond_channels, "cond_channels", 1)
        self.hidden = _check_int(hidden, "hidden", 1)
        self.norm = _GroupNorm(_groups(channels), channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma_beta = nn.Conv2d(hidden, 2 * channels, 3, padding=1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Normalise ``x`` and modulate it with the conditioning.

        Args:
            x: ``B x channels x h x w`` features.
            cond: ``B x cond_channels x h x w`` conditioning at the same resolution.

        Returns:
            ``B x channels x h x w``.
        """
        gamma, beta = self.gamma_beta(self.shared(cond)).chunk(2, dim=1)
        return self.norm(x) * (1.0 + gamma) + beta

    def extra_repr(self) -> str:
        return f"channels={self.channels}, cond_channels={self.cond_channels}, hidden={self.hidden}"


class _SpadeBlock(nn.Module):
    """SPADE, then 3x3 conv and ReLU: one decoder level."""

    def __init__(self, c_in: int, c_out: int, cond_channels: int, hidden: int) -> None:
        super().__init__()
        self.spade = SPADE(c_in, cond_channels, hidden)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.act(self.conv(self.spade(x, cond)))


@register_crm
class SpadeCRM(CRMBase):
    """A CRM whose image path is a bottleneck and whose decoder is conditioned by SPADE.

    See the module docstring for the architecture (ours). Level ``i`` has
    ``width * 2**i`` channels; the bottleneck code is ``width * 2**depth``
    channels at ``1 / 2**depth`` of the working resolution.

    Args:
        cond_channels: channels of ``phi(C)``.
        image_channels: image channels.
        width: channels of the first level (>= 1).
        depth: number of stride-2 levels of the encoder, and of upsampling
            levels of the decoder (>= 1).
        scale: working resolution as a fraction of the input, in ``(0, 1]``.
        use_keep: feed the kept-pixel mask to the encoder (with ``I_r``).
        image_skip: concatenate the encoder's full-resolution features to the
            last decoder block (lets the image bypass the bottleneck; off by default).
        hidden: hidden channels of each SPADE conditioning net (>= 1).

    Example:
        >>> crm = SpadeCRM(cond_channels=3, width=4, depth=1, hidden=4, scale=1.0)
        >>> keep = (torch.rand(1, 1, 9, 9) > 0.5).float()
        >>> out = crm(torch.randn(1, 3, 9, 9) * keep, torch.rand(1, 3, 9, 9), keep)
        >>> out.shape
        torch.Size([1, 3, 9, 9])
        >>> len(crm.decoder)  # one SPADE block per level: bottleneck + depth upsamplings
        2
    """

    name = "spade"

    def __init__(
        self,
        cond_channels: int,
        image_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        scale: float = 0.5,
        use_keep: bool = True,
        image_skip: bool = False,
        hidden: int = 32,
    ) -> None:
        super().__init__(cond_channels, image_channels, scale, use_keep)
        self.width = _check_int(width, "width", 1)
        self.depth = _check_int(depth, "depth", 1)
        self.hidden = _check_int(hidden, "hidden", 1)
        self.image_skip = bool(image_skip)
        chans = [width * 2**i for i in range(depth + 1)]
        in_channels = self.image_channels + int(self.use_keep)
        # Encoder over [I_r, keep]: stem at the working resolution, then stride-2 levels.
        self.stem = _ConvNormAct(in_channels, chans[0])
        self.down = nn.ModuleList(
            nn.Sequential(
                _ConvNormAct(chans[i], chans[i + 1], stride=2),
                _ConvNormAct(chans[i + 1], chans[i + 1]),
            )
            for i in range(depth)
        )
        # Decoder: decoder[j] runs at level depth - j (decoder[0] on the bottleneck code):
        # SPADE on that level's chans[level] channels, then a conv to the next level's
        # chans[level - 1] (chans[0] at level 0); 2x upsampling between blocks.
        blocks = []
        for level in reversed(range(depth + 1)):
            c_in = chans[level] + (chans[0] if (level == 0 and self.image_skip) else 0)
            blocks.append(_SpadeBlock(c_in, chans[max(level - 1, 0)], self.cond_channels, hidden))
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(chans[0], self.image_channels, 1)

    def encode(self, redacted_w: Tensor, keep_w: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder, on working-resolution inputs padded to a multiple of ``2**depth``.

        Args:
            redacted_w: ``B x image_channels x h x w`` (``h, w`` multiples of ``2**depth``).
            keep_w: ``B x 1 x h x w`` kept fraction.

        Returns:
            ``(code, full)``: the bottleneck code
            ``B x width*2**depth x h/2**depth x w/2**depth`` and the stem's
            ``B x width x h x w`` features (used by the decoder only with ``image_skip``).
        """
        x = torch.cat([redacted_w, keep_w], dim=1) if self.use_keep else redacted_w
        full = self.stem(x)
        code = full
        for block in self.down:
            code = block(code)
        return code, full

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
        h, w = redacted_w.shape[-2:]
        m = 2**self.depth
        pad = (0, (-w) % m, 0, (-h) % m)
        if any(pad):
            redacted_w, cond_w, keep_w = (
                F.pad(t, pad, mode="replicate") for t in (redacted_w, cond_w, keep_w)
            )
        code, full = self.encode(redacted_w, keep_w)
        # Conditioning pyramid: conds[i] at level i (exact 2x2 averages: sizes are multiples of m).
        conds = [cond_w]
        for _ in range(self.depth):
            conds.append(F.avg_pool2d(conds[-1], 2))
        y = code
        for j, block in enumerate(self.decoder):
            level = self.depth - j
            if j:
                y = F.interpolate(
                    y, size=conds[level].shape[-2:], mode="bilinear", align_corners=False
                )
            if level == 0 and self.image_skip:
                y = torch.cat([y, full], dim=1)
            y = block(y, conds[level])
        return self.head(y)[..., :h, :w]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, width={self.width}, depth={self.depth}, "
            f"hidden={self.hidden}, image_skip={self.image_skip}"
        )
