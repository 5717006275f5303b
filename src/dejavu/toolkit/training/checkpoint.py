"""Checkpoints that survive a crash, and the base network exported on its own.

A run directory holds:

- ``last.ckpt``: the full Lightning checkpoint (weights, optimiser, LR
  scheduler, global step, loop and callback state, the DejaVu redaction
  generator) from which :func:`~dejavu.toolkit.training.run_fit` resumes;
- ``best.ckpt``: the same, at the best validation score so far;
- ``base.safetensors`` + ``base.json``: the base network alone (what runs at
  inference) and what is needed to rebuild it, rewritten whenever a
  checkpoint is saved.

Every file is written to a temporary file in the same folder, flushed to
disk (``fsync``) and then moved over the old one with ``os.replace`` (atomic
on POSIX and Windows), so a crash, a kill or a full disk during a save leaves
the previous file whole.

Inside the checkpoint's ``state_dict`` the base network's weights are the
``model.base.*`` keys and the regeneration parts' are ``model.crm.*`` (and
``model.*`` for the rest of the DejaVu objective); :func:`split_state_dict`
separates them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

__all__ = [
    "BASE_JSON",
    "BASE_PREFIX",
    "BASE_WEIGHTS",
    "AtomicCheckpointIO",
    "BaseExport",
    "atomic_write",
    "load_base_weights",
    "make_model_checkpoint",
    "read_base_metadata",
    "save_base",
    "split_state_dict",
]

BASE_PREFIX = "model.base."
BASE_WEIGHTS = "base.safetensors"
BASE_JSON = "base.json"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and move it over ``path``.

    If the body raises, the temporary file is removed and ``path`` is left as
    it was.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that never leaves a half-written checkpoint.

    Local paths go through :func:`atomic_write` (temporary file in the same
    folder, ``fsync``, ``os.replace``); remote URLs (``s3://...``) fall back to
    Lightning's own transactional save.

    Example:
        >>> import tempfile, pathlib
        >>> io = AtomicCheckpointIO()
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "last.ckpt"
        >>> io.save_checkpoint({"step": 3}, p)
        >>> io.load_checkpoint(p)["step"]
        3
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path)
            return
        local = Path(str(path).removeprefix("file://"))
        with atomic_write(local, "wb") as f:
            torch.save(checkpoint, f)

    def remove_checkpoint(self, path: str | Path) -> None:
        fs = get_filesystem(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def split_state_dict(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a training module's state dict into base-network weights and the rest.

    Returns:
        ``(base, rest)``: ``base`` with the ``model.base.`` prefix removed (loadable
        into the base network), ``rest`` (CRM, step counter, generator state, ...)
        with its keys unchanged.

    Example:
        >>> base, rest = split_state_dict({"model.base.w": 1, "model.crm.w": 2})
        >>> base, rest
        ({'w': 1}, {'model.crm.w': 2})
    """
    base = {k[len(BASE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(BASE_PREFIX)}
    rest = {k: v for k, v in state_dict.items() if not k.startswith(BASE_PREFIX)}
    return base, rest


def save_base(model: nn.Module, metadata: Mapping[str, Any], directory: str | Path) -> Path:
    """Write ``base.safetensors`` (the network's state dict) and ``base.json`` (``metadata``).

    Both are written atomically; the weights first, so that a ``base.json``
    never describes weights that are not there.

    Args:
        model: the base network.
        metadata: JSON-serialisable description (model name, heads, classes,
            normalisation, ...) that :func:`~dejavu.toolkit.training.load_eval_model`
            rebuilds the network from.
        directory: where to write.

    Returns:
        The path of ``base.safetensors``.
    """
    from safetensors.torch import _remove_duplicate_names, save

    directory = Path(directory)
    state = model.state_dict()
    header = {"format": "pt"}
    # safetensors refuses tensors that share memory: keep one name of each, as
    # safetensors.torch.save_model does (its load_model restores the others).
    for kept, dropped in _remove_duplicate_names(state).items():
        for name in dropped:
            header.setdefault(name, kept)
            del state[name]
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    blob = save(tensors, metadata=header)
    weights = directory / BASE_WEIGHTS
    with atomic_write(weights, "wb") as f:
        f.write(blob)
    with atomic_write(directory / BASE_JSON, "w") as f:
        json.dump(dict(metadata), f, indent=2, sort_keys=True)
    return weights


def read_base_metadata(weights: str | Path) -> dict[str, Any]:
    """Read the ``base.json`` beside ``base.safetensors`` (same folder, same stem).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    weights = Path(weights)
    meta_path = weights.with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: a base network's weights ({weights.name}) need the JSON "
            "written beside them to rebuild the network"
        )
    return json.loads(meta_path.read_text())


def load_base_weights(model: nn.Module, weights: str | Path) -> nn.Module:
    """Load ``base.safetensors`` into ``model`` (strictly: every key must match)."""
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not fit the network: missing keys {sorted(missing)[:10]}, "
            f"unexpected keys {sorted(unexpected)[:10]}"
        )
    return model


class BaseExport(pl.Callback):
    """Write ``base.safetensors`` + ``base.json`` into ``directory`` whenever a checkpoint is saved.

    Global rank 0 only; at most once per global step (``last`` and ``best`` are
    often saved at the same step). ``metadata`` is called with the module at
    save time.
    """

    def __init__(
        self, directory: str | Path, metadata: Callable[[pl.LightningModule], Mapping[str, Any]]
    ) -> None:
        self.directory = Path(directory)
        self.metadata = metadata
        self._last_step: int | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not trainer.is_global_zero or self._last_step == trainer.global_step:
            return
        self._last_step = trainer.global_step
        save_base(pl_module.eval_model(), self.metadata(pl_module), self.directory)


def make_model_checkpoint(
    directory: str | Path, monitor: str | None, mode: str = "max", every_n_epochs: int = 1
) -> ModelCheckpoint:
    """``last.ckpt`` after every validation (or epoch) and ``best.ckpt`` by ``monitor``.

    Args:
        directory: the run directory.
        monitor: logged metric to rank checkpoints by (e.g. ``"val/seg/miou"``);
            ``None`` keeps ``last.ckpt`` only.
        mode: ``"max"`` or ``"min"``.
        every_n_epochs: save cadence in epochs.
    """
    return ModelCheckpoint(
        dirpath=str(directory),
        filename="best" if monitor is not None else None,
        monitor=monitor,
        mode=mode,
        save_top_k=1 if monitor is not None else 0,
        save_last=True,
        auto_insert_metric_name=False,
        every_n_epochs=every_n_epochs,
        enable_version_counter=False,
    )
