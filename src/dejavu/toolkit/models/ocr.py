"""HRNet-OCR: object-contextual representations on the HRNet backbones.

Yuan, Chen and Wang, "Object-Contextual Representations for Semantic
Segmentation", ECCV 2020, in the layout of the official HRNet-OCR code
(``HRNet-Semantic-Segmentation``, branch ``HRNet-OCR``). On the concatenated
HRNet features ``x`` (``B x C x h x w`` at stride 4, see
:mod:`~dejavu.toolkit.models.hrnet`):

1. **Soft object regions** ``M = aux(x)``: ``1x1 conv (C -> C) -> BN -> ReLU ->
   1x1 conv (C -> K)``, one map per class (``B x K x h x w``). In training they
   are also supervised with cross-entropy (the auxiliary loss, weight 0.4):
   the network returns them as ``"seg_aux"`` (see below).
2. **Pixel representations** ``p = bottleneck(x)``: ``3x3 conv (C -> D) -> BN ->
   ReLU`` (``D = ocr_channels``, 512).
3. **Object region representations** ``f_k = sum_i softmax_i(M_k)_i p_i``: the
   pixel features pooled with each region's spatial softmax
   (:func:`object_region_features`, ``B x D x K``).
4. **Pixel-region relation and object context** (:class:`ObjectAttention`):
   ``w_ik = softmax_k(phi(p_i) . psi(f_k) / sqrt(d))`` with query ``phi`` and
   key ``psi`` each ``(1x1 conv -> BN -> ReLU) x 2`` to ``d = key_channels``
   (256), and ``y_i = rho(sum_k w_ik delta(f_k))`` with value ``delta`` and
   output ``rho`` each one ``1x1 conv -> BN -> ReLU``.
5. **Augmented representation** ``z = g([y, p])``: ``1x1 conv (2D -> D) -> BN ->
   ReLU -> Dropout2d(0.05)``, then the classifier ``1x1 conv (D -> K)``.

The soft regions are part of the inference network (step 3 needs them); only
their loss is training-only. So the network returns ``{"seg": logits}`` in eval
mode and ``{"seg": logits, "seg_aux": M}`` in training mode, both resized to
the input like every output (:mod:`~dejavu.toolkit.models.base`); the task
loss adds ``0.4 * CE(seg_aux)`` when the key is there
(:meth:`dejavu.toolkit.tasks.Task.loss`, :attr:`HeadSpec.aux_weight`). Other
heads of a multi-task network (depth, normals) get the plain HRNetV2 head on
``x``. ``hrnet18_ocr`` is HRNet-W18-Small-V1 + OCR (the seed's HRNet18 row),
``hrnet48_ocr`` HRNet-W48 + OCR (the paper's HRNet-OCR).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import ConvHead, TaskHeads
from dejavu.toolkit.models.hrnet import HRNET_VARIANTS, HRNet
from dejavu.toolkit.tasks.heads import aux_key, head_spec

__all__ = [
    "OCRHRNet",
    "OCRHead",
    "OCROutput",
    "ObjectAttention",
    "ObjectRegionFeatures",
    "conv_bn_relu",
    "object_region_features",
]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """``conv (k x k, no bias) -> BatchNorm -> ReLU``, padded to keep the size.

    Example:
        >>> conv_bn_relu(8, 4)(torch.zeros(2, 8, 5, 7)).shape
        torch.Size([2, 4, 5, 7])
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def object_region_features(features: Tensor, regions: Tensor) -> Tensor:
    """Object region representations: pixel features pooled by each region's spatial softmax.

    ``f_k = sum_i softmax_i(regions_k)_i features_i`` (the softmax runs over the
    ``h x w`` pixels of each region map), as OCR's ``SpatialGather_Module``.

    Args:
        features: ``B x C x h x w`` pixel representations.
        regions: ``B x K x h x w`` soft object regions (logits).

    Returns:
        ``B x C x K``: one ``C``-vector per region.

    Example:
        >>> feats = torch.arange(4.0).view(1, 1, 2, 2)
        >>> regions = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[-1e4, -1e4], [-1e4, 10.0]]]])
        >>> object_region_features(feats, regions)  # the mean, and the one pixel of region 1
        tensor([[[1.5000, 3.0000]]])
    """
    if features.shape[0] != regions.shape[0] or features.shape[-2:] != regions.shape[-2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and regions {tuple(regions.shape)} must share "
            "the batch and spatial sizes"
        )
    weights = F.softmax(regions.flatten(2), dim=2)  # B x K x hw
    return torch.bmm(features.flatten(2), weights.transpose(1, 2))  # B x C x K


class ObjectRegionFeatures(nn.Module):
    """:func:`object_region_features` as a module (OCR's ``SpatialGather_Module``).

    Shape:
        - features: ``B x C x h x w``; regions: ``B x K x h x w``.
        - Output: ``B x C x K``.

    Example:
        >>> ObjectRegionFeatures()(torch.zeros(2, 8, 4, 5), torch.zeros(2, 3, 4, 5)).shape
        torch.Size([2, 8, 3])
    """

    def forward(self, features: Tensor, regions: Tensor) -> Tensor:
        return object_region_features(features, regions)


class ObjectAttention(nn.Module):
    """Pixel-region relation and the object contextual representation (OCR's attention block).

    Every pixel attends over the ``K`` object regions: query ``phi(p_i)``, key
    ``psi(f_k)`` (each two ``1x1 conv -> BN -> ReLU`` to ``key_channels``),
    ``w_ik = softmax_k(phi(p_i) . psi(f_k) / sqrt(key_channels))``, value
    ``delta(f_k)`` and output ``rho`` (each one ``1x1 conv -> BN -> ReLU``):
    ``y_i = rho(sum_k w_ik delta(f_k))``. As in the official code, the region
    vectors go through the convolutions as a ``K x 1`` map.

    Args:
        channels: channels of the pixel and region representations.
        key_channels: channels of the query, key and value.

    Shape:
        - pixels: ``B x channels x h x w``; regions: ``B x channels x K``.
        - Output: ``B x channels x h x w``, the object context of every pixel.

    Example:
        >>> attn = ObjectAttention(16, 8)
        >>> attn(torch.randn(2, 16, 5, 7), torch.randn(2, 16, 3)).shape
        torch.Size([2, 16, 5, 7])
    """

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(
            conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels)
        )
        self.key = nn.Sequential(
            conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels)
        )
        self.value = conv_bn_relu(channels, key_channels)
        self.out = conv_bn_relu(key_channels, channels)

    def relation(self, pixels: Tensor, regions: Tensor) -> Tensor:
        """The pixel-region relation ``w``: ``B x hw x K``, each row summing to 1."""
        q = self.query(pixels).flatten(2).transpose(1, 2)  # B x hw x d
        k = self.key(regions.unsqueeze(-1)).flatten(2)  # B x d x K
        return F.softmax(torch.bmm(q, k) * self.key_channels**-0.5, dim=-1)

    def forward(self, pixels: Tensor, regions: Tensor) -> Tensor:
        b, _, h, w = pixels.shape
        relation = self.relation(pixels, regions)  # B x hw x K
        v = self.value(regions.unsqueeze(-1)).flatten(2).transpose(1, 2)  # B x K x d
        context = torch.bmm(relation, v).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.out(context)


class OCROutput(NamedTuple):
    """What :class:`OCRHead` returns."""

    logits: Tensor
    """``B x K x h x w`` class logits of the augmented representation."""
    regions: Tensor
    """``B x K x h x w`` soft object regions (the auxiliary head's logits)."""
    features: Tensor
    """``B x ocr_channels x h x w`` augmented representation (before the classifier)."""


class OCRHead(nn.Module):
    """The OCR head: soft object regions -> region features -> object context -> classes.

    Args:
        in_channels: channels of the backbone feature map (``C``).
        num_classes: classes (``K``): one soft object region per class.
        ocr_channels: channels of the pixel and augmented representations (512).
        key_channels: channels of the pixel-region attention (256).
        dropout: ``Dropout2d`` after the augmented representation (0.05).

    Shape:
        - Input: ``B x in_channels x h x w``.
        - Output: :class:`OCROutput` (logits, regions, features), all at ``h x w``.

    Example:
        >>> head = OCRHead(24, num_classes=5, ocr_channels=16, key_channels=8).eval()
        >>> out = head(torch.randn(1, 24, 9, 11))
        >>> out.logits.shape, out.regions.shape, out.features.shape
        (torch.Size([1, 5, 9, 11]), torch.Size([1, 5, 9, 11]), torch.Size([1, 16, 9, 11]))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        ocr_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("ocr_channels", ocr_channels),
            ("key_channels", key_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.regions = ConvHead(in_channels, num_classes)  # the auxiliary head
        self.bottleneck = conv_bn_relu(in_channels, ocr_channels, kernel_size=3)
        self.gather = ObjectRegionFeatures()
        self.attention = ObjectAttention(ocr_channels, key_channels)
        self.fuse = nn.Sequential(
            conv_bn_relu(2 * ocr_channels, ocr_channels), nn.Dropout2d(dropout)
        )
        self.classifier = nn.Conv2d(ocr_channels, num_classes, 1)

    def forward(self, features: Tensor) -> OCROutput:
        regions = self.regions(features)
        pixels = self.bottleneck(features)
        context = self.attention(pixels, self.gather(pixels, regions))
        augmented = self.fuse(torch.cat([context, pixels], dim=1))
        return OCROutput(self.classifier(augmented), regions, augmented)


class OCRHRNet(HRNet):
    """HRNet + the OCR head for the class head; other heads get the HRNetV2 head.

    Args:
        heads: head name -> output channels; exactly one class head (``"seg"``).
        variant: timm HRNet variant (default ``"hrnet_w18_small"``).
        ocr_channels: channels of OCR's pixel/augmented representations (512).
        key_channels: channels of OCR's pixel-region attention (256).
        dropout: dropout after the augmented representation (0.05).
        head_channels: hidden width of the other heads (default: their input width).
        depth_activation: ``"softplus"`` or ``"exp"``.
        **timm_kwargs: passed to ``timm.create_model``.

    Attributes:
        class_head: the head OCR predicts (``"seg"``).
        head_feature_channels: channels of :meth:`forward_heads_and_features`'s
            features (the augmented representation), for heads built on top
            (:class:`~dejavu.toolkit.models.hms.HierarchicalMultiScale`'s attention).

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``; in training mode
          also ``"seg_aux"``, the soft object regions (``B x K x H x W`` logits).

    Example:
        >>> net = OCRHRNet({"seg": 5}, ocr_channels=32, key_channels=16)
        >>> x = torch.randn(2, 3, 45, 61)
        >>> {k: tuple(v.shape) for k, v in net.train()(x).items()}
        {'seg': (2, 5, 45, 61), 'seg_aux': (2, 5, 45, 61)}
        >>> {k: tuple(v.shape) for k, v in net.eval()(x).items()}
        {'seg': (2, 5, 45, 61)}
    """

    def __init__(
        self,
        heads: Mapping[str, int],
        variant: str = "hrnet_w18_small",
        ocr_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
        head_channels: int | None = None,
        depth_activation: str = "softplus",
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(heads, variant, head_channels, depth_activation, **timm_kwargs)
        class_heads = [k for k in self.heads if head_spec(k).channels is None]
        if len(class_heads) != 1:
            raise ValueError(
                "OCR predicts one class head (one soft object region per class): heads must "
                f"have exactly one, e.g. {{'seg': 19}}; got heads={self.heads}"
            )
        self.class_head = class_heads[0]
        others = {k: c for k, c in self.heads.items() if k != self.class_head}
        self.decoder = TaskHeads(self.feature_channels, others, head_channels)
        self.ocr = OCRHead(
            self.feature_channels,
            self.heads[self.class_head],
            ocr_channels=ocr_channels,
            key_channels=key_channels,
            dropout=dropout,
        )
        self.head_feature_channels = ocr_channels

    def forward_heads_and_features(self, image: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Raw outputs at stride 4 and OCR's augmented representation.

        ``image`` must already be padded to a multiple of 32. In training mode
        the outputs include the soft object regions under ``"seg_aux"``.

        Returns:
            ``(outputs, features)``: head name -> ``B x C x H/4 x W/4``, and
            ``B x ocr_channels x H/4 x W/4``.
        """
        features = self.forward_features(image)
        ocr = self.ocr(features)
        others = self.decoder(features)
        raw = {k: ocr.logits if k == self.class_head else others[k] for k in self.heads}
        if self.training:  # the auxiliary loss's input; the regions themselves always run
            raw[aux_key(self.class_head)] = ocr.regions
        return raw, ocr.features

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        return self.forward_heads_and_features(image)[0]


# ----------------------------------------------------------------------- registry
@register_model
def hrnet18_ocr(heads: Mapping[str, int], **kwargs: Any) -> OCRHRNet:
    """HRNet-W18-Small-V1 (``hrnet18``) + OCR: the seed's HRNet-OCR HRNet18 row."""
    return OCRHRNet(heads, variant=HRNET_VARIANTS["hrnet18"], **kwargs)


@register_model
def hrnet48_ocr(heads: Mapping[str, int], **kwargs: Any) -> OCRHRNet:
    """HRNet-W48 (``hrnet48``) + OCR: the paper's HRNet-OCR."""
    return OCRHRNet(heads, variant=HRNET_VARIANTS["hrnet48"], **kwargs)
