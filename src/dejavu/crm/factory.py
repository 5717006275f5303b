"""``create_crm(name, ...)``: build a CRM from its name (for configs and the CLI).

Example:
    >>> create_crm("recursive", cond_channels=19, num_groups=4, width=8, depth=2).num_steps
    4
"""

from __future__ import annotations

from typing import Any

from dejavu._validation import check_choice
from dejavu.crm.base import CRMBase
from dejavu.crm.forward import ForwardCRM
from dejavu.crm.recursive import RecursiveCRM

__all__ = ["CRM_NAMES", "create_crm"]

_CRMS: dict[str, type[CRMBase]] = {"forward": ForwardCRM, "recursive": RecursiveCRM}

#: Names accepted by :func:`create_crm`.
CRM_NAMES: tuple[str, ...] = tuple(_CRMS)


def create_crm(name: str, cond_channels: int, **kwargs: Any) -> CRMBase:
    """Build a CRM by name.

    Args:
        name: ``"forward"`` (:class:`ForwardCRM`) or ``"recursive"`` (:class:`RecursiveCRM`).
        cond_channels: channels of the conditioning tensor.
        **kwargs: passed to the class (``width``, ``depth``, ``scale``, ...).

    Returns:
        The CRM module.

    Example:
        >>> create_crm("forward", cond_channels=4, width=8, depth=1).scale
        0.5
    """
    cls = _CRMS[check_choice(name, "crm", CRM_NAMES)]
    return cls(cond_channels, **kwargs)
