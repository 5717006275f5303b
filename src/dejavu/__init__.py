"""dejavu: conditional regenerative learning for dense prediction, in PyTorch.

The core (plain PyTorch) lives in the submodules ``redaction``,
``conditioning``, ``crm``, ``losses``, ``text_supervision``,
``shared_attention``, ``metrics`` and ``dejavu``; the toolkit (tasks, models,
data, training, CLI) in ``dejavu.toolkit``. The most used names are
re-exported here, imported on first use so that ``import dejavu`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DejaVu": "dejavu.dejavu",
    "TaskOnly": "dejavu.dejavu",
    "Redacted": "dejavu.redaction",
    "create_redaction": "dejavu.redaction",
    "REDACTION_NAMES": "dejavu.redaction",
    "Conditioning": "dejavu.conditioning",
    "ForwardCRM": "dejavu.crm",
    "RecursiveCRM": "dejavu.crm",
    "RegenerationLoss": "dejavu.losses",
    "regeneration_loss": "dejavu.losses",
    "TextSupervision": "dejavu.text_supervision",
    "SharedAttention": "dejavu.shared_attention",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover  (re-exported through __all__ / __getattr__)
    from dejavu.conditioning import Conditioning  # noqa: F401
    from dejavu.crm import ForwardCRM, RecursiveCRM  # noqa: F401
    from dejavu.dejavu import DejaVu, TaskOnly  # noqa: F401
    from dejavu.losses import RegenerationLoss, regeneration_loss  # noqa: F401
    from dejavu.redaction import REDACTION_NAMES, Redacted, create_redaction  # noqa: F401
    from dejavu.shared_attention import SharedAttention  # noqa: F401
    from dejavu.text_supervision import TextSupervision  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dejavu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
