"""What both CRMs share: input checks and the working resolution.

A CRM runs at ``scale`` times the input resolution (regeneration is a
training-only cost; half resolution is usually enough to judge structure).
It resizes its inputs itself; :meth:`CRMBase.resize_to_working` exposes the
image resize so the caller can bring the clean target to the same size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_image, check_in_range
from dejavu.conditioning import resize_conditioning

__all__ = ["CRMBase"]


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class CRMBase(nn.Module):
    """Base class of the CRMs: validation and resizing to the working resolution.

    Args:
        cond_channels: channels of the conditioning tensor ``phi(C)`` (>= 1).
        image_channels: channels of the (redacted) image (>= 1).
        scale: working resolution as a fraction of the input, in ``(0, 1]``.
        use_keep: feed the kept-pixel mask to the regenerator.

    Example:
        >>> CRMBase(cond_channels=4, scale=0.5).working_size(15, 21)
        (8, 10)
    """

    def __init__(
        self, cond_channels: int, image_channels: int = 3, scale: float = 0.5, use_keep: bool = True
    ) -> None:
        super().__init__()
        self.cond_channels = _check_int(cond_channels, "cond_channels", 1)
        self.image_channels = _check_int(image_channels, "image_channels", 1)
        self.scale = check_in_range(scale, "scale", 0.0, 1.0, low_inclusive=False)
        self.use_keep = bool(use_keep)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """Working resolution for an ``height x width`` input.

        ``(max(1, round(height * scale)), max(1, round(width * scale)))``, with
        Python's ``round`` (halves go to the even neighbour).
        """
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def resize_to_working(self, x: Tensor) -> Tensor:
        """Resize an image (``B x C x H x W``) to the working resolution.

        The same resize the CRM applies to the redacted image: antialiased
        bilinear (a no-op at ``scale = 1``). Use it on the clean image to get
        the regeneration target.

        Example:
            >>> CRMBase(3, scale=0.5).resize_to_working(torch.randn(2, 3, 16, 24)).shape
            torch.Size([2, 3, 8, 12])
        """
        check_image(x, "x")
        return resize_conditioning(x, self.working_size(*x.shape[-2:]))

    def _prepare(
        self, redacted: Tensor, cond: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Check the inputs and bring them to the working resolution.

        Returns ``(redacted, cond, keep)`` at the working size, all in
        ``redacted``'s dtype; ``keep`` is ones when ``None`` ("nothing removed")
        and holds the fraction of kept pixels per working-resolution cell.
        """
        check_image(redacted, "redacted", channels=self.image_channels)
        check_image(cond, "cond", channels=self.cond_channels)
        b, _, h, w = redacted.shape
        if cond.shape[0] != b:
            raise ValueError(
                f"cond must have batch size {b} (that of redacted), got {cond.shape[0]}"
            )
        size = self.working_size(h, w)
        if keep is None:
            keep_w = redacted.new_ones(b, 1, *size)
        else:
            if not isinstance(keep, Tensor) or tuple(keep.shape) != (b, 1, h, w):
                got = tuple(keep.shape) if isinstance(keep, Tensor) else type(keep)
                raise ValueError(f"keep must be None or a {(b, 1, h, w)} tensor, got {got!r}")
            keep_w = keep.to(redacted.dtype)
            if size != (h, w):
                # Area averaging turns the binary mask into the kept fraction per cell.
                keep_w = F.interpolate(keep_w, size=size, mode="area")
        redacted_w = resize_conditioning(redacted, size)
        cond_w = resize_conditioning(cond.to(redacted.dtype), size)
        return redacted_w, cond_w, keep_w

    def extra_repr(self) -> str:
        return (
            f"cond_channels={self.cond_channels}, image_channels={self.image_channels}, "
            f"scale={self.scale}, use_keep={self.use_keep}"
        )
