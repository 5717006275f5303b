"""``ProceduralScenes``: the rendered (and cached) scenes as a dense-prediction dataset."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dejavu._validation import check_choice
from dejavu.toolkit.data.base import DenseDataset, select_tasks
from dejavu.toolkit.data.factory import register_dataset
from dejavu.toolkit.data.io import image_to_tensor
from dejavu.toolkit.data.scenes.cache import default_cache_dir, load_npz, render_scenes, save_npz
from dejavu.toolkit.data.scenes.render import (
    CLASS_NAMES,
    DEFAULT_NUM_IMAGES,
    GENERATOR_VERSION,
    THING_CLASSES,
    VAL_SEED_OFFSET,
    check_size,
    scene_seed,
)
from dejavu.toolkit.data.transforms import Sample

__all__ = ["ProceduralScenes"]


@register_dataset
class ProceduralScenes(DenseDataset):
    """Ray-cast indoor scenes with exact seg, instance, depth and normals (see module docs).

    Args:
        root: cache directory; None uses :func:`default_cache_dir`.
        split: ``"train"`` or ``"val"`` (disjoint seeds).
        num_images: number of images; None gives 1000 (train) or 200 (val).
        size: ``(H, W)`` of the images.
        seed: base seed; image ``i`` uses :func:`scene_seed` ``(split, seed, i)``.
        transform: joint transform applied to the ``[0, 1]`` sample; None
            normalises with ImageNet mean/std.
        tasks: subset of ``("seg", "depth", "normals", "instance")`` to return;
            None returns all.
        cache: read/write the ``.npz`` cache (False renders in memory only).
        num_workers: processes used to render a missing split.

    Example:
        >>> import tempfile
        >>> ds = ProceduralScenes(tempfile.mkdtemp(), num_images=2, size=(16, 24))
        >>> s = ds[0]
        >>> s["image"].shape, s["seg"].dtype, s["depth"].shape, s["normals"].shape
        (torch.Size([3, 16, 24]), torch.int64, torch.Size([1, 16, 24]), torch.Size([3, 16, 24]))
    """

    name = "scenes"
    needs_root = False

    # A class attribute so that it can be read before loading (e.g. to size a model).
    class_names = list(CLASS_NAMES)  # noqa: RUF012
    thing_classes = THING_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        num_images: int | None = None,
        size: tuple[int, int] = (96, 128),
        seed: int = 0,
        transform: Callable[[Sample], Sample] | None = None,
        *,
        tasks: Sequence[str] | None = None,
        cache: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__(transform)
        self.split = check_choice(split, "split", ("train", "val"))
        n = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= VAL_SEED_OFFSET:
            raise ValueError(
                f"num_images must be an int in [1, {VAL_SEED_OFFSET}], got {num_images!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        self.size = check_size(size)
        self.num_images = n
        self.seed = seed
        self.tasks = select_tasks(tasks, ("seg", "depth", "normals", "instance"))
        self.seeds = [scene_seed(split, seed, i) for i in range(n)]
        self.root = Path(root) if root is not None else default_cache_dir()
        h, w = self.size
        name = f"{GENERATOR_VERSION}_{split}_n{n}_{h}x{w}_seed{seed}.npz"
        self.cache_path: Path | None = self.root / name if cache else None
        self.render_seconds: float | None = None
        self._arrays = self._load_or_render(num_workers)

    def _meta(self) -> dict[str, object]:
        return {
            "version": GENERATOR_VERSION,
            "split": self.split,
            "num_images": self.num_images,
            "size": list(self.size),
            "seed": self.seed,
        }

    def _load_or_render(self, num_workers: int) -> dict[str, np.ndarray]:
        path = self.cache_path
        if path is not None and path.exists():
            try:
                return load_npz(path, self._meta(), self.num_images, self.size)
            except ValueError as e:
                msg = f"scene cache {path} is invalid ({e}); regenerating it"
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
        start = time.perf_counter()
        arrays = render_scenes(self.seeds, self.size, num_workers)
        self.render_seconds = time.perf_counter() - start
        if path is not None:
            save_npz(path, arrays, self._meta())
        return arrays

    def __len__(self) -> int:
        return self.num_images

    def intrinsics(self, index: int) -> np.ndarray:
        """The ``3 x 3`` pinhole matrix of image ``index`` (pixel centres at ``i + 0.5``)."""
        return self._arrays["intrinsics"][index].copy()

    def load(self, index: int) -> Sample:
        a = self._arrays
        sample: Sample = {"image": image_to_tensor(a["image"][index])}
        if "seg" in self.tasks:
            sample["seg"] = torch.from_numpy(a["seg"][index].astype(np.int64))
        if "depth" in self.tasks:
            sample["depth"] = torch.from_numpy(a["depth"][index].copy()).unsqueeze(0)
        if "normals" in self.tasks:
            n = torch.from_numpy(a["normals"][index].astype(np.float32)).permute(2, 0, 1)
            # float16 storage leaves |n| within ~1e-3 of 1; restore exact unit length.
            sample["normals"] = n / n.norm(dim=0, keepdim=True)
        if "instance" in self.tasks:
            sample["instance"] = torch.from_numpy(a["instance"][index].astype(np.int64))
        sample["name"] = f"{self.split}_{index:06d}"
        return sample
