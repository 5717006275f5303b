"""The result type and base class shared by every redaction."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Redacted", "Redaction"]


@dataclass(frozen=True)
class Redacted:
    """What a redaction returns: the redacted image and the kept-pixel mask.

    Attributes:
        image: ``B x C x H x W`` redacted image, same dtype and device as the input.
        keep: ``B x 1 x H x W`` mask in the image dtype, 1 where the pixel was
            kept and 0 where spatial redaction removed it; ``None`` when no
            sample of the batch had a spatial redaction (spectral, identity).

    Example:
        >>> r = Redacted(torch.zeros(1, 3, 4, 4), None)
        >>> r.keep is None
        True
    """

    image: Tensor
    keep: Tensor | None


class Redaction(nn.Module, metaclass=ABCMeta):
    """Base class of the redaction modules: ``R(I) -> Redacted(I_r, keep)``.

    Subclasses set the class attributes ``name`` (the registry name) and
    ``family`` (``"identity"``, ``"spatial"``, ``"spectral"`` or ``"composite"``;
    how listings group it), implement :meth:`forward` and register themselves
    with :func:`dejavu.redaction.register_redaction`. A redaction has no
    learnable parameters.
    """

    name: str = ""
    family: str = ""

    @classmethod
    def from_options(cls, **options: Any) -> Redaction:
        """Build from config options (what :func:`~dejavu.redaction.create_redaction` calls).

        The default passes them to the constructor; a redaction whose options
        need converting first (``choice``'s list of redactions) overrides this.
        """
        return cls(**options)

    @abstractmethod
    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact a batch.

        Args:
            image: ``B x C x H x W`` floating-point batch.
            generator: ``torch.Generator`` for the random choices; ``None`` uses
                the global RNG.

        Returns:
            :class:`Redacted` with the redacted image and the kept-pixel mask.
        """
