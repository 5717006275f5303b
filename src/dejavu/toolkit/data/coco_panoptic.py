"""COCO panoptic segmentation (panopticapi format: a json plus one RGB PNG per image).

Layout (as distributed by cocodataset.org, and as detectron2 expects it)::

    <root>/annotations/panoptic_{split}.json     images, annotations, categories
    <root>/annotations/panoptic_{split}/*.png    one PNG per annotation (its file_name)
    <root>/{split}/*.jpg                         the images (the json's images[].file_name)

with ``split`` ``train2017`` or ``val2017``. A PNG pixel's segment id is
``R + 256 G + 256**2 B`` (panopticapi's ``rgb2id``; 0 = VOID, unlabelled);
each annotation's ``segments_info`` gives every segment's ``id``,
``category_id`` and ``iscrowd``.

The loader turns this into the panoptic sample of :mod:`dejavu.toolkit.data`:

- ``seg``: the train id of the segment's category, 255 on VOID. Train ids
  number the json's categories in order of their (sparse) COCO ids, so the
  133 standard categories (ids 1..200) become 0..132 (80 things, then 53
  stuff); ``coco_category_ids[train_id]`` maps back (to write predictions
  in COCO's ids), :func:`train_ids_to_coco_ids` does it for a map.
- ``instance``: the segment id for the segments of thing categories (unique
  in the image, below ``2**24``), 0 for a crowd segment (``iscrowd = 1``:
  the category's crowd region), for stuff and for VOID.

``categories`` comes from the json: for the official files it is
:data:`COCO_PANOPTIC_CATEGORIES` (also the class-level ``class_names`` and
``thing_classes``, readable before loading); a COCO-format dataset with its
own category list gets that list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch

from dejavu._validation import check_choice
from dejavu.toolkit.data.base import DenseDataset, select_tasks
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import (
    IGNORE_INDEX,
    check_same_size,
    image_to_tensor,
    read_image,
    read_rgb_label,
    require_dir,
    require_file,
)
from dejavu.toolkit.data.transforms import Sample
from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = [
    "COCO_PANOPTIC_CATEGORIES",
    "CocoPanoptic",
    "rgb_to_segment_ids",
    "train_ids_to_coco_ids",
]

#: The 133 categories of COCO panoptic (``panoptic_coco_categories.json``):
#: ``(coco_id, name, isthing)`` in order of id, so the position is the train id.
# fmt: off
COCO_PANOPTIC_CATEGORIES: tuple[tuple[int, str, bool], ...] = tuple(
    (i, n, bool(t)) for i, n, t in (
        (1, "person", 1), (2, "bicycle", 1), (3, "car", 1), (4, "motorcycle", 1),
        (5, "airplane", 1), (6, "bus", 1), (7, "train", 1), (8, "truck", 1), (9, "boat", 1),
        (10, "traffic light", 1), (11, "fire hydrant", 1), (13, "stop sign", 1),
        (14, "parking meter", 1), (15, "bench", 1), (16, "bird", 1), (17, "cat", 1),
        (18, "dog", 1), (19, "horse", 1), (20, "sheep", 1), (21, "cow", 1), (22, "elephant", 1),
        (23, "bear", 1), (24, "zebra", 1), (25, "giraffe", 1), (27, "backpack", 1),
        (28, "umbrella", 1), (31, "handbag", 1), (32, "tie", 1), (33, "suitcase", 1),
        (34, "frisbee", 1), (35, "skis", 1), (36, "snowboard", 1), (37, "sports ball", 1),
        (38, "kite", 1), (39, "baseball bat", 1), (40, "baseball glove", 1),
        (41, "skateboard", 1), (42, "surfboard", 1), (43, "tennis racket", 1), (44, "bottle", 1),
        (46, "wine glass", 1), (47, "cup", 1), (48, "fork", 1), (49, "knife", 1),
        (50, "spoon", 1), (51, "bowl", 1), (52, "banana", 1), (53, "apple", 1),
        (54, "sandwich", 1), (55, "orange", 1), (56, "broccoli", 1), (57, "carrot", 1),
        (58, "hot dog", 1), (59, "pizza", 1), (60, "donut", 1), (61, "cake", 1),
        (62, "chair", 1), (63, "couch", 1), (64, "potted plant", 1), (65, "bed", 1),
        (67, "dining table", 1), (70, "toilet", 1), (72, "tv", 1), (73, "laptop", 1),
        (74, "mouse", 1), (75, "remote", 1), (76, "keyboard", 1), (77, "cell phone", 1),
        (78, "microwave", 1), (79, "oven", 1), (80, "toaster", 1), (81, "sink", 1),
        (82, "refrigerator", 1), (84, "book", 1), (85, "clock", 1), (86, "vase", 1),
        (87, "scissors", 1), (88, "teddy bear", 1), (89, "hair drier", 1), (90, "toothbrush", 1),
        (92, "banner", 0), (93, "blanket", 0), (95, "bridge", 0), (100, "cardboard", 0),
        (107, "counter", 0), (109, "curtain", 0), (112, "door-stuff", 0), (118, "floor-wood", 0),
        (119, "flower", 0), (122, "fruit", 0), (125, "gravel", 0), (128, "house", 0),
        (130, "light", 0), (133, "mirror-stuff", 0), (138, "net", 0), (141, "pillow", 0),
        (144, "platform", 0), (145, "playingfield", 0), (147, "railroad", 0), (148, "river", 0),
        (149, "road", 0), (151, "roof", 0), (154, "sand", 0), (155, "sea", 0), (156, "shelf", 0),
        (159, "snow", 0), (161, "stairs", 0), (166, "tent", 0), (168, "towel", 0),
        (171, "wall-brick", 0), (175, "wall-stone", 0), (176, "wall-tile", 0),
        (177, "wall-wood", 0), (178, "water-other", 0), (180, "window-blind", 0),
        (181, "window-other", 0), (184, "tree-merged", 0), (185, "fence-merged", 0),
        (186, "ceiling-merged", 0), (187, "sky-other-merged", 0), (188, "cabinet-merged", 0),
        (189, "table-merged", 0), (190, "floor-other-merged", 0), (191, "pavement-merged", 0),
        (192, "mountain-merged", 0), (193, "grass-merged", 0), (194, "dirt-merged", 0),
        (195, "paper-merged", 0), (196, "food-other-merged", 0),
        (197, "building-other-merged", 0), (198, "rock-merged", 0),
        (199, "wall-other-merged", 0), (200, "rug-merged", 0),
    )
)
# fmt: on

_SPLIT_ALIASES = {"train": "train2017", "val": "val2017"}
_LAYOUT = (
    "<root>/annotations/panoptic_{split}.json, <root>/annotations/panoptic_{split}/*.png "
    "and <root>/{split}/<image files>"
)
# Segment ids are three bytes: R + 256 G + 256**2 B.
_MAX_SEGMENT_ID = 256**3 - 1


def rgb_to_segment_ids(rgb: np.ndarray) -> np.ndarray:
    """panopticapi's ``rgb2id``: an ``H x W x 3`` uint8 PNG to ``H x W`` int64 segment ids.

    Example:
        >>> rgb_to_segment_ids(np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8)).tolist()
        [[197121, 0]]
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}")
    c = rgb.astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def train_ids_to_coco_ids(
    seg: torch.Tensor, coco_category_ids: Sequence[int], ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Map train ids back to COCO category ids (``ignore_index`` stays), e.g. to write predictions.

    Args:
        seg: integer tensor of train ids (any shape).
        coco_category_ids: ``coco_category_ids[train_id]`` is the COCO id
            (:attr:`CocoPanoptic.coco_category_ids`).
        ignore_index: the VOID value, kept as is.

    Raises:
        ValueError: for a train id outside ``0..len(coco_category_ids) - 1``.

    Example:
        >>> train_ids_to_coco_ids(torch.tensor([0, 80, 255]), CocoPanoptic.coco_category_ids)
        tensor([  1,  92, 255])
    """
    if seg.is_floating_point() or seg.dtype == torch.bool:
        raise ValueError(f"seg must be an integer tensor, got dtype {seg.dtype}")
    lut = torch.tensor(list(coco_category_ids), dtype=torch.long, device=seg.device)
    seg = seg.long()
    valid = seg != ignore_index
    bad = valid & ((seg < 0) | (seg >= lut.numel()))
    if bool(bad.any()):
        raise ValueError(
            f"train ids {torch.unique(seg[bad])[:10].tolist()} are outside "
            f"0..{lut.numel() - 1} (or {ignore_index} = VOID)"
        )
    out = torch.full_like(seg, ignore_index)
    out[valid] = lut[seg[valid]]
    return out


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a valid JSON file ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ConfigError(
            f"{path}: missing keys {missing}; a COCO panoptic file has 'images', "
            "'annotations' and 'categories'"
        )
    return data


def _parse_categories(raw: object, path: Path) -> list[tuple[int, str, bool]]:
    """``(coco_id, name, isthing)`` sorted by id, checked."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: 'categories' must be a non-empty list")
    cats = []
    for k, c in enumerate(raw):
        if (
            not isinstance(c, Mapping)
            or not _is_int(c.get("id"))
            or c["id"] < 1
            or not isinstance(c.get("name"), str)
            or c.get("isthing") not in (0, 1)
        ):
            raise ConfigError(
                f"{path}: categories[{k}] must have an int 'id' >= 1, a str 'name' and "
                f"'isthing' 0 or 1, got {c!r}"
            )
        cats.append((int(c["id"]), str(c["name"]), bool(c["isthing"])))
    cats.sort()
    for i, what in ((0, "ids"), (1, "names")):
        values = [c[i] for c in cats]
        dup = sorted({v for v in values if values.count(v) > 1}, key=str)
        if dup:
            raise ConfigError(f"{path}: category {what} must be unique, got duplicates {dup}")
    return cats


def _image_files(raw: object, path: Path) -> dict[object, str]:
    """``images[].id -> images[].file_name``, checked."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'images' must be a list")
    files: dict[object, str] = {}
    for k, im in enumerate(raw):
        if not isinstance(im, Mapping) or "id" not in im or "file_name" not in im:
            raise ConfigError(f"{path}: images[{k}] must have 'id' and 'file_name', got {im!r}")
        files[im["id"]] = str(im["file_name"])
    return files


class _Item:
    """One annotated image: its files and its segments (id -> train id, instance)."""

    __slots__ = ("image", "instance", "png", "segment_ids", "train_ids")

    def __init__(
        self,
        image: Path,
        png: Path,
        segment_ids: np.ndarray,
        train_ids: np.ndarray,
        instance: np.ndarray,
    ) -> None:
        self.image = image
        self.png = png
        self.segment_ids = segment_ids
        self.train_ids = train_ids
        self.instance = instance


@register_dataset
class CocoPanoptic(DenseDataset):
    """COCO panoptic: ``seg`` (133 train ids, 255 = VOID) and ``instance`` (see the module docs).

    Args:
        root: the COCO folder (holding ``annotations/`` and the image folders).
        split: ``"train2017"`` or ``"val2017"`` (``"train"``/``"val"`` are accepted).
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        tasks: subset of ``("seg", "instance")`` to return; None returns both.

    Attributes:
        coco_category_ids: the COCO id of each train id.
        categories: ``{"id": train_id, "name", "isthing"}`` per class
            (:attr:`DenseDataset.categories`).

    Raises:
        FileNotFoundError: a missing json, PNG folder, image folder, PNG or image.
        ValueError: a malformed json (naming the entry), and when loading a
            sample: a corrupt PNG, a PNG of another size than its image, or a
            PNG holding segment ids that its ``segments_info`` does not list.

    Example (not run as a doctest: it needs COCO on disk):
        >>> ds = CocoPanoptic("../shared/data/samples/coco_panoptic", "val")  # doctest: +SKIP
        >>> ds.num_classes, sum(c["isthing"] for c in ds.categories)  # doctest: +SKIP
        (133, 80)
    """

    name = "coco_panoptic"

    # Class attributes so that they can be read before loading (e.g. to size a model);
    # __init__ replaces them with the json's list when that differs.
    class_names = [n for _, n, _ in COCO_PANOPTIC_CATEGORIES]  # noqa: RUF012
    thing_classes = tuple(n for _, n, t in COCO_PANOPTIC_CATEGORIES if t)
    coco_category_ids: tuple[int, ...] = tuple(i for i, _, _ in COCO_PANOPTIC_CATEGORIES)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train2017",
        transform: Callable[[Sample], Sample] | None = None,
        *,
        tasks: Sequence[str] | None = None,
    ) -> None:
        super().__init__(transform)
        split = _SPLIT_ALIASES.get(split, split)
        self.split = check_choice(split, "split", ("train2017", "val2017"))
        self.tasks = select_tasks(tasks, ("seg", "instance"))
        layout = _LAYOUT.format(split=split)
        self.root = require_dir(root, layout)
        self.json_path = require_file(self.root / "annotations" / f"panoptic_{split}.json", layout)
        png_dir = require_dir(self.root / "annotations" / f"panoptic_{split}", layout)
        image_dir = require_dir(self.root / split, layout)
        data = _read_json(self.json_path)

        cats = _parse_categories(data["categories"], self.json_path)
        if tuple(cats) != COCO_PANOPTIC_CATEGORIES:
            self.class_names = [n for _, n, _ in cats]
            self.thing_classes = tuple(n for _, n, t in cats if t)
            self.coco_category_ids = tuple(i for i, _, _ in cats)
        train_of = {cid: k for k, cid in enumerate(self.coco_category_ids)}
        is_thing = {cid: t for cid, _, t in cats}

        images = _image_files(data["images"], self.json_path)
        anns = data["annotations"]
        if not isinstance(anns, list):
            raise ConfigError(f"{self.json_path}: 'annotations' must be a list")
        self.items: list[_Item] = []
        for k, ann in enumerate(anns):
            where = f"{self.json_path}: annotations[{k}]"
            if not isinstance(ann, Mapping) or not all(
                key in ann for key in ("image_id", "file_name", "segments_info")
            ):
                raise ConfigError(f"{where} must have 'image_id', 'file_name' and 'segments_info'")
            if ann["image_id"] not in images:
                raise ConfigError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
            png = png_dir / str(ann["file_name"])
            image = image_dir / images[ann["image_id"]]
            for p in (png, image):
                if not p.is_file():
                    raise UserPathError(f"{where}: file not found: {p} (expected layout: {layout})")
            self.items.append(
                self._segments(ann["segments_info"], train_of, is_thing, where, image, png)
            )
        if not self.items:
            raise ConfigError(f"{self.json_path}: 'annotations' is empty")
        self.items.sort(key=lambda it: it.image.name)

    @staticmethod
    def _segments(
        info: object,
        train_of: Mapping[int, int],
        is_thing: Mapping[int, bool],
        where: str,
        image: Path,
        png: Path,
    ) -> _Item:
        if not isinstance(info, list):
            raise ConfigError(f"{where}: 'segments_info' must be a list")
        ids, trains, insts = [], [], []
        for j, s in enumerate(info):
            sid = s.get("id") if isinstance(s, Mapping) else None
            cid = s.get("category_id") if isinstance(s, Mapping) else None
            if not _is_int(sid) or not 1 <= sid <= _MAX_SEGMENT_ID:
                raise ConfigError(
                    f"{where}: segments_info[{j}] needs an int 'id' in 1..{_MAX_SEGMENT_ID}, "
                    f"got {s!r}"
                )
            if not _is_int(cid) or cid not in train_of:
                raise ConfigError(
                    f"{where}: segments_info[{j}] has category_id {cid!r}, which is not one "
                    f"of the {len(train_of)} category ids of 'categories'"
                )
            ids.append(sid)
            trains.append(train_of[cid])
            crowd = bool(s.get("iscrowd", 0))
            # A crowd segment is its category's crowd region: instance 0 (see the data contract).
            insts.append(sid if is_thing[cid] and not crowd else 0)
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: segment ids must be unique within an image")
        order = np.argsort(np.array(ids, np.int64), kind="stable")
        return _Item(
            image,
            png,
            np.array(ids, np.int64)[order],
            np.array(trains, np.int64)[order],
            np.array(insts, np.int64)[order],
        )

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        item = self.items[index]
        image = read_image(item.image)
        rgb = read_rgb_label(item.png)
        check_same_size(image, rgb, item.png, item.image)
        ids = rgb_to_segment_ids(rgb)
        uniq, inverse = np.unique(ids, return_inverse=True)
        labelled = uniq[uniq != 0]
        n = len(item.segment_ids)
        pos = np.searchsorted(item.segment_ids, labelled).clip(max=max(n - 1, 0))
        known = item.segment_ids[pos] == labelled if n else np.zeros(len(labelled), bool)
        if not known.all():
            bad = labelled[~known][:10].tolist()
            raise ConfigError(
                f"{item.png}: segment ids {bad} are not in its annotation's segments_info in "
                f"{self.json_path} (id = R + 256 G + 256**2 B; 0 = VOID)"
            )
        seg_lut = np.full(len(uniq), IGNORE_INDEX, np.int64)
        inst_lut = np.zeros(len(uniq), np.int64)
        seg_lut[uniq != 0] = item.train_ids[pos]
        inst_lut[uniq != 0] = item.instance[pos]
        inverse = inverse.reshape(ids.shape)
        sample: Sample = {"image": image_to_tensor(image)}
        if "seg" in self.tasks:
            sample["seg"] = torch.from_numpy(seg_lut[inverse])
        if "instance" in self.tasks:
            sample["instance"] = torch.from_numpy(inst_lut[inverse])
        sample["name"] = item.image.stem
        return sample
