"""Turn images, dense targets and predictions into pictures (``H x W x 3`` uint8 RGB).

Every ``colorize_*`` function takes one sample (a tensor or an array, in the
tensor layout of :doc:`architecture`: channels first) and returns an
``H x W x 3`` ``uint8`` RGB array, with invalid pixels black:

- segmentation: a fixed palette (the official Cityscapes palette for 19
  classes, the SegNet CamVid palette for 11, otherwise the PASCAL VOC
  bit-interleaved palette starting at its first non-black colour); the
  ignore label and out-of-range labels are black;
- depth: a matplotlib colormap over the valid range (``depth > 0``);
- normals: ``(n + 1) / 2`` per component (the usual normal-map colours:
  ``(0, 0, 1)``, facing the camera, is ``(128, 128, 255)``); all-zero is black;
- panoptic: each segment in its class's palette colour, shifted per instance
  so that neighbouring instances of a class differ, with white outlines
  between segments; VOID is black.

Which colouriser a head uses is part of its spec
(:mod:`dejavu.toolkit.tasks.heads`); :mod:`dejavu.toolkit.visualize` lays the
pictures out in panels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CAMVID_PALETTE",
    "CITYSCAPES_PALETTE",
    "colorize_depth",
    "colorize_normals",
    "colorize_panoptic",
    "colorize_segmentation",
    "default_palette",
    "denormalize",
    "to_numpy",
]

#: The Cityscapes trainId palette (19 classes, cityscapesScripts' labels.py).
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
        (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip

#: The SegNet CamVid palette (11 classes: Sky, Building, Pole, Road, Pavement,
#: Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist).
CAMVID_PALETTE = np.array(
    [
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
        (0, 128, 192),
    ],
    dtype=np.uint8,
)  # fmt: skip


def _voc_color(index: int) -> tuple[int, int, int]:
    # PASCAL VOC's palette: the bits of the index are spread over R, G and B from the top bit down.
    r = g = b = 0
    c = index
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return r, g, b


def default_palette(num_classes: int) -> np.ndarray:
    """The palette :func:`colorize_segmentation` uses for ``num_classes`` classes.

    Returns:
        ``num_classes x 3`` uint8: Cityscapes for 19, CamVid for 11, otherwise
        VOC colours 1, 2, ... (colour 0 of VOC is black, which means "ignore"
        here). Always the same for the same ``num_classes``.

    Example:
        >>> default_palette(3).tolist()
        [[128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if num_classes == len(CITYSCAPES_PALETTE):
        return CITYSCAPES_PALETTE.copy()
    if num_classes == len(CAMVID_PALETTE):
        return CAMVID_PALETTE.copy()
    return np.array([_voc_color(i + 1) for i in range(num_classes)], dtype=np.uint8)


def to_numpy(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    """``x`` as a numpy array (floating tensors as float32), for the colourisers.

    Example:
        >>> to_numpy(torch.ones(2, dtype=torch.float16), "x").dtype
        dtype('float32')
    """
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.to(torch.float32) if x.is_floating_point() else x).numpy()
    if isinstance(x, np.ndarray):
        return x
    raise ValueError(f"{name} must be a torch.Tensor or a numpy array, got {type(x)!r}")


def denormalize(
    image: Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Undo ``Normalize``: a normalised ``3 x H x W`` image to ``H x W x 3`` uint8.

    Args:
        image: ``3 x H x W`` float, ``(x - mean) / std`` of an image in ``[0, 1]``.
        mean, std: the three per-channel values used to normalise.

    Returns:
        ``H x W x 3`` uint8, clipped to ``[0, 255]``.

    Example:
        >>> denormalize(torch.zeros(3, 2, 2), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))[0, 0].tolist()
        [128, 128, 128]
    """
    x = to_numpy(image, "image")
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"image must be 3 x H x W, got shape {tuple(x.shape)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values each, got {mean!r} and {std!r}")
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    rgb = np.clip(x.astype(np.float32) * s + m, 0.0, 1.0)
    return np.floor(rgb * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()


def colorize_segmentation(
    labels: Tensor | np.ndarray,
    num_classes: int,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Colour a label map with a fixed palette; ignore/out-of-range labels are black.

    Args:
        labels: ``H x W`` integer class indices (255 or any value outside
            ``[0, num_classes)`` counts as ignore).
        num_classes: number of classes.
        palette: ``num_classes x 3`` RGB values; ``None`` uses
            :func:`default_palette`.

    Returns:
        ``H x W x 3`` uint8.

    Example:
        >>> colorize_segmentation(torch.tensor([[0, 255]]), 19)[0].tolist()
        [[128, 64, 128], [0, 0, 0]]
    """
    lab = to_numpy(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be H x W, got shape {tuple(lab.shape)}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    pal = default_palette(num_classes) if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) < num_classes:
        raise ValueError(
            f"palette must be num_classes x 3 (>= {num_classes} x 3), got {tuple(pal.shape)}"
        )
    # Row num_classes of the lookup table is black, for every ignored label.
    table = np.concatenate([pal[:num_classes], np.zeros((1, 3), np.uint8)])
    idx = np.where((lab >= 0) & (lab < num_classes), lab, num_classes)
    return table[idx]


def colorize_panoptic(
    panoptic: Tensor | np.ndarray, num_classes: int, outline: bool = True
) -> np.ndarray:
    """Colour a panoptic map: segments in their class colour, instances told apart, outlined.

    A segment is a (class, instance) pair. Its colour is the class's
    :func:`default_palette` colour; the second, third, ... segment of a class
    in the map (by instance id) is shifted by up to +-48 per channel by a fixed
    function of that rank. So a class with one segment (a stuff region, a
    single object) has its class colour whatever its id: a ground truth (stuff
    with instance 0) and a prediction (every segment numbered) of the same
    regions look alike, and the same map always gets the same picture. With
    ``outline``, pixels whose
    segment differs from the one above or to the left are white (a one-pixel
    line between segments). VOID (a class outside
    ``[0, num_classes)``, e.g. 255) is black.

    Args:
        panoptic: ``2 x H x W`` integers: class, instance id.
        num_classes: number of classes.
        outline: draw segment borders.

    Returns:
        ``H x W x 3`` uint8.

    Example:
        >>> pic = colorize_panoptic(torch.tensor([[[0, 0, 255]], [[1, 2, 0]]]), 2, outline=False)
        >>> pic[0, 0].tolist() != pic[0, 1].tolist(), pic[0, 2].tolist()
        (True, [0, 0, 0])
    """
    x = to_numpy(panoptic, "panoptic")
    if x.ndim != 3 or x.shape[0] != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"panoptic must be a 2 x H x W integer map, got {x.dtype} {x.shape}")
    cls, inst = x[0].astype(np.int64), x[1].astype(np.int64)
    void = (cls < 0) | (cls >= num_classes)
    base = colorize_segmentation(np.where(void, -1, cls), num_classes).astype(np.int64)
    # Each segment's rank within its class: np.unique sorts the keys class-major.
    stride = int(inst.max(initial=0)) + 1
    key = np.where(void, -1, cls * stride + inst)
    keys, where = np.unique(key, return_inverse=True)
    key_cls = np.where(keys < 0, -1, keys // stride)
    first = np.searchsorted(key_cls, key_cls, side="left")
    rank = (np.arange(keys.size) - first)[where.reshape(key.shape)]
    # A fixed pseudo-random shift per rank (Knuth's multiplicative hash); rank 0 keeps
    # the class colour.
    h = (rank * 2654435761) % (2**32)
    shift = np.stack([(h >> s) % 97 - 48 for s in (0, 8, 16)], axis=-1)
    shift[rank == 0] = 0
    out = np.clip(base + shift, 0, 255).astype(np.uint8)
    out[void] = 0
    if outline:
        seg = key
        # one pixel wide: the pixel below / right of a change of segment
        edge = np.zeros(seg.shape, dtype=bool)
        edge[1:] |= seg[1:] != seg[:-1]
        edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
        out[edge & ~void] = 255
    return out


def colorize_depth(
    depth: Tensor | np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma_r",
) -> np.ndarray:
    """Colour a depth map with a matplotlib colormap; invalid pixels are black.

    Args:
        depth: ``H x W`` or ``1 x H x W`` metres; ``<= 0`` or non-finite is invalid.
        vmin, vmax: the depth range mapped to the colormap's ends (default:
            the valid pixels' min and max). Give a prediction its target's
            range so that equal colours mean equal depth.
        cmap: a matplotlib colormap name (default: near is bright).

    Returns:
        ``H x W x 3`` uint8.

    Example:
        >>> colorize_depth(torch.tensor([[0.0, 1.0, 2.0]]))[0, 0].tolist()
        [0, 0, 0]
    """
    import matplotlib

    d = to_numpy(depth, "depth").astype(np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"depth must be H x W or 1 x H x W, got shape {tuple(d.shape)}")
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros((*d.shape, 3), dtype=np.uint8)
    if not valid.any():
        return out
    lo = float(d[valid].min()) if vmin is None else float(vmin)
    hi = float(d[valid].max()) if vmax is None else float(vmax)
    t = np.clip((d - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](t[valid], bytes=True)
    out[valid] = rgba[:, :3]
    return out


def colorize_normals(normals: Tensor | np.ndarray) -> np.ndarray:
    """Colour surface normals as ``(n + 1) / 2``; all-zero (invalid) pixels are black.

    Args:
        normals: ``3 x H x W`` unit vectors (camera frame).

    Returns:
        ``H x W x 3`` uint8.

    Example:
        >>> colorize_normals(torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1))[0, 0].tolist()
        [128, 128, 255]
    """
    n = to_numpy(normals, "normals").astype(np.float64)
    if n.ndim != 3 or n.shape[0] != 3:
        raise ValueError(f"normals must be 3 x H x W, got shape {tuple(n.shape)}")
    invalid = ~np.isfinite(n).all(axis=0) | (np.abs(n).sum(axis=0) == 0)
    rgb = np.clip((np.nan_to_num(n) + 1.0) / 2.0, 0.0, 1.0)
    out = np.floor(rgb * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()
    out[invalid] = 0
    return out
