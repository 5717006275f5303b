"""Render a split of scenes (in parallel); keep it as a compressed ``.npz``, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from dejavu.toolkit.data.scenes.render import RenderedScene, check_size, render_scene

__all__ = ["default_cache_dir", "load_npz", "render_scenes", "save_npz"]

# --------------------------------------------------------------------------- batch + cache


def _render_seed(args: tuple[int, tuple[int, int]]) -> RenderedScene:
    return render_scene(*args)


def render_scenes(
    seeds: Sequence[int], size: tuple[int, int] = (96, 128), num_workers: int = 0
) -> dict[str, np.ndarray]:
    """Render many scenes into stacked arrays in their storage dtypes.

    Args:
        seeds: one seed per image.
        size: ``(H, W)``.
        num_workers: processes to render in (0 renders in this process).

    Returns:
        ``image`` (N x H x W x 3 uint8), ``seg`` and ``instance`` (N x H x W
        uint8), ``depth`` (N x H x W float32), ``normals`` (N x H x W x 3
        float16), ``intrinsics`` (N x 3 x 3 float32).

    Example:
        >>> render_scenes([0, 1], (16, 16))["normals"].shape
        (2, 16, 16, 3)
    """
    size = check_size(size)
    jobs = [(int(s), size) for s in seeds]
    if num_workers > 0 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            chunk = max(1, len(jobs) // (4 * num_workers))
            scenes = list(pool.map(_render_seed, jobs, chunksize=chunk))
    else:
        scenes = [_render_seed(j) for j in jobs]
    return {
        "image": np.stack([s.image for s in scenes]),
        "seg": np.stack([s.seg for s in scenes]),
        "instance": np.stack([s.instance for s in scenes]),
        "depth": np.stack([s.depth for s in scenes]).astype(np.float32),
        "normals": np.stack([s.normals for s in scenes]).astype(np.float16),
        "intrinsics": np.stack([s.intrinsics for s in scenes]),
    }


_ARRAY_SPECS = {
    "image": (np.uint8, (3,)),
    "seg": (np.uint8, ()),
    "instance": (np.uint8, ()),
    "depth": (np.float32, ()),
    "normals": (np.float16, (3,)),
}


def default_cache_dir() -> Path:
    """``$DEJAVU_CACHE/scenes`` when ``DEJAVU_CACHE`` is set, else ``~/.cache/dejavu/scenes``."""
    base = os.environ.get("DEJAVU_CACHE")
    if base:
        return Path(base).expanduser() / "scenes"
    return Path.home() / ".cache" / "dejavu" / "scenes"


def save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            entries = {"meta": np.array(json.dumps(meta, sort_keys=True)), **arrays}
            np.savez_compressed(fh, **entries)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(
    path: Path, meta: dict[str, object], n: int, size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Load and validate a cache file; raise ValueError describing any problem."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"]))
            if stored != meta:
                raise ValueError(f"metadata {stored} does not match {meta}")
            arrays = {k: z[k] for k in (*_ARRAY_SPECS, "intrinsics")}
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from e
    for key, (dtype, tail) in _ARRAY_SPECS.items():
        shape = (n, *size, *tail)
        if arrays[key].dtype != dtype or arrays[key].shape != shape:
            raise ValueError(
                f"array {key!r} is {arrays[key].dtype} {arrays[key].shape}, "
                f"expected {np.dtype(dtype)} {shape}"
            )
    if arrays["intrinsics"].shape != (n, 3, 3):
        raise ValueError(f"array 'intrinsics' has shape {arrays['intrinsics'].shape}")
    return arrays
