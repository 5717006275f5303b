"""Mask-classification outputs (Mask2Former): their prediction keys and the maps made from them.

A mask-classification network predicts a set of ``Q`` *queries*, each a class
distribution over ``K`` classes plus "no object" and a binary mask:

- ``class_logits``: ``B x Q x (K + 1)``; the last entry is "no object".
- ``mask_logits``: ``B x Q x h x w`` mask logits on a grid that covers the
  input from its top-left corner (Mask2Former: stride 4). Every map below
  first brings the masks to the requested size with :func:`resize_query_masks`
  (bilinear), then applies the sigmoid, as Mask2Former's inference does.

**Prediction keys.** A network that predicts head ``key`` this way returns the
two tensors under ``query_keys(key).class_logits`` (``"<key>_query_class"``)
and ``query_keys(key).mask_logits`` (``"<key>_query_mask"``), and in training
mode the predictions of its intermediate decoder layers (deep supervision) as
``B x L x Q x (K + 1)`` and ``B x L x Q x h x w`` under
``"<key>_query_class_layers"`` / ``"<key>_query_mask_layers"``. Under ``key``
itself it returns the dense map :func:`semantic_log_scores` at the input
resolution, so everything that reads a per-pixel class head (argmax, softmax
conditioning, panels) works on it unchanged.

**Maps** (``p_q = softmax(class_logits_q)``, ``m_q = sigmoid(mask_logits_q)``
at each pixel):

- semantic scores ``s_k = sum_q p_q[k] m_q`` for ``k < K`` (Mask2Former's
  semantic inference: the argmax over ``k`` is its semantic map); the semantic
  probabilities are ``s_k / sum_k' s_k'`` (:func:`semantic_probabilities`);
- query assignment ``a_q = w_q / sum_q' w_q'`` with ``w_q = (1 - p_q[no object]) m_q``:
  how much each query claims the pixel (:func:`query_assignment`);
- instance boundary ``b = max over the 4-neighbours n of (1 - sum_q a_q a_q(n))``:
  0 where a pixel and all its neighbours belong to the same query with
  certainty, 1 where a neighbour certainly belongs to another query; with hard
  (one-hot) assignments it is exactly 1 where the argmax query differs from a
  neighbour's (:func:`query_boundary_map`);
- the CRM's conditioning: the semantic probabilities followed by the boundary
  map, ``K + 1`` channels (:func:`mask_classification_conditioning`, the
  ``"mask_classification"`` kind of :class:`dejavu.conditioning.Conditioning`).

These definitions are this project's (docs/method.md, "Panoptic conditioning
(ours)"). Every map is differentiable in both inputs.

Example:
    >>> cls = torch.zeros(1, 2, 4)  # 2 queries, 3 classes + no object
    >>> masks = torch.zeros(1, 2, 4, 4)
    >>> mask_classification_conditioning(cls, masks, size=(8, 8)).shape
    torch.Size([1, 4, 8, 8])
    >>> query_keys("panoptic").mask_logits
    'panoptic_query_mask'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_in_range

__all__ = [
    "MaskClassificationConditioning",
    "QueryKeys",
    "check_query_outputs",
    "has_query_outputs",
    "mask_classification_conditioning",
    "query_assignment",
    "query_boundary_map",
    "query_keys",
    "resize_query_masks",
    "semantic_log_scores",
    "semantic_probabilities",
    "semantic_scores",
]


class QueryKeys(NamedTuple):
    """The prediction keys of a mask-classification head (see the module docstring)."""

    class_logits: str
    """``B x Q x (K + 1)`` class logits (last: no object)."""
    mask_logits: str
    """``B x Q x h x w`` mask logits."""
    class_layers: str
    """``B x L x Q x (K + 1)``: the intermediate decoder layers' class logits (training)."""
    mask_layers: str
    """``B x L x Q x h x w``: the intermediate decoder layers' mask logits (training)."""


def query_keys(key: str) -> QueryKeys:
    """The prediction keys under which a network returns head ``key``'s query outputs.

    Example:
        >>> query_keys("seg")
        QueryKeys(class_logits='seg_query_class', mask_logits='seg_query_mask', \
class_layers='seg_query_class_layers', mask_layers='seg_query_mask_layers')
    """
    return QueryKeys(
        f"{key}_query_class",
        f"{key}_query_mask",
        f"{key}_query_class_layers",
        f"{key}_query_mask_layers",
    )


def has_query_outputs(pred: Mapping[str, object], key: str) -> bool:
    """Whether ``pred`` holds the query outputs of head ``key`` (class and mask logits).

    Example:
        >>> has_query_outputs({"seg": 0}, "seg")
        False
    """
    keys = query_keys(key)
    return keys.class_logits in pred and keys.mask_logits in pred


def check_query_outputs(class_logits: object, mask_logits: object) -> tuple[int, int, int]:
    """Check a pair of query outputs; return ``(B, Q, K)`` (``K`` without "no object").

    Raises:
        ValueError: naming the tensor and the shape it must have.

    Example:
        >>> check_query_outputs(torch.zeros(2, 5, 4), torch.zeros(2, 5, 8, 8))
        (2, 5, 3)
    """
    for name, x, ndim, layout in (
        ("class_logits", class_logits, 3, "B x Q x (K + 1)"),
        ("mask_logits", mask_logits, 4, "B x Q x h x w"),
    ):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x)!r}")
        if x.ndim != ndim or not x.is_floating_point():
            raise ValueError(
                f"{name} must be a floating-point {layout} tensor, got shape {tuple(x.shape)} "
                f"and dtype {x.dtype}"
            )
    assert isinstance(class_logits, Tensor) and isinstance(mask_logits, Tensor)
    b, q, k1 = class_logits.shape
    if tuple(mask_logits.shape[:2]) != (b, q):
        raise ValueError(
            f"mask_logits {tuple(mask_logits.shape)} must have the batch and query sizes of "
            f"class_logits {tuple(class_logits.shape)}"
        )
    if k1 < 2:
        raise ValueError(
            f"class_logits needs K + 1 >= 2 entries (K classes and no object), got {k1}"
        )
    return int(b), int(q), int(k1 - 1)


def _size(size: object) -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive ints (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def resize_query_masks(mask_logits: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Bilinearly resize mask logits to ``size`` (``align_corners=False``); ``None`` keeps them.

    Args:
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)``.

    Returns:
        ``B x Q x H x W`` logits (the input itself when the size already matches).

    Example:
        >>> resize_query_masks(torch.zeros(1, 3, 4, 5), (8, 10)).shape
        torch.Size([1, 3, 8, 10])
    """
    if size is None:
        return mask_logits
    h, w = _size(size)
    if tuple(mask_logits.shape[-2:]) == (h, w):
        return mask_logits
    return F.interpolate(mask_logits, size=(h, w), mode="bilinear", align_corners=False)


def semantic_scores(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Mask2Former's semantic scores ``s_k = sum_q softmax(class_q)[k] * sigmoid(mask_q)``.

    The "no object" probability is dropped; the argmax over ``k`` is
    Mask2Former's semantic segmentation (``semantic_inference``).

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: resize the masks to ``(H, W)`` first (default: keep ``h x w``).

    Returns:
        ``B x K x H x W``, each in ``[0, Q]`` (not normalised over ``K``).

    Example:
        >>> cls = torch.tensor([[[9.0, -9.0, -9.0]]])  # one query, sure of class 0
        >>> s = semantic_scores(cls, torch.full((1, 1, 2, 2), 9.0))
        >>> [round(v, 3) for v in s[0, :, 0, 0].tolist()]
        [1.0, 0.0]
    """
    check_query_outputs(class_logits, mask_logits)
    probs = torch.softmax(class_logits, dim=-1)[..., :-1]
    masks = torch.sigmoid(resize_query_masks(mask_logits, size))
    return torch.einsum("bqk,bqhw->bkhw", probs.to(masks.dtype), masks)


def semantic_log_scores(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """``log`` of :func:`semantic_scores` (clamped at the smallest normal float first).

    These are logits of the normalised semantic map: ``softmax`` over ``K``
    gives :func:`semantic_probabilities` and the argmax is the semantic
    inference, so a network returns them as its per-pixel class output.

    Example:
        >>> cls, masks = torch.zeros(1, 2, 3), torch.zeros(1, 2, 2, 2)
        >>> torch.allclose(semantic_log_scores(cls, masks).softmax(1),
        ...                semantic_probabilities(cls, masks))
        True
    """
    s = semantic_scores(class_logits, mask_logits, size)
    return torch.log(s.clamp_min(torch.finfo(s.dtype).tiny))


def _straight_through(soft: Tensor, hard: Tensor) -> Tensor:
    # ``soft - soft.detach()`` is exactly 0 forward: the value is ``hard`` itself.
    return hard + (soft - soft.detach())


def semantic_probabilities(
    class_logits: Tensor,
    mask_logits: Tensor,
    size: tuple[int, int] | None = None,
    temperature: float = 1.0,
    hard: bool = False,
) -> Tensor:
    """The semantic probability map: semantic scores normalised over the ``K`` classes.

    ``softmax(log(s) / temperature)`` over ``K``, i.e. ``s_k / sum_k' s_k'`` at
    temperature 1 (see :func:`semantic_scores`).

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)`` (default: the mask grid).
        temperature: > 0; larger values flatten the map.
        hard: straight-through one-hot masks of the argmax class (forward), the
            soft map's gradient (backward).

    Returns:
        ``B x K x H x W``, summing to 1 over ``K``.

    Example:
        >>> cls = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
        >>> masks = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])  # query 0 left, 1 right
        >>> semantic_probabilities(cls, masks, hard=True)[0, :, 0].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    t = check_in_range(temperature, "temperature", 0.0, float("inf"), low_inclusive=False)
    logits = semantic_log_scores(class_logits, mask_logits, size)
    probs = torch.softmax(logits / t, dim=1)
    if not hard:
        return probs
    one_hot = F.one_hot(logits.argmax(dim=1), probs.shape[1]).permute(0, 3, 1, 2)
    return _straight_through(probs, one_hot.to(probs.dtype))


def query_assignment(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """How much each query claims each pixel: ``a_q = w_q / sum_q' w_q'``.

    ``w_q = (1 - p_q[no object]) * sigmoid(mask_q)``: a query that is sure to
    be "no object" claims nothing, one sure to be an object claims its mask.

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)`` (default: the mask grid).

    Returns:
        ``B x Q x H x W``, summing to 1 over ``Q`` (where any query claims the pixel).

    Example:
        >>> cls = torch.zeros(1, 2, 3)
        >>> masks = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])
        >>> [round(v, 3) for v in query_assignment(cls, masks)[0, 0, 0].tolist()]
        [0.982, 0.018]
    """
    check_query_outputs(class_logits, mask_logits)
    masks = torch.sigmoid(resize_query_masks(mask_logits, size))
    objectness = 1.0 - torch.softmax(class_logits, dim=-1)[..., -1]
    w = objectness.to(masks.dtype)[..., None, None] * masks
    return w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


def _neighbour_differences(assignment: Tensor) -> Tensor:
    """``max`` over the 4-neighbours of ``1 - <a(p), a(n)>``; outside pixels are no neighbours."""
    b, _, h, w = assignment.shape
    out = assignment.new_zeros(b, 1, h, w)
    if h > 1:
        dv = 1.0 - (assignment[:, :, 1:] * assignment[:, :, :-1]).sum(dim=1, keepdim=True)
        out = torch.maximum(out, F.pad(dv, (0, 0, 0, 1)))  # differs from the pixel below
        out = torch.maximum(out, F.pad(dv, (0, 0, 1, 0)))  # ... from the pixel above
    if w > 1:
        dh = 1.0 - (assignment[..., 1:] * assignment[..., :-1]).sum(dim=1, keepdim=True)
        out = torch.maximum(out, F.pad(dh, (0, 1)))  # ... from the pixel to the right
        out = torch.maximum(out, F.pad(dh, (1, 0)))  # ... from the pixel to the left
    return out


def query_boundary_map(
    class_logits: Tensor,
    mask_logits: Tensor,
    size: tuple[int, int] | None = None,
    hard: bool = False,
) -> Tensor:
    """Instance boundaries of the query masks (soft, or hard with a soft gradient).

    ``b(p) = max over the 4-neighbours n of p of (1 - sum_q a_q(p) a_q(n))``
    with ``a`` the :func:`query_assignment`: the probability that ``p`` and a
    neighbour, each assigned to a query at random by ``a``, land on different
    queries. Pixels outside the image are not neighbours. With ``hard``, the
    forward value is exactly 1 where the argmax query of ``a`` differs from a
    neighbour's and 0 elsewhere (as :func:`dejavu.conditioning.instance_boundary_map`
    of the argmax), and the gradient is the soft map's.

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)`` (default: the mask grid).
        hard: straight-through hard boundaries.

    Returns:
        ``B x 1 x H x W`` in ``[0, 1]``.

    Example:
        >>> cls = torch.zeros(1, 2, 3)
        >>> masks = torch.tensor([[[[9.0, 9.0, -9.0]], [[-9.0, -9.0, 9.0]]]])
        >>> query_boundary_map(cls, masks, hard=True).flatten().tolist()
        [0.0, 1.0, 1.0]
        >>> [round(v, 3) for v in query_boundary_map(cls, masks).flatten().tolist()]
        [0.0, 1.0, 1.0]
    """
    a = query_assignment(class_logits, mask_logits, size)
    soft = _neighbour_differences(a)
    if not hard:
        return soft
    one_hot = F.one_hot(a.argmax(dim=1), a.shape[1]).permute(0, 3, 1, 2).to(a.dtype)
    return _straight_through(soft, _neighbour_differences(one_hot))


def mask_classification_conditioning(
    class_logits: Tensor,
    mask_logits: Tensor,
    size: tuple[int, int] | None = None,
    temperature: float = 1.0,
    hard: bool = False,
) -> Tensor:
    """The CRM's conditioning from query outputs: semantic probabilities, then boundaries.

    Args:
        class_logits: ``B x Q x (K + 1)``.
        mask_logits: ``B x Q x h x w``.
        size: the output ``(H, W)`` (e.g. a CRM's working size; default: the mask grid).
        temperature: of the semantic probabilities (:func:`semantic_probabilities`).
        hard: straight-through hard semantic masks and boundaries.

    Returns:
        ``B x (K + 1) x H x W``: channels ``[:K]`` :func:`semantic_probabilities`,
        channel ``K`` :func:`query_boundary_map`.

    Example:
        >>> out = mask_classification_conditioning(torch.randn(2, 5, 4), torch.randn(2, 5, 6, 6))
        >>> out.shape, bool(torch.allclose(out[:, :3].sum(1), torch.ones(2, 6, 6)))
        (torch.Size([2, 4, 6, 6]), True)
    """
    sem = semantic_probabilities(class_logits, mask_logits, size, temperature, hard)
    boundary = query_boundary_map(class_logits, mask_logits, size, hard)
    return torch.cat([sem, boundary.to(sem.dtype)], dim=1)


class MaskClassificationConditioning(nn.Module):
    """Module form of :func:`mask_classification_conditioning`.

    Example:
        >>> phi = MaskClassificationConditioning(hard=True)
        >>> phi(torch.randn(1, 3, 6), torch.randn(1, 3, 4, 4), size=(8, 8)).shape
        torch.Size([1, 6, 8, 8])
    """

    def __init__(self, temperature: float = 1.0, hard: bool = False) -> None:
        super().__init__()
        self.temperature = check_in_range(
            temperature, "temperature", 0.0, float("inf"), low_inclusive=False
        )
        self.hard = bool(hard)

    def forward(
        self, class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
    ) -> Tensor:
        return mask_classification_conditioning(
            class_logits, mask_logits, size, self.temperature, self.hard
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, hard={self.hard}"
