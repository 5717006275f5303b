"""Identity and per-sample choice among several redactions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn

from dejavu._validation import check_image, is_pair_like
from dejavu.redaction._params import draw_device
from dejavu.redaction.factory import create_redaction, register_redaction
from dejavu.redaction.types import Redacted, Redaction

__all__ = ["ChoiceRedaction", "IdentityRedaction", "choice_redaction"]


@register_redaction
class IdentityRedaction(Redaction):
    """No redaction: returns the image itself and ``keep=None``.

    Example:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> IdentityRedaction()(x).image is x
        True
    """

    name = "none"
    family = "identity"

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Return ``Redacted(image, None)`` for a ``B x C x H x W`` batch."""
        check_image(image)
        return Redacted(image, None)


def _check_redactions(redactions: Sequence[Redaction]) -> list[Redaction]:
    if isinstance(redactions, Redaction) or not isinstance(redactions, Sequence | nn.ModuleList):
        raise ValueError(f"redactions must be a sequence of Redaction modules, got {redactions!r}")
    items = list(redactions)
    if not items:
        raise ValueError("redactions must contain at least one Redaction, got an empty sequence")
    for i, r in enumerate(items):
        if not isinstance(r, Redaction):
            raise ValueError(f"redactions[{i}] must be a Redaction module, got {r!r}")
    return items


def _as_redaction(item: object, where: str) -> Redaction:
    if isinstance(item, Redaction):
        return item
    if isinstance(item, str):
        return create_redaction(item)
    if isinstance(item, Mapping):
        if "name" not in item:
            raise ValueError(f"{where} must have a 'name' key, got {dict(item)!r}")
        kwargs = {k: v for k, v in item.items() if k != "name"}
        return create_redaction(item["name"], **kwargs)
    raise ValueError(
        f"{where} must be a redaction name, a dict with a 'name' key or a Redaction, got {item!r}"
    )


def _check_probs(probs: Sequence[float] | None, n: int) -> list[float]:
    if probs is None:
        return [1.0 / n] * n
    values = list(probs) if is_pair_like(probs) else None
    if values is None or len(values) != n:
        raise ValueError(
            f"probs must be a sequence of {n} probabilities (one per redaction), got {probs!r}"
        )
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, Real) or not (0.0 <= float(v) <= 1.0):
            raise ValueError(f"probs[{i}] must be a number in [0, 1], got {v!r}")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"probs must sum to 1, got {probs!r} (sum {sum(values)})")
    return [float(v) for v in values]


def choice_redaction(
    image: Tensor,
    redactions: Sequence[Redaction],
    probs: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> Redacted:
    """Pick one redaction per sample and apply it to that sample.

    The picks are drawn first, then each redaction runs once on the samples
    that picked it (in list order, with the same generator), and the results
    are put back in batch order.

    Args:
        image: ``B x C x H x W`` floating-point batch.
        redactions: the candidates (``Redaction`` modules).
        probs: probability of each candidate, summing to 1 (default uniform).
        generator: generator for the picks and the redactions (``None``: global RNG).

    Returns:
        :class:`Redacted`. ``keep`` is ``None`` only when no sample got a
        redaction that returns a mask; otherwise it has all-ones rows for the
        samples whose redaction removed no pixels (spectral, identity).

    Example:
        >>> from dejavu.redaction import IdentityRedaction, RandomRedaction
        >>> g = torch.Generator().manual_seed(0)
        >>> r = choice_redaction(torch.randn(4, 3, 8, 8), [IdentityRedaction(), RandomRedaction()],
        ...                      generator=g)
        >>> r.keep.shape
        torch.Size([4, 1, 8, 8])
    """
    check_image(image)
    items = _check_redactions(redactions)
    weights = _check_probs(probs, len(items))
    B, _, H, W = image.shape
    if B == 0:
        return Redacted(image, None)
    dev = draw_device(image, generator)
    picks = torch.multinomial(
        torch.tensor(weights, dtype=torch.float64, device=dev),
        B,
        replacement=True,
        generator=generator,
    ).cpu()
    order, images, keeps = [], [], []
    for k, redaction in enumerate(items):
        idx = (picks == k).nonzero().flatten()
        if idx.numel() == 0:
            continue
        out = redaction(image.index_select(0, idx.to(image.device)), generator=generator)
        order.append(idx)
        images.append(out.image)
        keeps.append(out.keep)
    back = torch.cat(order).argsort().to(image.device)
    result = torch.cat(images).index_select(0, back)
    keep = None
    if any(k is not None for k in keeps):
        ones = [
            k if k is not None else image.new_ones(len(i), 1, H, W)
            for k, i in zip(keeps, order, strict=True)
        ]
        keep = torch.cat(ones).index_select(0, back)
    return Redacted(result, keep)


@register_redaction
class ChoiceRedaction(Redaction):
    """Module form of :func:`choice_redaction`.

    Args:
        redactions: the candidate ``Redaction`` modules.
        probs: probability of each candidate, summing to 1 (default uniform).

    Example:
        >>> from dejavu.redaction import LowpassRedaction, RandomRedaction
        >>> choice = ChoiceRedaction([RandomRedaction(p=0.3), LowpassRedaction()], probs=[0.5, 0.5])
        >>> choice(torch.randn(4, 3, 16, 16)).image.shape
        torch.Size([4, 3, 16, 16])
    """

    name = "choice"
    family = "composite"

    def __init__(
        self, redactions: Sequence[Redaction], probs: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        items = _check_redactions(redactions)
        self.redactions = nn.ModuleList(items)
        self.probs = _check_probs(probs, len(items))

    @classmethod
    def from_options(cls, **options: Any) -> ChoiceRedaction:
        """Build from config options: ``redactions`` items may be names, dicts with a
        ``"name"`` key (plus that redaction's options) or modules."""
        if "redactions" not in options:
            raise ValueError("redaction 'choice' needs redactions=[...] (names, dicts or modules)")
        items = options["redactions"]
        if isinstance(items, str | Mapping | Redaction) or not hasattr(items, "__iter__"):
            raise ValueError(f"redactions must be a list of redactions, got {items!r}")
        converted = [_as_redaction(it, f"redactions[{i}]") for i, it in enumerate(items)]
        return cls(converted, options.get("probs"))

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact ``image`` (``B x C x H x W``); see :func:`choice_redaction`."""
        items: list[Redaction] = list(self.redactions)  # type: ignore[arg-type]
        return choice_redaction(image, items, self.probs, generator=generator)

    def extra_repr(self) -> str:
        return f"probs={self.probs!r}"
