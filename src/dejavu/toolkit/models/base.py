"""The base-network contract: ``image -> dict[str, Tensor]`` at the input resolution.

Every network built by :func:`dejavu.toolkit.models.create_model` subclasses
:class:`DenseNet`. A subclass only computes raw head outputs (at whatever
stride its decoder works at) in :meth:`DenseNet.forward_heads`; the base class
does the rest the same way for all of them:

1. **Padding.** The input is zero-padded at the bottom and right to a multiple
   of ``pad_multiple`` (the network's largest stride, 32 for HRNet, SegFormer,
   the FPNs and the smp models), so any ``H x W`` works: HRNet's fuse layers,
   for instance, need every branch to be exactly half the size of the one
   above. Zero is the dataset mean after normalisation, so the padding looks
   like a flat grey border.
2. **Resizing.** Each head output is upsampled (bilinear,
   ``align_corners=False``) to the *padded* size and then cropped to the
   original ``H x W``. Upsampling to the padded size first keeps output pixel
   ``(i, j)`` aligned with input pixel ``(i, j)``.
3. **Activation** (after resizing, so that the constraints hold per output
   pixel), as each head's spec says (:mod:`dejavu.toolkit.tasks.heads`):
   ``"depth"`` becomes positive metres with ``softplus(x) + 1e-6`` (default;
   the offset keeps ``log(depth)`` finite even where softplus underflows) or
   ``exp(x)`` (``depth_activation="exp"``, i.e. the head predicts log-depth);
   ``"normals"`` are L2-normalised to unit vectors; ``"seg"`` logits are
   returned as they are. A head name without a registered spec is an error.

A network may also return, in training mode only, a head's auxiliary output
under ``aux_key(head)`` (``"seg_aux"``, see :mod:`dejavu.toolkit.tasks.heads`):
it is resized and activated like its head and added to the task loss with the
head spec's ``aux_weight``; in eval mode a network returns its heads alone.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image
from dejavu.toolkit.tasks.heads import head_spec, output_spec

__all__ = [
    "DEPTH_ACTIVATIONS",
    "DenseNet",
    "activate_outputs",
    "check_heads",
    "decode_outputs",
    "pad_to_multiple",
    "resize_outputs",
]

#: Allowed values of ``depth_activation`` (the depth head's activations).
DEPTH_ACTIVATIONS: tuple[str, ...] = tuple(head_spec("depth").activations)


def check_heads(heads: object) -> dict[str, int]:
    """Check a ``heads`` mapping (head name -> output channels) and return a plain dict.

    Every name must be a registered head (:func:`dejavu.toolkit.tasks.heads.head_spec`);
    a head with a fixed size (``"depth"`` 1, ``"normals"`` 3) must have it, a
    class head (``"seg"``) any positive number of channels.

    Raises:
        ValueError: if ``heads`` is not a non-empty mapping of registered head
            names to positive ints, or a fixed-size head has the wrong size.

    Example:
        >>> check_heads({"seg": 19, "depth": 1})
        {'seg': 19, 'depth': 1}
    """
    if not isinstance(heads, Mapping) or len(heads) == 0:
        raise ValueError(
            "heads must be a non-empty mapping of head name -> output channels, "
            f'e.g. {{"seg": 19}}; got {heads!r}'
        )
    out: dict[str, int] = {}
    for name, channels in heads.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"heads keys must be non-empty strings, got {name!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"heads[{name!r}] must be a positive int, got {channels!r}")
        fixed = head_spec(name).channels
        if fixed is not None and channels != fixed:
            raise ValueError(f"heads[{name!r}] must be {fixed} (fixed by the task), got {channels}")
        out[name] = channels
    return out


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Zero-pad ``image`` at the bottom and right so that H and W are multiples of ``multiple``.

    Args:
        image: ``B x C x H x W``.
        multiple: the required divisor (``1`` returns ``image`` unchanged).

    Returns:
        ``B x C x H' x W'`` with ``H' = ceil(H / multiple) * multiple`` (same for W);
        the original pixels sit at ``[..., :H, :W]``.

    Example:
        >>> pad_to_multiple(torch.ones(1, 3, 45, 61), 32).shape
        torch.Size([1, 3, 64, 64])
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    h, w = image.shape[-2:]
    pad_h = math.ceil(h / multiple) * multiple - h
    pad_w = math.ceil(w / multiple) * multiple - w
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h))


def activate_outputs(
    outputs: Mapping[str, Tensor], depth_activation: str = "softplus"
) -> dict[str, Tensor]:
    """Map raw head outputs to their task's range (see the module docstring).

    Args:
        outputs: head name -> ``B x C x H x W`` raw output.
        depth_activation: ``"softplus"`` (``softplus(x) + 1e-6``) or ``"exp"``.

    Returns:
        The same keys, each through its head's activation (an auxiliary key
        ``"seg_aux"`` through its head's): ``"depth"`` positive, ``"normals"``
        unit length along dim 1, ``"seg"`` unchanged.

    Example:
        >>> out = activate_outputs({"depth": torch.zeros(1, 1, 2, 2)})
        >>> round(out["depth"][0, 0, 0, 0].item(), 4)  # softplus(0) = log 2
        0.6931
    """
    check_choice(depth_activation, "depth_activation", DEPTH_ACTIVATIONS)
    options = {"depth_activation": depth_activation}
    return {name: output_spec(name).activate(value, options) for name, value in outputs.items()}


def resize_outputs(
    outputs: Mapping[str, Tensor], padded_size: tuple[int, int], size: tuple[int, int]
) -> dict[str, Tensor]:
    """Resize raw outputs to the padded input size (bilinear), then crop to ``size``.

    Args:
        outputs: name -> ``B x C x h x w`` raw output of a network run on an
            input padded to ``padded_size``.
        padded_size: ``(H', W')``, the size of the padded input.
        size: ``(H, W)``, the size of the input before padding.

    Returns:
        name -> ``B x C x H x W`` (no activation).

    Example:
        >>> resize_outputs({"x": torch.zeros(1, 3, 16, 16)}, (64, 64), (45, 61))["x"].shape
        torch.Size([1, 3, 45, 61])
    """
    h, w = size
    resized: dict[str, Tensor] = {}
    for name, value in outputs.items():
        if tuple(value.shape[-2:]) != tuple(padded_size):
            value = F.interpolate(value, size=padded_size, mode="bilinear", align_corners=False)
        resized[name] = value[..., :h, :w]
    return resized


def decode_outputs(
    outputs: Mapping[str, Tensor],
    padded_size: tuple[int, int],
    size: tuple[int, int],
    depth_activation: str = "softplus",
) -> dict[str, Tensor]:
    """Resize raw head outputs to the padded input size, crop to ``size``, then activate.

    Args:
        outputs: head name -> ``B x C x h x w`` raw output of a network run on
            an input padded to ``padded_size``.
        padded_size: ``(H', W')``, the size of the padded input.
        size: ``(H, W)``, the size of the input before padding.
        depth_activation: see :func:`activate_outputs`.

    Returns:
        head name -> ``B x C x H x W``.

    Example:
        >>> out = decode_outputs({"seg": torch.zeros(1, 5, 16, 16)}, (64, 64), (45, 61))
        >>> out["seg"].shape
        torch.Size([1, 5, 45, 61])
    """
    return activate_outputs(resize_outputs(outputs, padded_size, size), depth_activation)


class DenseNet(nn.Module, abc.ABC):
    """Base class of the dense-prediction networks: pads, runs the heads, decodes.

    Subclasses set ``pad_multiple`` and implement :meth:`forward_heads`
    (raw outputs for an input whose size is a multiple of ``pad_multiple``)
    and :meth:`get_backbone` (the module a backbone checkpoint is loaded into).

    Args:
        heads: head name -> output channels, e.g. ``{"seg": 19}`` or
            ``{"seg": 40, "depth": 1, "normals": 3}`` (checked by :func:`check_heads`).
        depth_activation: ``"softplus"`` (default) or ``"exp"``; see the module docstring.

    Attributes:
        heads: a copy of the ``heads`` argument.
        pad_multiple: inputs are padded to a multiple of this (bottom/right).
    """

    pad_multiple: int = 1
    #: The registry name it was built under (set by ``create_model``).
    model_name: str = ""
    #: What a ``pretrained=`` file loaded (set by ``create_model``), else None.
    pretrained_report: Any = None

    def __init__(self, heads: Mapping[str, int], depth_activation: str = "softplus") -> None:
        super().__init__()
        self.heads: dict[str, int] = check_heads(heads)
        self.depth_activation = check_choice(
            depth_activation, "depth_activation", DEPTH_ACTIVATIONS
        )

    @abc.abstractmethod
    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        """Raw head outputs (any stride) for a padded ``B x 3 x H' x W'`` image."""

    @abc.abstractmethod
    def get_backbone(self) -> nn.Module:
        """The encoder module that backbone-only checkpoints are loaded into."""

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        """Modules a checkpoint may be meant for, as ``(description, module)`` pairs.

        :func:`dejavu.toolkit.models.pretrained.load_pretrained` loads a file into
        whichever of these matches it best (the whole network first, then the backbone).
        """
        return [("whole network", self), ("backbone", self.get_backbone())]

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict every head at the input resolution.

        Args:
            image: ``B x 3 x H x W`` normalised image, any ``H x W``.

        Returns:
            head name -> ``B x C x H x W`` (``"seg"`` logits, ``"depth"``
            positive metres, ``"normals"`` unit vectors).
        """
        check_image(image, "image", channels=3)
        size = (image.shape[-2], image.shape[-1])
        padded = pad_to_multiple(image, self.pad_multiple)
        raw = self.forward_heads(padded)
        padded_size = (padded.shape[-2], padded.shape[-1])
        return decode_outputs(raw, padded_size, size, self.depth_activation)
