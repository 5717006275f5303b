"""The CRM registry: ``register_crm`` / ``create_crm`` / ``list_crms`` (timm style).

Each CRM class carries its own registry key in the class attribute ``name``
and registers itself with the :func:`register_crm` decorator, so adding a CRM
is one file: nothing else keeps a list of the kinds.

Example:
    >>> create_crm("recursive", cond_channels=19, num_groups=4, width=8, depth=2).num_steps
    4
    >>> "forward" in list_crms()
    True
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from dejavu._registry import Registry
from dejavu.crm.base import CRMBase

__all__ = ["check_crm_options", "create_crm", "crm_class", "list_crms", "register_crm"]

_REGISTRY: Registry[CRMBase] = Registry("crm")

C = TypeVar("C", bound=type[CRMBase])


def register_crm(cls: C) -> C:
    """Class decorator: register a :class:`CRMBase` subclass under its ``name`` attribute.

    Raises:
        ValueError: when the class has no ``name`` or the name is taken by another class.
    """
    _REGISTRY.register(cls)
    return cls


def list_crms() -> list[str]:
    """The registered CRM names, sorted."""
    return _REGISTRY.names()


def crm_class(name: str) -> type[CRMBase]:
    """The class registered as ``name`` (``ValueError`` listing the names otherwise)."""
    return _REGISTRY.get(name)


def check_crm_options(name: str, options: Any) -> type[CRMBase]:
    """Check a CRM name and its option names (not their values); return its class.

    Raises:
        ValueError: for an unknown name, or an option the CRM does not take.
    """
    cls = crm_class(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        allowed = [p.name for p in params if p.name != "cond_channels"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"crm {name!r} does not take {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(allowed)}"
            )
    return cls


def create_crm(name: str, cond_channels: int, **kwargs: Any) -> CRMBase:
    """Build a CRM by name.

    Args:
        name: a registered name (:func:`list_crms`), e.g. ``"forward"`` (CRM-F),
            ``"recursive"`` (CRM-R) or ``"zero"`` (CRM-0, parameter-free).
        cond_channels: channels of the conditioning tensor.
        **kwargs: passed to the class (``width``, ``depth``, ``scale``, ...).

    Returns:
        The CRM module.

    Raises:
        ValueError: for an unknown name or an option the CRM does not take.

    Example:
        >>> create_crm("forward", cond_channels=4, width=8, depth=1).scale
        0.5
    """
    cls = check_crm_options(name, kwargs)
    return cls(cond_channels, **kwargs)
