"""CRM-R, the recursive conditional regeneration module.

Starting from ``I_0 = I_r``, each step ``t`` regenerates the region of one
group of classes and leaves the rest alone::

    I_t = I_{t-1} + m_t * (g([I_{t-1}, phi_t, m_t, keep]) - I_{t-1})

with ``m_t`` the group's soft mask (the sum of its class probabilities). One
U-Net ``g`` is shared by all steps.

Our definition of ``phi_t`` (the paper gives none): the group's class
channels, zero-padded to the size of the largest group so that ``g`` sees a
fixed number of channels at every step, followed by every conditioning
channel that is not a class probability (e.g. the boundary map of panoptic
conditioning, or depth and normals in multi-task conditioning). With a single
group, ``phi_t`` is the whole conditioning, ``m_t`` is all ones and the
module is ``steps`` refinement passes of the same ``g``.

Example:
    >>> crm = RecursiveCRM(cond_channels=6, width=8, depth=2, num_groups=3)
    >>> cond = torch.softmax(torch.randn(2, 6, 16, 24), dim=1)
    >>> [tuple(x.shape) for x in crm.forward_steps(torch.randn(2, 3, 16, 24), cond)]
    [(2, 3, 8, 12), (2, 3, 8, 12), (2, 3, 8, 12)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dejavu.crm.base import CRMBase, _check_int
from dejavu.crm.factory import register_crm
from dejavu.crm.groups import class_groups, group_masks
from dejavu.crm.unet import UNet

__all__ = ["RecursiveCRM"]


@register_crm
class RecursiveCRM(CRMBase):
    """CRM-R: regenerate group by group (or refine ``steps`` times) with one shared U-Net.

    Args:
        cond_channels: channels of ``phi(C)``.
        image_channels: image channels.
        width: U-Net width.
        depth: U-Net depth.
        scale: working resolution as a fraction of the input, in ``(0, 1]``.
        num_groups: at most this many class groups (one step each); classes are
            split with :func:`~dejavu.crm.groups.class_groups`, so the actual
            number is ``min(num_groups, number of class channels)``. ``1`` means
            a single group with an all-ones mask.
        steps: number of steps. With one group: refinement steps (default 1).
            With several groups it must be None or equal the number of groups.
        group_channels: which conditioning channels are class probabilities
            (default: all of them); only used when ``num_groups > 1``. The other
            channels are appended to every step's ``phi_t``.
            :meth:`dejavu.conditioning.Conditioning.slices` gives this slice.
        use_keep: feed the kept-pixel mask to ``g``.
        norm: U-Net normalisation, ``"group"``, ``"batch"`` or ``"none"``.

    Attributes:
        groups: the class groups (indices into the ``group_channels`` channels);
            ``[]`` with a single all-ones group.
        num_steps: number of U-Net passes per forward.

    Example:
        >>> crm = RecursiveCRM(cond_channels=4, width=8, depth=1, scale=1.0, steps=2)
        >>> crm(torch.randn(1, 3, 8, 8), torch.rand(1, 4, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    name = "recursive"

    def __init__(
        self,
        cond_channels: int,
        image_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        scale: float = 0.5,
        num_groups: int = 1,
        steps: int | None = None,
        group_channels: slice | None = None,
        use_keep: bool = True,
        norm: str = "group",
    ) -> None:
        super().__init__(cond_channels, image_channels, scale, use_keep)
        self.num_groups = _check_int(num_groups, "num_groups", 1)
        if steps is not None:
            _check_int(steps, "steps", 1)
        if group_channels is not None and not isinstance(group_channels, slice):
            raise ValueError(f"group_channels must be a slice or None, got {group_channels!r}")
        class_idx = list(range(self.cond_channels)[group_channels or slice(None)])
        if not class_idx:
            raise ValueError(
                f"group_channels {group_channels!r} selects no channel of the "
                f"{self.cond_channels} conditioning channels"
            )
        if self.num_groups == 1:
            self.groups: list[list[int]] = []
            self.num_steps = 1 if steps is None else steps
            class_idx = []
            phi_channels = self.cond_channels
        else:
            self.groups = class_groups(len(class_idx), self.num_groups)
            if steps is not None and steps != len(self.groups):
                raise ValueError(
                    f"steps must be None or equal the number of groups ({len(self.groups)}) "
                    f"when num_groups > 1, got {steps}"
                )
            self.num_steps = len(self.groups)
            phi_channels = max(map(len, self.groups)) + self.cond_channels - len(class_idx)
        other_idx = [c for c in range(self.cond_channels) if c not in set(class_idx)]
        self.register_buffer("_class_idx", torch.tensor(class_idx, dtype=torch.long), False)
        self.register_buffer("_other_idx", torch.tensor(other_idx, dtype=torch.long), False)
        self.phi_channels = phi_channels
        in_channels = self.image_channels + phi_channels + 1 + int(self.use_keep)
        self.unet = UNet(in_channels, self.image_channels, width=width, depth=depth, norm=norm)

    _class_idx: Tensor
    _other_idx: Tensor

    def _phi_and_masks(self, cond: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(phi_t, m_t)`` for every step, from the working-resolution conditioning."""
        if not self.groups:
            ones = cond.new_ones(cond.shape[0], 1, *cond.shape[-2:])
            return [(cond, ones)] * self.num_steps
        probs = cond.index_select(1, self._class_idx)
        masks = group_masks(probs, self.groups)
        other = cond.index_select(1, self._other_idx) if self._other_idx.numel() else None
        widest = max(map(len, self.groups))
        out = []
        for t, group in enumerate(self.groups):
            # Groups are contiguous, so a slice picks them; zero-pad to the widest group.
            phi_t = probs[:, group[0] : group[-1] + 1]
            phi_t = F.pad(phi_t, (0, 0, 0, 0, 0, widest - len(group)))
            if other is not None:
                phi_t = torch.cat([phi_t, other], dim=1)
            out.append((phi_t, masks[:, t : t + 1]))
        return out

    def forward_steps(
        self, redacted: Tensor, cond: Tensor, keep: Tensor | None = None
    ) -> list[Tensor]:
        """All intermediate images ``[I_1, ..., I_T]`` (``T = num_steps``), for visualisation.

        Args:
            redacted: ``B x image_channels x H x W`` redacted image ``I_r``.
            cond: ``B x cond_channels x H' x W'`` conditioning (resized bilinearly
                to the working resolution); class channels must be probabilities.
            keep: ``B x 1 x H x W`` kept-pixel mask, or None for "nothing removed".

        Returns:
            ``T`` tensors of shape ``B x image_channels x h x w``,
            ``(h, w) = working_size(H, W)``; the last is the output of :meth:`forward`.
        """
        image, cond_w, keep_w = self._prepare(redacted, cond, keep)
        extra = [keep_w] if self.use_keep else []
        images = []
        for phi_t, m_t in self._phi_and_masks(cond_w):
            g = self.unet(torch.cat([image, phi_t, m_t, *extra], dim=1))
            image = image + m_t * (g - image)
            images.append(image)
        return images

    def forward(self, redacted: Tensor, cond: Tensor, keep: Tensor | None = None) -> Tensor:
        """Regenerated image ``I_T`` at the working resolution (see :meth:`forward_steps`)."""
        return self.forward_steps(redacted, cond, keep)[-1]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_steps={self.num_steps}, groups={self.groups}"
