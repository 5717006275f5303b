"""ADE20K scene parsing (ADEChallengeData2016, 150 classes, reduce_zero_label)."""

from __future__ import annotations

import csv
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

__all__ = ["ADE20K", "ADE20K_CLASSES", "read_object_info", "reduce_zero_label"]

# The 150 names as the benchmark tables (and mmsegmentation) print them; objectInfo150.csv
# joins words and synonyms with ';' so a readable name cannot be recovered from it alone.
# fmt: off
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
# fmt: on

_LAYOUT = (
    "<root>/images/{split}/*.jpg and <root>/annotations/{split}/*.png "
    "(root = ADEChallengeData2016 or its parent)"
)
_SPLIT_ALIASES = {"train": "training", "val": "validation"}


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K's label shift: 0 ("other") -> 255, k -> k - 1 (so classes are 0..149).

    Example:
        >>> reduce_zero_label(np.array([0, 1, 150])).tolist()
        [255, 0, 149]
    """
    out = label.astype(np.int64) - 1
    out[label == 0] = IGNORE_INDEX
    return out


def read_object_info(path: str | os.PathLike[str]) -> list[str]:
    """Read ``objectInfo150.csv``: the ``Name`` column (';'-joined synonyms) in ``Idx`` order.

    Raises:
        ValueError: naming the file if a column is missing or ``Idx`` is not 1..N.
    """
    p = Path(path)
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"Idx", "Name"} <= set(rows[0]):
        raise ValueError(f"{p}: expected a CSV with columns Idx and Name")
    try:
        idx = [int(r["Idx"]) for r in rows]
    except ValueError as e:
        raise ValueError(f"{p}: non-integer Idx ({e})") from e
    if idx != list(range(1, len(rows) + 1)):
        raise ValueError(f"{p}: Idx must run 1..{len(rows)} in order")
    return [r["Name"] for r in rows]


@register_dataset
class ADE20K(DenseDataset):
    """ADE20K SceneParsing (ADEChallengeData2016): 150 classes.

    Annotations store 0 for "other" and 1..150 for the classes; labels are
    shifted with :func:`reduce_zero_label` (0 -> 255, k -> k - 1).
    ``objectInfo150.csv``, when present, is read and checked against
    :data:`ADE20K_CLASSES` (a different label set raises); its full synonym
    strings are kept in ``synonyms``.

    Args:
        root: ``ADEChallengeData2016`` or the folder holding it.
        split: ``"training"`` or ``"validation"`` (``"train"``/``"val"`` are accepted).
        transform: joint transform on the ``[0, 1]`` sample; None normalises.

    Example (not run as a doctest: it needs ADE20K on disk):
        >>> ds = ADE20K("../shared/data/samples/ade20k", "validation")  # doctest: +SKIP
        >>> ds.num_classes  # doctest: +SKIP
        150
    """

    name = "ade20k"

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(ADE20K_CLASSES)  # noqa: RUF012
    tasks = ("seg",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "training",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        super().__init__(transform)
        split = _SPLIT_ALIASES.get(split, split)
        self.split = check_choice(split, "split", ("training", "validation"))
        layout = _LAYOUT.format(split=split)
        root_path = require_dir(root, layout)
        if (root_path / "ADEChallengeData2016").is_dir():
            root_path = root_path / "ADEChallengeData2016"
        self.root = root_path
        image_dir = require_dir(root_path / "images" / split, layout)
        label_dir = require_dir(root_path / "annotations" / split, layout)
        self.synonyms: list[str] | None = None
        info = root_path / "objectInfo150.csv"
        if info.is_file():
            names = read_object_info(info)
            first = [n.split(";")[0] for n in names]
            expected = [n.split()[0] for n in ADE20K_CLASSES]
            if first != expected:
                raise ValueError(
                    f"{info}: class list differs from the 150 ADE20K challenge classes "
                    f"(got {len(names)} names starting {first[:5]})"
                )
            self.synonyms = names
        self.items: list[tuple[Path, Path]] = []
        for image in sorted(image_dir.glob("*.jpg")):
            label = label_dir / (image.stem + ".png")
            if not label.is_file():
                raise UserPathError(f"annotation not found for {image}: {label}")
            self.items.append((image, label))
        if not self.items:
            raise UserPathError(f"no .jpg images in {image_dir} (expected layout: {layout})")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        image_path, label_path = self.items[index]
        image = read_image(image_path)
        label = read_label(label_path)
        check_same_size(image, label, label_path, image_path)
        # Raw annotations hold 0..150 (0 = other); 255 never appears in them.
        check_label_values(label, self.num_classes + 1, label_path, ignore_index=None)
        return {
            "image": image_to_tensor(image),
            "seg": torch.from_numpy(reduce_zero_label(label)),
            "name": image_path.stem,
        }
