"""A user's own segmentation data: ``images/`` + ``labels/`` + ``classes.txt``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dejavu.toolkit.data.base import DenseDataset
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import (
    check_label_values,
    check_same_size,
    image_to_tensor,
    read_image,
    read_label,
    require_dir,
    require_file,
)
from dejavu.toolkit.data.transforms import Sample
from dejavu.toolkit.errors import UserPathError

__all__ = ["IMAGE_EXTENSIONS", "FolderDataset"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_LAYOUT = (
    "<root>/images/<stem>.{png,jpg,...}, <root>/labels/<stem>.png (single-channel class "
    "indices, 255 = ignore), <root>/classes.txt (one class name per line) and optionally "
    "<root>/splits/<split>.txt (one stem per line)"
)


@register_dataset
class FolderDataset(DenseDataset):
    """Semantic segmentation from a plain folder.

    Layout::

        root/classes.txt            one class name per line (line k = label k)
        root/images/<stem>.jpg      any of .png .jpg .jpeg .bmp .tif .tiff .webp
        root/labels/<stem>.png      single-channel, values 0..K-1, 255 = ignore
        root/splits/<split>.txt     optional: the stems of a split, one per line

    Args:
        root: the dataset folder.
        split: None uses every image; a name reads ``splits/<split>.txt``.
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        mean, std: normalisation statistics (ImageNet by default).

    Raises:
        FileNotFoundError: naming the missing folder or file and the layout.
        ValueError: for an empty ``classes.txt`` or duplicate image stems.

    Example (not run as a doctest: it needs your folder on disk):
        >>> ds = FolderDataset("my_data", split="train")  # doctest: +SKIP
        >>> ds.class_names  # doctest: +SKIP
        ['background', 'road', 'car']
    """

    name = "folder"
    needs_split = False

    tasks = ("seg",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        *,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        if mean is not None:
            self.mean = tuple(float(m) for m in mean)  # type: ignore[assignment]
        if std is not None:
            self.std = tuple(float(s) for s in std)  # type: ignore[assignment]
        super().__init__(transform)
        self.root = require_dir(root, _LAYOUT)
        classes_file = require_file(self.root / "classes.txt", _LAYOUT)
        self.class_names = [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
        if not self.class_names:
            raise ValueError(f"{classes_file} lists no classes")
        if len(self.class_names) > 255:
            raise ValueError(
                f"{classes_file} lists {len(self.class_names)} classes; "
                "at most 255 fit beside 255 = ignore"
            )
        image_dir = require_dir(self.root / "images", _LAYOUT)
        label_dir = require_dir(self.root / "labels", _LAYOUT)
        by_stem: dict[str, Path] = {}
        for p in sorted(image_dir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                if p.stem in by_stem:
                    raise ValueError(
                        f"two images share the stem {p.stem!r}: {by_stem[p.stem]} and {p}"
                    )
                by_stem[p.stem] = p
        self.split = split
        if split is None:
            stems = sorted(by_stem)
        else:
            split_file = require_file(self.root / "splits" / f"{split}.txt", _LAYOUT)
            stems = [s.strip() for s in split_file.read_text().splitlines() if s.strip()]
            if not stems:
                raise UserPathError(f"{split_file} lists no images (the {split!r} split is empty)")
            missing = [s for s in stems if s not in by_stem]
            if missing:
                raise UserPathError(
                    f"{split_file} lists {len(missing)} stems with no image in {image_dir}, "
                    f"e.g. {missing[:5]}"
                )
        if not stems:
            raise UserPathError(f"no images found in {image_dir} (expected layout: {_LAYOUT})")
        self.items: list[tuple[Path, Path]] = []
        for stem in stems:
            label = label_dir / f"{stem}.png"
            if not label.is_file():
                raise UserPathError(f"label not found for {by_stem[stem]}: {label}")
            self.items.append((by_stem[stem], label))

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        image_path, label_path = self.items[index]
        image = read_image(image_path)
        label = read_label(label_path)
        check_same_size(image, label, label_path, image_path)
        check_label_values(label, self.num_classes, label_path)
        return {
            "image": image_to_tensor(image),
            "seg": torch.from_numpy(label.astype(np.int64)),
            "name": image_path.stem,
        }
