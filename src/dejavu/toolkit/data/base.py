"""The base class every dataset of :mod:`dejavu.toolkit.data` derives from."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from dejavu._validation import check_choice
from dejavu.toolkit.data.io import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from dejavu.toolkit.data.transforms import Normalize, Sample

__all__ = ["DenseDataset", "panoptic_categories", "select_tasks"]


def select_tasks(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """Check a requested subset of tasks against what a dataset has.

    Returns:
        ``available`` when ``requested`` is None, else ``requested`` in the
        order of ``available``.

    Example:
        >>> select_tasks(["depth", "seg"], ("seg", "depth", "normals"))
        ('seg', 'depth')
    """
    if requested is None:
        return tuple(available)
    if isinstance(requested, str):
        requested = [requested]
    for t in requested:
        check_choice(t, "task", available)
    return tuple(t for t in available if t in requested)


def panoptic_categories(
    class_names: Sequence[str], thing_classes: Sequence[str] | None, dataset: str = ""
) -> list[dict[str, Any]]:
    """The panoptic categories of a dataset's classes (:attr:`DenseDataset.categories`).

    Also usable on a dataset class's own attributes, without building it (e.g. for a
    synthetic batch in a benchmark).

    Args:
        class_names: the classes in train-id order.
        thing_classes: the names of the thing classes (None: no thing/stuff split).
        dataset: the dataset's name, for messages.

    Returns:
        ``{"id": train_id, "name": str, "isthing": bool}`` per class.

    Raises:
        ValueError: without a thing/stuff split (naming the datasets that have one),
            or for thing classes that are not among ``class_names``.

    Example:
        >>> panoptic_categories(["wall", "box"], ["box"])
        [{'id': 0, 'name': 'wall', 'isthing': False}, {'id': 1, 'name': 'box', 'isthing': True}]
    """
    if thing_classes is None:
        from dejavu.toolkit.data.factory import panoptic_datasets

        raise ValueError(
            f"dataset {dataset!r} has no thing/stuff split (thing_classes is None), so no "
            f"panoptic categories; datasets with one: {panoptic_datasets()}"
        )
    unknown = sorted(set(thing_classes) - set(class_names))
    if unknown:
        raise ValueError(
            f"thing_classes {unknown} of dataset {dataset!r} are not in its "
            f"class_names {list(class_names)}"
        )
    things = set(thing_classes)
    return [{"id": i, "name": n, "isthing": n in things} for i, n in enumerate(class_names)]


class DenseDataset(Dataset[Sample], abc.ABC):
    """A map-style dataset of dense-prediction samples.

    Subclasses set ``name`` (their registry name, see
    :func:`~dejavu.toolkit.data.register_dataset`), ``class_names`` and ``tasks``
    and implement ``__len__`` and
    :meth:`load`, which returns the un-normalised sample: ``image`` float32
    ``3 x H x W`` in ``[0, 1]`` plus the targets. ``__getitem__`` then applies
    ``transform`` (which must normalise; :func:`default_train_transform` and
    :func:`default_eval_transform` do) or, when ``transform`` is None,
    :class:`~dejavu.toolkit.data.transforms.Normalize` with the dataset's
    ``mean`` and ``std``.

    Attributes:
        name: the registry name (``create_dataset(name, ...)``).
        needs_root: whether ``create_dataset`` must be given a ``root`` folder.
        needs_split: whether ``create_dataset`` must be given a split name.
        class_names: one name per semantic class (index = label value).
        ignore_index: the label value of pixels without a class (255).
        tasks: the targets every sample carries: registered target keys
            (:func:`dejavu.toolkit.tasks.heads.list_targets`: ``seg``,
            ``depth``, ``normals``, ``instance``).
        mean, std: per-channel statistics used for normalisation.
        thing_classes: the names (a subset of ``class_names``) of the "thing"
            classes, whose pixels carry instance ids in ``instance``; the
            others are "stuff". None: the dataset has no thing/stuff split (no
            panoptic labels). See :attr:`categories`.
    """

    name: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    needs_split: ClassVar[bool] = True
    class_names: list[str]
    tasks: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    thing_classes: tuple[str, ...] | None = None

    def __init__(self, transform: Callable[[Sample], Sample] | None = None) -> None:
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {transform!r}")
        self.transform = transform
        self._normalize = Normalize(self.mean, self.std)

    @property
    def num_classes(self) -> int:
        """The number of semantic classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The panoptic categories: ``{"id": train_id, "name": str, "isthing": bool}`` each.

        One per class, in train-id order (``id`` = position = the label value in
        ``seg``), the form :class:`dejavu.metrics.PanopticQuality` takes.

        Raises:
            ValueError: when the dataset has no thing/stuff split
                (``thing_classes`` is None), naming the datasets that have one.

        Example:
            >>> import tempfile
            >>> from dejavu.toolkit.data import create_dataset
            >>> ds = create_dataset("scenes", tempfile.mkdtemp(), "val", num_images=1, size=(8, 8))
            >>> [(c["name"], c["isthing"]) for c in ds.categories][2:4]
            [('ceiling', False), ('box', True)]
        """
        return panoptic_categories(
            self.class_names, self.thing_classes, self.name or type(self).__name__
        )

    @abc.abstractmethod
    def load(self, index: int) -> Sample:
        """Return sample ``index`` before any transform (image in ``[0, 1]``)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of samples."""

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if isinstance(index, (np.integer, torch.Tensor)):
            index = int(index)
        if not isinstance(index, int) or not -n <= index < n:
            raise IndexError(f"index {index!r} out of range for a dataset of {n} samples")
        sample = self.load(index % n)
        if self.transform is not None:
            return self.transform(sample)
        return self._normalize(sample)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, tasks={self.tasks})"
        )
