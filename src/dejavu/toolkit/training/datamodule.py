"""``DenseDataModule``: datasets, joint transforms and loaders from an experiment config.

Reproducibility and exact resume: training order and augmentation depend only
on ``(seed, epoch, sample index)``, never on how many batches were drawn
before. The training sampler (a ``DistributedSampler``, also with one
process, so Lightning keeps it) shuffles with ``seed + epoch`` and yields
``(epoch, index)`` keys; :class:`SeededSamples` seeds torch's (and numpy's,
and Python's) RNG from the key before the sample's random transforms run,
restoring the previous RNG state afterwards. A run resumed at epoch ``e``
therefore sees exactly the batches an uninterrupted run would, with any
number of workers. Evaluation loaders are unshuffled; under DDP, Lightning
gives them a ``DistributedSampler`` (which repeats a few samples when the
split does not divide evenly among the processes).
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from dejavu.toolkit.config import ExperimentConfig

__all__ = ["DenseDataModule", "EpochSampler", "SeededSamples", "derive_seed", "sample_seed"]


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
        s = sample_seed(self.seed, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        # fork_rng restores torch's CPU generator; only it is seeded (CUDA RNGs are left alone).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


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

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        for index in super().__iter__():
            yield (epoch, index)


def _accepts(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls.__init__).parameters
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

        self.cfg = cfg
        self.dataset_cls = dataset_class(cfg.data.name)
        self.datasets: dict[str, Dataset] = {}

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
                tuple(d.crop_size),
                tuple(d.scale_range),
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
        return {
            "segmentation": ("seg",),
            "depth": ("depth",),
            "normals": ("normals",),
            "multitask": ("seg", "depth", "normals"),
        }[self.cfg.task.name]

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
        return int(self.trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        d = self.cfg.data
        ds = self.dataset("train")
        world, rank = self._world()
        sampler = EpochSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.cfg.seed)
        # With workers, the iterator built right after this draws indices before Lightning's
        # first set_epoch call; give it the epoch Lightning will set (the processed-epochs
        # count, which a checkpoint saved at an epoch's end has already advanced).
        sampler.set_epoch(self._epoch())
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

    def _eval_loader(self, role: str) -> DataLoader:
        d = self.cfg.data
        return DataLoader(
            self.dataset(role),
            batch_size=d.val_batch_size or d.batch_size,
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
