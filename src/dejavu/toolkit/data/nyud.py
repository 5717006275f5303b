"""NYUD-v2 for multi-task learning (40-class seg, depth, normals), in two on-disk layouts.

**NYUD_MT** (:class:`NYUDv2`), the layout of the multi-task codebases (ASTMT,
Multi-Task-Learning-PyTorch, MTI-Net, ATRC)::

    root/images/<id>.jpg            RGB (.png also accepted)
    root/segmentation/<id>.png      8-bit, 0 = unlabelled, 1..40 = classes
    root/depth/<id>.npy             H x W float metres (or <id>.png, 16-bit / depth_png_scale)
    root/normals/<id>.npy           H x W x 3 float in [-1, 1] (or <id>.png, 8-bit: 2 v / 255 - 1)
    root/gt_sets/{train,val}.txt    one <id> per line

Segmentation follows those codebases: 0 becomes 255 (ignore) and k becomes
k - 1, giving the 40 classes of :data:`NYU40_CLASSES`. Depth values that are
0 or not finite are invalid (0). Normal vectors shorter than 0.5 (zeros,
the 8-bit encoding of (127, 127, 127)) are invalid (all-zero), the rest are
renormalised to unit length.

**Multi-task RefineNet** (:class:`NYUDRefineNet`), the example layout of
DrSleep/multi-task-refinenet (one folder, one file per target)::

    root/<id>.png                   RGB
    root/segm_gt_<id>.png           8-bit, 0..39 = classes, 255 = ignore
    root/depth_gt_<id>.png          16-bit, metres = value / 5000, 0 = invalid
    root/norm_gt_<id>.png           8-bit RGB, x = R/127.5 - 1, y = G/127.5 - 1,
                                    z = 1 - B/127.5, (127, 127, 127) = invalid
    root/<split>.txt                optional, one <id> per line

A frame without ``norm_gt_<id>.png`` gets all-zero (invalid) normals, so all
samples carry the same keys. :func:`convert_refinenet_to_nyud_mt` writes
such a folder in the NYUD_MT layout.

Normals are returned in the frame the files store them in. On the real
frames (``000433``), the floor's decoded normal is about (0, -0.18, -0.98)
and the wall facing the camera about (0.47, -0.8, 0.12): in that encoding the
second component points away from the viewer and the third points down
(the x component points right, so a horizontal flip still negates x).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dejavu.toolkit.data.base import DenseDataset, select_tasks
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import (
    IGNORE_INDEX,
    check_label_values,
    check_same_size,
    image_to_tensor,
    read_array,
    read_image,
    read_label,
    read_uint16,
    require_dir,
    require_file,
)
from dejavu.toolkit.data.transforms import Sample
from dejavu.toolkit.errors import UserPathError

__all__ = [
    "NYU40_CLASSES",
    "NYUDRefineNet",
    "NYUDv2",
    "convert_refinenet_to_nyud_mt",
    "decode_refinenet_normals",
    "encode_refinenet_normals",
]

NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip

_MT_LAYOUT = (
    "<root>/images/<id>.jpg, <root>/segmentation/<id>.png, <root>/depth/<id>.npy, "
    "<root>/normals/<id>.npy and <root>/gt_sets/{split}.txt"
)
_RN_LAYOUT = (
    "<root>/<id>.png, <root>/segm_gt_<id>.png, <root>/depth_gt_<id>.png, "
    "<root>/norm_gt_<id>.png (optional) and optionally <root>/{split}.txt"
)
_MT_DIRS = {"seg": "segmentation", "depth": "depth", "normals": "normals"}


def _clean_normals(n: np.ndarray) -> np.ndarray:
    """Zero vectors shorter than 0.5 (invalid); renormalise the rest to unit length."""
    n = np.nan_to_num(n.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = length > 0.5
    return np.where(valid, n / np.where(valid, length, 1.0), 0.0).astype(np.float32)


def decode_refinenet_normals(rgb: np.ndarray) -> np.ndarray:
    """Decode multi-task-refinenet's 8-bit normals to ``H x W x 3`` unit vectors.

    ``x = R / 127.5 - 1``, ``y = G / 127.5 - 1``, ``z = 1 - B / 127.5``;
    ``(127, 127, 127)`` (and any vector shorter than 0.5) is invalid and
    becomes ``(0, 0, 0)``; valid vectors are renormalised.

    Example:
        >>> n = decode_refinenet_normals(np.array([[[255, 127, 127], [127, 127, 127]]], np.uint8))
        >>> n.round(2).tolist()
        [[[1.0, -0.0, 0.0], [0.0, 0.0, 0.0]]]
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be H x W x 3, got shape {rgb.shape}")
    v = rgb.astype(np.float32)
    n = np.stack([v[..., 0] / 127.5 - 1, v[..., 1] / 127.5 - 1, 1 - v[..., 2] / 127.5], axis=-1)
    invalid = np.all(rgb == 127, axis=-1, keepdims=True)
    return np.where(invalid, 0.0, _clean_normals(n)).astype(np.float32)


def encode_refinenet_normals(normals: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_refinenet_normals` (all-zero vectors -> (127, 127, 127)).

    Example:
        >>> encode_refinenet_normals(np.array([[[0.0, 0.0, 1.0]]])).tolist()
        [[[128, 128, 0]]]
    """
    n = np.asarray(normals, dtype=np.float64)
    rgb = np.stack([(n[..., 0] + 1) * 127.5, (n[..., 1] + 1) * 127.5, (1 - n[..., 2]) * 127.5], -1)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    rgb[np.all(n == 0, axis=-1)] = 127
    return rgb


def _read_ids(path: Path, layout: str) -> list[str]:
    require_file(path, layout)
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} lists no samples")
    return ids


def _depth_tensor(depth: np.ndarray) -> torch.Tensor:
    d = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    d[d < 0] = 0.0
    return torch.from_numpy(d).unsqueeze(0)


def _normals_tensor(normals: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(normals)).permute(2, 0, 1).contiguous()


@register_dataset
class NYUDv2(DenseDataset):
    """NYUD-v2 in the NYUD_MT layout (795 train / 654 val frames); see module docs.

    Args:
        root: the ``NYUD_MT`` folder.
        split: ``"train"`` or ``"val"`` (any ``gt_sets/<split>.txt`` works).
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        tasks: subset of ``("seg", "depth", "normals")``; None takes every task
            whose folder exists.
        depth_png_scale: divisor turning 16-bit depth PNGs into metres (used
            only when a ``depth/<id>.png`` is found instead of ``.npy``).

    Example (not run as a doctest: it needs NYUD_MT on disk):
        >>> ds = NYUDv2("data/NYUD_MT", "val")  # doctest: +SKIP
        >>> sorted(k for k in ds[0] if k != "name")  # doctest: +SKIP
        ['depth', 'image', 'normals', 'seg']
    """

    name = "nyudv2"

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(NYU40_CLASSES)  # noqa: RUF012

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
        *,
        tasks: Sequence[str] | None = None,
        depth_png_scale: float = 1000.0,
    ) -> None:
        super().__init__(transform)
        layout = _MT_LAYOUT.format(split=split)
        self.root = require_dir(root, layout)
        require_dir(self.root / "images", layout)
        if not split or "/" in split or "\\" in split:
            raise ValueError(f"split must be a plain name such as 'train' or 'val', got {split!r}")
        self.split = split
        if depth_png_scale <= 0:
            raise ValueError(f"depth_png_scale must be positive, got {depth_png_scale!r}")
        self.depth_png_scale = float(depth_png_scale)
        present = tuple(t for t, d in _MT_DIRS.items() if (self.root / d).is_dir())
        if tasks is None:
            if not present:
                raise UserPathError(
                    f"{self.root} has none of segmentation/, depth/, normals/ "
                    f"(expected layout: {layout})"
                )
            self.tasks = present
        else:
            self.tasks = select_tasks(tasks, tuple(_MT_DIRS))
            for t in self.tasks:
                require_dir(self.root / _MT_DIRS[t], layout)
        self.ids = _read_ids(self.root / "gt_sets" / f"{split}.txt", layout)
        self.items = [self._files(i, layout) for i in self.ids]

    def _files(self, sample_id: str, layout: str) -> dict[str, Path]:
        def first(folder: str, exts: Sequence[str]) -> Path:
            for ext in exts:
                p = self.root / folder / f"{sample_id}{ext}"
                if p.is_file():
                    return p
            tried = ", ".join(str(self.root / folder / f"{sample_id}{e}") for e in exts)
            raise UserPathError(f"none of {tried} exists (expected layout: {layout})")

        files = {"image": first("images", (".jpg", ".png"))}
        if "seg" in self.tasks:
            files["seg"] = first("segmentation", (".png",))
        if "depth" in self.tasks:
            files["depth"] = first("depth", (".npy", ".png"))
        if "normals" in self.tasks:
            files["normals"] = first("normals", (".npy", ".png"))
        return files

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        files = self.items[index]
        image = read_image(files["image"])
        sample: Sample = {"image": image_to_tensor(image)}
        if "seg" in self.tasks:
            label = read_label(files["seg"])
            check_same_size(image, label, files["seg"], files["image"])
            check_label_values(label, self.num_classes + 1, files["seg"], ignore_index=None)
            seg = label.astype(np.int64) - 1
            seg[label == 0] = IGNORE_INDEX
            sample["seg"] = torch.from_numpy(seg)
        if "depth" in self.tasks:
            path = files["depth"]
            if path.suffix == ".npy":
                depth = read_array(path, ndim=(2, 3))
                if depth.ndim == 3:
                    if depth.shape[-1] != 1:
                        raise ValueError(f"{path}: expected H x W or H x W x 1, got {depth.shape}")
                    depth = depth[..., 0]
            else:
                depth = read_uint16(path).astype(np.float32) / self.depth_png_scale
            check_same_size(image, depth, path, files["image"])
            sample["depth"] = _depth_tensor(depth)
        if "normals" in self.tasks:
            path = files["normals"]
            if path.suffix == ".npy":
                normals = read_array(path, ndim=(3,))
            else:
                normals = read_image(path).astype(np.float32) * (2 / 255) - 1
            if normals.shape[-1] != 3:
                raise ValueError(f"{path}: expected H x W x 3 normals, got shape {normals.shape}")
            check_same_size(image, normals, path, files["image"])
            sample["normals"] = _normals_tensor(_clean_normals(normals))
        sample["name"] = self.ids[index]
        return sample


@register_dataset
class NYUDRefineNet(DenseDataset):
    """NYUD-v2 frames in the multi-task-refinenet layout; see module docs.

    Args:
        root: the folder holding ``<id>.png`` and its ``*_gt_<id>.png`` files.
        split: None takes every ``<id>.png`` that has a ``segm_gt_<id>.png``;
            a name reads the ids from ``<root>/<split>.txt``.
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        tasks: subset of ``("seg", "depth", "normals")``; None takes all three.

    Example (not run as a doctest: it needs the RefineNet files on disk):
        >>> ds = NYUDRefineNet("../shared/data/samples/nyud_refinenet")  # doctest: +SKIP
        >>> ds[0]["depth"].shape  # doctest: +SKIP
        torch.Size([1, 480, 640])
    """

    name = "nyudv2_refinenet"
    needs_split = False

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(NYU40_CLASSES)  # noqa: RUF012

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        *,
        tasks: Sequence[str] | None = None,
    ) -> None:
        super().__init__(transform)
        layout = _RN_LAYOUT.format(split=split or "<split>")
        self.root = require_dir(root, layout)
        self.split = split
        self.tasks = select_tasks(tasks, ("seg", "depth", "normals"))
        if split is None:
            self.ids = sorted(
                p.stem
                for p in self.root.glob("*.png")
                if not p.name.startswith(("segm_gt_", "depth_gt_", "norm_gt_"))
                and (self.root / f"segm_gt_{p.name}").is_file()
            )
            if not self.ids:
                raise UserPathError(
                    f"no <id>.png with a segm_gt_<id>.png in {self.root} "
                    f"(expected layout: {layout})"
                )
        else:
            self.ids = _read_ids(self.root / f"{split}.txt", layout)
        for sample_id in self.ids:
            needed = [f"{sample_id}.png"]
            needed += [f"segm_gt_{sample_id}.png"] if "seg" in self.tasks else []
            needed += [f"depth_gt_{sample_id}.png"] if "depth" in self.tasks else []
            for name in needed:
                require_file(self.root / name, layout)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        sample_id = self.ids[index]
        image_path = self.root / f"{sample_id}.png"
        image = read_image(image_path)
        sample: Sample = {"image": image_to_tensor(image)}
        if "seg" in self.tasks:
            path = self.root / f"segm_gt_{sample_id}.png"
            label = read_label(path)
            check_same_size(image, label, path, image_path)
            check_label_values(label, self.num_classes, path)
            sample["seg"] = torch.from_numpy(label.astype(np.int64))
        if "depth" in self.tasks:
            path = self.root / f"depth_gt_{sample_id}.png"
            depth = read_uint16(path).astype(np.float32) / 5000.0
            check_same_size(image, depth, path, image_path)
            sample["depth"] = _depth_tensor(depth)
        if "normals" in self.tasks:
            path = self.root / f"norm_gt_{sample_id}.png"
            if path.is_file():
                normals = decode_refinenet_normals(read_image(path))
                check_same_size(image, normals, path, image_path)
            else:
                normals = np.zeros((*image.shape[:2], 3), np.float32)
            sample["normals"] = _normals_tensor(normals)
        sample["name"] = sample_id
        return sample


def convert_refinenet_to_nyud_mt(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    split: str = "val",
    ids: Sequence[str] | None = None,
) -> Path:
    """Write refinenet-layout frames into the NYUD_MT layout read by :class:`NYUDv2`.

    Images are written losslessly as ``images/<id>.png``; segmentation is
    shifted to the NYUD_MT convention (k -> k + 1, 255 -> 0); depth (metres)
    and normals (unit vectors, zeros where invalid, in the source frame) as
    float32 ``.npy``; the ids go to ``gt_sets/<split>.txt`` (replaced if it
    exists). Reading the result with
    :class:`NYUDv2` gives the same tensors as :class:`NYUDRefineNet` on ``src``.

    Returns:
        ``dst`` as a :class:`Path`.

    Example (not run as a doctest: it needs the RefineNet files on disk):
        >>> convert_refinenet_to_nyud_mt("refinenet_frames", "NYUD_MT", "val")  # doctest: +SKIP
    """
    source = NYUDRefineNet(src)
    chosen = list(source.ids if ids is None else ids)
    index = {sid: i for i, sid in enumerate(source.ids)}
    out = Path(dst)
    for folder in ("images", "segmentation", "depth", "normals", "gt_sets"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for sid in chosen:
        if sid not in index:
            raise ValueError(f"id {sid!r} is not in {src}; available: {source.ids}")
        raw = source.load(index[sid])
        rgb = (raw["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(out / "images" / f"{sid}.png")
        seg = raw["seg"].numpy()
        Image.fromarray(np.where(seg == IGNORE_INDEX, 0, seg + 1).astype(np.uint8)).save(
            out / "segmentation" / f"{sid}.png"
        )
        np.save(out / "depth" / f"{sid}.npy", raw["depth"][0].numpy().astype(np.float32))
        np.save(out / "normals" / f"{sid}.npy", raw["normals"].permute(1, 2, 0).numpy())
    (out / "gt_sets" / f"{split}.txt").write_text("".join(f"{sid}\n" for sid in chosen))
    return out
