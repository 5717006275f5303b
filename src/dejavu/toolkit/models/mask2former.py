"""Mask2Former (Cheng et al., CVPR 2022) from Hugging Face ``transformers``, built offline.

The network is ``Mask2FormerForUniversalSegmentation(Mask2FormerConfig(...))``
with a Swin backbone, built from the sizes below and randomly initialised
(nothing is downloaded); a user who has Mask2Former weights in the
``transformers`` layout (a folder written by ``save_pretrained``, e.g. a copy
of ``facebook/mask2former-swin-tiny-coco-panoptic``) loads them with
``model.pretrained: <that folder>`` (:meth:`Mask2Former.load_pretrained_directory`,
``from_pretrained(folder, local_files_only=True)`` into this variant's
architecture; a class predictor of another size, e.g. COCO's 133 classes for
another dataset, stays initialised and is reported).

Names (``model.name``), the paper's configurations (its tables' rows):

============================ ============================================ =========
name                         backbone (embed dim, depths, heads, window)  queries
============================ ============================================ =========
``mask2former_swin_t``       Swin-T (96, 2-2-6-2, 3-6-12-24, 7)           100
``mask2former_swin_s``       Swin-S (96, 2-2-18-2, 3-6-12-24, 7)          100
``mask2former_swin_b``       Swin-B (128, 2-2-18-2, 4-8-16-32, 12)        100
``mask2former_swin_l``       Swin-L (192, 2-2-18-2, 6-12-24-48, 12)       200
``mask2former_tiny``         Swin (16, 1-1-1-1, 1-1-2-2, 4), for CPUs     16
============================ ============================================ =========

The full-size ones share Mask2Former's decoder: a 6-layer multi-scale
deformable-attention pixel decoder (256 channels, feed-forward 1024) and a
10-layer masked-attention transformer decoder (256 channels, 8 heads,
feed-forward 2048; 200 queries for Swin-L on COCO panoptic, 100 otherwise, as
in the paper). ``mask2former_tiny`` (64-channel pixel decoder, 32-channel transformer decoder,
1 + 3 layers, 16 queries)
trains in seconds on a CPU. ``model.kwargs`` may override ``num_queries`` and
the other architecture fields of ``Mask2FormerConfig`` (:data:`DECODER_FIELDS`)
and the backbone's (``backbone: {drop_path_rate: 0.1, ...}``,
:data:`BACKBONE_FIELDS`).

**Outputs** (``heads`` must be one class head, ``"panoptic"`` or ``"seg"``;
see :mod:`dejavu.mask_classification`). The input is zero-padded to a multiple
of 32 (Mask2Former's size divisibility); for head ``key``:

- ``key``: ``B x K x H x W`` semantic log-scores at the input resolution,
  ``log(sum_q softmax(class_q)[:K] * sigmoid(mask_q))`` (its argmax is
  Mask2Former's semantic inference, its softmax the normalised semantic map);
- ``"<key>_query_class"``: ``B x Q x (K + 1)`` class logits (last: no object);
- ``"<key>_query_mask"``: ``B x Q x ceil(H/4) x ceil(W/4)`` mask logits at
  stride 4, cropped to the input (the grid covers the input padded to a
  multiple of 4 from its top-left corner);
- in training mode also ``"<key>_query_class_layers"`` and
  ``"<key>_query_mask_layers"`` (``B x L x ...``): the predictions of the
  ``L = decoder_layers - 1`` intermediate decoder layers, for the deep
  supervision of Mask2Former's loss.

The task trains the head with Mask2Former's loss (Hungarian matching, class
cross-entropy, mask BCE and dice; :mod:`dejavu.toolkit.tasks.mask_classification`),
decodes ``panoptic`` with Mask2Former's panoptic inference
(:mod:`dejavu.panoptic_inference`) and conditions the CRM on the query outputs.
The dense map costs ``B x Q x H x W`` floats (the masks at full resolution);
Mask2Former's own inference computes the same.

Export (``dejavu export``, which verifies the file): ``safetensors`` (the
base-network artefact) and ``torchscript`` work; the TorchScript trace holds the
shapes of the traced input (``--input-size``), so the file runs at that size
only. ``onnx`` is refused with a clear error (:attr:`Mask2Former.unsupported_exports`):
``torch.export`` cannot decompose transformers' Mask2Former, and the
TorchScript-based exporter writes the pixel decoder's deformable-attention
``GridSample`` with a float64 grid, which onnxruntime cannot run.

``transformers`` is an optional dependency (``pip install 'dejavu-dense[hf]'``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image
from dejavu.mask_classification import query_keys, semantic_log_scores
from dejavu.toolkit.errors import ConfigError, UserPathError
from dejavu.toolkit.models.base import DenseNet, pad_to_multiple
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.pretrained import PretrainedReport
from dejavu.toolkit.tasks.heads import head_spec

__all__ = [
    "BACKBONE_FIELDS",
    "DECODER_FIELDS",
    "MASK2FORMER_VARIANTS",
    "Mask2Former",
    "mask2former_config",
]

_SWIN_OUT = ["stage1", "stage2", "stage3", "stage4"]

#: Mask2Former's decoder (Cheng et al. 2022, its Swin configs): the fields the
#: full-size variants share.
_FULL_DECODER: dict[str, Any] = {
    "feature_size": 256,
    "mask_feature_size": 256,
    "hidden_dim": 256,
    "encoder_feedforward_dim": 1024,
    "encoder_layers": 6,
    "decoder_layers": 10,
    "num_attention_heads": 8,
    "dim_feedforward": 2048,
    "num_queries": 100,
}

#: Per variant: the Swin backbone (``SwinConfig`` fields) and the decoder (``Mask2FormerConfig``).
MASK2FORMER_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "backbone": {
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 4,
            "drop_path_rate": 0.0,
        },
        "decoder": {
            # 64 channels: the pixel decoder's GroupNorm(32) needs >= 2 per group, or a
            # 1 x 1 feature map (a 32-pixel input at stride 32) has one value per group.
            "feature_size": 64,
            "mask_feature_size": 64,
            "hidden_dim": 32,
            "encoder_feedforward_dim": 64,
            "encoder_layers": 1,
            "decoder_layers": 3,
            "num_attention_heads": 2,
            "dim_feedforward": 64,
            "num_queries": 16,
        },
    },
    "swin_t": {
        "backbone": {
            "embed_dim": 96,
            "depths": [2, 2, 6, 2],
            "num_heads": [3, 6, 12, 24],
            "window_size": 7,
            "drop_path_rate": 0.3,
        },
        "decoder": dict(_FULL_DECODER),
    },
    "swin_s": {
        "backbone": {
            "embed_dim": 96,
            "depths": [2, 2, 18, 2],
            "num_heads": [3, 6, 12, 24],
            "window_size": 7,
            "drop_path_rate": 0.3,
        },
        "decoder": dict(_FULL_DECODER),
    },
    "swin_b": {
        "backbone": {
            "embed_dim": 128,
            "depths": [2, 2, 18, 2],
            "num_heads": [4, 8, 16, 32],
            "window_size": 12,
            "image_size": 384,
            "drop_path_rate": 0.3,
        },
        "decoder": dict(_FULL_DECODER),
    },
    "swin_l": {
        "backbone": {
            "embed_dim": 192,
            "depths": [2, 2, 18, 2],
            "num_heads": [6, 12, 24, 48],
            "window_size": 12,
            "image_size": 384,
            "drop_path_rate": 0.3,
        },
        "decoder": {**_FULL_DECODER, "num_queries": 200},
    },
}

#: ``Mask2FormerConfig`` fields ``model.kwargs`` may override (the architecture; the loss
#: settings are the task's, :data:`dejavu.toolkit.tasks.mask_classification.MASK2FORMER_LOSS`).
DECODER_FIELDS: tuple[str, ...] = (
    "feature_size",
    "mask_feature_size",
    "hidden_dim",
    "encoder_feedforward_dim",
    "activation_function",
    "encoder_layers",
    "decoder_layers",
    "num_attention_heads",
    "dropout",
    "dim_feedforward",
    "pre_norm",
    "enforce_input_projection",
    "num_queries",
    "init_std",
    "init_xavier_std",
)

#: ``SwinConfig`` fields ``model.kwargs.backbone`` may override.
BACKBONE_FIELDS: tuple[str, ...] = (
    "image_size",
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "mlp_ratio",
    "qkv_bias",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "drop_path_rate",
    "hidden_act",
    "use_absolute_embeddings",
    "layer_norm_eps",
)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Mask2Former models need the optional dependency transformers: "
            "pip install 'dejavu-dense[hf]'"
        ) from err
    return transformers


def _check_fields(given: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; allowed: {', '.join(allowed)}")


def mask2former_config(
    variant: str,
    num_classes: int,
    backbone: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """A ``transformers.Mask2FormerConfig`` for ``variant`` with ``num_classes`` classes.

    Args:
        variant: a key of :data:`MASK2FORMER_VARIANTS` (``"tiny"``, ``"swin_t"``, ...).
        num_classes: ``K`` (the class predictor has ``K + 1`` outputs).
        backbone: ``SwinConfig`` overrides (:data:`BACKBONE_FIELDS`).
        **overrides: ``Mask2FormerConfig`` overrides (:data:`DECODER_FIELDS`).

    Raises:
        ValueError: for an unknown variant or option (listing the allowed ones).

    Example:
        >>> cfg = mask2former_config("swin_l", 133)
        >>> cfg.num_queries, cfg.backbone_config.embed_dim, cfg.num_labels
        (200, 192, 133)
    """
    check_choice(variant, "Mask2Former variant", MASK2FORMER_VARIANTS)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    _check_fields(overrides, DECODER_FIELDS, "Mask2Former")
    _check_fields(backbone or {}, BACKBONE_FIELDS, "Mask2Former backbone")
    t = _transformers()
    spec = MASK2FORMER_VARIANTS[variant]
    swin = t.SwinConfig(**{**spec["backbone"], **dict(backbone or {}), "out_features": _SWIN_OUT})
    fields = {**spec["decoder"], **overrides}
    return t.Mask2FormerConfig(backbone_config=swin, num_labels=num_classes, **fields)


class Mask2Former(DenseNet):
    """Mask2Former with one mask-classification class head (see the module docstring).

    Args:
        heads: one class head, ``{"panoptic": K}`` or ``{"seg": K}``.
        variant: a key of :data:`MASK2FORMER_VARIANTS`.
        backbone: ``SwinConfig`` overrides.
        depth_activation: unused (no depth head); kept for the common signature.
        **config_overrides: ``Mask2FormerConfig`` overrides (``num_queries``, ...).

    Attributes:
        class_head: the head it predicts.
        mask_classification: True: the outputs include the query outputs.

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: the dict of the module docstring.

    Example:
        >>> net = Mask2Former({"panoptic": 6}, "tiny").eval()
        >>> out = net(torch.zeros(1, 3, 45, 61))
        >>> {k: tuple(v.shape) for k, v in out.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'panoptic': (1, 6, 45, 61), 'panoptic_query_class': (1, 16, 7),
         'panoptic_query_mask': (1, 16, 12, 16)}
    """

    pad_multiple = 32
    mask_classification = True
    #: Export formats this network cannot be written in, and why (``dejavu export``).
    unsupported_exports: dict[str, str] = {  # noqa: RUF012
        "onnx": (
            "torch.export cannot decompose transformers' Mask2Former and the TorchScript-based "
            "ONNX exporter writes its deformable attention's GridSample with a float64 grid, "
            "which onnxruntime cannot run; export 'torchscript' (fixed input size) or "
            "'safetensors'"
        )
    }

    def __init__(
        self,
        heads: Mapping[str, int],
        variant: str = "tiny",
        backbone: Mapping[str, Any] | None = None,
        depth_activation: str = "softplus",
        **config_overrides: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        class_heads = [k for k in self.heads if head_spec(k).channels is None]
        if len(class_heads) != 1 or len(self.heads) != 1:
            raise ValueError(
                "Mask2Former predicts one class head by mask classification: heads must be "
                f"{{'panoptic': K}} or {{'seg': K}}, got heads={self.heads}"
            )
        self.class_head = class_heads[0]
        self.variant = variant
        config = mask2former_config(
            variant, self.heads[self.class_head], backbone, **config_overrides
        )
        self.model = _transformers().Mask2FormerForUniversalSegmentation(config)

    def get_backbone(self) -> nn.Module:
        return self.model.model.pixel_level_module.encoder

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        return [
            ("whole network", self),
            ("transformers Mask2FormerForUniversalSegmentation", self.model),
            ("backbone (Swin)", self.get_backbone()),
        ]

    def load_pretrained_directory(self, directory: str | os.PathLike[str]) -> PretrainedReport:
        """Load weights saved by ``transformers`` (``save_pretrained``) from a local folder.

        ``Mask2FormerForUniversalSegmentation.from_pretrained(directory,
        local_files_only=True)`` with this network's configuration: the
        architecture stays this variant's, the weights come from the folder;
        tensors whose shape differs (a class predictor for another number of
        classes) stay initialised.

        Returns:
            A :class:`~dejavu.toolkit.models.pretrained.PretrainedReport` of what loaded.

        Raises:
            UserPathError: when the folder does not exist.
            ConfigError: when it holds no weights or less than half of them fit.
        """
        path = Path(directory)
        if not path.is_dir():
            raise UserPathError(f"no Mask2Former weights folder at {path}")
        try:
            loaded, info = self.model.from_pretrained(
                str(path),
                config=self.model.config,
                local_files_only=True,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
            )
        except OSError as exc:
            raise ConfigError(f"{path}: not a transformers model folder ({exc})") from None
        names = list(loaded.state_dict())
        missing = tuple(info.get("missing_keys", ()))
        mismatched = tuple(
            f"{k}: file shape {tuple(a)} vs module shape {tuple(b)}"
            for k, a, b in info.get("mismatched_keys", ())
        )
        skipped = set(missing) | {m.split(":")[0] for m in mismatched}
        loaded_keys = tuple(k for k in names if k not in skipped)
        if len(loaded_keys) < 0.5 * len(names):
            raise ConfigError(
                f"{path}: only {len(loaded_keys)} of the {len(names)} tensors of "
                f"mask2former_{self.variant} load from it; is it another architecture?"
            )
        self.model = loaded.train(self.training)
        return PretrainedReport(
            path=path,
            target="transformers Mask2FormerForUniversalSegmentation (from_pretrained)",
            prefix="",
            loaded=loaded_keys,
            missing=missing,
            unexpected=tuple(info.get("unexpected_keys", ())),
            mismatched=mismatched,
        )

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        """The raw query outputs for a padded image: class logits, stride-4 mask logits,
        and in training the intermediate layers' (stacked along dim 1)."""
        out = self.model(pixel_values=image, output_auxiliary_logits=self.training)
        keys = query_keys(self.class_head)
        raw = {
            keys.class_logits: out.class_queries_logits,
            keys.mask_logits: out.masks_queries_logits,
        }
        if self.training and out.auxiliary_logits:
            layers = out.auxiliary_logits
            raw[keys.class_layers] = torch.stack([a["class_queries_logits"] for a in layers], 1)
            raw[keys.mask_layers] = torch.stack([a["masks_queries_logits"] for a in layers], 1)
        return raw

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict the class head (module docstring) for a ``B x 3 x H x W`` image."""
        check_image(image, "image", channels=3)
        h, w = int(image.shape[-2]), int(image.shape[-1])
        padded = pad_to_multiple(image, self.pad_multiple)
        raw = self.forward_heads(padded)
        keys = query_keys(self.class_head)
        grid = raw[keys.mask_logits]
        stride = int(padded.shape[-2]) // int(grid.shape[-2])
        gh, gw = math.ceil(h / stride), math.ceil(w / stride)
        out: dict[str, Tensor] = {}
        for name, value in raw.items():
            out[name] = (
                value[..., :gh, :gw] if name in (keys.mask_logits, keys.mask_layers) else value
            )
        masks = out[keys.mask_logits]
        dense = semantic_log_scores(out[keys.class_logits], masks, (h, w))
        return {self.class_head: dense, **out}


# ----------------------------------------------------------------------- registry
def _register(variant: str) -> None:
    def build(heads: Mapping[str, int], **kwargs: Any) -> Mask2Former:
        return Mask2Former(heads, variant, **kwargs)

    build.__doc__ = f"Mask2Former with the {variant} configuration (module docstring)."
    register_model(build, name=f"mask2former_{variant}")


for _variant in MASK2FORMER_VARIANTS:
    _register(_variant)
