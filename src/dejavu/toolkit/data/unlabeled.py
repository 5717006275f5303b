"""Images without labels, for semi-supervised training (the regeneration loss needs none).

Two sources feed the unlabelled pool of a semi-supervised run
(``data.labeled_fraction`` < 1 or ``data.unlabeled_root``):

- :class:`UnlabeledFolder`: every image under a folder, searched recursively
  (a user's own video frames, any size);
- :class:`UnlabeledSplit`: images of a labelled dataset whose targets are
  dropped (the training-split images outside the labelled subset).

Both return ``{"image": 3 x H x W, "name": str}`` after the (training)
transform, and :func:`with_empty_targets` gives such a sample the targets of
a labelled one, filled with the values every loss and metric ignores (the
values :func:`~dejavu.toolkit.data.transforms.pad_sample` pads with), so
that labelled and unlabelled samples collate into one batch.

Example:
    >>> import tempfile, PIL.Image
    >>> root = Path(tempfile.mkdtemp())
    >>> PIL.Image.new("RGB", (6, 4)).save(root / "a.png")
    >>> ds = UnlabeledFolder(root)
    >>> s = with_empty_targets(ds[0], ("seg", "depth"))
    >>> s["image"].shape, int(s["seg"].max()), s["depth"].shape, s["name"]
    (torch.Size([3, 4, 6]), 255, torch.Size([1, 4, 6]), 'a')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from dejavu.toolkit.data.folder import IMAGE_EXTENSIONS
from dejavu.toolkit.data.io import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_to_tensor,
    read_image,
)
from dejavu.toolkit.data.transforms import Normalize, Sample
from dejavu.toolkit.tasks.heads import target_spec

__all__ = [
    "IMAGE_EXTENSIONS",
    "UnlabeledFolder",
    "UnlabeledSplit",
    "find_images",
    "with_empty_targets",
]


def find_images(root: str | os.PathLike[str], what: str = "data.unlabeled_root") -> list[Path]:
    """Every image file under ``root`` (recursively), sorted by relative path.

    Image files are those ending in one of :data:`IMAGE_EXTENSIONS` (any case);
    hidden files and folders (names starting with ``.``) are skipped.

    Args:
        root: the folder.
        what: how the folder is named in errors (the config key).

    Raises:
        ValueError: naming the folder and the allowed extensions when it does
            not exist, is not a folder or holds no image.

    Example:
        >>> import tempfile
        >>> find_images(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        ValueError: data.unlabeled_root: no image files in ...
    """
    allowed = ", ".join(IMAGE_EXTENSIONS)
    p = Path(root)
    if not p.exists():
        raise ValueError(
            f"{what}: folder not found: {p} (expected a folder of images, searched "
            f"recursively for {allowed})"
        )
    if not p.is_dir():
        raise ValueError(f"{what}: {p} is not a folder (expected a folder of images: {allowed})")
    found = []
    for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    if not found:
        raise ValueError(
            f"{what}: no image files in {p} (searched recursively for {allowed}, any case)"
        )
    return sorted(found, key=lambda f: f.relative_to(p).as_posix())


class UnlabeledFolder(Dataset):
    """Every image under a folder (recursively), without targets.

    Images may have any size and format PIL reads (grey-scale and RGBA are
    converted to RGB). A corrupt or unreadable file raises a ``ValueError``
    that names it when it is loaded
    (:func:`~dejavu.toolkit.data.io.read_image`).

    Args:
        root: the folder (see :func:`find_images`).
        transform: joint transform applied to ``{"image": [0, 1] image}``; it
            must normalise (the training transforms do); None normalises with
            ``mean``/``std``.
        mean, std: the normalisation used when ``transform`` is None.

    Samples are ``{"image": 3 x H x W float32, "name": <path relative to root,
    without the suffix>}``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Sample], Sample] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.root = Path(root)
        self.files = find_images(self.root)
        self.transform = transform if transform is not None else Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        name = path.relative_to(self.root).with_suffix("").as_posix()
        return self.transform({"image": image_to_tensor(read_image(path)), "name": name})

    def __repr__(self) -> str:
        return f"UnlabeledFolder(root={str(self.root)!r}, n={len(self)})"


class UnlabeledSplit(Dataset):
    """Images of a labelled dataset at ``indices``, with their targets dropped.

    A :class:`~dejavu.toolkit.data.DenseDataset` (possibly inside a
    ``Subset``) is read with its ``load`` (before any transform), only the
    image and the name are kept and ``transform`` runs on those; any other
    dataset is indexed as usual and its targets are removed afterwards.

    Args:
        dataset: the labelled dataset.
        indices: positions in ``dataset`` to expose.
        transform: joint transform on ``{"image": [0, 1] image, "name"}`` (used
            with ``load``; it must normalise).
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int],
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def _source(self, index: int) -> tuple[Any, int]:
        ds, i = self.dataset, self.indices[index]
        while isinstance(ds, Subset):
            i = int(ds.indices[i])
            ds = ds.dataset
        return ds, i

    def __getitem__(self, index: int) -> Sample:
        ds, i = self._source(index)
        if hasattr(ds, "load") and self.transform is not None:
            raw = ds.load(i)
            sample: Sample = {"image": raw["image"]}
            if "name" in raw:
                sample["name"] = raw["name"]
            return self.transform(sample)
        full = self.dataset[self.indices[index]]
        return {k: v for k, v in full.items() if k in ("image", "name")}


def with_empty_targets(
    sample: Sample, keys: Sequence[str], ignore_index: int = IGNORE_INDEX
) -> Sample:
    """A copy of an image-only ``sample`` with targets ``keys`` filled with ignore/invalid.

    Each target gets its spec's "no label" value
    (:class:`~dejavu.toolkit.tasks.heads.TargetSpec`): ``seg`` is filled with
    ``ignore_index``, ``instance``, ``depth`` and ``normals`` with 0 (no
    instance, invalid depth, invalid normal), each at the image's size and
    with the dtype of a labelled sample.

    Raises:
        ValueError: for a key with no known fill value.

    Example:
        >>> s = with_empty_targets({"image": torch.zeros(3, 2, 3)}, ["normals", "instance"])
        >>> s["normals"].shape, s["instance"].dtype
        (torch.Size([3, 2, 3]), torch.int64)
    """
    h, w = sample["image"].shape[-2:]
    out = dict(sample)
    for key in keys:
        spec = target_spec(key)
        shape = (h, w) if spec.channels is None else (spec.channels, h, w)
        out[key] = torch.full(shape, spec.fill_value(ignore_index), dtype=spec.dtype)
    return out
