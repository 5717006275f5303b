"""DejaVu-TS: text supervision of the regenerated image by a frozen CLIP (docs/method.md, 7).

A frozen open_clip model embeds the regenerated image and a prompt built from
the class names present in the target ("a photo of road, car and sky");
``L_ts = mean_b(1 - cos(image_embedding_b, text_embedding_b))``. The gradient
reaches the regenerated image (and through it the CRM and the base network);
CLIP itself never learns.

Weights are loaded ONLY from local files (``pretrained=/path/to/weights``, or
an open_clip folder named ``model_name="local-dir:/path/to/folder"``):
nothing is ever downloaded. How the CLIP model is held: it is *not*
registered as a submodule (it lives in a plain attribute), so it is absent
from ``state_dict()``, ``parameters()`` and ``modules()`` of this module and of
any parent (checkpoints do not carry it; optimisers, DDP, ``.apply(init_fn)``
and ``.train()`` never touch it), while ``_apply`` is overridden so that
``.to(device)``, ``.cuda()``, ``.half()`` still move it.

open_clip is an optional dependency (``pip install dejavu-dense[clip]``); it
is imported only when a model has to be built or a tokenizer looked up.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_image, check_in_range, unsafe_checkpoint_error
from dejavu.conditioning import resize_conditioning

__all__ = [
    "TextSupervision",
    "build_prompt",
    "present_class_names",
    "require_open_clip",
    "text_supervision_loss",
]

# CLIP's own normalisation (open_clip.OPENAI_DATASET_MEAN / STD), used when a
# model carries no preprocess config; duplicated so this module imports
# without open_clip.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def present_class_names(
    target: Tensor,
    class_names: Sequence[str],
    ignore_index: int = 255,
    min_fraction: float = 0.0,
) -> list[list[str]]:
    """Names of the classes present in each target map, most pixels first.

    Args:
        target: ``B x H x W`` integer class map (``ignore_index`` = unlabelled).
        class_names: the name of each class index ``0 .. K-1``.
        ignore_index: label that is not a class.
        min_fraction: keep a class only if it covers at least this fraction of
            the image's *labelled* (non-ignored) pixels; in ``[0, 1]``. A class
            must have at least one pixel in any case.

    Returns:
        One list per image, ordered by pixel count (descending; ties by class
        index). An image with no labelled pixels gives an empty list.

    Raises:
        ValueError: if ``target`` is not a 3-D integer tensor, holds a label
            outside ``[0, K)`` other than ``ignore_index``, or ``min_fraction``
            is outside ``[0, 1]``.

    Example:
        >>> t = torch.tensor([[[0, 1, 1], [1, 2, 255]]])
        >>> present_class_names(t, ["road", "car", "sky"])
        [['car', 'road', 'sky']]
        >>> present_class_names(t, ["road", "car", "sky"], min_fraction=0.3)
        [['car']]
    """
    if not isinstance(target, Tensor) or target.ndim != 3:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target)
        raise ValueError(f"target must be a B x H x W integer tensor, got {shape}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must have an integer dtype (int64), got {target.dtype}")
    check_in_range(min_fraction, "min_fraction", 0.0, 1.0)
    K = len(class_names)
    B = target.shape[0]
    flat = target.reshape(B, -1).long()
    valid = flat != ignore_index
    labels = flat[valid]
    if labels.numel() and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(
            f"target holds labels in [{int(labels.min())}, {int(labels.max())}], but there are "
            f"{K} class names (allowed: 0..{K - 1} and ignore_index={ignore_index})"
        )
    # One bincount over (image, class) pairs instead of a loop over images.
    image_idx = torch.arange(B, device=target.device).unsqueeze(1).expand_as(flat)[valid]
    counts = torch.bincount(image_idx * K + labels, minlength=B * K).reshape(B, K)
    totals = counts.sum(dim=1, keepdim=True).clamp_min(1)
    present = (counts > 0) & (counts >= min_fraction * totals)
    # Stable descending sort keeps ties in class-index order.
    order = torch.sort(counts, dim=1, descending=True, stable=True).indices
    present_sorted = torch.gather(present, 1, order)
    names: list[list[str]] = []
    for idx_row, keep_row in zip(order.tolist(), present_sorted.tolist(), strict=True):
        names.append([class_names[i] for i, k in zip(idx_row, keep_row, strict=True) if k])
    return names


def build_prompt(names: Sequence[str], template: str = "a photo of {}") -> str:
    """Fill a prompt template with a list of class names.

    Names are joined as "a", "a and b", "a, b and c" (no Oxford comma). With
    no names the placeholder is dropped together with an "of" right before
    it, so the default template gives "a photo".

    Args:
        names: class names, in the order they should appear.
        template: a string with exactly one ``{}`` placeholder.

    Returns:
        The prompt.

    Raises:
        ValueError: if ``template`` does not hold exactly one ``{}``.

    Example:
        >>> build_prompt(["road", "car", "sky"])
        'a photo of road, car and sky'
        >>> build_prompt(["road"]), build_prompt([])
        ('a photo of road', 'a photo')
    """
    _check_template(template)
    names = list(names)
    if not names:
        return re.sub(r"\s*(?:\bof\s*)?\{\}", "", template).strip()
    joined = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return template.replace("{}", joined)


def _check_template(template: str) -> None:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(
            f"template must be a string with exactly one '{{}}' placeholder, got {template!r}"
        )


def text_supervision_loss(image_embedding: Tensor, text_embedding: Tensor) -> Tensor:
    """``mean_b(1 - cos(image_embedding_b, text_embedding_b))``, in ``[0, 2]``.

    Args:
        image_embedding: ``B x D``.
        text_embedding: ``B x D``.

    Returns:
        Scalar tensor (float32 at least).

    Example:
        >>> e = torch.randn(4, 8)
        >>> same, opposite = text_supervision_loss(e, e), text_supervision_loss(e, -e)
        >>> round(same.item(), 4), round(opposite.item(), 4)
        (0.0, 2.0)
    """
    if image_embedding.ndim != 2 or image_embedding.shape != text_embedding.shape:
        raise ValueError(
            "image_embedding and text_embedding must both be B x D, got "
            f"{tuple(image_embedding.shape)} and {tuple(text_embedding.shape)}"
        )
    dtype = torch.promote_types(image_embedding.dtype, torch.float32)
    cos = F.cosine_similarity(image_embedding.to(dtype), text_embedding.to(dtype), dim=-1)
    # Rounding can push |cos| a hair past 1; clamp so the loss is exactly in [0, 2].
    cos = cos.clamp(-1.0, 1.0)
    return (1.0 - cos).mean()


def require_open_clip(user: str = "TextSupervision") -> Any:
    """The ``open_clip`` module, or an ImportError naming ``user`` and the extra to install."""
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"{user} needs open_clip: pip install 'dejavu-dense[clip]' "
            "(or pip install open_clip_torch)"
        ) from e
    return open_clip


_LOCAL_DIR = "local-dir:"
_HF_HUB = "hf-hub:"
# The files open_clip's ``local-dir:`` loader takes weights from (open_clip 3.3).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


def _local_dir_weights(model_name: str, pretrained: str | os.PathLike | None) -> Path:
    """The weights file of an open_clip ``local-dir:`` folder, checked before open_clip reads it.

    open_clip builds such a model from the folder's ``open_clip_config.json`` and takes
    its weights from the folder itself (it ignores ``pretrained``), and when the folder
    holds none it only logs a warning and returns a randomly initialised CLIP: a frozen
    random CLIP would train DejaVu-TS against noise without a word, so that is an error
    here, as is a ``pretrained`` that names a file other than the folder's weights.
    """
    folder = Path(model_name[len(_LOCAL_DIR) :]).expanduser()
    if not (folder / "open_clip_config.json").is_file():
        raise FileNotFoundError(
            f"model_name {model_name!r}: no open_clip_config.json in {str(folder)!r} (an "
            "open_clip local-dir: folder holds its config and its weights file)"
        )
    found = sorted(f for f in folder.iterdir() if f.suffix in _WEIGHT_SUFFIXES and f.is_file())
    if len(found) != 1:
        names = [f.name for f in found] or "none"
        raise FileNotFoundError(
            f"model_name {model_name!r}: the folder must hold exactly one CLIP weights file "
            f"({', '.join(_WEIGHT_SUFFIXES)}), found {names}"
        )
    if pretrained is not None and Path(pretrained).expanduser().resolve() != found[0].resolve():
        raise ValueError(
            f"pretrained={str(pretrained)!r} is not the weights file of {model_name!r} "
            f"({str(found[0])!r}): a local-dir: model reads its weights from its folder, "
            "so leave pretrained out (or name that file)"
        )
    return found[0]


def _build_clip(model_name: str, pretrained: str | os.PathLike | None) -> nn.Module:
    if model_name.startswith(_HF_HUB):
        raise ValueError(
            f"model_name {model_name!r}: hf-hub: models are downloaded, and nothing is "
            "downloaded here; download the folder on a machine with internet and name it "
            "as 'local-dir:/path/to/folder'"
        )
    if model_name.startswith(_LOCAL_DIR):
        path = _local_dir_weights(model_name, pretrained)
        open_clip = require_open_clip()
        try:
            return open_clip.create_model(model_name, device="cpu")
        except pickle.UnpicklingError as err:
            raise unsafe_checkpoint_error(path, err) from None
    if pretrained is None:
        raise ValueError(
            "TextSupervision needs CLIP weights from a local file: pass "
            "pretrained='/path/to/open_clip_pytorch_model.bin' (download it on a machine with "
            f"internet, e.g. the open_clip checkpoint of {model_name!r} from "
            "https://huggingface.co/laion or via open_clip.create_model(..., pretrained=<tag>)), "
            "or model_name='local-dir:/path/to/folder' (an open_clip folder: "
            "open_clip_config.json beside the weights), "
            "or pass an already built model=... and tokenizer=...; "
            "weights are never downloaded here"
        )
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {str(path)!r} (pretrained=...)")
    open_clip = require_open_clip()
    # An absolute path can never be mistaken for a pretrained *tag* (which
    # open_clip would download). open_clip reads it with torch.load(weights_only=True).
    try:
        return open_clip.create_model(model_name, pretrained=str(path.resolve()), device="cpu")
    except pickle.UnpicklingError as err:
        raise unsafe_checkpoint_error(path, err) from None


class TextSupervision(nn.Module):
    """DejaVu-TS loss: ``1 - cos(CLIP(regenerated), CLIP_text(prompt(target)))``.

    The regenerated image (normalised with ``image_mean``/``image_std``) is
    de-normalised to ``[0, 1]`` (no clamping, so the gradient is not cut),
    resized to CLIP's input size as a whole (bilinear, antialiased; the aspect
    ratio is not kept, so that every class in the prompt stays in view),
    normalised with CLIP's own mean/std and encoded. The prompt lists the
    classes present in the target, most pixels first (a long list is cut by
    CLIP's context length, so the rare classes go first). Text embeddings are
    cached per prompt (LRU).

    Args:
        class_names: name of each class index.
        model_name: open_clip architecture name (e.g. ``"ViT-B-32"``); used to
            build the model from ``pretrained`` and to look up the tokenizer. Or
            ``"local-dir:/path/to/folder"``: an open_clip folder, its
            ``open_clip_config.json`` beside one weights file, which gives both
            the architecture and the weights. ``hf-hub:`` names are refused
            (they download).
        pretrained: local path of the open_clip weights of ``model_name``.
            Required unless ``model`` is given or ``model_name`` is a
            ``local-dir:`` folder (then optional, and if given it must be the
            folder's weights file). Never a tag or hub name.
        image_mean: per-channel mean the regenerated image is normalised with.
        image_std: per-channel std the regenerated image is normalised with.
        template: prompt template with one ``{}``.
        model: an already built open_clip model (``encode_image`` /
            ``encode_text``) to use instead of loading one.
        tokenizer: callable ``list[str] -> B x L`` token tensor; ``None`` uses
            ``open_clip.get_tokenizer(model_name)`` (offline for the CLIP BPE
            models: the vocabulary ships with open_clip).
        preprocess_size: CLIP input size (int or ``(h, w)``); ``None`` reads it
            from the model's preprocess config / ``visual.image_size``.
        ignore_index: target label that is not a class.
        min_fraction: minimum labelled-pixel fraction for a class to be named.
        text_cache_size: how many prompt embeddings to cache (0 disables).

    Raises:
        ValueError: no ``pretrained`` and no ``model``; an ``hf-hub:`` name; a
            ``pretrained`` other than a ``local-dir:`` folder's weights; bad
            names/template/sizes.
        FileNotFoundError: ``pretrained`` does not exist; a ``local-dir:``
            folder without its config or without exactly one weights file.

    Example:
        >>> import open_clip
        >>> clip = open_clip.CLIP(
        ...     embed_dim=16,
        ...     vision_cfg=open_clip.CLIPVisionCfg(
        ...         layers=1, width=16, head_width=8, patch_size=8, image_size=16
        ...     ),
        ...     text_cfg=open_clip.CLIPTextCfg(context_length=16, width=16, heads=2, layers=1),
        ... )
        >>> tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)
        >>> ts = TextSupervision(["road", "car"], model=clip, tokenizer=tok)
        >>> image = torch.randn(2, 3, 24, 32, requires_grad=True)
        >>> loss = ts(image, torch.randint(0, 2, (2, 24, 32)))
        >>> loss.backward()
        >>> 0.0 <= loss.item() <= 2.0, image.grad is not None
        (True, True)
    """

    _clip: Any  # the open_clip model (untyped), kept out of the registered submodules
    _scale: Tensor
    _shift: Tensor

    def __init__(
        self,
        class_names: Sequence[str],
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike | None = None,
        image_mean: Sequence[float] = (0.485, 0.456, 0.406),
        image_std: Sequence[float] = (0.229, 0.224, 0.225),
        template: str = "a photo of {}",
        model: nn.Module | None = None,
        tokenizer: Callable[[list[str]], Tensor] | None = None,
        preprocess_size: int | tuple[int, int] | None = None,
        *,
        ignore_index: int = 255,
        min_fraction: float = 0.0,
        text_cache_size: int = 4096,
    ) -> None:
        super().__init__()
        if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
            raise ValueError(f"class_names must be a sequence of strings, got {class_names!r}")
        if len(class_names) == 0:
            raise ValueError("class_names must not be empty")
        _check_template(template)
        check_in_range(min_fraction, "min_fraction", 0.0, 1.0)
        if isinstance(text_cache_size, bool) or not isinstance(text_cache_size, int):
            raise ValueError(f"text_cache_size must be an int >= 0, got {text_cache_size!r}")
        if text_cache_size < 0:
            raise ValueError(f"text_cache_size must be an int >= 0, got {text_cache_size!r}")
        mean = _as_triple(image_mean, "image_mean")
        std = _as_triple(image_std, "image_std")
        if any(s <= 0 for s in std):
            raise ValueError(f"image_std must be positive, got {tuple(image_std)}")

        if model is None:
            model = _build_clip(model_name, pretrained)
        elif pretrained is not None:
            raise ValueError("pass either model=... or pretrained=..., not both")
        if tokenizer is None:
            tokenizer = require_open_clip().get_tokenizer(
                model_name, context_length=getattr(model, "context_length", None)
            )

        model.eval()
        model.requires_grad_(False)
        # Held outside the module tree on purpose: see the module docstring.
        object.__setattr__(self, "_clip", model)
        self.tokenizer = tokenizer
        self.class_names = tuple(class_names)
        self.model_name = model_name
        self.template = template
        self.ignore_index = int(ignore_index)
        self.min_fraction = float(min_fraction)
        self.text_cache_size = text_cache_size
        self._text_cache: OrderedDict[str, Tensor] = OrderedDict()

        pp = _preprocess_cfg(model)
        size = preprocess_size if preprocess_size is not None else pp.get("size")
        if size is None:
            raise ValueError(
                "could not read CLIP's input size from the model; pass preprocess_size"
            )
        self.clip_size = _as_size(size)
        clip_mean = _as_triple(pp.get("mean", _OPENAI_MEAN), "CLIP mean")
        clip_std = _as_triple(pp.get("std", _OPENAI_STD), "CLIP std")
        # De-normalise then CLIP-normalise, folded into one affine map per channel.
        scale = torch.tensor(std) / torch.tensor(clip_std)
        shift = (torch.tensor(mean) - torch.tensor(clip_mean)) / torch.tensor(clip_std)
        self.register_buffer("_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", shift.view(1, 3, 1, 1), persistent=False)

    @property
    def clip_model(self) -> nn.Module:
        """The frozen CLIP model (not a registered submodule)."""
        return self._clip

    def _apply(self, fn: Callable, recurse: bool = True) -> TextSupervision:
        super()._apply(fn, recurse)
        self._clip._apply(fn)
        self._text_cache.clear()
        return self

    def train(self, mode: bool = True) -> TextSupervision:
        """Set this module's mode; CLIP stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        self._clip.eval()
        return self

    def prompts(self, target: Tensor) -> list[str]:
        """The prompt of each image of a ``B x H x W`` target."""
        names = present_class_names(target, self.class_names, self.ignore_index, self.min_fraction)
        return [build_prompt(n, self.template) for n in names]

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Unit-norm text embeddings ``len(prompts) x D`` (no gradient; cached per prompt)."""
        device = self._scale.device
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        fresh: dict[str, Tensor] = {}
        if missing:
            tokens = self.tokenizer(missing).to(device)
            with torch.no_grad():
                emb = self._clip.encode_text(tokens, normalize=True)
            fresh = dict(zip(missing, emb, strict=True))
        out = torch.stack([fresh[p] if p in fresh else self._text_cache[p] for p in prompts])
        if self.text_cache_size:
            for p in prompts:
                if p in fresh:
                    self._text_cache[p] = fresh[p]
                self._text_cache.move_to_end(p)
            while len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
        return out

    def encode_image(self, image: Tensor) -> Tensor:
        """Unit-norm CLIP embeddings ``B x D`` of ``B x 3 x H x W`` images normalised with
        ``image_mean``/``image_std`` (differentiable w.r.t. the image)."""
        x = image * self._scale.to(image.dtype) + self._shift.to(image.dtype)
        x = resize_conditioning(x, self.clip_size)
        dtype = _param_dtype(self._clip, x.dtype)
        return self._clip.encode_image(x.to(dtype), normalize=True)

    def forward(self, regenerated: Tensor, target: Tensor) -> Tensor:
        """Return ``L_ts``.

        Args:
            regenerated: ``B x 3 x H x W`` image normalised with ``image_mean``/``image_std``.
            target: ``B x H' x W'`` int64 class map (any size; only class counts are used).

        Returns:
            Scalar tensor in ``[0, 2]``.
        """
        check_image(regenerated, "regenerated", channels=3)
        if not isinstance(target, Tensor) or target.ndim != 3:
            shape = tuple(target.shape) if isinstance(target, Tensor) else type(target)
            raise ValueError(f"target must be a B x H x W integer tensor, got {shape}")
        if target.shape[0] != regenerated.shape[0]:
            raise ValueError(
                f"regenerated and target must have the same batch size, got "
                f"{regenerated.shape[0]} and {target.shape[0]}"
            )
        text = self.encode_text(self.prompts(target))
        image = self.encode_image(regenerated)
        return text_supervision_loss(image, text.to(image.device))

    def extra_repr(self) -> str:
        return (
            f"model_name={self.model_name!r}, classes={len(self.class_names)}, "
            f"template={self.template!r}, clip_size={self.clip_size}"
        )


def _as_triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {values!r}")
    return vals


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"preprocess_size must be positive, got {size!r}")
    return h, w


def _preprocess_cfg(model: nn.Module) -> dict[str, Any]:
    """open_clip's preprocess config of ``model`` without importing open_clip."""
    visual = getattr(model, "visual", model)
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    if "size" not in cfg and getattr(visual, "image_size", None) is not None:
        cfg["size"] = visual.image_size
    for key, attr in (("mean", "image_mean"), ("std", "image_std")):
        if key not in cfg and getattr(visual, attr, None) is not None:
            cfg[key] = getattr(visual, attr)
    return cfg


def _param_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None else default
