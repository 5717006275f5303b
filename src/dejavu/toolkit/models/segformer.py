"""SegFormer (MiT-b0 ... MiT-b5) from Hugging Face ``transformers``, randomly initialised.

The model is ``SegformerForSemanticSegmentation(SegformerConfig(...))`` built
from the official per-variant sizes (Xie et al., 2021, Table 6 / the
``nvidia/mit-b*`` configs), so nothing is downloaded. Its all-MLP decoder
predicts at stride 4; the logits have ``num_labels = sum(heads.values())``
channels and are split into one output per head (the heads share the encoder
and the decoder's MLPs; the final 1x1 classifier is in effect per task), then
upsampled to the input size. Inputs are zero-padded to a multiple of 32 so
that every stage's size is exact, and the outputs cropped back.

``transformers`` is an optional dependency (``pip install dejavu-dense[hf]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from dejavu._validation import check_choice
from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import split_channels

__all__ = ["SEGFORMER_VARIANTS", "SegFormer", "segformer_config"]

#: Official MiT encoder sizes and decoder widths per variant. All variants share
#: patch sizes (7, 3, 3, 3), strides (4, 2, 2, 2), heads (1, 2, 5, 8),
#: reduction ratios (8, 4, 2, 1) and MLP ratio 4 (the ``SegformerConfig`` defaults).
SEGFORMER_VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 4, 18, 3],
        "decoder_hidden_size": 768,
    },
    "b4": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 8, 27, 3],
        "decoder_hidden_size": 768,
    },
    "b5": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 6, 40, 3],
        "decoder_hidden_size": 768,
    },
}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "SegFormer models need the optional dependency transformers: "
            "pip install 'dejavu-dense[hf]'"
        ) from err
    return transformers


def segformer_config(variant: str, num_labels: int, **overrides: Any) -> Any:
    """A ``transformers.SegformerConfig`` for MiT-``variant`` with ``num_labels`` outputs.

    Args:
        variant: ``"b0"`` ... ``"b5"``.
        num_labels: channels of the logits.
        **overrides: any other ``SegformerConfig`` field (e.g. ``drop_path_rate``).

    Example:
        >>> segformer_config("b2", 19).depths
        [3, 4, 6, 3]
    """
    check_choice(variant, "variant", SEGFORMER_VARIANTS)
    fields = {**SEGFORMER_VARIANTS[variant], "num_labels": num_labels, **overrides}
    return _transformers().SegformerConfig(**fields)


class SegFormer(DenseNet):
    """SegFormer-``variant`` with one output per head.

    Args:
        heads: head name -> output channels.
        variant: ``"b0"`` ... ``"b5"``.
        depth_activation: ``"softplus"`` or ``"exp"``.
        **config_overrides: extra ``SegformerConfig`` fields.

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``.

    Example:
        >>> net = SegFormer({"seg": 19}, "b0").eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 19, 45, 61])
    """

    pad_multiple = 32

    def __init__(
        self,
        heads: Mapping[str, int],
        variant: str = "b0",
        depth_activation: str = "softplus",
        **config_overrides: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        self.variant = variant
        config = segformer_config(variant, sum(self.heads.values()), **config_overrides)
        self.model = _transformers().SegformerForSemanticSegmentation(config)

    def get_backbone(self) -> nn.Module:
        return self.model.segformer

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        return [
            ("whole network", self),
            ("transformers SegformerForSemanticSegmentation", self.model),
            ("backbone (SegformerModel)", self.model.segformer),
        ]

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        logits = self.model(pixel_values=image).logits
        return split_channels(logits, self.heads)


# ----------------------------------------------------------------------- registry
def _register(variant: str) -> None:
    def build(heads: Mapping[str, int], **kwargs: Any) -> SegFormer:
        return SegFormer(heads, variant, **kwargs)

    register_model(build, name=f"segformer_{variant}")


for _variant in SEGFORMER_VARIANTS:
    _register(_variant)
