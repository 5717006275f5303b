"""The dataset registry: ``register_dataset`` / ``create_dataset`` / ``list_datasets``.

timm style, as :mod:`dejavu.crm.factory`: each
:class:`~dejavu.toolkit.data.base.DenseDataset` subclass carries its registry
key in the class attribute ``name`` and registers itself with the
:func:`register_dataset` decorator, so adding a dataset is one file; nothing
else keeps a list of the names (``DATASETS`` and ``DATASET_NAMES`` are
read-only views of the registry).

Example:
    >>> dataset_class("camvid").__name__
    'CamVid'
    >>> "scenes" in list_datasets()
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from dejavu._registry import Registry
from dejavu.toolkit.data.base import DenseDataset
from dejavu.toolkit.errors import UserPathError

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "create_dataset",
    "dataset_class",
    "list_datasets",
    "panoptic_datasets",
    "register_dataset",
]

# name -> class, in registration order: the one list of datasets.
_REGISTRY: Registry[DenseDataset] = Registry("dataset", label="dataset name")

D = TypeVar("D", bound=type[DenseDataset])


def register_dataset(cls: D) -> D:
    """Class decorator: register a :class:`DenseDataset` subclass under its ``name`` attribute.

    Raises:
        ValueError: when the class has no ``name`` or the name is taken by another class.
    """
    _REGISTRY.register(cls)
    return cls


def list_datasets(pattern: str | None = None) -> list[str]:
    """The registered dataset names, sorted, optionally filtered by a glob ``pattern``.

    Example:
        >>> list_datasets("nyud*")
        ['nyudv2', 'nyudv2_refinenet']
    """
    return _REGISTRY.names(pattern)


if TYPE_CHECKING:  # module attributes computed by __getattr__ below
    DATASETS: dict[str, type[DenseDataset]]
    DATASET_NAMES: tuple[str, ...]


def __getattr__(name: str) -> Any:
    # Read-only views, computed when read: classes register when their modules are imported.
    if name == "DATASETS":
        return {name: _REGISTRY.get(name) for name in _REGISTRY.in_order()}
    if name == "DATASET_NAMES":
        return tuple(list_datasets())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "DATASETS", "DATASET_NAMES"])


def dataset_class(name: str) -> type[DenseDataset]:
    """The class behind ``name`` (to read ``class_names``, ``tasks``, ``mean``... before loading).

    Raises:
        ValueError: for an unknown name (listing the registered ones).
    """
    return _REGISTRY.get(name)


def panoptic_datasets() -> list[str]:
    """The registered datasets with a thing/stuff split (``thing_classes`` set), sorted.

    Their samples can hold ``instance`` and their ``categories`` feed the
    panoptic metric (see :mod:`dejavu.toolkit.data`).

    Example:
        >>> "scenes" in panoptic_datasets(), "camvid" in panoptic_datasets()
        (True, False)
    """
    return [n for n in list_datasets() if dataset_class(n).thing_classes is not None]


def create_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str | None = "train",
    transform: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> DenseDataset:
    """Build a dataset by name.

    Args:
        name: a registered name (:func:`list_datasets`).
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
    if root is None and cls.needs_root:
        raise UserPathError(f"dataset {name!r} needs root, the folder that holds it")
    if split is None and cls.needs_split:
        raise ValueError(f"dataset {name!r} needs a split name, got None")
    # Every registered dataset takes (root, split, transform=..., **options) (see the base).
    build: Callable[..., DenseDataset] = cls
    return build(root, split, transform=transform, **kwargs)
