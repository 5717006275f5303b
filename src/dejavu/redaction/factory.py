"""String factory: ``create_redaction("blocks", block=16)`` (timm style)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dejavu._validation import check_choice
from dejavu.redaction.compose import ChoiceRedaction, IdentityRedaction
from dejavu.redaction.spatial import BlocksRedaction, CheckerboardRedaction, RandomRedaction
from dejavu.redaction.spectral import (
    BandpassRedaction,
    BandstopRedaction,
    HighpassRedaction,
    LowpassRedaction,
)
from dejavu.redaction.types import Redaction

__all__ = ["REDACTION_NAMES", "create_redaction"]

REDACTION_NAMES = (
    "none",
    "random",
    "checkerboard",
    "blocks",
    "lowpass",
    "highpass",
    "bandpass",
    "bandstop",
    "choice",
)

_CLASSES: dict[str, type[Redaction]] = {
    "none": IdentityRedaction,
    "random": RandomRedaction,
    "checkerboard": CheckerboardRedaction,
    "blocks": BlocksRedaction,
    "lowpass": LowpassRedaction,
    "highpass": HighpassRedaction,
    "bandpass": BandpassRedaction,
    "bandstop": BandstopRedaction,
    "choice": ChoiceRedaction,
}


def _allowed_kwargs(cls: type[Redaction]) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


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


def create_redaction(name: str, **kwargs: Any) -> Redaction:
    """Build a redaction from its name and keyword arguments.

    Args:
        name: one of :data:`REDACTION_NAMES`.
        **kwargs: the constructor arguments of that redaction. For
            ``"choice"``, ``redactions`` items may be names, dicts with a
            ``"name"`` key (plus that redaction's arguments) or modules.

    Returns:
        The :class:`~dejavu.redaction.types.Redaction` module.

    Raises:
        ValueError: for an unknown name or argument (the message lists the
            allowed ones) or an invalid value.

    Example:
        >>> create_redaction("blocks", block=16, ratio=0.75).name
        'blocks'
        >>> r = create_redaction("choice", redactions=[{"name": "random", "p": 0.3}, "lowpass"],
        ...                      probs=[0.5, 0.5])
        >>> [m.name for m in r.redactions]
        ['random', 'lowpass']
    """
    if not isinstance(name, str):
        raise ValueError(f"redaction name must be a string, got {name!r}")
    check_choice(name, "redaction name", REDACTION_NAMES)
    cls = _CLASSES[name]
    allowed = _allowed_kwargs(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for redaction {name!r}; "
            f"allowed: {', '.join(map(repr, allowed)) or 'none'}"
        )
    if name == "choice":
        if "redactions" not in kwargs:
            raise ValueError("redaction 'choice' needs redactions=[...] (names, dicts or modules)")
        items = kwargs["redactions"]
        if isinstance(items, str | Mapping | Redaction) or not hasattr(items, "__iter__"):
            raise ValueError(f"redactions must be a list of redactions, got {items!r}")
        kwargs["redactions"] = [_as_redaction(it, f"redactions[{i}]") for i, it in enumerate(items)]
    return cls(**kwargs)
