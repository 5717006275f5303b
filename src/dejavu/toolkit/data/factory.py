"""``create_dataset(name, root, split)``: one entry point for every dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dejavu._validation import check_choice
from dejavu.toolkit.data.ade20k import ADE20K
from dejavu.toolkit.data.base import DenseDataset
from dejavu.toolkit.data.camvid import CamVid
from dejavu.toolkit.data.cityscapes import Cityscapes
from dejavu.toolkit.data.folder import FolderDataset
from dejavu.toolkit.data.nyud import NYUDRefineNet, NYUDv2
from dejavu.toolkit.data.scenes import ProceduralScenes

__all__ = ["DATASETS", "DATASET_NAMES", "create_dataset", "dataset_class"]

DATASETS: dict[str, type[DenseDataset]] = {
    "scenes": ProceduralScenes,
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "nyudv2": NYUDv2,
    "nyudv2_refinenet": NYUDRefineNet,
    "folder": FolderDataset,
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset_class(name: str) -> type[DenseDataset]:
    """The class behind ``name`` (to read ``class_names``, ``tasks``, ``mean``... before loading).

    Example:
        >>> dataset_class("camvid").__name__
        'CamVid'
    """
    return DATASETS[check_choice(name, "dataset name", DATASET_NAMES)]


def create_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str | None = "train",
    transform: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> DenseDataset:
    """Build a dataset by name.

    Args:
        name: one of :data:`DATASET_NAMES`.
        root: the dataset folder (for ``"scenes"`` the cache folder, None = default).
        split: the split name the dataset uses (``"train"``/``"val"`` work
            everywhere, ADE20K maps them to ``"training"``/``"validation"``;
            ``"folder"`` and ``"nyudv2_refinenet"`` also take None = everything).
        transform: joint transform (see :mod:`dejavu.toolkit.data.transforms`).
        **kwargs: passed to the dataset class.

    Raises:
        ValueError: for an unknown name (listing the known ones).
        FileNotFoundError: when ``root`` is needed and missing.

    Example:
        >>> import tempfile
        >>> ds = create_dataset("scenes", tempfile.mkdtemp(), "val", num_images=2, size=(16, 16))
        >>> len(ds), ds.num_classes
        (2, 6)
    """
    cls = dataset_class(name)
    if root is None and cls is not ProceduralScenes:
        raise FileNotFoundError(f"dataset {name!r} needs root, the folder that holds it")
    if split is None and cls not in (FolderDataset, NYUDRefineNet):
        raise ValueError(f"dataset {name!r} needs a split name, got None")
    return cls(root, split, transform=transform, **kwargs)  # type: ignore[call-arg]
