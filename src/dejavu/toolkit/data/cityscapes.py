"""Cityscapes (fine annotations, 19 trainId classes, optional instances)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

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
)
from dejavu.toolkit.data.transforms import Sample
from dejavu.toolkit.errors import UserPathError

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_THING_CLASSES",
    "LABEL_ID_TO_TRAIN_ID",
    "Cityscapes",
    "label_ids_to_train_ids",
]

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

#: The classes with instances (cityscapesScripts' ``hasInstances`` among the 19
#: evaluated classes): the "things" of Cityscapes panoptic; the other 11 are stuff.
CITYSCAPES_THING_CLASSES = (
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# The official table of cityscapesScripts (labels.py): labelId -> trainId; ids not
# listed (0-6, 9, 10, 14-16, 18, 29, 30 and -1 = license plate) are ignored.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

_LUT = np.full(256, IGNORE_INDEX, np.uint8)
for _id, _train in LABEL_ID_TO_TRAIN_ID.items():
    _LUT[_id] = _train

_LAYOUT = (
    "<root>/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and "
    "<root>/gtFine/{split}/<city>/<name>_gtFine_labelTrainIds.png (or _gtFine_labelIds.png)"
)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes labelIds (0..33, -1) to trainIds (0..18, 255 = ignore).

    Example:
        >>> label_ids_to_train_ids(np.array([7, 26, 0, 33])).tolist()
        [0, 13, 255, 18]
    """
    ids = np.asarray(label_ids)
    if ids.size and (ids.min() < -1 or ids.max() > 255):
        raise ValueError(f"label ids must be in [-1, 255], got range [{ids.min()}, {ids.max()}]")
    # -1 (license plate) indexes _LUT[-1] = 255 = ignore, as intended.
    return _LUT[ids.astype(np.int64)]


@register_dataset
class Cityscapes(DenseDataset):
    """Cityscapes fine annotations with the 19 trainId classes.

    Labels come from ``*_gtFine_labelTrainIds.png`` when it exists (the file
    cityscapesScripts' ``createTrainIdLabelImgs`` writes), otherwise from
    ``*_gtFine_labelIds.png`` through the official id -> trainId table
    (:data:`LABEL_ID_TO_TRAIN_ID`). Both give the same labels.

    With ``with_instance=True`` the sample also holds ``instance`` from
    ``*_gtFine_instanceIds.png``, in the panoptic form of
    :mod:`dejavu.toolkit.data`: a pixel of one of the 8 thing classes
    (:data:`CITYSCAPES_THING_CLASSES`) keeps its Cityscapes id
    ``label_id * 1000 + k`` (unique per object, nonzero); a thing pixel
    stored below 1000 (a group label such as "cargroup", no single object)
    gets 0, its class's crowd region, as cityscapesScripts'
    ``createPanopticImgs`` marks it ``iscrowd``; stuff and ignored pixels
    (including the caravan and trailer objects, ignored in evaluation) get 0.
    :attr:`categories` gives the thing/stuff split.

    Args:
        root: the Cityscapes folder (holding ``leftImg8bit/`` and ``gtFine/``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        label_source: ``"auto"`` (trainIds if present), ``"train_ids"`` or ``"label_ids"``.
        with_instance: also load instance ids.

    Example (not run as a doctest: it needs Cityscapes on disk):
        >>> ds = Cityscapes("../shared/data/samples/cityscapes", "val")  # doctest: +SKIP
        >>> ds[0]["seg"].shape  # doctest: +SKIP
        torch.Size([128, 256])
    """

    name = "cityscapes"

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(CITYSCAPES_CLASSES)  # noqa: RUF012
    thing_classes = CITYSCAPES_THING_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
        *,
        label_source: str = "auto",
        with_instance: bool = False,
    ) -> None:
        super().__init__(transform)
        self.split = check_choice(split, "split", ("train", "val", "test"))
        self.label_source = check_choice(
            label_source, "label_source", ("auto", "train_ids", "label_ids")
        )
        self.with_instance = bool(with_instance)
        self.tasks = ("seg", "instance") if with_instance else ("seg",)
        layout = _LAYOUT.format(split=split)
        self.root = require_dir(root, layout)
        image_dir = require_dir(self.root / "leftImg8bit" / split, layout)
        label_dir = require_dir(self.root / "gtFine" / split, layout)
        self.items: list[tuple[Path, Path, Path]] = []
        for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            base = label_dir / image.parent.name / stem
            self.items.append((image, self._label_path(base, layout), self._instance_path(base)))
        if not self.items:
            raise UserPathError(
                f"no *_leftImg8bit.png under {image_dir} (expected layout: {layout})"
            )

    def _label_path(self, base: Path, layout: str) -> Path:
        train_ids = base.with_name(base.name + "_gtFine_labelTrainIds.png")
        label_ids = base.with_name(base.name + "_gtFine_labelIds.png")
        use_train_ids = self.label_source == "train_ids" or (
            self.label_source == "auto" and train_ids.is_file()
        )
        path = train_ids if use_train_ids else label_ids
        if not path.is_file():
            raise UserPathError(f"label file not found: {path} (expected layout: {layout})")
        return path

    def _instance_path(self, base: Path) -> Path:
        path = base.with_name(base.name + "_gtFine_instanceIds.png")
        if self.with_instance and not path.is_file():
            raise UserPathError(f"instance file not found: {path} (with_instance=True)")
        return path

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        image_path, label_path, instance_path = self.items[index]
        image = read_image(image_path)
        label = read_label(label_path)
        check_same_size(image, label, label_path, image_path)
        if label_path.name.endswith("_labelTrainIds.png"):
            check_label_values(label, self.num_classes, label_path)
            seg = label
        else:
            check_label_values(label, 34, label_path)
            seg = label_ids_to_train_ids(label)
        sample: Sample = {
            "image": image_to_tensor(image),
            "seg": torch.from_numpy(seg.astype(np.int64)),
        }
        if self.with_instance:
            ids = read_label(instance_path).astype(np.int64)
            check_same_size(image, ids, instance_path, image_path)
            is_thing = np.isin(seg, [self.class_names.index(c) for c in self.thing_classes])
            sample["instance"] = torch.from_numpy(np.where((ids >= 1000) & is_thing, ids, 0))
        sample["name"] = image_path.name[: -len("_leftImg8bit.png")]
        return sample
