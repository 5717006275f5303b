"""Turn images, dense targets and predictions into pictures, and lay them out in panels.

Every ``colorize_*`` function takes one sample (a tensor or an array, in the
tensor layout of :doc:`architecture`: channels first) and returns an
``H x W x 3`` ``uint8`` RGB array, with invalid pixels black:

- segmentation: a fixed palette (the official Cityscapes palette for 19
  classes, the SegNet CamVid palette for 11, otherwise the PASCAL VOC
  bit-interleaved palette starting at its first non-black colour); the
  ignore label and out-of-range labels are black;
- depth: a matplotlib colormap over the valid range (``depth > 0``);
- normals: ``(n + 1) / 2`` per component (the usual normal-map colours:
  ``(0, 0, 1)``, facing the camera, is ``(128, 128, 255)``); all-zero is black.

:func:`make_panel` draws a titled grid with matplotlib (Agg, no display) and
:func:`training_panel` builds the input / ground truth / prediction /
redacted / regenerated panel the trainer logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CAMVID_PALETTE",
    "CITYSCAPES_PALETTE",
    "colorize_depth",
    "colorize_normals",
    "colorize_prediction",
    "colorize_segmentation",
    "default_palette",
    "denormalize",
    "make_panel",
    "save_panel",
    "training_panel",
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


def _numpy(x: Tensor | np.ndarray, name: str) -> np.ndarray:
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
    x = _numpy(image, "image")
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
    lab = _numpy(labels, "labels")
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

    d = _numpy(depth, "depth").astype(np.float64)
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
    n = _numpy(normals, "normals").astype(np.float64)
    if n.ndim != 3 or n.shape[0] != 3:
        raise ValueError(f"normals must be 3 x H x W, got shape {tuple(n.shape)}")
    invalid = ~np.isfinite(n).all(axis=0) | (np.abs(n).sum(axis=0) == 0)
    rgb = np.clip((np.nan_to_num(n) + 1.0) / 2.0, 0.0, 1.0)
    out = np.floor(rgb * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()
    out[invalid] = 0
    return out


def colorize_prediction(
    key: str,
    value: Tensor | np.ndarray,
    num_classes: int | None = None,
    depth_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Colour one sample of a head's output or target by its key.

    Args:
        key: ``"seg"`` (``K x H x W`` logits or ``H x W`` labels), ``"depth"``
            or ``"normals"``.
        value: the sample.
        num_classes: classes of ``"seg"``.
        depth_range: ``(vmin, vmax)`` for ``"depth"``.

    Example:
        >>> colorize_prediction("seg", torch.tensor([[[1.0]], [[0.0]]]), 2)[0, 0].tolist()
        [128, 0, 0]
    """
    if key == "seg":
        x = _numpy(value, key)
        if x.ndim == 3:
            x = x.argmax(axis=0)
        k = num_classes if num_classes is not None else int(x.max()) + 1
        return colorize_segmentation(x, k)
    if key == "depth":
        lo, hi = depth_range if depth_range is not None else (None, None)
        return colorize_depth(value, lo, hi)
    if key == "normals":
        return colorize_normals(value)
    raise ValueError(f"unknown prediction key {key!r}; allowed: 'seg', 'depth', 'normals'")


def _as_rows(images: Any, title: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype == np.uint8:
        return [images]
    rows = list(images)
    for im in rows:
        if not isinstance(im, np.ndarray) or im.ndim not in (2, 3):
            raise ValueError(f"column {title!r}: images must be H x W (x 3) arrays")
    return rows


def make_panel(
    columns: Sequence[tuple[str, np.ndarray | Sequence[np.ndarray]]],
    rows: Sequence[str] | None = None,
    *,
    cell_size: float = 2.0,
    dpi: int = 100,
    suptitle: str | None = None,
) -> np.ndarray:
    """Draw a titled grid of images (matplotlib, Agg; no display needed).

    Args:
        columns: ``(title, images)`` per column; ``images`` is one
            ``H x W x 3`` uint8 image or a sequence of them (one per row; every
            column needs the same number). ``H x W`` images are drawn grey.
            Images of a row may differ in size (each fills its cell).
        rows: optional row titles (e.g. sample names).
        cell_size: height of a cell in inches (width follows the first image's
            aspect ratio).
        dpi: resolution.
        suptitle: optional title over the whole panel.

    Returns:
        The rendered panel, ``H' x W' x 3`` uint8.

    Example:
        >>> img = np.zeros((8, 8, 3), np.uint8)
        >>> make_panel([("a", img), ("b", img)], dpi=20).dtype
        dtype('uint8')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(columns) == 0:
        raise ValueError("columns must hold at least one (title, images) pair")
    cols = [(str(title), _as_rows(images, str(title))) for title, images in columns]
    n_rows = len(cols[0][1])
    if n_rows == 0 or any(len(imgs) != n_rows for _, imgs in cols):
        counts = {t: len(i) for t, i in cols}
        raise ValueError(f"every column needs the same, non-zero number of images; got {counts}")
    if rows is not None and len(rows) != n_rows:
        raise ValueError(f"rows has {len(rows)} titles for {n_rows} rows of images")

    h, w = cols[0][1][0].shape[:2]
    aspect = w / max(h, 1)
    fig = Figure(figsize=(cell_size * aspect * len(cols), cell_size * n_rows + 0.4), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, len(cols), squeeze=False)
    for j, (title, images) in enumerate(cols):
        for i, image in enumerate(images):
            ax = axes[i][j]
            if image.ndim == 2:
                ax.imshow(image, cmap="gray", interpolation="nearest")
            else:
                ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0 and rows is not None:
                ax.set_ylabel(str(rows[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_panel(
    columns: Sequence[tuple[str, np.ndarray | Sequence[np.ndarray]]],
    path: str | Path,
    **kwargs: Any,
) -> Path:
    """:func:`make_panel` written as a PNG to ``path`` (parents created).

    Returns:
        The path written.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_panel(columns, **kwargs)).save(path)
    return path


def _task_heads(task: Any) -> tuple[dict[str, int], int | None]:
    heads = getattr(task, "heads", task)
    if not isinstance(heads, Mapping):
        raise ValueError(f"task must be a Task or a heads mapping, got {task!r}")
    num_classes = getattr(task, "num_classes", None)
    if num_classes is None and "seg" in heads:
        num_classes = int(heads["seg"])
    return dict(heads), num_classes


def training_panel(
    batch: Mapping[str, Any],
    out: Mapping[str, Any],
    task: Any,
    mean: Sequence[float],
    std: Sequence[float],
    max_images: int = 4,
) -> np.ndarray:
    """The panel the trainer logs: input, then per head ground truth and prediction,
    then the redacted and regenerated images (when DejaVu produced them).

    Args:
        batch: the batch dict (``image`` plus targets).
        out: the training forward's output: ``pred`` (dict of head outputs)
            and, with DejaVu, ``redacted`` and ``regenerated`` (normalised
            images; ``regenerated`` may be at the CRM's working resolution).
        task: a :class:`~dejavu.toolkit.tasks.Task` (or its ``heads`` mapping).
        mean, std: normalisation of the images.
        max_images: rows (samples) to draw at most.

    Returns:
        ``H' x W' x 3`` uint8 panel, one row per sample.

    Example:
        >>> from dejavu.toolkit.tasks import create_task
        >>> batch = {"image": torch.zeros(2, 3, 8, 8), "seg": torch.zeros(2, 8, 8).long()}
        >>> out = {"pred": {"seg": torch.zeros(2, 3, 8, 8)}}
        >>> p = training_panel(batch, out, create_task("segmentation", num_classes=3),
        ...                    (0.5,) * 3, (0.2,) * 3)
        >>> p.ndim, p.dtype
        (3, dtype('uint8'))
    """
    heads, num_classes = _task_heads(task)
    image = batch["image"]
    n = min(int(image.shape[0]), int(max_images))
    if n < 1:
        raise ValueError(f"max_images must be >= 1 and the batch non-empty, got {max_images}")
    pred = out.get("pred", {})
    columns: list[tuple[str, list[np.ndarray]]] = [
        ("input", [denormalize(image[i], mean, std) for i in range(n)])
    ]
    for key in heads:
        target = batch.get(key)
        p = pred.get(key)
        ranges: list[tuple[float, float] | None] = [None] * n
        if key == "depth" and target is not None:
            for i in range(n):
                t = _numpy(target[i], key)
                v = t[np.isfinite(t) & (t > 0)]
                ranges[i] = (float(v.min()), float(v.max())) if v.size else None
        if target is not None:
            columns.append(
                (
                    f"{key} truth",
                    [colorize_prediction(key, target[i], num_classes, ranges[i]) for i in range(n)],
                )
            )
        if p is not None:
            columns.append(
                (
                    f"{key} prediction",
                    [colorize_prediction(key, p[i], num_classes, ranges[i]) for i in range(n)],
                )
            )
    for key, title in (("redacted", "redacted"), ("regenerated", "regenerated")):
        value = out.get(key)
        if isinstance(value, Tensor):
            columns.append((title, [denormalize(value[i], mean, std) for i in range(n)]))
    return make_panel(columns)
