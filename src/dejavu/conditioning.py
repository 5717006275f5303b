"""Conditioning ``phi(C)``: turn the base network's dense predictions into CRM input.

DejaVu regenerates the redacted image *conditioned on the network's own
prediction*; this module defines what the CRM actually sees (docs/method.md section 2):

- segmentation: softmax probabilities (class-wise soft masks), optionally
  straight-through hard masks (one-hot forward, softmax gradient) which close
  the appearance side channel that soft probabilities can open;
- depth: per-image standardised log-depth;
- normals: unit vectors;
- panoptic: semantic probabilities plus an instance-boundary map;
- mask classification (Mask2Former's query outputs): the semantic probability
  map and an instance-boundary map made from the per-query masks
  (:mod:`dejavu.mask_classification`);
- multi-task: concatenation, in a fixed key order.

Every op is differentiable so that the regeneration loss reaches the base
network through ``phi``.

Example:
    >>> phi = Conditioning({"seg": "segmentation", "depth": "depth"})
    >>> pred = {"seg": torch.randn(2, 5, 16, 24), "depth": torch.rand(2, 1, 16, 24) + 0.1}
    >>> phi(pred, size=(8, 12)).shape
    torch.Size([2, 6, 8, 12])
    >>> phi.slices({"seg": 5, "depth": 1})
    {'seg': slice(0, 5, None), 'depth': slice(5, 6, None)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image, check_in_range
from dejavu.mask_classification import mask_classification_conditioning, query_keys

__all__ = [
    "CONDITIONING_KINDS",
    "BoundaryConditioning",
    "Conditioning",
    "DepthConditioning",
    "NormalsConditioning",
    "PanopticConditioning",
    "SegmentationConditioning",
    "StraightThroughOneHot",
    "boundary_conditioning",
    "depth_conditioning",
    "instance_boundary_map",
    "normals_conditioning",
    "panoptic_conditioning",
    "resize_conditioning",
    "segmentation_conditioning",
    "straight_through_onehot",
]

#: The conditioning kinds :class:`Conditioning` understands, in documentation order.
CONDITIONING_KINDS: tuple[str, ...] = (
    "segmentation",
    "depth",
    "normals",
    "boundary",
    "identity",
    "mask_classification",
)

# Kinds whose input must have a fixed number of channels.
_FIXED_CHANNELS: dict[str, int] = {"depth": 1, "normals": 3}


def _check_temperature(temperature: float) -> float:
    return check_in_range(temperature, "temperature", 0.0, float("inf"), low_inclusive=False)


def _check_size(size: object, name: str = "size") -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a pair of positive ints (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def straight_through_onehot(probs: Tensor) -> Tensor:
    """Straight-through hard masks: one-hot of the argmax forward, identity gradient.

    The forward value is *exactly* the one-hot encoding of ``probs.argmax(1)``
    (ties go to the lowest index); the backward pass hands the incoming
    gradient to ``probs`` unchanged, as if the op were the identity.

    Args:
        probs: ``B x K x H x W`` class scores (usually softmax probabilities).

    Returns:
        ``B x K x H x W`` tensor of zeros and ones, same dtype as ``probs``.

    Example:
        >>> p = torch.tensor([0.2, 0.7, 0.1]).view(1, 3, 1, 1)
        >>> straight_through_onehot(p).flatten().tolist()
        [0.0, 1.0, 0.0]
    """
    check_image(probs, "probs")
    return _straight_through(probs, probs.argmax(dim=1))


def _straight_through(probs: Tensor, index: Tensor) -> Tensor:
    """One-hot of ``index`` (``B x H x W``) forward, ``probs``'s gradient backward."""
    hard = F.one_hot(index, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    # ``probs - probs.detach()`` is exactly 0 in the forward pass, so the value is
    # the one-hot tensor itself, with no arithmetic on it that could round.
    return hard + (probs - probs.detach())


class StraightThroughOneHot(nn.Module):
    """Module form of :func:`straight_through_onehot`.

    Example:
        >>> StraightThroughOneHot()(torch.rand(2, 4, 8, 8)).sum(1).unique().tolist()
        [1.0]
    """

    def forward(self, probs: Tensor) -> Tensor:
        return straight_through_onehot(probs)


def segmentation_conditioning(
    logits: Tensor, temperature: float = 1.0, hard: bool = False
) -> Tensor:
    """Class-wise soft masks ``softmax(logits / temperature)`` (or straight-through hard masks).

    Args:
        logits: ``B x K x H x W`` segmentation logits.
        temperature: softmax temperature, > 0; larger values give flatter masks.
        hard: if True, return straight-through hard masks of the softmax (see
            :func:`straight_through_onehot`): the forward value is the one-hot
            encoding of ``logits.argmax(1)`` (the argmax of the exact softmax,
            ties to the lowest index; taken on the logits because rounding the
            probabilities, in half precision especially, can tie or reorder
            near-equal classes differently from one machine to another), the
            gradient is the softmax's.

    Returns:
        ``B x K x H x W`` probabilities (summing to 1 over ``K``).

    Example:
        >>> segmentation_conditioning(torch.zeros(1, 4, 2, 2))[0, :, 0, 0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    check_image(logits, "logits")
    t = _check_temperature(temperature)
    probs = torch.softmax(logits / t, dim=1)
    return _straight_through(probs, logits.argmax(dim=1)) if hard else probs


class SegmentationConditioning(nn.Module):
    """Module form of :func:`segmentation_conditioning`.

    Example:
        >>> SegmentationConditioning(hard=True)(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, temperature: float = 1.0, hard: bool = False) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.hard = bool(hard)

    def forward(self, logits: Tensor) -> Tensor:
        return segmentation_conditioning(logits, self.temperature, self.hard)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, hard={self.hard}"


def depth_conditioning(depth: Tensor, valid: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """Per-image standardised log-depth.

    ``log(depth)`` is standardised with the mean and the (population, i.e.
    ``correction=0``) standard deviation over that image's valid pixels.
    A pixel is valid when its depth is finite and > 0 and, if given, ``valid``
    is true there. Invalid pixels are set to 0 (the mean); an image without a
    valid pixel gives all zeros. Gradients are finite everywhere and zero at
    invalid pixels.

    Standardising per image removes the global scale, so the CRM sees the
    *structure* of the depth map (edges, relative ordering), not its units.

    Args:
        depth: ``B x 1 x H x W`` depth (metres; 0 or non-finite = invalid).
        valid: optional ``B x 1 x H x W`` (or ``B x H x W``) mask, bool or numeric
            (non-zero = valid), intersected with the automatic validity.
        eps: lower bound on the standard deviation (constant-depth images).

    Returns:
        ``B x 1 x H x W`` tensor, same dtype as ``depth``.

    Example:
        >>> d = torch.tensor([1.0, 10.0, 100.0, 0.0]).view(1, 1, 2, 2)
        >>> depth_conditioning(d).flatten()
        tensor([-1.2247,  0.0000,  1.2247,  0.0000])
    """
    check_image(depth, "depth", channels=1)
    check_in_range(eps, "eps", 0.0, float("inf"), low_inclusive=False)
    mask = torch.isfinite(depth) & (depth > 0)
    if valid is not None:
        if not isinstance(valid, Tensor):
            raise ValueError(f"valid must be a torch.Tensor or None, got {type(valid)!r}")
        if valid.ndim == 3:
            valid = valid.unsqueeze(1)
        if valid.shape != depth.shape:
            raise ValueError(
                f"valid must have shape {tuple(depth.shape)} (or without the channel dim), "
                f"got {tuple(valid.shape)}"
            )
        mask = mask & (valid.bool() if valid.dtype == torch.bool else valid != 0)
    # Reduced precision would lose the statistics; work in at least float32.
    work = depth.float() if depth.dtype in (torch.float16, torch.bfloat16) else depth
    m = mask.to(work.dtype)
    # Feed log() a harmless 1 at invalid pixels so neither the value nor the
    # gradient can become NaN there.
    log_d = torch.log(torch.where(mask, work, torch.ones_like(work)))
    count = m.sum(dim=(1, 2, 3), keepdim=True)
    denom = count.clamp_min(1.0)
    mean = (log_d * m).sum(dim=(1, 2, 3), keepdim=True) / denom
    centred = torch.where(mask, log_d - mean, torch.zeros_like(log_d))
    var = (centred * centred).sum(dim=(1, 2, 3), keepdim=True) / denom
    # clamp_min before sqrt: its zero gradient below eps**2 avoids sqrt's infinite
    # slope at 0 (constant-depth or single-pixel images).
    std = var.clamp_min(eps * eps).sqrt()
    return (centred / std).to(depth.dtype)


class DepthConditioning(nn.Module):
    """Module form of :func:`depth_conditioning`.

    Example:
        >>> DepthConditioning()(torch.rand(2, 1, 8, 8) + 0.5).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = check_in_range(eps, "eps", 0.0, float("inf"), low_inclusive=False)

    def forward(self, depth: Tensor, valid: Tensor | None = None) -> Tensor:
        return depth_conditioning(depth, valid, self.eps)


def normals_conditioning(normals: Tensor, eps: float = 1e-6) -> Tensor:
    """Unit normal vectors (L2-normalised over channels); zero vectors stay zero.

    Args:
        normals: ``B x 3 x H x W`` normal predictions (any length).
        eps: lower bound on the norm used as divisor.

    Returns:
        ``B x 3 x H x W`` unit vectors (exactly zero where the input is zero).

    Example:
        >>> n = torch.tensor([3.0, 0.0, 4.0]).view(1, 3, 1, 1)
        >>> normals_conditioning(n).flatten().tolist()
        [0.6000000238418579, 0.0, 0.800000011920929]
    """
    check_image(normals, "normals", channels=3)
    check_in_range(eps, "eps", 0.0, float("inf"), low_inclusive=False)
    return F.normalize(normals, p=2.0, dim=1, eps=eps)


class NormalsConditioning(nn.Module):
    """Module form of :func:`normals_conditioning`.

    Example:
        >>> NormalsConditioning()(torch.randn(2, 3, 8, 8)).norm(dim=1).mean().round().item()
        1.0
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = check_in_range(eps, "eps", 0.0, float("inf"), low_inclusive=False)

    def forward(self, normals: Tensor) -> Tensor:
        return normals_conditioning(normals, self.eps)


def boundary_conditioning(boundary_logits: Tensor) -> Tensor:
    """Instance-boundary probabilities ``sigmoid(boundary_logits)``.

    Args:
        boundary_logits: ``B x C x H x W`` boundary logits (usually ``C = 1``).

    Returns:
        ``B x C x H x W`` probabilities in ``(0, 1)``.

    Example:
        >>> boundary_conditioning(torch.zeros(1, 1, 2, 2)).flatten().tolist()
        [0.5, 0.5, 0.5, 0.5]
    """
    check_image(boundary_logits, "boundary_logits")
    return torch.sigmoid(boundary_logits)


class BoundaryConditioning(nn.Module):
    """Module form of :func:`boundary_conditioning`.

    Example:
        >>> BoundaryConditioning()(torch.zeros(1, 1, 4, 4)).shape
        torch.Size([1, 1, 4, 4])
    """

    def forward(self, boundary_logits: Tensor) -> Tensor:
        return boundary_conditioning(boundary_logits)


def panoptic_conditioning(
    seg_logits: Tensor, boundary_logits: Tensor, temperature: float = 1.0, hard: bool = False
) -> Tensor:
    """Panoptic conditioning: semantic probabilities followed by an instance-boundary map.

    Args:
        seg_logits: ``B x K x H x W`` semantic logits.
        boundary_logits: ``B x C x H x W`` instance-boundary logits (usually ``C = 1``).
        temperature: softmax temperature of the semantic part, > 0.
        hard: straight-through hard semantic masks (see :func:`segmentation_conditioning`).

    Returns:
        ``B x (K + C) x H x W``: channels ``[:K]`` are semantic probabilities,
        ``[K:]`` boundary probabilities.

    Example:
        >>> panoptic_conditioning(torch.randn(2, 5, 8, 8), torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 6, 8, 8])
    """
    check_image(seg_logits, "seg_logits")
    check_image(boundary_logits, "boundary_logits")
    if (
        boundary_logits.shape[0] != seg_logits.shape[0]
        or boundary_logits.shape[-2:] != seg_logits.shape[-2:]
    ):
        raise ValueError(
            "boundary_logits must match seg_logits in batch and spatial size, got "
            f"{tuple(boundary_logits.shape)} vs {tuple(seg_logits.shape)}"
        )
    sem = segmentation_conditioning(seg_logits, temperature, hard)
    return torch.cat([sem, boundary_conditioning(boundary_logits)], dim=1)


class PanopticConditioning(nn.Module):
    """Module form of :func:`panoptic_conditioning`.

    Example:
        >>> PanopticConditioning()(torch.randn(1, 3, 4, 4), torch.randn(1, 1, 4, 4)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(self, temperature: float = 1.0, hard: bool = False) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.hard = bool(hard)

    def forward(self, seg_logits: Tensor, boundary_logits: Tensor) -> Tensor:
        return panoptic_conditioning(seg_logits, boundary_logits, self.temperature, self.hard)


def instance_boundary_map(instance_ids: Tensor) -> Tensor:
    """Mark pixels that have a 4-neighbour with a different instance id.

    Both sides of an instance border are marked; pixels outside the image do
    not count as neighbours. Useful as a panoptic boundary target.

    Args:
        instance_ids: ``B x H x W`` integer instance ids.

    Returns:
        ``B x 1 x H x W`` float32 map, 1 on boundaries, 0 elsewhere.

    Example:
        >>> ids = torch.tensor([[[1, 1, 2, 2]]])
        >>> instance_boundary_map(ids).flatten().tolist()
        [0.0, 1.0, 1.0, 0.0]
    """
    if not isinstance(instance_ids, Tensor) or instance_ids.ndim != 3:
        got = tuple(instance_ids.shape) if isinstance(instance_ids, Tensor) else type(instance_ids)
        raise ValueError(f"instance_ids must be a B x H x W tensor, got {got!r}")
    if instance_ids.is_floating_point() or instance_ids.is_complex():
        raise ValueError(f"instance_ids must be an integer tensor, got dtype {instance_ids.dtype}")
    ids = instance_ids
    edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    dv = ids[:, 1:, :] != ids[:, :-1, :]  # differs from the pixel below
    dh = ids[:, :, 1:] != ids[:, :, :-1]  # differs from the pixel to the right
    edge[:, 1:, :] |= dv
    edge[:, :-1, :] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    return edge.unsqueeze(1).float()


def resize_conditioning(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``), antialiased when downsampling.

    Returns ``x`` itself when it already has ``size``.

    Args:
        x: ``B x C x H x W`` floating tensor.
        size: target ``(H', W')``.

    Returns:
        ``B x C x H' x W'`` tensor.

    Example:
        >>> resize_conditioning(torch.ones(1, 2, 16, 24), (8, 12)).shape
        torch.Size([1, 2, 8, 12])
    """
    check_image(x, "x")
    h, w = _check_size(size)
    if x.shape[-2:] == (h, w):
        return x
    # Antialiasing only matters when shrinking; without it, bilinear
    # downsampling aliases thin structures (exactly what DejaVu cares about).
    down = h < x.shape[-2] or w < x.shape[-1]
    if down and x.dtype in (torch.float16, torch.bfloat16):
        # The antialiased kernel has no reduced-precision implementation on
        # CPU; resample in float32 and cast back.
        y = F.interpolate(
            x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )
        return y.to(x.dtype)
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=down)


class Conditioning(nn.Module):
    """``phi(C)`` for one or several tasks: per-key conditioning, concatenated in spec order.

    ``spec`` maps prediction keys to conditioning kinds (see
    :data:`CONDITIONING_KINDS`): ``"segmentation"`` (softmax / straight-through
    hard masks, K -> K channels), ``"depth"`` (standardised log-depth, 1 -> 1),
    ``"normals"`` (unit vectors, 3 -> 3), ``"boundary"`` (sigmoid, C -> C) and
    ``"identity"`` (C -> C). Panoptic conditioning is
    ``{"seg": "segmentation", "boundary": "boundary"}``, or, for a
    mask-classification network (Mask2Former), ``{"panoptic": "mask_classification"}``:
    the key's query outputs (``pred["panoptic_query_class"]``,
    ``pred["panoptic_query_mask"]``, :func:`dejavu.mask_classification.query_keys`)
    become the semantic probabilities and an instance-boundary map
    (:func:`~dejavu.mask_classification.mask_classification_conditioning`,
    K -> K + 1 channels, ``K`` the channels of ``pred["panoptic"]``).

    When ``size`` is given (e.g. a CRM's ``working_size``), each prediction is
    resized *before* its conditioning is applied, so every contract holds at
    the output resolution: hard masks are exactly one-hot, normals exactly unit
    length, depth exactly standardised. Without ``size``, predictions are
    brought to the spatial size of the first key in ``spec``.

    Args:
        spec: ordered mapping ``prediction key -> kind``.
        temperature: softmax temperature of the segmentation kinds, > 0.
        hard: straight-through hard masks for the segmentation kinds.

    Example:
        >>> phi = Conditioning({"seg": "segmentation", "depth": "depth", "normals": "normals"})
        >>> pred = {"seg": torch.randn(2, 4, 8, 8), "depth": torch.rand(2, 1, 8, 8) + 1,
        ...         "normals": torch.randn(2, 3, 8, 8)}
        >>> phi(pred).shape
        torch.Size([2, 8, 8, 8])
        >>> phi.out_channels({"seg": 4, "depth": 1, "normals": 3})
        8
    """

    def __init__(
        self, spec: Mapping[str, str], temperature: float = 1.0, hard: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(spec, Mapping) or len(spec) == 0:
            raise ValueError(
                f"spec must be a non-empty mapping of prediction key -> kind, got {spec!r}"
            )
        for key, kind in spec.items():
            if not isinstance(key, str):
                raise ValueError(f"spec keys must be strings, got {key!r}")
            check_choice(kind, f"conditioning kind for key {key!r}", CONDITIONING_KINDS)
        self.spec: dict[str, str] = dict(spec)
        self.temperature = _check_temperature(temperature)
        self.hard = bool(hard)

    @property
    def keys(self) -> list[str]:
        """The prediction keys, in output (concatenation) order."""
        return list(self.spec)

    def _channels_of(self, key: str, kind: str, channels: int) -> int:
        need = _FIXED_CHANNELS.get(kind)
        if need is not None and channels != need:
            raise ValueError(
                f"prediction {key!r} (kind {kind!r}) must have {need} channel(s), got {channels}"
            )
        # Mask classification adds the instance-boundary channel to the K class channels.
        return channels + 1 if kind == "mask_classification" else channels

    def slices(self, pred_channels: Mapping[str, int]) -> dict[str, slice]:
        """Channel slice of each key in the output, given each prediction's channel count.

        Example:
            >>> Conditioning({"seg": "segmentation", "b": "boundary"}).slices({"seg": 3, "b": 1})
            {'seg': slice(0, 3, None), 'b': slice(3, 4, None)}
        """
        self._check_keys(pred_channels, "pred_channels")
        out: dict[str, slice] = {}
        start = 0
        for key, kind in self.spec.items():
            c = pred_channels[key]
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ValueError(f"pred_channels[{key!r}] must be a positive int, got {c!r}")
            c = self._channels_of(key, kind, c)
            out[key] = slice(start, start + c)
            start += c
        return out

    def out_channels(self, pred_channels: Mapping[str, int]) -> int:
        """Number of output channels, given each prediction's channel count.

        Example:
            >>> Conditioning({"seg": "segmentation"}).out_channels({"seg": 19})
            19
        """
        return sum(s.stop - s.start for s in self.slices(pred_channels).values())

    def _check_keys(self, mapping: Mapping[str, object], name: str) -> None:
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{name} must be a mapping keyed by {self.keys}, got {mapping!r}")
        for key in self.spec:
            if key not in mapping:
                raise ValueError(
                    f"{name} has no key {key!r} required by the conditioning spec; "
                    f"keys present: {sorted(mapping)}"
                )

    def _phi(self, kind: str, x: Tensor) -> Tensor:
        if kind == "segmentation":
            return segmentation_conditioning(x, self.temperature, self.hard)
        if kind == "depth":
            return depth_conditioning(x)
        if kind == "normals":
            return normals_conditioning(x)
        if kind == "boundary":
            return boundary_conditioning(x)
        return x  # identity

    def forward(self, pred: Mapping[str, Tensor], size: tuple[int, int] | None = None) -> Tensor:
        """Conditioning tensor.

        Args:
            pred: predictions, ``key -> B x C_key x H x W`` (extra keys are ignored).
            size: output ``(H', W')``; defaults to the first key's spatial size.

        Returns:
            ``B x sum(C_key) x H' x W'``, channels in spec order (see :meth:`slices`).
        """
        self._check_keys(pred, "pred")
        tensors = [check_image(pred[k], f"pred[{k!r}]") for k in self.spec]
        h, w = tensors[0].shape[-2:]
        target = _check_size(size) if size is not None else (int(h), int(w))
        batch = tensors[0].shape[0]
        outs = []
        for (key, kind), x in zip(self.spec.items(), tensors, strict=True):
            if x.shape[0] != batch:
                raise ValueError(
                    f"pred[{key!r}] has batch size {x.shape[0]}, expected {batch} "
                    f"(that of pred[{self.keys[0]!r}])"
                )
            self._channels_of(key, kind, x.shape[1])
            if kind == "mask_classification":
                outs.append(self._queries(pred, key, int(x.shape[1]), target))
            else:
                outs.append(self._phi(kind, resize_conditioning(x, target)))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def _queries(
        self, pred: Mapping[str, Tensor], key: str, classes: int, size: tuple[int, int]
    ) -> Tensor:
        keys = query_keys(key)
        for name in (keys.class_logits, keys.mask_logits):
            if name not in pred:
                raise ValueError(
                    f"conditioning kind 'mask_classification' of {key!r} needs the query output "
                    f"pred[{name!r}] (a mask-classification network such as Mask2Former); keys "
                    f"present: {sorted(pred)}"
                )
        cls = pred[keys.class_logits]
        if cls.ndim == 3 and cls.shape[-1] != classes + 1:
            raise ValueError(
                f"pred[{keys.class_logits!r}] has {cls.shape[-1]} class entries; pred[{key!r}] "
                f"has {classes} classes, so it needs {classes + 1} (with no object)"
            )
        return mask_classification_conditioning(
            cls, pred[keys.mask_logits], size, self.temperature, self.hard
        )

    def extra_repr(self) -> str:
        return f"spec={self.spec}, temperature={self.temperature}, hard={self.hard}"
