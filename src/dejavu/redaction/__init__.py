"""Image redaction ``R(I) -> Redacted(I_r, keep)``: spatial, spectral, identity, choice.

Example:
    >>> import torch
    >>> from dejavu.redaction import create_redaction
    >>> g = torch.Generator().manual_seed(0)
    >>> out = create_redaction("checkerboard", cell=8)(torch.randn(2, 3, 32, 32), generator=g)
    >>> out.image.shape, out.keep.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2, 1, 32, 32]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dejavu.redaction.compose import ChoiceRedaction, IdentityRedaction, choice_redaction
from dejavu.redaction.dct import dct, dct2, idct, idct2
from dejavu.redaction.dct_filter import (
    DCT2FilterPlan,
    dct2_filter,
    dct2_filter_plan,
    dct2_filter_plan_radial,
)
from dejavu.redaction.factory import (
    FAMILIES,
    check_redaction_options,
    create_redaction,
    list_redactions,
    redaction_class,
    redaction_names,
    register_redaction,
)
from dejavu.redaction.spatial import (
    BlocksRedaction,
    CheckerboardRedaction,
    RandomRedaction,
    blocks_redaction,
    checkerboard_redaction,
    random_redaction,
)
from dejavu.redaction.spectral import (
    DEFAULT_BAND,
    DEFAULT_CUTOFF,
    MAX_SPECTRAL_AREA,
    SPECTRAL_BASES,
    SPECTRAL_MODES,
    BandpassRedaction,
    BandstopRedaction,
    HighpassRedaction,
    LowpassRedaction,
    SpectralRedaction,
    spectral_edge_threshold,
    spectral_keep_mask,
    spectral_radius,
    spectral_redaction,
    spectral_squared_radius,
)
from dejavu.redaction.types import Redacted, Redaction

__all__ = [
    "DEFAULT_BAND",
    "DEFAULT_CUTOFF",
    "FAMILIES",
    "MAX_SPECTRAL_AREA",
    "REDACTION_NAMES",
    "SPECTRAL_BASES",
    "SPECTRAL_MODES",
    "BandpassRedaction",
    "BandstopRedaction",
    "BlocksRedaction",
    "CheckerboardRedaction",
    "ChoiceRedaction",
    "DCT2FilterPlan",
    "HighpassRedaction",
    "IdentityRedaction",
    "LowpassRedaction",
    "RandomRedaction",
    "Redacted",
    "Redaction",
    "SpectralRedaction",
    "blocks_redaction",
    "check_redaction_options",
    "checkerboard_redaction",
    "choice_redaction",
    "create_redaction",
    "dct",
    "dct2",
    "dct2_filter",
    "dct2_filter_plan",
    "dct2_filter_plan_radial",
    "idct",
    "idct2",
    "list_redactions",
    "random_redaction",
    "redaction_class",
    "redaction_names",
    "register_redaction",
    "spectral_edge_threshold",
    "spectral_keep_mask",
    "spectral_radius",
    "spectral_redaction",
    "spectral_squared_radius",
]


if TYPE_CHECKING:  # a module attribute computed by __getattr__ below
    REDACTION_NAMES: tuple[str, ...]


def __getattr__(name: str) -> object:
    # REDACTION_NAMES: a read-only view of the registry, computed when read.
    if name == "REDACTION_NAMES":
        return redaction_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "REDACTION_NAMES"])
