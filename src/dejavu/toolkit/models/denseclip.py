"""DenseCLIP: language-guided dense prediction with context-aware prompting, on open_clip.

Rao et al., "DenseCLIP: Language-Guided Dense Prediction with Context-Aware
Prompting", CVPR 2022, in the layout of the official code
(``raoyongming/DenseCLIP``, ``segmentation/denseclip``). A CLIP image encoder
and CLIP's text encoder (both open_clip modules, built offline from an open_clip
config) give, for an image ``x`` and the dataset's ``K`` class names:

1. **Multi-level features** ``x_1..x_4`` at strides 4, 8, 16, 32, and the
   **dense embedding** ``z`` (``B x D x h x w``) with the global embedding
   ``z_bar`` (``B x D``):

   - *ResNet* (``denseclip_r50``): the outputs of ``layer1..layer4``; CLIP's
     attention pooling is applied to every token (the mean token and the
     ``h x w`` pixels of ``x_4`` attend to all of them), so the pooled token is
     ``z_bar`` and the pixel tokens are ``z`` (stride 32);
   - *ViT* (``denseclip_vit_b16``, ``denseclip_tiny``): the token maps of the
     blocks ``out_indices`` (``[3, 5, 7, 11]`` for 12 layers) reshaped to 2-D
     (stride = patch size) and brought to strides 4/8/16/32 by the official
     code's adapters (GroupNorm + transposed convolutions / max-pooling); the
     last layer's tokens through ``ln_post`` and the projection are ``z_bar``
     (class token) and ``z`` (patch tokens, stride 16).

   The image positional embeddings of CLIP (learned at CLIP's 224 x 224) are
   resized bilinearly to the input's grid at every forward pass, so any input
   size works and CLIP checkpoints load unchanged.
2. **Text embeddings with learnable context** (CoOp-style): each class name is
   tokenised to ``name_tokens`` tokens (5: start, name, end, padding); ``context_tokens``
   (8) learnable vectors are inserted after the start token; the frozen CLIP text
   transformer (causal, on the first ``name_tokens + context_tokens`` = 13
   positions) and its projection give ``t`` (``K x D``), taken at the end token.
3. **Context-aware prompting** (the paper's post-model prompting): a transformer
   decoder (``context_decoder_layers`` = 3 layers of self-attention, cross-attention
   to the visual context ``[z_bar, z]`` and an MLP, width 256, 4 heads, dropout
   0.1) updates the text embeddings, ``t <- t + gamma * decoder(t, [z_bar, z])``,
   with a learnable per-channel ``gamma`` initialised to ``1e-4``.
4. **Pixel-text score maps** ``s = z_hat . t_hat^T`` (both L2-normalised:
   cosine similarities, ``B x K x h x w``), concatenated to the feature level of
   the same stride (the last level, stride 32, for ResNet; stride 16 for ViT-B/16,
   the official ``score_concat_index``).
5. **Semantic FPN decoder**: an FPN (``fpn_channels`` = 256) and the Panoptic-FPN
   semantic branch (:class:`~dejavu.toolkit.models.timm_fpn.SemanticFPNMerge`,
   ``decoder_channels`` = 256, to stride 4), then ``Dropout2d(0.1)`` and a 1x1
   classifier give the ``seg`` logits.
6. **Auxiliary segmentation loss** on the score maps: in training mode the
   network also returns ``s / tau`` (``tau`` = 0.07) as ``"seg_aux"``; the task
   loss adds its cross-entropy with the head spec's ``aux_weight``, 0.4, the
   weight of the official ``identity_head``
   (:attr:`~dejavu.toolkit.tasks.heads.HeadSpec.aux_weight`). In eval mode only
   the heads are returned.

The text encoder (token embedding, positional embedding, transformer, final
LayerNorm, projection) is frozen, as in the paper (the official optimiser gives
it ``lr_mult=0``); the learnable contexts, ``gamma``, the context decoder, the
image encoder and the decoder train. The text side runs at inference too (it
depends only on learned weights, not on the image).

The class names come from ``class_names``: a list, or the name of a registered
dataset whose names are used (``class_names: ade20k`` in a config's
``model.kwargs``). Images arrive normalised with ``image_mean``/``image_std``
(ImageNet's, as every dataset here) and are re-normalised to CLIP's statistics
inside the network.

Real CLIP weights load from a local file (``pretrained=`` / ``model.pretrained``):
an open_clip state_dict of the same architecture (e.g. ``open_clip_model.safetensors``
of ``timm/vit_base_patch16_clip_224.openai`` or ``timm/resnet50_clip.openai`` on
the Hugging Face hub) loads into the CLIP model; nothing is downloaded.

Differences from the official code, on purpose: the ViT's class embedding is
added once (the official ViT adds it a second time to the class position's
positional embedding); the FPN decoder uses GroupNorm (this project's semantic
FPN) where mmseg's ``FPNHead`` uses (Sync)BatchNorm; the ViT has no drop-path
(open_clip's blocks have none; the official ViT config uses 0.1); the text
embeddings are computed once per forward pass and shared by the batch (the
official code computes the identical result once per image); and the official
optimiser's ``lr_mult=0.1`` on the image encoder is not applied (one learning rate
for the base network here).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from dejavu.text_supervision import require_open_clip
from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model
from dejavu.toolkit.models.heads import TaskHeads
from dejavu.toolkit.models.timm_fpn import FPN_STRIDES, SemanticFPNMerge
from dejavu.toolkit.tasks.heads import aux_key, head_spec

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DENSECLIP_TINY_CLIP",
    "ContextDecoder",
    "DenseCLIP",
    "DenseCLIPEmbeddings",
    "ViTPyramid",
    "dense_attention_pool",
    "resize_positional_embedding",
    "resolve_class_names",
    "score_maps",
]

#: CLIP's image normalisation (``open_clip.OPENAI_DATASET_MEAN`` / ``_STD``).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: The open_clip config of ``denseclip_tiny``: a 4-layer, 32-wide ViT with 16-pixel
#: patches and a 2-layer, 32-wide text transformer on CLIP's tokenizer (CPU-sized).
DENSECLIP_TINY_CLIP: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _open_clip() -> Any:
    return require_open_clip("DenseCLIP")


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    # CLIP's BPE tokenizer; its vocabulary ships with open_clip (offline).
    return _open_clip().tokenizer.SimpleTokenizer()


# --------------------------------------------------------------------------- helpers
def resolve_class_names(class_names: object, num_classes: int) -> tuple[str, ...]:
    """The ``num_classes`` class names DenseCLIP embeds, from a list or a dataset name.

    Args:
        class_names: a sequence of names (index = class), or the name of a registered
            dataset (:func:`dejavu.toolkit.data.list_datasets`) whose class names to use.
        num_classes: the class head's channels; there must be that many names.

    Returns:
        The names, as a tuple.

    Raises:
        ValueError: no names, an unknown dataset or one without class-level names,
            names that are not non-empty strings, or the wrong number of names.

    Example:
        >>> resolve_class_names("ade20k", 150)[:3]
        ('wall', 'building', 'sky')
        >>> resolve_class_names(["road", "car"], 2)
        ('road', 'car')
    """
    if class_names is None:
        raise ValueError(
            "DenseCLIP embeds the class names with CLIP's text encoder: pass class_names, a "
            "list of names or a registered dataset's name, e.g. class_names='ade20k' "
            "(model.kwargs.class_names in a config)"
        )
    if isinstance(class_names, str):
        from dejavu.toolkit.data import dataset_class, list_datasets

        try:
            cls = dataset_class(class_names)
        except ValueError:
            raise ValueError(
                f"class_names={class_names!r} is neither a list of names nor a registered "
                f"dataset; datasets: {', '.join(list_datasets())}"
            ) from None
        names = getattr(cls, "class_names", None)
        if not names:
            raise ValueError(
                f"dataset {class_names!r} has no fixed class names (they depend on the data, "
                "e.g. a folder's classes.txt): pass class_names as a list"
            )
        class_names = names
    if not isinstance(class_names, Sequence) or not all(
        isinstance(n, str) and n.strip() for n in class_names
    ):
        raise ValueError(f"class_names must be non-empty strings, got {class_names!r}")
    if len(class_names) != num_classes:
        raise ValueError(
            f"DenseCLIP needs one class name per class: {num_classes} classes, "
            f"{len(class_names)} names"
        )
    return tuple(class_names)


def resize_positional_embedding(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """Resize a CLIP positional embedding (one leading token + a square grid) to ``grid``.

    The grid part is resized bilinearly (``align_corners=False``), as the official
    DenseCLIP code does; the leading (class / pooled) position is kept.

    Args:
        pos: ``(1 + g * g) x C``.
        grid: the target ``(h, w)``.

    Returns:
        ``(1 + h * w) x C`` (``pos`` itself when the grid already fits).

    Example:
        >>> resize_positional_embedding(torch.zeros(1 + 7 * 7, 8), (4, 6)).shape
        torch.Size([25, 8])
    """
    n, c = pos.shape
    g = math.isqrt(n - 1)
    if g * g != n - 1:
        raise ValueError(f"pos must hold 1 + a square number of positions, got {n}")
    h, w = grid
    if (g, g) == (h, w):
        return pos
    spatial = pos[1:].reshape(1, g, g, c).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([pos[:1], spatial.reshape(c, h * w).t()], dim=0)


def dense_attention_pool(attnpool: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    """CLIP-ResNet's attention pooling applied to every token: ``(z_bar, z)``.

    The mean token and the ``h x w`` pixel tokens (plus the resized positional
    embedding) go through one multi-head self-attention with the pooling layer's
    q/k/v and output projections (open_clip's ``AttentionPool2d``); the mean
    token's output is CLIP's image embedding, the pixels' the dense embedding.

    Args:
        attnpool: an open_clip ``AttentionPool2d`` (``q_proj``, ``k_proj``,
            ``v_proj``, ``c_proj``, ``positional_embedding``, ``num_heads``).
        x: ``B x C x h x w`` (the last ResNet stage).

    Returns:
        ``(B x D, B x D x h x w)`` with ``D = c_proj.out_features``.

    Example:
        >>> from open_clip.modified_resnet import AttentionPool2d
        >>> g, z = dense_attention_pool(AttentionPool2d(7, 16, 2, 8), torch.randn(2, 16, 3, 5))
        >>> g.shape, z.shape
        (torch.Size([2, 8]), torch.Size([2, 8, 3, 5]))
    """
    b, c, h, w = x.shape
    tokens = x.flatten(2).permute(2, 0, 1)  # (hw) x B x C
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)
    pos = resize_positional_embedding(attnpool.positional_embedding, (h, w))
    tokens = tokens + pos[:, None, :].to(tokens.dtype)
    out, _ = F.multi_head_attention_forward(
        query=tokens,
        key=tokens,
        value=tokens,
        embed_dim_to_check=c,
        num_heads=attnpool.num_heads,
        q_proj_weight=attnpool.q_proj.weight,
        k_proj_weight=attnpool.k_proj.weight,
        v_proj_weight=attnpool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight,
        out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True,
        training=attnpool.training,
        need_weights=False,
    )
    out = out.permute(1, 2, 0)  # B x D x (1 + hw)
    return out[:, :, 0], out[:, :, 1:].reshape(b, -1, h, w)


def score_maps(dense: Tensor, text: Tensor) -> Tensor:
    """Pixel-text score maps: cosine similarity of every pixel's embedding with every class's.

    Args:
        dense: ``B x D x h x w`` dense image embedding ``z``.
        text: ``B x K x D`` text embeddings ``t``.

    Returns:
        ``B x K x h x w``, ``s = z_hat . t_hat^T`` with both sides L2-normalised
        (values in ``[-1, 1]``).

    Example:
        >>> z = torch.tensor([[[[1.0]], [[0.0]]]])  # one pixel, embedding (1, 0)
        >>> score_maps(z, torch.tensor([[[2.0, 0.0], [0.0, 3.0], [-1.0, 1.0]]])).flatten()
        tensor([ 1.0000,  0.0000, -0.7071])
    """
    if dense.ndim != 4 or text.ndim != 3 or dense.shape[1] != text.shape[2]:
        raise ValueError(
            f"dense must be B x D x h x w and text B x K x D with the same D, got "
            f"{tuple(dense.shape)} and {tuple(text.shape)}"
        )
    return torch.einsum(
        "bchw,bkc->bkhw", F.normalize(dense, dim=1, p=2), F.normalize(text, dim=2, p=2)
    )


# --------------------------------------------------------------------------- modules
class _Attention(nn.Module):
    """Multi-head attention without q/k/v biases (the official ``Attention``)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, n, c = q.shape
        m = k.shape[1]
        d = c // self.heads
        q = self.q_proj(q).reshape(b, n, self.heads, d).transpose(1, 2)
        k = self.k_proj(k).reshape(b, m, self.heads, d).transpose(1, 2)
        v = self.v_proj(v).reshape(b, m, self.heads, d).transpose(1, 2)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class _DecoderLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the visual context, MLP (official layout)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = _Attention(dim, heads, dropout)
        self.cross_attn = _Attention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 4, dim)
        )

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q)
        x = x + self.cross_attn(self.norm2(x), memory, memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


class ContextDecoder(nn.Module):
    """DenseCLIP's context decoder: the text embeddings attend to the visual context.

    ``text_proj`` (LayerNorm, Linear to ``width``) maps the text embeddings to
    queries, ``memory_proj`` (LayerNorm, Linear, LayerNorm) the visual context to
    memory; ``layers`` decoder layers (self-attention, cross-attention, MLP, each
    pre-norm with a residual) and ``out_proj`` (LayerNorm, Linear back to
    ``visual_dim``) give the update the caller scales by ``gamma``. Linear weights
    are truncated-normal (std 0.02), biases 0, as in the official code.

    Args:
        visual_dim: the embedding width ``D`` (text and visual).
        width: the decoder's width (256).
        heads: attention heads (4).
        layers: decoder layers (3 in the official configs).
        dropout: dropout after the attention projections and in the MLP (0.1).

    Shape:
        - text: ``B x K x D``; visual: ``B x N x D``.
        - Output: ``B x K x D``.

    Example:
        >>> dec = ContextDecoder(32, width=16, heads=2, layers=1)
        >>> dec(torch.randn(2, 5, 32), torch.randn(2, 17, 32)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        visual_dim: int,
        width: int = 256,
        heads: int = 4,
        layers: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("visual_dim", visual_dim), ("width", width), ("heads", heads)):
            _check_positive_int(value, f"context decoder {name}")
        _check_positive_int(layers, "context_decoder_layers", minimum=0)
        if width % heads:
            raise ValueError(
                f"context decoder width ({width}) must be a multiple of its heads ({heads})"
            )
        _check_dropout(dropout, "context_decoder_dropout")
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width), nn.LayerNorm(width)
        )
        self.text_proj = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width))
        self.decoder = nn.ModuleList(_DecoderLayer(width, heads, dropout) for _ in range(layers))
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, visual_dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        memory = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)


class ViTPyramid(nn.Module):
    """The official DenseCLIP ViT adapters: four same-stride token maps -> strides 4, 8, 16, 32.

    Patch 16: ``GN -> ConvT 2x -> BN -> GELU -> ConvT 2x`` (x4), ``GN -> ConvT 2x``
    (x2), ``GN`` (x1), ``GN -> MaxPool 2`` (x1/2). Patch 8: ``GN -> ConvT 2x``,
    ``GN``, ``GN -> MaxPool 2``, ``GN -> MaxPool 4``. (GN: ``GroupNorm(1, C)``.)

    Args:
        channels: the ViT width.
        patch_size: 16 or 8.

    Shape:
        - Input: four ``B x C x h x w`` maps (stride ``patch_size``).
        - Output: four maps at strides 4, 8, 16, 32.

    Example:
        >>> pyr = ViTPyramid(8, 16)
        >>> [tuple(t.shape[-2:]) for t in pyr([torch.randn(1, 8, 4, 6)] * 4)]
        [(16, 24), (8, 12), (4, 6), (2, 3)]
    """

    def __init__(self, channels: int, patch_size: int) -> None:
        super().__init__()

        def gn() -> nn.GroupNorm:
            return nn.GroupNorm(1, channels)

        def up() -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)

        if patch_size == 16:
            levels: list[nn.Module] = [
                nn.Sequential(gn(), up(), nn.BatchNorm2d(channels), nn.GELU(), up()),
                nn.Sequential(gn(), up()),
                gn(),
                nn.Sequential(gn(), nn.MaxPool2d(2, 2)),
            ]
        elif patch_size == 8:
            levels = [
                nn.Sequential(gn(), up()),
                gn(),
                nn.Sequential(gn(), nn.MaxPool2d(2, 2)),
                nn.Sequential(gn(), nn.MaxPool2d(4, 4)),
            ]
        else:
            raise ValueError(f"DenseCLIP's ViT adapters need patch size 16 or 8, got {patch_size}")
        self.levels = nn.ModuleList(levels)

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        return [level(x) for level, x in zip(self.levels, maps, strict=True)]


class DenseCLIPEmbeddings(NamedTuple):
    """What :meth:`DenseCLIP.embed` returns."""

    levels: list[Tensor]
    """The four feature levels (strides 4, 8, 16, 32), before the score maps are added."""
    global_embedding: Tensor
    """``B x D``: the image embedding ``z_bar`` (CLIP's pooled output)."""
    dense_embedding: Tensor
    """``B x D x h x w``: the dense embedding ``z``."""
    text_embeddings: Tensor
    """``B x K x D``: the class embeddings after context-aware prompting."""


class DenseCLIP(DenseNet):
    """DenseCLIP on an open_clip CLIP model (see the module docstring).

    Args:
        heads: head name -> output channels; exactly one class head (``"seg"``),
            whose classes are the class names; other heads (depth, normals) get a
            :class:`~dejavu.toolkit.models.heads.ConvHead` on the decoder's map.
        clip_config: an open_clip model config: ``embed_dim``, ``vision_cfg``
            (a ViT, patch 16 or 8, or a ResNet with ``layers`` as a list) and
            ``text_cfg`` (as ``open_clip.get_model_config(name)`` returns).
        class_names: the class names, or a registered dataset's name (see
            :func:`resolve_class_names`).
        quick_gelu: QuickGELU activations, as OpenAI's CLIP weights need (open_clip's
            ``*-quickgelu`` models); ``False``: GELU (LAION-trained weights).
        out_indices: the ViT blocks whose tokens are the four feature levels
            (default: the last block of each quarter of the depth; ``denseclip_vit_b16``
            uses the official ``[3, 5, 7, 11]``).
        name_tokens: tokens per class name, start and end token included (5).
        context_tokens: learnable context vectors before the name (8).
        context_decoder_width, context_decoder_heads, context_decoder_layers,
        context_decoder_dropout: the context decoder (256, 4, 3, 0.1).
        gamma_init: initial value of the learnable scale ``gamma`` (1e-4).
        tau: temperature of the auxiliary logits ``s / tau`` (0.07).
        fpn_channels: width of the FPN levels (256).
        decoder_channels: width of the semantic-FPN map (256).
        dropout: ``Dropout2d`` before the classifier (0.1).
        head_channels: hidden width of the other heads (default: ``decoder_channels``).
        image_mean, image_std: the normalisation of the input images (ImageNet's);
            the network maps them to CLIP's.
        depth_activation: ``"softplus"`` or ``"exp"`` (a depth head's).

    Attributes:
        class_names: the names embedded, in class order.
        class_head: the head the score maps and the classifier predict (``"seg"``).
        clip: the open_clip ``CLIP`` model (image encoder and frozen text encoder).
        contexts: ``1 x context_tokens x text width`` learnable prompt vectors.
        gamma: ``D`` learnable scale of the context decoder's update.
        score_level: the feature level the score maps are concatenated to.

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x C x H x W``; in training mode also
          ``"seg_aux"``: the score maps divided by ``tau`` (``B x K x H x W``).

    Example:
        >>> net = DenseCLIP({"seg": 3}, DENSECLIP_TINY_CLIP, ["sky", "road", "car"],
        ...                 fpn_channels=16, decoder_channels=16, context_decoder_width=16,
        ...                 context_decoder_heads=2, context_decoder_layers=1)
        >>> x = torch.randn(2, 3, 45, 61)
        >>> {k: tuple(v.shape) for k, v in net.train()(x).items()}
        {'seg': (2, 3, 45, 61), 'seg_aux': (2, 3, 45, 61)}
        >>> {k: tuple(v.shape) for k, v in net.eval()(x).items()}
        {'seg': (2, 3, 45, 61)}
    """

    pad_multiple = 32
    clip: Any  # open_clip.CLIP (untyped)
    class_tokens: Tensor
    _in_scale: Tensor
    _in_shift: Tensor

    def __init__(
        self,
        heads: Mapping[str, int],
        clip_config: Mapping[str, Any],
        class_names: Sequence[str] | str | None = None,
        *,
        quick_gelu: bool = False,
        out_indices: Sequence[int] | None = None,
        name_tokens: int = 5,
        context_tokens: int = 8,
        context_decoder_width: int = 256,
        context_decoder_heads: int = 4,
        context_decoder_layers: int = 3,
        context_decoder_dropout: float = 0.1,
        gamma_init: float = 1e-4,
        tau: float = 0.07,
        fpn_channels: int = 256,
        decoder_channels: int = 256,
        dropout: float = 0.1,
        head_channels: int | None = None,
        image_mean: Sequence[float] = _IMAGENET_MEAN,
        image_std: Sequence[float] = _IMAGENET_STD,
        depth_activation: str = "softplus",
    ) -> None:
        super().__init__(heads, depth_activation)
        class_heads = [k for k in self.heads if head_spec(k).channels is None]
        if len(class_heads) != 1:
            raise ValueError(
                "DenseCLIP predicts one class head (one text embedding per class): heads must "
                f"have exactly one, e.g. {{'seg': 150}}; got heads={self.heads}"
            )
        self.class_head = class_heads[0]
        num_classes = self.heads[self.class_head]
        self.class_names = resolve_class_names(class_names, num_classes)
        _check_positive_int(name_tokens, "name_tokens", minimum=3)
        _check_positive_int(context_tokens, "context_tokens", minimum=0)
        for name, value in (("fpn_channels", fpn_channels), ("decoder_channels", decoder_channels)):
            _check_positive_int(value, name)
        _check_dropout(dropout, "dropout")
        if not (isinstance(tau, int | float) and not isinstance(tau, bool) and tau > 0):
            raise ValueError(f"tau must be a positive number, got {tau!r}")
        if not (isinstance(gamma_init, int | float) and not isinstance(gamma_init, bool)):
            raise ValueError(f"gamma_init must be a number, got {gamma_init!r}")
        self.tau = float(tau)
        self.name_tokens = int(name_tokens)
        self.context_tokens = int(context_tokens)

        open_clip = _open_clip()
        cfg = dict(clip_config)
        if "vision_cfg" not in cfg or "text_cfg" not in cfg or "embed_dim" not in cfg:
            raise ValueError(
                "clip_config must be an open_clip model config with embed_dim, vision_cfg and "
                f"text_cfg, got keys {sorted(cfg)}"
            )
        self.clip = open_clip.CLIP(
            embed_dim=cfg["embed_dim"],
            vision_cfg=cfg["vision_cfg"],
            text_cfg=cfg["text_cfg"],
            quick_gelu=bool(quick_gelu),
        )
        self.embed_dim = int(cfg["embed_dim"])
        visual = self.clip.visual
        self.is_vit = isinstance(visual, open_clip.transformer.VisionTransformer)
        if self.is_vit:
            if visual.attn_pool is not None or visual.pool_type != "tok":
                raise ValueError("DenseCLIP needs a CLIP ViT with a class token (pool_type 'tok')")
            width = visual.conv1.out_channels
            depth = len(visual.transformer.resblocks)
            patch = visual.patch_size[0]
            indices = (
                [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]
                if out_indices is None
                else [int(i) for i in out_indices]
            )
            if (
                len(indices) != 4
                or sorted(set(indices)) != indices
                or not (indices[0] >= 0 and indices[-1] < depth)
            ):
                raise ValueError(
                    f"out_indices must be 4 increasing block indices in [0, {depth}), "
                    f"got {out_indices!r}"
                )
            self.out_indices = indices
            self.pyramid: nn.Module = ViTPyramid(width, patch)
            in_channels = [width] * 4
            score_stride = patch
        elif isinstance(visual, open_clip.modified_resnet.ModifiedResNet):
            if out_indices is not None:
                raise ValueError("out_indices applies to a ViT image encoder, not a ResNet")
            self.out_indices = []
            self.pyramid = nn.Identity()
            in_channels = [layer[-1].conv3.out_channels for layer in self._resnet_stages()]
            score_stride = 32
        else:
            raise ValueError(
                "DenseCLIP supports CLIP ViT and ResNet image encoders, got "
                f"{type(visual).__name__}"
            )
        self.score_level = FPN_STRIDES.index(score_stride)
        in_channels[self.score_level] += num_classes

        # The frozen text encoder (everything of CLIP but the image encoder).
        for name, param in self.clip.named_parameters():
            if not name.startswith("visual."):
                param.requires_grad_(False)
        text_width = self.clip.token_embedding.embedding_dim
        if self.name_tokens + self.context_tokens > self.clip.context_length:
            raise ValueError(
                f"name_tokens + context_tokens = {self.name_tokens + self.context_tokens} exceeds "
                f"CLIP's text context length {self.clip.context_length}"
            )
        self.register_buffer("class_tokens", _tokenize(self.class_names, self.name_tokens))
        self.contexts = nn.Parameter(torch.empty(1, self.context_tokens, text_width))
        nn.init.trunc_normal_(self.contexts)
        self.gamma = nn.Parameter(torch.full((self.embed_dim,), float(gamma_init)))
        self.context_decoder = ContextDecoder(
            self.embed_dim,
            width=context_decoder_width,
            heads=context_decoder_heads,
            layers=context_decoder_layers,
            dropout=context_decoder_dropout,
        )

        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels)
        self.merge = SemanticFPNMerge(fpn_channels, decoder_channels, FPN_STRIDES)
        self.classifier = nn.Sequential(
            nn.Dropout2d(dropout), nn.Conv2d(decoder_channels, num_classes, 1)
        )
        others = {k: c for k, c in self.heads.items() if k != self.class_head}
        self.decoder = TaskHeads(decoder_channels, others, head_channels or decoder_channels, 3)

        mean, std = _triple(image_mean, "image_mean"), _triple(image_std, "image_std")
        if min(std) <= 0:
            raise ValueError(f"image_std must be positive, got {tuple(image_std)}")
        # x_clip = (x * std + mean - clip_mean) / clip_std, folded into one affine map
        scale = torch.tensor(std) / torch.tensor(CLIP_STD)
        shift = (torch.tensor(mean) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        self.register_buffer("_in_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_in_shift", shift.view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ encoders
    def _resnet_stages(self) -> list[Any]:
        v = self.clip.visual
        return [v.layer1, v.layer2, v.layer3, v.layer4]

    def get_backbone(self) -> nn.Module:
        """The CLIP image encoder (``clip.visual``)."""
        return self.clip.visual

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        """A checkpoint may be a DenseCLIP network, a CLIP model or a CLIP image encoder."""
        return [
            ("whole network", self),
            ("CLIP model", self.clip),
            ("backbone", self.clip.visual),
        ]

    def encode_image(self, image: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Four feature levels (strides 4..32), ``z_bar`` (``B x D``) and ``z`` (``B x D x h x w``)
        of a CLIP-normalised ``B x 3 x H x W`` image (``H``, ``W`` multiples of 32)."""
        visual = self.clip.visual
        if not self.is_vit:
            x = visual.stem(image)
            levels = []
            for stage in self._resnet_stages():
                x = stage(x)
                levels.append(x)
            global_embedding, dense = dense_attention_pool(visual.attnpool, x)
            return levels, global_embedding, dense

        x = visual.conv1(image)  # B x C x h x w
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(b, 1, c)
        pos = resize_positional_embedding(visual.positional_embedding, (h, w))
        x = visual.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))
        batch_first = getattr(visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        maps = []
        for i, block in enumerate(visual.transformer.resblocks):
            x = block(x)
            if i in self.out_indices:
                tokens = x if batch_first else x.transpose(0, 1)
                maps.append(tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w))
        if not batch_first:
            x = x.transpose(0, 1)
        x = visual.ln_post(x) @ visual.proj  # B x (1 + hw) x D
        dense = x[:, 1:].transpose(1, 2).reshape(b, -1, h, w)
        return self.pyramid(maps), x[:, 0], dense

    def class_embeddings(self) -> Tensor:
        """The text embeddings of the class names with the learned context (``K x D``).

        Each sequence is ``[start, context_1..context_M, name tokens, end, padding]``
        through CLIP's (frozen) text transformer, taken at the end token and projected.
        """
        clip = self.clip
        tokens = self.class_tokens  # K x N
        words = clip.token_embedding(tokens)  # K x N x W
        k = words.shape[0]
        contexts = self.contexts.to(words.dtype).expand(k, -1, -1)
        x = torch.cat([words[:, :1], contexts, words[:, 1:]], dim=1)
        length = x.shape[1]
        x = x + clip.positional_embedding[:length].to(x.dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x)
        # the end token has the largest id (CLIP's argmax pooling), shifted by the contexts
        end = tokens.argmax(dim=-1) + self.context_tokens
        x = x[torch.arange(k, device=x.device), end]
        proj = clip.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def embed(self, image: Tensor) -> DenseCLIPEmbeddings:
        """Feature levels, image embeddings and context-aware text embeddings of an image.

        Args:
            image: ``B x 3 x H x W`` normalised with ``image_mean``/``image_std``,
                ``H`` and ``W`` multiples of 32.
        """
        x = image * self._in_scale.to(image.dtype) + self._in_shift.to(image.dtype)
        levels, global_embedding, dense = self.encode_image(x)
        b = image.shape[0]
        text = self.class_embeddings().unsqueeze(0).expand(b, -1, -1)
        # the visual context: [z_bar, z] as B x (1 + hw) x D tokens
        context = torch.cat([global_embedding.unsqueeze(1), dense.flatten(2).transpose(1, 2)], 1)
        text = text + self.gamma * self.context_decoder(text, context)
        return DenseCLIPEmbeddings(levels, global_embedding, dense, text)

    # ------------------------------------------------------------------ decoder
    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        emb = self.embed(image)
        scores = score_maps(emb.dense_embedding, emb.text_embeddings)
        levels = list(emb.levels)
        levels[self.score_level] = torch.cat([levels[self.score_level], scores], dim=1)
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(levels)))
        merged = self.merge(list(pyramid.values()))
        others = self.decoder(merged)
        raw = {
            k: self.classifier(merged) if k == self.class_head else others[k] for k in self.heads
        }
        if self.training:  # the auxiliary loss on the score maps (training only)
            raw[aux_key(self.class_head)] = scores / self.tau
        return raw


# --------------------------------------------------------------------------- checks
def _check_positive_int(value: object, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_dropout(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {values!r}")
    return vals[0], vals[1], vals[2]


def _tokenize(names: Sequence[str], length: int) -> Tensor:
    tokenizer = _tokenizer()
    long = [n for n in names if len(tokenizer.encode(n)) + 2 > length]
    if long:
        warnings.warn(
            f"{len(long)} class names are longer than name_tokens={length} tokens (start and "
            f"end included) and are cut: {long[:5]}",
            UserWarning,
            stacklevel=3,
        )
    return tokenizer(list(names), context_length=length)


# ----------------------------------------------------------------------- registry
def _build(clip_config: Mapping[str, Any], heads: Mapping[str, int], name: str, **kwargs: Any):
    allowed = [
        p.name
        for p in inspect.signature(DenseCLIP.__init__).parameters.values()
        if p.name not in ("self", "heads", "clip_config")
    ]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; allowed: {', '.join(allowed)}")
    return DenseCLIP(heads, clip_config, **kwargs)


@register_model
def denseclip_tiny(heads: Mapping[str, int], **kwargs: Any) -> DenseCLIP:
    """DenseCLIP on a tiny CLIP ViT (:data:`DENSECLIP_TINY_CLIP`), CPU-sized: context
    decoder 32 wide, 2 heads, 1 layer; FPN 32 wide, semantic-FPN map 64 wide."""
    options: dict[str, Any] = {
        "context_decoder_width": 32,
        "context_decoder_heads": 2,
        "context_decoder_layers": 1,
        "fpn_channels": 32,
        # 64, not 32: the merge's GroupNorm has 32 groups, and with one channel per group
        # a 1 x 1 stride-32 map (inputs up to 32 pixels) would leave one value to normalise
        "decoder_channels": 64,
        **kwargs,
    }
    return _build(DENSECLIP_TINY_CLIP, heads, "denseclip_tiny", **options)


@register_model
def denseclip_vit_b16(heads: Mapping[str, int], **kwargs: Any) -> DenseCLIP:
    """DenseCLIP on CLIP ViT-B/16 (open_clip ``ViT-B-16``, QuickGELU as OpenAI's weights):
    the seed's ADE20K DenseCLIP row."""
    cfg = _open_clip().get_model_config("ViT-B-16")
    options = {"quick_gelu": True, "out_indices": [3, 5, 7, 11], **kwargs}
    return _build(cfg, heads, "denseclip_vit_b16", **options)


@register_model
def denseclip_r50(heads: Mapping[str, int], **kwargs: Any) -> DenseCLIP:
    """DenseCLIP on CLIP ResNet-50 (open_clip ``RN50``, QuickGELU as OpenAI's weights)."""
    cfg = _open_clip().get_model_config("RN50")
    return _build(cfg, heads, "denseclip_r50", **{"quick_gelu": True, **kwargs})
