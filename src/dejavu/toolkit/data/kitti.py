"""KITTI depth: raw KITTI frames with the annotated depth maps, read through split files.

The layout KITTI distributes (the raw data and the ``data_depth_annotated``
archive of the depth benchmark), as the depth codebases (BTS, AdaBins,
Monodepth2) use it::

    root/raw/<date>/<date>_drive_<id>_sync/image_02/data/<frame>.png     left colour camera
    root/raw/<date>/<date>_drive_<id>_sync/image_03/data/<frame>.png     right colour camera
    root/data_depth_annotated/{train,val}/<date>_drive_<id>_sync/
        proj_depth/groundtruth/image_02/<frame>.png                      (and image_03)
    root/splits/<split>.txt                                              the frames of a split

``<frame>`` is the 10-digit frame number (``0000000005``). The annotated depth
is a 16-bit PNG: depth in metres = value / 256, 0 = no depth (invalid). A
drive's depth may lie under ``train/`` or ``val/`` (the depth benchmark's own
split, unrelated to Eigen's) or directly under ``data_depth_annotated/`` (the
merged folder BTS's instructions make); all three are searched. ``raw_dir``
and ``depth_dir`` name other folders (``raw_dir: .`` when the ``<date>``
folders are in ``root`` itself).

**Split files.** ``split`` names ``root/splits/<split>.txt``, or is a path
to a ``.txt`` file (relative to ``root`` or absolute). One frame per line,
blank lines and lines starting with ``#`` ignored, in either format:

- Eigen / Monodepth2: ``<date>/<drive> <frame> [l|r]``, e.g.
  ``2011_09_26/2011_09_26_drive_0002_sync 0000000069 l`` (the frame number
  with or without leading zeros; ``l`` = ``image_02``, the default, ``r`` =
  ``image_03``).
- BTS / AdaBins: ``<image path> <depth path | None> [<focal>]``, e.g.
  ``2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000108.png
  2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000108.png
  721.5377``; the image path is relative to the raw folder, the depth path to
  the depth folder (or its ``train/`` / ``val/``). A ``None`` depth (frames
  without annotated depth, as in BTS's Eigen test file) leaves the frame out;
  the focal length is kept in :attr:`KittiDepth.focals` and not used.

A line in neither format is an error naming the file and the line number.
A frame whose image is missing is an error naming the file; one whose
annotated depth is missing too, unless ``missing_depth="skip"`` (the first
and last 5 frames of every drive have no annotated depth, so the full Eigen
train list needs it; the ``*_with_gt`` lists of BTS do not). Every file is
checked when the dataset is built, not when a sample is loaded.

Samples carry ``image`` and ``depth`` (``1 x H x W`` metres, 0 = invalid;
also 0 where the depth is outside ``(min_depth, max_depth)``); the frames
are full size (about 375 x 1242, a little different per recording day).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu._validation import check_choice, check_in_range
from dejavu.toolkit.data.base import DenseDataset, select_tasks
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import (
    check_same_size,
    image_to_tensor,
    read_image,
    read_uint16,
    require_dir,
    require_file,
)
from dejavu.toolkit.data.transforms import Sample
from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = ["KITTI_DEPTH_SCALE", "KittiDepth", "KittiFrame", "read_kitti_split"]

KITTI_DEPTH_SCALE = 256.0
"""The annotated depth PNGs store ``metres * 256``."""

_LAYOUT = (
    "<root>/<raw_dir>/<date>/<drive>/image_02/data/<frame>.png, "
    "<root>/<depth_dir>/{train,val}/<drive>/proj_depth/groundtruth/image_02/<frame>.png "
    "and <root>/splits/<split>.txt"
)
_FORMATS = (
    "expected '<date>/<drive> <frame> [l|r]' (Eigen / Monodepth2 split) or "
    "'<image path> <depth path|None> [<focal>]' (BTS split)"
)
_DRIVE = re.compile(r"^(\d{4}_\d{2}_\d{2})_drive_\d{4}_sync$")
# <date>/<drive>/image_0X/data/<frame>.<ext>, as the BTS lists name the raw images.
_IMAGE_PATH = re.compile(
    r"^(?:.*/)?(\d{4}_\d{2}_\d{2})/(\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)/"
    r"(image_0[23])/data/(\d+)\.(png|jpg|jpeg)$"
)
_SIDES = {"l": "image_02", "r": "image_03"}


@dataclass(frozen=True)
class KittiFrame:
    """One line of a split file: which frame of which drive and camera, and its files.

    Attributes:
        date: the recording day, ``2011_09_26``.
        drive: ``2011_09_26_drive_0002_sync``.
        camera: ``image_02`` (left) or ``image_03`` (right).
        frame: the 10-digit frame number.
        image: the image's path relative to the raw folder.
        depth: the depth map's path relative to the depth folder (or its
            ``train/`` / ``val/``); ``None``: the line says it has none.
        focal: the focal length a BTS line gives, else ``None``.
        line: the line number in the split file (from 1).
    """

    date: str
    drive: str
    camera: str
    frame: str
    image: str
    depth: str | None
    focal: float | None
    line: int

    @property
    def name(self) -> str:
        """The sample id: ``<drive>_<camera>_<frame>``."""
        return f"{self.drive}_{self.camera}_{self.frame}"


def _depth_path(drive: str, camera: str, frame: str) -> str:
    return f"{drive}/proj_depth/groundtruth/{camera}/{frame}.png"


def _parse_eigen(fields: list[str], where: str, lineno: int) -> KittiFrame:
    folder = fields[0].strip("/")
    parts = folder.split("/")
    match = _DRIVE.match(parts[-1]) if len(parts) == 2 else None
    if match is None or match.group(1) != parts[0]:
        raise ConfigError(
            f"{where}: the folder {fields[0]!r} is not '<date>/<date>_drive_<id>_sync' ({_FORMATS})"
        )
    if not fields[1].isdigit():
        raise ConfigError(f"{where}: the frame {fields[1]!r} is not a number ({_FORMATS})")
    side = fields[2] if len(fields) == 3 else "l"
    if side not in _SIDES:
        raise ConfigError(f"{where}: the side {side!r} must be 'l' or 'r' ({_FORMATS})")
    date, drive, camera = parts[0], parts[1], _SIDES[side]
    frame = f"{int(fields[1]):010d}"
    return KittiFrame(
        date=date,
        drive=drive,
        camera=camera,
        frame=frame,
        image=f"{date}/{drive}/{camera}/data/{frame}.png",
        depth=_depth_path(drive, camera, frame),
        focal=None,
        line=lineno,
    )


def _parse_bts(fields: list[str], where: str, lineno: int) -> KittiFrame:
    match = _IMAGE_PATH.match(fields[0])
    if match is None:
        raise ConfigError(
            f"{where}: the image path {fields[0]!r} is not "
            f"'<date>/<drive>/image_0{{2,3}}/data/<frame>.png' ({_FORMATS})"
        )
    date, drive, camera, frame = match.group(1, 2, 3, 4)
    depth = None if fields[1] == "None" else fields[1]
    if depth is not None and not depth.lower().endswith(".png"):
        raise ConfigError(
            f"{where}: the depth path {fields[1]!r} is neither a .png file nor None ({_FORMATS})"
        )
    focal = None
    if len(fields) == 3:
        try:
            focal = float(fields[2])
        except ValueError:
            raise ConfigError(
                f"{where}: the focal length {fields[2]!r} is not a number ({_FORMATS})"
            ) from None
    return KittiFrame(date, drive, camera, frame, fields[0], depth, focal, lineno)


def read_kitti_split(path: str | os.PathLike[str]) -> list[KittiFrame]:
    """Read a KITTI split file (Eigen / Monodepth2 or BTS lines; see the module docs).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: naming the file and line number of a malformed line, or
            when the file lists no frame.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "eigen.txt"
        >>> _ = f.write_text("2011_09_26/2011_09_26_drive_0002_sync 69 r\\n")
        >>> frame = read_kitti_split(f)[0]
        >>> frame.image, frame.depth
        ('2011_09_26/2011_09_26_drive_0002_sync/image_03/data/0000000069.png', \
'2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_03/0000000069.png')
    """
    p = require_file(path, _LAYOUT)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the split file ({e})") from e
    frames: list[KittiFrame] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{p}:{lineno}"
        if len(fields) not in (2, 3):
            raise ConfigError(f"{where}: {len(fields)} fields in {line!r}; {_FORMATS}")
        if fields[0].lower().endswith((".png", ".jpg", ".jpeg")):
            frames.append(_parse_bts(fields, where, lineno))
        else:
            frames.append(_parse_eigen(fields, where, lineno))
    if not frames:
        raise ConfigError(f"{p} lists no frames ({_FORMATS})")
    return frames


def _split_file(root: Path, split: str) -> Path:
    if split.endswith(".txt"):
        p = Path(split)
        return p if p.is_absolute() else root / p
    if not split or "/" in split or "\\" in split:
        raise ConfigError(
            f"split must be a name (<root>/splits/<name>.txt) or a .txt file, got {split!r}"
        )
    return root / "splits" / f"{split}.txt"


@register_dataset
class KittiDepth(DenseDataset):
    """KITTI raw frames with annotated depth, the frames a split file lists; see the module docs.

    Args:
        root: the folder holding ``raw/``, ``data_depth_annotated/`` and ``splits/``.
        split: a name (``<root>/splits/<split>.txt``) or a ``.txt`` path
            (relative to ``root`` or absolute).
        transform: joint transform on the ``[0, 1]`` sample; None normalises.
        tasks: ``("depth",)`` or None (the only target).
        raw_dir: the folder of the ``<date>`` folders, relative to ``root``
            (or absolute); ``"."`` when they are in ``root``.
        depth_dir: the annotated-depth folder, relative to ``root`` (or absolute).
        min_depth: depths ``<= min_depth`` (metres) are invalid (0).
        max_depth: depths ``>= max_depth`` are invalid (0); None: no limit.
        missing_depth: ``"error"`` (default) or ``"skip"``: what to do with a
            frame whose annotated depth file is not there.

    Attributes:
        frames: the :class:`KittiFrame` of each sample.
        skipped: the frames left out (``None`` depth lines, and missing depth
            with ``missing_depth="skip"``).
        focals: the focal length of each sample (``None`` for Eigen lines).

    Example (not run as a doctest: it needs KITTI on disk):
        >>> ds = KittiDepth("data/kitti", "eigen_test_files_with_gt")  # doctest: +SKIP
        >>> ds[0]["depth"].shape  # doctest: +SKIP
        torch.Size([1, 375, 1242])
    """

    name = "kitti_depth"

    # No semantic classes: a depth-only dataset.
    class_names: list[str] = []  # noqa: RUF012
    tasks: tuple[str, ...] = ("depth",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
        *,
        tasks: Sequence[str] | None = None,
        raw_dir: str = "raw",
        depth_dir: str = "data_depth_annotated",
        min_depth: float = 1e-3,
        max_depth: float | None = None,
        missing_depth: str = "error",
    ) -> None:
        super().__init__(transform)
        self.root = require_dir(root, _LAYOUT)
        self.tasks = select_tasks(tasks, ("depth",))
        if not isinstance(split, str):
            raise ConfigError(f"split must be a name or a .txt path, got {split!r}")
        self.split = split
        self.min_depth = check_in_range(min_depth, "min_depth", 0.0, float("inf"))
        self.max_depth = (
            None
            if max_depth is None
            else check_in_range(
                max_depth, "max_depth", self.min_depth, float("inf"), low_inclusive=False
            )
        )
        self.missing_depth = check_choice(missing_depth, "missing_depth", ("error", "skip"))
        self.raw_root = require_dir(self.root / raw_dir, _LAYOUT)
        self.depth_root = require_dir(self.root / depth_dir, _LAYOUT)
        self.split_file = _split_file(self.root, split)
        self.frames: list[KittiFrame] = []
        self.skipped: list[KittiFrame] = []
        self.items: list[tuple[Path, Path]] = []
        for frame in read_kitti_split(self.split_file):
            files = self._files(frame)
            if files is None:
                self.skipped.append(frame)
            else:
                self.frames.append(frame)
                self.items.append(files)
        if not self.items:
            raise UserPathError(
                f"{self.split_file}: none of its {len(self.skipped)} frames has annotated "
                f"depth under {self.depth_root} (expected layout: {_LAYOUT})"
            )
        self.focals = [f.focal for f in self.frames]

    def _files(self, frame: KittiFrame) -> tuple[Path, Path] | None:
        where = f"{self.split_file}:{frame.line}"
        image = self.raw_root / frame.image
        if not image.is_file() and image.suffix == ".png":
            jpg = image.with_suffix(".jpg")  # Monodepth2 converts the raw frames to .jpg
            image = jpg if jpg.is_file() else image
        if not image.is_file():
            raise UserPathError(
                f"image file not found: {image} (listed at {where}; expected layout: {_LAYOUT})"
            )
        if frame.depth is None:
            return None
        tried = [self.depth_root / sub / frame.depth for sub in ("train", "val")]
        tried.append(self.depth_root / frame.depth)
        for depth in tried:
            if depth.is_file():
                return image, depth
        if self.missing_depth == "skip":
            return None
        raise UserPathError(
            f"annotated depth not found for {frame.name} (listed at {where}): none of "
            f"{', '.join(str(t) for t in tried)} exists; data.kwargs.missing_depth: skip "
            f"leaves such frames out (expected layout: {_LAYOUT})"
        )

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        image_path, depth_path = self.items[index]
        image = read_image(image_path)
        raw = read_uint16(depth_path)
        check_same_size(image, raw, depth_path, image_path)
        depth = raw.astype(np.float32) / np.float32(KITTI_DEPTH_SCALE)
        invalid = depth <= self.min_depth
        if self.max_depth is not None:
            invalid |= depth >= self.max_depth
        depth[invalid] = 0.0
        return {
            "image": image_to_tensor(image),
            "depth": torch.from_numpy(depth).unsqueeze(0),
            "name": self.frames[index].name,
        }
