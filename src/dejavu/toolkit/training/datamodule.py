"""``DenseDataModule``: datasets, joint transforms and loaders from an experiment config.

Reproducibility and exact resume: training order and augmentation depend only
on ``(seed, epoch, sample index)``, never on how many batches were drawn
before. The training sampler (a ``DistributedSampler``, also with one
process, so Lightning keeps it) shuffles with ``seed + epoch`` and yields
``(epoch, index)`` keys; :class:`SeededSamples` seeds torch's (and numpy's,
and Python's) RNG from the key before the sample's random transforms run,
restoring the previous RNG state afterwards. A run resumed at epoch ``e``
therefore sees exactly the batches an uninterrupted run would, with any
number of workers. Evaluation loaders are unshuffled; under DDP each process
takes every ``world_size``-th sample (:class:`ShardSampler`), so every sample
is evaluated exactly once and the all-reduced metrics are those of the whole
split (Lightning's own ``DistributedSampler`` would repeat a few samples when
the split does not divide evenly among the processes).

Semi-supervised training (``data.labeled_fraction`` < 1, or
``data.unlabeled_root`` with DejaVu) uses :class:`SemiSupervisedSampler`
instead: a fixed labelled subset (:func:`labeled_subset`) and an unlabelled
pool (the rest of the split plus the folder's images, DejaVu only) are each
cycled as an endless stream of seeded permutations, and every batch takes
``batch_size`` labelled then ``unlabeled_batch_size`` unlabelled draws. An
epoch keeps the full split's number of steps. The sampler yields
``(kind, position, index)`` keys whose draw position in its stream is a
function of ``(epoch, step, rank, slot)`` only, and
:class:`SemiSupervisedSamples` seeds the augmentation from ``(seed, kind,
position)``, so exact resume holds here too.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset

from dejavu.toolkit.config import ExperimentConfig
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.training.faults import batches_done_in_epoch

__all__ = [
    "DenseDataModule",
    "EpochSampler",
    "SeededSamples",
    "SemiSupervisedSampler",
    "SemiSupervisedSamples",
    "ShardSampler",
    "derive_seed",
    "labeled_subset",
    "sample_seed",
    "steps_per_epoch",
]

# Tags that keep this module's seeds apart from each other and from the other uses of
# derive_seed ((seed, epoch, index) for SeededSamples; (seed, 1, epoch, batch, rank) for the
# training step's RNG). Each fits one 32-bit word and is far above any epoch number.
_SUBSET_TAG = 0x5E31_0001  # which images keep their labels
_ORDER_TAGS = (0x5E31_0002, 0x5E31_0003)  # per-pass order of the labelled / unlabelled stream
_AUGMENT_TAG = 0x5E31_0004  # augmentation of one draw of a stream
LABELED, UNLABELED = 0, 1


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends only on ``keys`` (hashed by ``numpy.random.SeedSequence``).

    Example:
        >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
        True
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` of a run seeded with ``seed``.

    Example:
        >>> sample_seed(0, 1, 2) == sample_seed(0, 1, 2) != sample_seed(0, 2, 1)
        True
    """
    return derive_seed(seed, epoch, index)


@contextlib.contextmanager
def _seeded_rngs(s: int) -> Iterator[None]:
    """Seed torch's CPU RNG, numpy's and Python's global RNGs with ``s``; restore them after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    # fork_rng restores torch's CPU generator; only it is seeded (CUDA RNGs are left alone).
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SeededSamples(Dataset):
    """Wrap a dataset so that each ``(epoch, index)`` key draws its own augmentation.

    ``samples[(epoch, i)]`` runs ``dataset[i]`` with torch's CPU RNG, numpy's
    and Python's global RNGs seeded from :func:`sample_seed` and restores
    them afterwards; ``samples[i]`` is ``dataset[i]`` unchanged.

    Example:
        >>> class Noise(Dataset):
        ...     def __len__(self): return 3
        ...     def __getitem__(self, i): return torch.rand(1)
        >>> s = SeededSamples(Noise(), seed=0)
        >>> bool(s[(0, 1)] == s[(0, 1)]), bool(s[(0, 1)] == s[(1, 1)])
        (True, False)
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        epoch, index = key
        with _seeded_rngs(sample_seed(self.seed, epoch, index)):
            return self.dataset[index]


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(epoch, index)`` keys for :class:`SeededSamples`.

    With ``shuffle`` the order is a permutation seeded by ``seed + epoch``
    (as ``DistributedSampler`` does); Lightning calls :meth:`set_epoch` before
    every epoch, and a subclass of ``DistributedSampler`` is never replaced by
    Lightning's own.

    Example:
        >>> s = EpochSampler(range(4), num_replicas=1, rank=0, shuffle=False)
        >>> s.set_epoch(2); list(s)
        [(2, 0), (2, 1), (2, 2), (2, 3)]
    """

    skip: tuple[int, int] = (-1, 0)
    """``(epoch, n)``: leave out the first ``n`` keys of ``epoch`` (the batches of that epoch
    a run resumed from a mid-epoch checkpoint has already trained)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        skip = self.skip[1] if self.skip[0] == epoch else 0
        for n, index in enumerate(super().__iter__()):
            if n >= skip:
                yield (epoch, index)


class ShardSampler(DistributedSampler):
    """Evaluation indices of one process, without repeats: rank ``r`` of ``W`` takes
    ``r, r + W, r + 2W, ...`` (the shards differ by at most one sample).

    A ``DistributedSampler`` subclass, so Lightning keeps it instead of adding
    its own (which pads the shards to equal length by repeating samples).

    Example:
        >>> [list(ShardSampler(range(5), num_replicas=2, rank=r)) for r in (0, 1)]
        [[0, 2, 4], [1, 3]]
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def labeled_subset(num_samples: int, fraction: float, seed: int) -> list[int]:
    """The training-split positions that keep their labels, sorted.

    ``max(1, round(fraction * num_samples))`` positions (Python's ``round``),
    the first ones of a permutation drawn from ``seed`` alone: the same seed
    gives the same subset, another seed a different one, and with one seed
    the subset of a smaller fraction lies inside that of a larger one.

    Example:
        >>> labeled_subset(8, 0.25, seed=0) == labeled_subset(8, 0.25, seed=0)
        True
        >>> len(labeled_subset(367, 0.125, seed=0)), labeled_subset(5, 1.0, seed=3)
        (46, [0, 1, 2, 3, 4])
        >>> set(labeled_subset(40, 0.1, seed=1)) <= set(labeled_subset(40, 0.5, seed=1))
        True
    """
    n = int(num_samples)
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    k = min(n, max(1, round(fraction * n)))
    g = torch.Generator().manual_seed(derive_seed(seed, _SUBSET_TAG))
    return sorted(torch.randperm(n, generator=g)[:k].tolist())


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per epoch and process for a split of ``num_samples``.

    What the plain loader gives: each process gets ``ceil(num_samples /
    world_size)`` samples (``DistributedSampler`` pads), batched with
    ``drop_last`` when that is at least one full batch, else one short batch.

    Example:
        >>> steps_per_epoch(367, 8), steps_per_epoch(367, 8, world_size=2), steps_per_epoch(3, 8)
        (45, 23, 1)
    """
    per_rank = math.ceil(int(num_samples) / int(world_size))
    return per_rank // batch_size if per_rank >= batch_size else 1


class SemiSupervisedSampler(DistributedSampler):
    """Keys of a semi-supervised epoch: per step, labelled draws then unlabelled draws.

    The labelled positions (indices into the training split) and the
    unlabelled pool (``num_unlabeled`` items) are each an endless stream: pass
    ``p`` of a stream is a permutation drawn from ``(seed, stream, p)``, so each
    is cycled and reshuffled every pass. Step ``t`` of ``epoch`` on process
    ``rank`` of ``num_replicas`` takes draws ``((epoch * steps + t) *
    num_replicas + rank) * size + j``, ``j < size``, of each stream (``size``
    is ``batch_size`` or ``unlabeled_batch_size``): the processes share the
    streams without overlap and every key depends only on ``(epoch, t, rank,
    j)``. Keys are ``(kind, position, index)`` with ``kind`` 0 (labelled,
    ``index`` into the split) or 1 (unlabelled, ``index`` into the pool), in
    batch order, so a ``DataLoader`` with ``batch_size = batch_size +
    unlabeled_batch_size`` (and no ``drop_last``) cuts them into the batches.

    A ``DistributedSampler`` subclass, so Lightning neither replaces it under
    DDP nor forgets to call :meth:`set_epoch`.

    Example:
        >>> s = SemiSupervisedSampler([3, 7], num_unlabeled=5, steps_per_epoch=2,
        ...     batch_size=2, unlabeled_batch_size=1, num_replicas=1, rank=0, seed=0)
        >>> len(s), [k[0] for k in s][:3], sorted(i for k, _, i in list(s)[:2] if k == 0)
        (6, [0, 0, 1], [3, 7])
    """

    def __init__(
        self,
        labeled: Sequence[int],
        num_unlabeled: int,
        steps_per_epoch: int,
        batch_size: int,
        unlabeled_batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if not labeled:
            raise ValueError("labeled must hold at least one index")
        if unlabeled_batch_size > 0 and num_unlabeled < 1:
            raise ValueError("unlabeled_batch_size > 0 needs a non-empty unlabelled pool")
        positions: Any = range(len(labeled))  # any sized object: the sampler needs its length
        super().__init__(positions, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.labeled = [int(i) for i in labeled]
        self.num_unlabeled = int(num_unlabeled)
        self.steps_per_epoch = int(steps_per_epoch)
        self.batch_size = int(batch_size)
        self.unlabeled_batch_size = int(unlabeled_batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch * (self.batch_size + self.unlabeled_batch_size)

    def _order(self, kind: int, size: int, p: int) -> list[int]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, _ORDER_TAGS[kind], p))
        return torch.randperm(size, generator=g).tolist()

    skip: tuple[int, int] = (-1, 0)
    """``(epoch, n)``: leave out the first ``n`` keys of ``epoch`` (see :class:`EpochSampler`)."""

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        skip = self.skip[1] if self.skip[0] == self.epoch else 0
        return itertools.islice(self._keys(), skip, None)

    def _keys(self) -> Iterator[tuple[int, int, int]]:
        epoch = self.epoch
        streams = (
            (LABELED, self.batch_size, self.labeled),
            (UNLABELED, self.unlabeled_batch_size, range(self.num_unlabeled)),
        )
        passes: dict[tuple[int, int], list[int]] = {}
        for t in range(self.steps_per_epoch):
            step = epoch * self.steps_per_epoch + t
            for kind, size, items in streams:
                for j in range(size):
                    position = (step * self.num_replicas + self.rank) * size + j
                    p, offset = divmod(position, len(items))
                    if (kind, p) not in passes:
                        passes = {k: v for k, v in passes.items() if k[0] != kind}
                        passes[(kind, p)] = self._order(kind, len(items), p)
                    yield (kind, position, items[passes[(kind, p)][offset]])


class SemiSupervisedSamples(Dataset):
    """Labelled and unlabelled samples behind :class:`SemiSupervisedSampler`'s keys.

    ``samples[(kind, position, index)]`` runs ``labeled[index]`` (kind 0) or
    ``unlabeled[index]`` (kind 1) with torch's, numpy's and Python's global
    RNGs seeded from ``(seed, kind, position)`` (restored afterwards), so a
    draw's augmentation depends on its place in its stream only. Labelled
    samples get ``labeled=True``; unlabelled ones (image only) get the targets
    ``target_keys`` filled with ignore/invalid values
    (:func:`~dejavu.toolkit.data.with_empty_targets`) and ``labeled=False``.
    Both get a ``name`` when they lack one, so they collate together.

    Args:
        labeled: the training split (with its training transform).
        unlabeled: image-only samples (with the same transform), or None.
        seed: the run's seed.
        target_keys: the targets a labelled sample carries.
        ignore_index: the segmentation fill value.
    """

    def __init__(
        self,
        labeled: Dataset,
        unlabeled: Dataset | None,
        seed: int,
        target_keys: Sequence[str],
        ignore_index: int = 255,
    ) -> None:
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.seed = int(seed)
        self.target_keys = tuple(target_keys)
        self.ignore_index = int(ignore_index)

    def __len__(self) -> int:
        return len(self.labeled) + (len(self.unlabeled) if self.unlabeled is not None else 0)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        from dejavu.toolkit.data import with_empty_targets

        kind, position, index = key
        source = self.labeled if kind == LABELED else self.unlabeled
        if source is None:
            raise IndexError(f"key {key!r} asks for an unlabelled sample but there is no pool")
        with _seeded_rngs(derive_seed(self.seed, _AUGMENT_TAG, kind, position)):
            sample = dict(source[index])
        if kind != LABELED:
            sample = with_empty_targets(sample, self.target_keys, self.ignore_index)
        sample.setdefault("name", f"{'unlabeled' if kind else 'labeled'}_{index:06d}")
        sample["labeled"] = kind == LABELED
        return sample


def _accepts(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


class DenseDataModule(pl.LightningDataModule):
    """Datasets and loaders for an :class:`~dejavu.toolkit.config.ExperimentConfig`.

    Datasets come from :func:`dejavu.toolkit.data.create_dataset` with the
    config's ``data`` section; training uses
    :func:`~dejavu.toolkit.data.transforms.default_train_transform` (colour
    jitter, random scale, normalise, crop, flip), evaluation
    :func:`~dejavu.toolkit.data.transforms.default_eval_transform`, and every
    loader batches with :func:`~dejavu.toolkit.data.pad_collate` (padding to
    ``data.pad_to_multiple``), so evaluation images of different sizes batch.

    Semi-supervised (:attr:`semi_supervised`): only :attr:`labeled_indices` of
    the training split keep their labels; with DejaVu, :attr:`unlabeled` holds
    the other training images plus those under ``data.unlabeled_root`` (built
    by :meth:`setup`, which raises ``ValueError`` for a missing or empty
    folder); without DejaVu no unlabelled image is loaded. See
    :class:`SemiSupervisedSampler` for the batches.

    Example:
        >>> import tempfile
        >>> from dejavu.toolkit.config import config_from_dict
        >>> cfg = config_from_dict({"data": {"root": tempfile.mkdtemp(), "num_train": 2,
        ...     "num_val": 2, "num_workers": 0, "kwargs": {"size": [16, 24]}}})
        >>> dm = DenseDataModule(cfg); dm.setup("fit")
        >>> dm.num_classes, next(iter(dm.val_dataloader()))["image"].shape
        (6, torch.Size([2, 3, 16, 24]))
    """

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        from dejavu.toolkit.data import dataset_class
        from dejavu.toolkit.data.limits import set_max_image_pixels

        set_max_image_pixels(cfg.data.max_image_pixels)  # checked by every image reader
        self.cfg = cfg
        self.dataset_cls = dataset_class(cfg.data.name)
        self.datasets: dict[str, Dataset] = {}
        self._unlabeled: Dataset | None = None

    # ----------------------------------------------------------------- metadata
    def _any_dataset(self) -> Any:
        if not self.datasets:
            self.datasets["val"] = self._build("val")
        ds = next(iter(self.datasets.values()))
        return ds.dataset if isinstance(ds, Subset) else ds

    @property
    def num_classes(self) -> int:
        """Semantic classes of the dataset."""
        return int(self._any_dataset().num_classes)

    @property
    def class_names(self) -> list[str]:
        """Class names of the dataset (index = label value)."""
        return list(self._any_dataset().class_names)

    def module_metadata(self, task: str) -> dict[str, Any]:
        """What :meth:`DejaVuModule.from_config` takes from the data: ``num_classes``,
        ``class_names``, ``mean``, ``std``, ``input_size`` and ``categories`` (for ``task``).
        """
        return {
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "mean": self.mean,
            "std": self.std,
            "input_size": self.input_size,
            "categories": self.categories_for(task),
        }

    def categories_for(self, task: str) -> list[dict[str, Any]] | None:
        """The dataset's panoptic categories when ``task`` has a head that uses them
        (``panoptic``), else None.

        Raises:
            ValueError: when the task needs them and the dataset has no thing/stuff split
                (the message names the datasets that have one).
        """
        from dejavu.toolkit.tasks import head_spec, task_spec

        if not any(head_spec(k).uses_categories for k in task_spec(task).heads):
            return None
        return list(self._any_dataset().categories)

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel normalisation mean."""
        return tuple(self.dataset_cls.mean)  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel normalisation std."""
        return tuple(self.dataset_cls.std)  # type: ignore[return-value]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of training crops, or of the first evaluation sample without a crop."""
        if self.cfg.data.crop_size is not None:
            h, w = self.cfg.data.crop_size
            return int(h), int(w)
        if "val" not in self.datasets:
            self.datasets["val"] = self._build("val")
        h, w = self.datasets["val"][0]["image"].shape[-2:]
        return int(h), int(w)

    # ----------------------------------------------------------------- building
    def transform(self, train: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The joint transform for training (``train=True``) or evaluation."""
        from dejavu.toolkit.data import transforms as T

        d = self.cfg.data
        if not train:
            return T.default_eval_transform(self.mean, self.std)
        if d.crop_size is not None:
            return T.default_train_transform(
                (int(d.crop_size[0]), int(d.crop_size[1])),
                (float(d.scale_range[0]), float(d.scale_range[1])),
                self.mean,
                self.std,
                jitter=d.color_jitter,
                hflip=0.5 if d.flip else 0.0,
            )
        steps: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        if d.color_jitter > 0:
            steps.append(T.ColorJitter(d.color_jitter, d.color_jitter, d.color_jitter, 0.0))
        steps.append(T.Normalize(self.mean, self.std))
        if d.flip:
            steps.append(T.RandomHorizontalFlip(0.5))
        return T.Compose(steps)

    def _split_name(self, role: str) -> str:
        d = self.cfg.data
        return {"train": d.train_split, "val": d.val_split, "test": d.test_split}[role]

    def _build(self, role: str) -> Dataset:
        from dejavu.toolkit.data import create_dataset

        d = self.cfg.data
        kwargs = dict(d.kwargs)
        if _accepts(self.dataset_cls, "tasks") and "tasks" not in kwargs:
            kwargs["tasks"] = d.tasks if d.tasks is not None else list(self._task_keys())
        limit = d.num_train if role == "train" else d.num_val
        subset = False
        if limit is not None:
            if _accepts(self.dataset_cls, "num_images") and "num_images" not in kwargs:
                kwargs["num_images"] = limit
            else:
                subset = True
        ds = create_dataset(
            d.name,
            d.root,
            self._split_name(role),
            transform=self.transform(role == "train"),
            **kwargs,
        )
        if subset and limit is not None and limit < len(ds):
            return Subset(ds, range(limit))
        return ds

    def _task_keys(self) -> tuple[str, ...]:
        from dejavu.toolkit.tasks import task_spec

        return task_spec(self.cfg.task.name).data_keys  # panoptic: seg and instance

    def setup(self, stage: str | None = None) -> None:
        roles = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
            None: ("train", "val"),
        }[stage]
        for role in roles:
            if role not in self.datasets:
                self.datasets[role] = self._build(role)
        if "train" in roles:
            self.unlabeled  # noqa: B018 - builds the pool: a bad unlabelled folder fails here

    # ----------------------------------------------------------------- semi-supervised
    def _uses_unlabeled(self) -> bool:
        return self.cfg.dejavu.enabled and (
            len(self.labeled_indices) < len(self.dataset("train"))  # type: ignore[arg-type]
            or self.cfg.data.unlabeled_root is not None
        )

    @property
    def labeled_indices(self) -> list[int]:
        """Positions in the training split that keep their labels (all of them at fraction 1)."""
        n = len(self.dataset("train"))  # type: ignore[arg-type]
        return labeled_subset(n, self.cfg.data.labeled_fraction, self.cfg.seed)

    @property
    def semi_supervised(self) -> bool:
        """Whether training batches come from :class:`SemiSupervisedSampler`.

        True when some training labels are dropped, or with DejaVu and
        ``data.unlabeled_root``; otherwise the plain loader (all labels, no
        ``labeled`` entry) is used, exactly as without these options.
        """
        n = len(self.dataset("train"))  # type: ignore[arg-type]
        return len(self.labeled_indices) < n or self._uses_unlabeled()

    @property
    def unlabeled(self) -> Dataset | None:
        """The unlabelled pool (DejaVu only; training transform, no targets), or None.

        The training-split images outside :attr:`labeled_indices`
        (:class:`~dejavu.toolkit.data.UnlabeledSplit`) followed by the images
        under ``data.unlabeled_root`` (:class:`~dejavu.toolkit.data.UnlabeledFolder`).
        """
        if self._unlabeled is None and self._uses_unlabeled():
            from dejavu.toolkit.data import UnlabeledFolder, UnlabeledSplit

            train = self.dataset("train")
            keep = set(self.labeled_indices)
            rest = [i for i in range(len(train)) if i not in keep]  # type: ignore[arg-type]
            parts: list[Dataset] = []
            if rest:
                parts.append(UnlabeledSplit(train, rest, self.transform(True)))
            if self.cfg.data.unlabeled_root is not None:
                parts.append(UnlabeledFolder(self.cfg.data.unlabeled_root, self.transform(True)))
            self._unlabeled = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        return self._unlabeled

    def _target_keys(self) -> tuple[str, ...]:
        train = self.dataset("train")
        base = train.dataset if isinstance(train, Subset) else train
        return tuple(getattr(base, "tasks", self._task_keys()))

    def train_batches_per_epoch(self, world_size: int = 1) -> int:
        """Training batches per epoch and process with ``world_size`` processes (what the
        training loader yields; the semi-supervised one keeps the full split's count)."""
        n = len(self.dataset("train"))  # type: ignore[arg-type]
        return steps_per_epoch(n, self.cfg.data.batch_size, world_size)

    def dataset(self, role: str) -> Dataset:
        """The dataset of ``role`` (``"train"``, ``"val"`` or ``"test"``), built on demand."""
        if role not in ("train", "val", "test"):
            raise ValueError(f"role must be 'train', 'val' or 'test', got {role!r}")
        if role not in self.datasets:
            self.datasets[role] = self._build(role)
        return self.datasets[role]

    # ----------------------------------------------------------------- loaders
    def _collate(self) -> Callable[..., Any]:
        from dejavu.toolkit.data import pad_collate

        return functools.partial(pad_collate, multiple=self.cfg.data.pad_to_multiple or 1)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _epoch(self) -> int:
        if self.trainer is None:
            return 0
        current: Any = self.trainer.fit_loop.epoch_progress.current  # a _ProcessedTracker
        return int(current.processed)

    def train_dataloader(self) -> DataLoader:
        d = self.cfg.data
        ds = self.dataset("train")
        world, rank = self._world()
        if self.semi_supervised:
            return self._semi_supervised_loader(ds, world, rank)
        sampler = EpochSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.cfg.seed)
        # With workers, the iterator built right after this draws indices before Lightning's
        # first set_epoch call; give it the epoch Lightning will set (the processed-epochs
        # count, which a checkpoint saved at an epoch's end has already advanced).
        sampler.set_epoch(self._epoch())
        sampler.skip = (self._epoch(), batches_done_in_epoch(self.trainer) * d.batch_size)
        per_rank = len(sampler)
        return DataLoader(
            SeededSamples(ds, self.cfg.seed),
            batch_size=d.batch_size,
            sampler=sampler,
            num_workers=d.num_workers,
            collate_fn=self._collate(),
            drop_last=per_rank >= d.batch_size,
            persistent_workers=d.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _semi_supervised_loader(self, ds: Dataset, world: int, rank: int) -> DataLoader:
        d = self.cfg.data
        pool = self.unlabeled
        num_unlabeled = len(pool) if pool is not None else 0  # type: ignore[arg-type]
        ub = (d.unlabeled_batch_size or d.batch_size) if num_unlabeled else 0
        sampler = SemiSupervisedSampler(
            self.labeled_indices,
            num_unlabeled,
            steps_per_epoch(len(ds), d.batch_size, world),  # type: ignore[arg-type]
            d.batch_size,
            ub,
            num_replicas=world,
            rank=rank,
            seed=self.cfg.seed,
        )
        sampler.set_epoch(self._epoch())  # see train_dataloader
        sampler.skip = (self._epoch(), batches_done_in_epoch(self.trainer) * (d.batch_size + ub))
        base = ds.dataset if isinstance(ds, Subset) else ds
        samples = SemiSupervisedSamples(
            ds,
            pool,
            self.cfg.seed,
            self._target_keys(),
            int(getattr(base, "ignore_index", self.cfg.task.ignore_index)),
        )
        return DataLoader(
            samples,
            batch_size=d.batch_size + ub,
            sampler=sampler,
            num_workers=d.num_workers,
            collate_fn=self._collate(),
            drop_last=False,  # the sampler yields whole batches
            persistent_workers=d.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _eval_loader(self, role: str) -> DataLoader:
        d = self.cfg.data
        ds = self.dataset(role)
        world, rank = self._world()
        sampler = None
        if world > 1:
            if len(ds) < world:  # type: ignore[arg-type]
                raise ConfigError(
                    f"the {role} split has {len(ds)} images for {world} processes; "  # type: ignore[arg-type]
                    "every process needs at least one"
                )
            sampler = ShardSampler(ds, world, rank)
        return DataLoader(
            ds,
            batch_size=d.val_batch_size or d.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=d.num_workers,
            collate_fn=self._collate(),
            persistent_workers=d.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
