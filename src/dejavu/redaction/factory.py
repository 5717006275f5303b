"""The redaction registry: ``register_redaction`` / ``create_redaction`` / ``list_redactions``.

timm style, as :mod:`dejavu.crm.factory`: each :class:`~dejavu.redaction.types.Redaction`
class carries its registry key in the class attribute ``name`` and registers
itself with the :func:`register_redaction` decorator, so adding a redaction is
one file; nothing else keeps a list of the names. :data:`REDACTION_NAMES` is a
read-only view of the registry (grouped by ``family``: identity, spatial,
spectral, composite; in registration order within a family).

Example:
    >>> create_redaction("blocks", block=16, ratio=0.75).name
    'blocks'
    >>> "bandstop" in list_redactions(), redaction_names()[0], redaction_names()[-1]
    (True, 'none', 'choice')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from dejavu._registry import Registry
from dejavu.redaction.types import Redaction

__all__ = [
    "FAMILIES",
    "REDACTION_NAMES",
    "check_redaction_options",
    "create_redaction",
    "list_redactions",
    "redaction_class",
    "redaction_names",
    "register_redaction",
]

#: The order in which :data:`REDACTION_NAMES` groups the families (others come last).
FAMILIES: tuple[str, ...] = ("identity", "spatial", "spectral", "composite")

# name -> class, in registration order: the one list of redactions.
_CLASSES: Registry[Redaction] = Registry("redaction", label="redaction name")

R = TypeVar("R", bound=type[Redaction])


def register_redaction(cls: R) -> R:
    """Class decorator: register a :class:`Redaction` subclass under its ``name`` attribute.

    Raises:
        ValueError: when the class has no ``name`` or the name is taken by another class.
    """
    _CLASSES.register(cls)
    return cls


def list_redactions(pattern: str | None = None) -> list[str]:
    """The registered redaction names, sorted, optionally filtered by a glob ``pattern``.

    Example:
        >>> list_redactions("*pass")
        ['bandpass', 'highpass', 'lowpass']
    """
    return _CLASSES.names(pattern)


def redaction_names() -> tuple[str, ...]:
    """The registered names grouped by family (:data:`FAMILIES` order), then registration order."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    names = _CLASSES.in_order()
    return tuple(
        sorted(
            names,
            key=lambda n: (order.get(_CLASSES.get(n).family, len(order)), names.index(n)),
        )
    )


if TYPE_CHECKING:  # a module attribute computed by __getattr__ below
    REDACTION_NAMES: tuple[str, ...]


def __getattr__(name: str) -> Any:
    # REDACTION_NAMES is computed when read: classes register when their modules are imported.
    if name == "REDACTION_NAMES":
        return redaction_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def redaction_class(name: str) -> type[Redaction]:
    """The class registered as ``name`` (``ValueError`` listing the names otherwise)."""
    return _CLASSES.get(name, redaction_names())


def check_redaction_options(name: str, options: Any) -> type[Redaction]:
    """Check a redaction name and its option names (not their values); return its class.

    Raises:
        ValueError: for an unknown name or option (the message lists the allowed ones).
    """
    cls = redaction_class(name)
    allowed = _CLASSES.options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for redaction {name!r}; "
            f"allowed: {', '.join(map(repr, allowed)) or 'none'}"
        )
    return cls


def create_redaction(name: str, **kwargs: Any) -> Redaction:
    """Build a redaction from its name and keyword arguments.

    Args:
        name: a registered name (:data:`REDACTION_NAMES`).
        **kwargs: the constructor arguments of that redaction. For
            ``"choice"``, ``redactions`` items may be names, dicts with a
            ``"name"`` key (plus that redaction's arguments) or modules.

    Returns:
        The :class:`~dejavu.redaction.types.Redaction` module.

    Raises:
        ValueError: for an unknown name or argument (the message lists the
            allowed ones) or an invalid value.

    Example:
        >>> r = create_redaction("choice", redactions=[{"name": "random", "p": 0.3}, "lowpass"],
        ...                      probs=[0.5, 0.5])
        >>> [m.name for m in r.redactions]
        ['random', 'lowpass']
    """
    return check_redaction_options(name, kwargs).from_options(**kwargs)


def __dir__() -> list[str]:
    return sorted([*globals(), "REDACTION_NAMES"])
