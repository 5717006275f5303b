"""Lay pictures of images, targets and predictions out in panels.

The pictures themselves come from :mod:`dejavu.toolkit.colorize` (re-exported
here), chosen per head by its spec (:func:`colorize_prediction`).
:func:`make_panel` draws a titled grid with matplotlib (Agg, no display) and
:func:`training_panel` builds the input / ground truth / prediction /
redacted / regenerated panel the trainer logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from dejavu.toolkit.colorize import (
    CAMVID_PALETTE,
    CITYSCAPES_PALETTE,
    colorize_depth,
    colorize_normals,
    colorize_segmentation,
    default_palette,
    denormalize,
    to_numpy,
)
from dejavu.toolkit.tasks.heads import head_spec

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
    "to_numpy",
    "training_panel",
]


def colorize_prediction(
    key: str,
    value: Tensor | np.ndarray,
    num_classes: int | None = None,
    depth_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Colour one sample of a head's output or target with the head's colouriser.

    Args:
        key: a registered head (``"seg"``: ``K x H x W`` logits or ``H x W``
            labels; ``"depth"``; ``"normals"``; see :mod:`dejavu.toolkit.tasks.heads`).
        value: the sample.
        num_classes: classes of a class head.
        depth_range: ``(vmin, vmax)`` the values are coloured over (depth: the
            target's valid range, so that equal colours mean equal depth).

    Raises:
        ValueError: for an unregistered head.

    Example:
        >>> colorize_prediction("seg", torch.tensor([[[1.0]], [[0.0]]]), 2)[0, 0].tolist()
        [128, 0, 0]
    """
    return head_spec(key).colorize(value, num_classes, depth_range)


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


def _head_prediction(task: Any, pred: Mapping[str, Any], key: str) -> Any:
    """What a panel shows of head ``key``: the task's decoding (panoptic: the panoptic map)
    when ``task`` is a Task, else ``pred[key]``; None when there is nothing to show."""
    if head_spec(key).decode is None:
        return pred.get(key)
    prediction = getattr(task, "prediction", None)
    return prediction(pred, key) if callable(prediction) else None


def _task_heads(task: Any) -> tuple[dict[str, int], int | None]:
    heads = getattr(task, "heads", task)
    if not isinstance(heads, Mapping):
        raise ValueError(f"task must be a Task or a heads mapping, got {task!r}")
    num_classes = getattr(task, "num_classes", None)
    if num_classes is None:  # a heads mapping: a class head's channels are the classes
        classes = [int(c) for k, c in heads.items() if head_spec(k).channels is None]
        num_classes = classes[0] if classes else None
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
        spec = head_spec(key)
        target = spec.target_value(batch) if spec.has_target(batch) else None
        p = _head_prediction(task, pred, key)
        ranges: list[tuple[float, float] | None] = [None] * n
        if target is not None:
            ranges = [spec.colour_range(target[i]) for i in range(n)]
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
