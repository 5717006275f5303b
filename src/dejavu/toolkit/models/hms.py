"""HMS: hierarchical multi-scale attention around any dense-prediction network.

Tao, Sapra and Catanzaro, "Hierarchical Multi-Scale Attention for Semantic
Segmentation", 2020 (arXiv:2005.10821), in the layout of NVIDIA's
``semantic-segmentation`` code (``MscaleOCR``). The base network runs on the
image at several scales; at each scale a small attention head predicts a
per-pixel weight ``a`` (``B x 1 x h x w``, sigmoid) and every pair of adjacent
scales is fused *at the lower scale's attention*:

    ``fused = a * up(low) + (1 - a) * high``

(``low``, ``a`` from the lower scale, upsampled bilinearly to the higher
scale's prediction; ``high`` the higher scale's, or what the scales above it
fused to). Raw outputs (logits) are fused, before any activation.

- **Training**: two scales, 1.0 and 0.5 (:data:`TRAIN_SCALES`), so the
  attention learns to weigh a lower scale against a higher one.
- **Inference**: ``scales`` (default ``[0.5, 1.0, 2.0]``) fused hierarchically
  from the highest down (:func:`hierarchical_fusion`): a scale >= 1 is fused at
  its own resolution (the fused prediction so far is downscaled to it), a
  scale < 1 is upscaled to the fused prediction. The result is resized to the
  input like every output (:mod:`~dejavu.toolkit.models.base`).

The attention head is NVIDIA's: ``3x3 conv -> BN -> ReLU -> 3x3 conv -> BN ->
ReLU -> 1x1 conv (-> 1) -> sigmoid`` (``attention_channels`` wide, 256). It reads
the base's head features when the base exposes them
(``forward_heads_and_features``, ``head_feature_channels``: HRNet-OCR's
augmented representation, as in the paper) and otherwise the base's raw
outputs (for any base). Every output key is fused with the same attention,
auxiliary outputs included (``"seg_aux"`` in training), so the auxiliary loss
sees the fused soft regions, as in NVIDIA's code. DejaVu conditions on the
network's ``"seg"``: the fused prediction.

``hrnet48_ocr_hms`` is HMS around ``hrnet48_ocr`` (the paper's system),
``hrnet18_ocr_hms`` around ``hrnet18_ocr`` (small enough for a CPU), and
``hms_<model>`` wraps any other model (e.g. ``hms_hrnet18``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu.toolkit.models.base import DenseNet, pad_to_multiple, resize_outputs
from dejavu.toolkit.models.factory import (
    build_model,
    check_model_name,
    register_model,
    register_model_family,
)
from dejavu.toolkit.models.ocr import conv_bn_relu

__all__ = [
    "ATTENTION_KEY",
    "DEFAULT_SCALES",
    "HMS_PREFIX",
    "TRAIN_SCALES",
    "HasHeadFeatures",
    "HierarchicalMultiScale",
    "attention_fuse",
    "attention_head",
    "build_hms",
    "hierarchical_fusion",
]

#: The scales HMS trains with (the paper's pair).
TRAIN_SCALES: tuple[float, ...] = (0.5, 1.0)
#: The default inference scales.
DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)
#: Where a scale's attention travels with its outputs (never returned).
ATTENTION_KEY = "_hms_attention"
#: ``hms_<model>`` wraps ``<model>``.
HMS_PREFIX = "hms_"


@runtime_checkable
class HasHeadFeatures(Protocol):
    """A base network that exposes the features its heads read (e.g. HRNet-OCR)."""

    head_feature_channels: int

    def forward_heads_and_features(self, image: Tensor) -> tuple[dict[str, Tensor], Tensor]: ...


def attention_head(in_channels: int, channels: int = 256) -> nn.Sequential:
    """HMS's attention head: ``(3x3 conv -> BN -> ReLU) x 2 -> 1x1 conv -> sigmoid``.

    Example:
        >>> attention_head(16, 8)(torch.randn(2, 16, 5, 7)).shape
        torch.Size([2, 1, 5, 7])
    """
    return nn.Sequential(
        conv_bn_relu(in_channels, channels, kernel_size=3),
        conv_bn_relu(channels, channels, kernel_size=3),
        nn.Conv2d(channels, 1, 1, bias=False),
        nn.Sigmoid(),
    )


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if (x.shape[-2], x.shape[-1]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def attention_fuse(low: Tensor, high: Tensor, attention: Tensor, size: tuple[int, int]) -> Tensor:
    """``attention * low + (1 - attention) * high``, all three resized (bilinear) to ``size``.

    Args:
        low: ``B x C x h1 x w1``, the lower scale's prediction.
        high: ``B x C x h2 x w2``, the higher scale's (or the fused ones above it).
        attention: ``B x 1 x h1 x w1`` in [0, 1], predicted at the lower scale.
        size: ``(H, W)`` of the result.

    Example:
        >>> low, high = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)
        >>> attention_fuse(low, high, torch.full((1, 1, 2, 2), 0.25), (4, 4))[0, 0, 0]
        tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    a = _resize(attention, size)
    return a * _resize(low, size) + (1 - a) * _resize(high, size)


def hierarchical_fusion(
    predictions: Iterable[tuple[float, Mapping[str, Tensor]]],
    attention_key: str = ATTENTION_KEY,
) -> dict[str, Tensor]:
    """Fuse per-scale predictions from the highest scale down, as HMS does at inference.

    Args:
        predictions: ``(scale, outputs)`` pairs in *descending* scale order;
            ``outputs`` maps keys to ``B x C x h_s x w_s`` (at that scale's
            resolution) and holds the scale's attention (``B x 1 x h_s x w_s``)
            under ``attention_key`` (the first, highest scale needs none: only a
            lower scale's attention is used). An iterable, so each scale can be
            computed only when it is fused.

    Returns:
        key -> fused ``B x C x h x w`` (without the attention), at the
        resolution of the lowest scale >= 1 (or of the first scale if all are
        below 1).

    Example:
        >>> hi = {"seg": torch.zeros(1, 1, 4, 4), "_a": torch.zeros(1, 1, 4, 4)}
        >>> lo = {"seg": torch.ones(1, 1, 2, 2), "_a": torch.full((1, 1, 2, 2), 0.5)}
        >>> out = hierarchical_fusion([(1.0, hi), (0.5, lo)], attention_key="_a")
        >>> out["seg"].shape, out["seg"].mean().item()
        (torch.Size([1, 1, 4, 4]), 0.5)
    """
    fused: dict[str, Tensor] | None = None
    previous = float("inf")
    for scale, outputs in predictions:
        if scale >= previous:
            raise ValueError(f"scales must be in descending order, got {scale} after {previous}")
        previous = scale
        out = dict(outputs)
        attention = out.pop(attention_key, None)
        if fused is None:
            fused = out
            continue
        if attention is None:
            raise ValueError(f"scale {scale} has no attention ({attention_key!r})")
        if set(out) != set(fused):
            raise ValueError(f"scale {scale} has outputs {sorted(out)}, expected {sorted(fused)}")
        ref = out if scale >= 1.0 else fused
        first = next(iter(ref.values()))
        size = (int(first.shape[-2]), int(first.shape[-1]))
        fused = {k: attention_fuse(out[k], fused[k], attention, size) for k in fused}
    if fused is None:
        raise ValueError("hierarchical_fusion needs at least one scale")
    return fused


def _check_scales(scales: object) -> tuple[float, ...]:
    if isinstance(scales, int | float) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales!r}")
    values = []
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, int | float) or not s > 0:
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        values.append(float(s))
    if len(set(values)) != len(values):
        raise ValueError(f"scales must not repeat, got {scales!r}")
    return tuple(sorted(values))


class HierarchicalMultiScale(DenseNet):
    """HMS around a base network: multi-scale predictions fused by a learned attention.

    Args:
        base: the network run at every scale (any :class:`DenseNet`).
        scales: inference scales (default ``[0.5, 1.0, 2.0]``); training always
            uses :data:`TRAIN_SCALES` (1.0 and 0.5).
        attention_channels: width of the attention head (256).

    Attributes:
        base: the wrapped network.
        attention: the attention head (on the base's head features when it
            exposes them, :class:`HasHeadFeatures`, else on its raw outputs).

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: the base's outputs, fused: dict key -> ``B x C x H x W``
          (in training mode including the base's auxiliary outputs, ``"seg_aux"``).

    Example:
        >>> from dejavu.toolkit.models.ocr import OCRHRNet
        >>> base = OCRHRNet({"seg": 5}, ocr_channels=32, key_channels=16)
        >>> net = HierarchicalMultiScale(base, scales=[0.5, 1.0], attention_channels=8)
        >>> x = torch.randn(2, 3, 45, 61)
        >>> {k: tuple(v.shape) for k, v in net.train()(x).items()}
        {'seg': (2, 5, 45, 61), 'seg_aux': (2, 5, 45, 61)}
        >>> {k: tuple(v.shape) for k, v in net.eval()(x).items()}
        {'seg': (2, 5, 45, 61)}
    """

    # The base pads each scaled image itself.
    pad_multiple = 1

    def __init__(
        self,
        base: DenseNet,
        scales: Sequence[float] = DEFAULT_SCALES,
        attention_channels: int = 256,
    ) -> None:
        if not isinstance(base, DenseNet):
            raise ValueError(f"base must be a DenseNet, got {type(base).__name__}")
        if getattr(base, "mask_classification", False):
            raise ValueError(
                f"HMS fuses per-pixel outputs; {type(base).__name__} predicts by mask "
                "classification (per-query classes and masks), which it cannot fuse"
            )
        super().__init__(base.heads, base.depth_activation)
        if (
            isinstance(attention_channels, bool)
            or not isinstance(attention_channels, int)
            or attention_channels < 1
        ):
            raise ValueError(
                f"attention_channels must be a positive int, got {attention_channels!r}"
            )
        self.scales = _check_scales(scales)
        self.base = base
        if isinstance(base, HasHeadFeatures):
            in_channels = int(base.head_feature_channels)
        else:
            in_channels = sum(base.heads.values())
        self.attention = attention_head(in_channels, attention_channels)

    def get_backbone(self) -> nn.Module:
        return self.base.get_backbone()

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        """The whole network, the base network alone (a single-scale checkpoint), its backbone."""
        return [
            ("whole network", self),
            ("base network", self.base),
            ("backbone", self.get_backbone()),
        ]

    def _base_outputs(self, padded: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        if isinstance(self.base, HasHeadFeatures):
            raw, features = self.base.forward_heads_and_features(padded)
            return dict(raw), features
        raw = self.base.forward_heads(padded)
        first = next(iter(raw.values()))
        size = (int(first.shape[-2]), int(first.shape[-1]))
        features = torch.cat([_resize(raw[k], size) for k in self.base.heads], dim=1)
        return dict(raw), features

    def predict_scale(
        self, image: Tensor, scale: float, with_attention: bool = True
    ) -> dict[str, Tensor]:
        """The base's raw outputs and the attention for ``image`` resized by ``scale``.

        Args:
            image: ``B x 3 x H x W``.
            scale: the resize factor.
            with_attention: also run the attention head (the highest scale's
                attention is never used, so it is not computed).

        Returns:
            key -> ``B x C x h x w`` at the scaled size ``h = round(H * scale)``
            (the base's padding cropped off), the attention under :data:`ATTENTION_KEY`.
        """
        h, w = int(image.shape[-2]), int(image.shape[-1])
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = _resize(image, size)
        padded = pad_to_multiple(scaled, self.base.pad_multiple)
        raw, features = self._base_outputs(padded)
        if with_attention:
            raw[ATTENTION_KEY] = self.attention(features)
        return resize_outputs(raw, (int(padded.shape[-2]), int(padded.shape[-1])), size)

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        scales = TRAIN_SCALES if self.training else self.scales
        ordered = sorted(scales, reverse=True)
        return hierarchical_fusion(
            (s, self.predict_scale(image, s, with_attention=i > 0)) for i, s in enumerate(ordered)
        )


# ----------------------------------------------------------------------- registry
#: ``create_model`` keyword arguments that go to HMS; the others go to the base.
HMS_KWARGS: tuple[str, ...] = ("scales", "attention_channels")


def build_hms(base: str, heads: Mapping[str, int], **kwargs: Any) -> HierarchicalMultiScale:
    """HMS around the registered model ``base``; ``scales`` and ``attention_channels``
    go to HMS, every other keyword argument to the base.

    Example:
        >>> net = build_hms("fpn_test_resnet", {"seg": 3}, scales=[1.0], attention_channels=4)
        >>> net.scales, type(net.base).__name__
        ((1.0,), 'TimmFPN')
    """
    hms_kwargs = {k: kwargs.pop(k) for k in HMS_KWARGS if k in kwargs}
    return HierarchicalMultiScale(build_model(base, heads, **kwargs), **hms_kwargs)


@register_model
def hrnet18_ocr_hms(heads: Mapping[str, int], **kwargs: Any) -> HierarchicalMultiScale:
    """HMS around ``hrnet18_ocr`` (HRNet-W18-Small + OCR): the small, CPU-sized HMS."""
    return build_hms("hrnet18_ocr", heads, **kwargs)


@register_model
def hrnet48_ocr_hms(heads: Mapping[str, int], **kwargs: Any) -> HierarchicalMultiScale:
    """HMS around ``hrnet48_ocr`` (HRNet-W48 + OCR): the paper's system."""
    return build_hms("hrnet48_ocr", heads, **kwargs)


def _check_base(base: str) -> str | None:
    if base.startswith((HMS_PREFIX, "sa_")) or base.endswith("_hms"):
        return f"{HMS_PREFIX} takes a single-scale base network without DejaVu-SA, got {base!r}"
    try:
        check_model_name(base)
    except ValueError:
        return f"{base!r} is not a model name"
    return None


@register_model_family(
    HMS_PREFIX,
    pattern=f"{HMS_PREFIX}<model>",
    check=_check_base,
    examples=("hms_hrnet18", "hms_fpn_resnet18"),
)
def hms(base: str, heads: Mapping[str, int], **kwargs: Any) -> HierarchicalMultiScale:
    """``hms_<model>``: ``<model>`` inside HMS (``hms_hrnet48_ocr`` is ``hrnet48_ocr_hms``)."""
    return build_hms(base, heads, **kwargs)
