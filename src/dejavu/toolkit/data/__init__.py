"""Datasets, the embedded procedural scenes and joint transforms.

Every dataset returns a dict per sample:

========== ======================= ===========================================
key        tensor                  meaning
========== ======================= ===========================================
image      float32 3 x H x W       normalised with the dataset's mean/std
seg        int64 H x W             class index, 255 = ignore
depth      float32 1 x H x W       metres, 0 = invalid
normals    float32 3 x H x W       unit vectors, all-zero = invalid
instance   int64 H x W             instance id, 0 = none
name       str                     the sample's id
========== ======================= ===========================================

with only the targets listed in the dataset's ``tasks``. Each dataset class
has ``class_names``, ``num_classes``, ``ignore_index`` (255), ``tasks``,
``mean`` and ``std``.

Panoptic data (the contract between datasets, the ``panoptic`` task, the
metric and the panels):

- a sample of a panoptic-capable dataset holds ``seg`` (train ids
  ``0..K-1``, 255 = VOID) and ``instance``: 0 = no instance; a pixel of a
  *thing* class carries an instance id ``>= 1``, unique within the image
  (ids need not be consecutive; they stay below ``2**24``, so resampling
  keeps them exact); a thing pixel with instance 0 is that class's crowd
  region (COCO ``iscrowd``, Cityscapes group labels); on stuff and VOID
  pixels the instance id is 0.
- the dataset exposes its categories in one place,
  :attr:`DenseDataset.categories <dejavu.toolkit.data.base.DenseDataset.categories>`:
  a list of ``{"id": train_id, "name": str, "isthing": bool}`` in train-id
  order (so ``len(categories) == num_classes`` and ``id`` equals the
  position), built from ``class_names`` and the class attribute
  ``thing_classes`` (the names of the thing classes; None on datasets without
  a thing/stuff split, whose ``categories`` raises a ``ValueError``);
  :func:`panoptic_datasets` lists the datasets that have one.
- ``dejavu.metrics.PanopticQuality(ds.categories)`` scores
  :func:`dejavu.metrics.panoptic_from_labels` ``(seg, instance)``
  (``B x 2 x H x W``: category = train id, VOID = 255).

Example:
    >>> import tempfile
    >>> from dejavu.toolkit.data import create_dataset, default_train_transform
    >>> ds = create_dataset("scenes", tempfile.mkdtemp(), "train", num_images=2, size=(32, 48),
    ...                     transform=default_train_transform(24))
    >>> ds[0]["image"].shape
    torch.Size([3, 24, 24])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dejavu.toolkit.data.ade20k import ADE20K, ADE20K_CLASSES
from dejavu.toolkit.data.base import DenseDataset
from dejavu.toolkit.data.camvid import CAMVID_CLASSES, CamVid
from dejavu.toolkit.data.cityscapes import CITYSCAPES_CLASSES, Cityscapes
from dejavu.toolkit.data.coco_panoptic import COCO_PANOPTIC_CATEGORIES, CocoPanoptic
from dejavu.toolkit.data.collate import pad_collate
from dejavu.toolkit.data.factory import (
    create_dataset,
    dataset_class,
    list_datasets,
    panoptic_datasets,
    register_dataset,
)
from dejavu.toolkit.data.folder import FolderDataset
from dejavu.toolkit.data.io import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from dejavu.toolkit.data.kitti import KittiDepth, read_kitti_split
from dejavu.toolkit.data.nyud import (
    NYU40_CLASSES,
    NYUDRefineNet,
    NYUDv2,
    convert_refinenet_to_nyud_mt,
)
from dejavu.toolkit.data.scenes import CLASS_NAMES as SCENE_CLASSES
from dejavu.toolkit.data.scenes import ProceduralScenes, render_scene
from dejavu.toolkit.data.transforms import (
    ColorJitter,
    Compose,
    Normalize,
    PadToMultiple,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    default_eval_transform,
    default_train_transform,
)
from dejavu.toolkit.data.unlabeled import (
    UnlabeledFolder,
    UnlabeledSplit,
    find_images,
    with_empty_targets,
)

__all__ = [
    "ADE20K",
    "ADE20K_CLASSES",
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "COCO_PANOPTIC_CATEGORIES",
    "DATASET_NAMES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NYU40_CLASSES",
    "SCENE_CLASSES",
    "CamVid",
    "Cityscapes",
    "CocoPanoptic",
    "ColorJitter",
    "Compose",
    "DenseDataset",
    "FolderDataset",
    "KittiDepth",
    "NYUDRefineNet",
    "NYUDv2",
    "Normalize",
    "PadToMultiple",
    "ProceduralScenes",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Resize",
    "UnlabeledFolder",
    "UnlabeledSplit",
    "convert_refinenet_to_nyud_mt",
    "create_dataset",
    "dataset_class",
    "default_eval_transform",
    "default_train_transform",
    "find_images",
    "list_datasets",
    "pad_collate",
    "panoptic_datasets",
    "read_kitti_split",
    "register_dataset",
    "render_scene",
    "with_empty_targets",
]


if TYPE_CHECKING:  # a read-only view of the registry, computed by __getattr__ below
    DATASET_NAMES: tuple[str, ...]


def __getattr__(name: str) -> object:
    if name == "DATASET_NAMES":
        return tuple(list_datasets())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "DATASET_NAMES"])
