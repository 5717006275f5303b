"""Ground-truth conditioning: what ``phi`` would give for a perfect prediction.

Used to anchor a CRM to the truth (it also learns to regenerate from the true
layout, so that it relies on the conditioning) and by the diagnostic that
asks how much a perfect prediction would lower the regeneration error
(``dejavu diagnose``). Our definitions, per conditioning kind:

- ``segmentation``: one-hot class masks of the label map, resized to the
  working size by nearest neighbour; ignored pixels get ``fill`` when given
  (e.g. the network's own conditioning), a uniform ``1 / K`` otherwise;
- ``depth``: :func:`~dejavu.conditioning.depth_conditioning` of the true depth
  (nearest resize; 0 = invalid stays invalid);
- ``normals``: the true normals (nearest resize), unit length; invalid
  (all-zero) pixels stay 0;
- ``mask_classification`` (panoptic): the ``segmentation`` truth of the class
  map, then the instance-boundary map of the true segments (1 where a pixel's
  (class, instance) differs from a 4-neighbour's, VOID counting as a segment
  of its own), both nearest-resized; the target is ``targets[key]``
  (``B x 2 x H x W``: class, instance) or, without it, ``targets["seg"]`` and
  ``targets["instance"]``.

Example:
    >>> from dejavu.conditioning import Conditioning
    >>> phi = Conditioning({"seg": "segmentation"})
    >>> label = torch.tensor([[[0, 1], [2, 255]]])
    >>> truth_conditioning(phi, {"seg": label}, {"seg": 3}, size=(2, 2))[0, :, 1, 1]
    tensor([0.3333, 0.3333, 0.3333])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from dejavu.conditioning import Conditioning, depth_conditioning, instance_boundary_map

__all__ = ["truth_conditioning"]


def _nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="nearest")


def _seg_truth(label: Tensor, k: int, size: tuple[int, int], ignore_index: int) -> Tensor:
    if label.ndim == 4 and label.shape[1] == 1:
        label = label[:, 0]
    if label.ndim != 3:
        raise ValueError(f"segmentation target must be B x H x W, got {tuple(label.shape)}")
    label = _nearest(label[:, None].float(), size)[:, 0].long()
    valid = label != ignore_index
    bad = valid & ((label < 0) | (label >= k))
    if bool(bad.any()):
        raise ValueError(
            f"segmentation target has labels outside [0, {k}) other than ignore_index "
            f"{ignore_index}: {sorted(set(label[bad].tolist()))[:8]}"
        )
    onehot = F.one_hot(torch.where(valid, label, 0), k).permute(0, 3, 1, 2).float()
    return torch.where(valid[:, None], onehot, torch.full_like(onehot, 1.0 / k))


def truth_conditioning(
    conditioning: Conditioning,
    targets: Mapping[str, Tensor],
    channels: Mapping[str, int],
    size: tuple[int, int],
    ignore_index: int = 255,
    fill: Tensor | None = None,
) -> Tensor:
    """The conditioning tensor of the ground truth, laid out like ``conditioning(pred)``.

    Args:
        conditioning: the :class:`~dejavu.conditioning.Conditioning` whose layout to follow.
        targets: ``key -> target`` for every key of ``conditioning.spec``
            (segmentation ``B x H x W`` labels, depth ``B x 1 x H x W``, normals ``B x 3 x H x W``).
        channels: ``key -> channels`` of the prediction (the number of classes for
            segmentation keys).
        size: the output ``(H', W')`` (a CRM's working size).
        ignore_index: label of ignored segmentation pixels.
        fill: optional ``B x C x H' x W'`` conditioning (e.g. the network's own) used at
            ignored segmentation pixels instead of the uniform distribution.

    Returns:
        ``B x C x H' x W'`` float tensor, channels in spec order (no gradient).
    """
    slices = conditioning.slices(channels)
    parts = []
    for key, kind in conditioning.spec.items():
        if kind == "mask_classification":
            truth = _panoptic_truth(
                targets, key, channels[key], size, ignore_index, fill, slices[key]
            )
            parts.append(truth)
            continue
        if key not in targets:
            raise ValueError(f"targets has no {key!r} entry; keys present: {sorted(targets)}")
        target = targets[key]
        if kind == "segmentation":
            part = _seg_truth(target, channels[key], size, ignore_index)
            if fill is not None:
                label = _nearest(
                    target.reshape(target.shape[0], 1, *target.shape[-2:]).float(), size
                )
                part = torch.where(
                    label != ignore_index, part, fill[:, slices[key]].detach().float()
                )
        elif kind == "depth":
            part = depth_conditioning(_nearest(target.float(), size))
        elif kind == "normals":
            n = _nearest(target.float(), size)
            part = n / n.norm(dim=1, keepdim=True).clamp_min(1e-6)
        else:
            raise ValueError(
                f"no ground-truth conditioning for kind {kind!r} (key {key!r}); "
                "supported: segmentation, depth, normals, mask_classification"
            )
        parts.append(part)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def _panoptic_truth(
    targets: Mapping[str, Tensor],
    key: str,
    k: int,
    size: tuple[int, int],
    ignore_index: int,
    fill: Tensor | None,
    where: slice,
) -> Tensor:
    """``K`` one-hot class channels and the true instance boundaries (see the module docstring)."""
    if key in targets:
        target = targets[key]
    elif "seg" in targets and "instance" in targets:
        target = torch.stack([targets["seg"], targets["instance"]], dim=1)
    else:
        raise ValueError(
            f"targets has no {key!r} entry (nor 'seg' and 'instance'); keys present: "
            f"{sorted(targets)}"
        )
    if target.ndim != 4 or target.shape[1] != 2:
        raise ValueError(f"a panoptic target must be B x 2 x H x W, got {tuple(target.shape)}")
    target = _nearest(target.float(), size).long()
    label, inst = target[:, 0], target[:, 1]
    sem = _seg_truth(label, k, size, ignore_index)
    if fill is not None:
        sem = torch.where(
            (label != ignore_index)[:, None], sem, fill[:, where][:, :k].detach().float()
        )
    span = int(inst.max()) + 1 if inst.numel() else 1
    boundary = instance_boundary_map(label * span + inst)
    return torch.cat([sem, boundary], dim=1)
