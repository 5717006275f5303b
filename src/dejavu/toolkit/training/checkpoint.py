"""Checkpoints that survive a crash, and the base network exported on its own.

A run directory holds:

- ``last.ckpt``: the full Lightning checkpoint (weights, optimiser, LR
  scheduler, global step, loop and callback state, the DejaVu redaction
  generator) from which :func:`~dejavu.toolkit.training.run_fit` resumes;
- ``best.ckpt``: the same, at the best validation score so far;
- ``base.safetensors`` + ``base.json``: the base network alone (what runs at
  inference) and what is needed to rebuild it, rewritten whenever a
  checkpoint is saved (:mod:`dejavu.toolkit.artifact`, the artefact's one
  writer and reader).

Every file is written to a temporary file in the same folder, flushed to
disk (``fsync``) and then moved over the old one with ``os.replace`` (atomic
on POSIX and Windows; :func:`dejavu.toolkit.artifact.atomic_write`), so a
crash, a kill or a full disk during a save leaves the previous file whole.

Inside the checkpoint's ``state_dict`` the base network's weights are the
``model.base.*`` keys and the regeneration parts' are ``model.crm.*`` (and
``model.*`` for the rest of the DejaVu objective); :func:`split_state_dict`
separates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from dejavu.toolkit.artifact import atomic_write, write_base
from dejavu.toolkit.training.faults import fault_point

__all__ = [
    "BASE_PREFIX",
    "AtomicCheckpointIO",
    "BaseExport",
    "make_model_checkpoint",
    "split_state_dict",
]

BASE_PREFIX = "model.base."


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that never leaves a half-written checkpoint.

    Local paths go through :func:`~dejavu.toolkit.artifact.atomic_write` (temporary file in the same
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
            fault_point(local.name)  # a test-only pause (DEJAVU_TEST_PAUSE); no-op otherwise

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


class BaseExport(pl.Callback):
    """Write ``base.safetensors`` + ``base.json`` into ``directory`` whenever a checkpoint is saved.

    Global rank 0 only; at most once per global step (``last`` and ``best`` are
    often saved at the same step). ``metadata`` is called with the module at
    save time.
    """

    def __init__(self, directory: str | Path, metadata: Callable[[Any], Mapping[str, Any]]) -> None:
        self.directory = Path(directory)
        self.metadata = metadata
        self._last_step: int | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not trainer.is_global_zero or self._last_step == trainer.global_step:
            return
        self._last_step = trainer.global_step
        eval_model: Callable[[], nn.Module] = pl_module.eval_model  # type: ignore[assignment]
        write_base(eval_model(), self.metadata(pl_module), self.directory)


def make_model_checkpoint(
    directory: str | Path, monitor: str | None, mode: str = "max", every_n_epochs: int = 1
) -> list[ModelCheckpoint]:
    """``last.ckpt`` after every validation (or epoch) and ``best.ckpt`` by ``monitor``.

    Two callbacks: Lightning (2.6) writes a callback's ``save_last`` checkpoint
    only at the steps where that callback also wrote a top-k one, i.e. only when
    the monitored metric improved, which left ``last.ckpt`` (and the base
    network written with it) at the best epoch instead of the last. So one
    callback, without a monitor, writes ``last.ckpt`` at every save point, and
    another one ``best.ckpt``.

    Args:
        directory: the run directory.
        monitor: logged metric to rank checkpoints by (e.g. ``"val/seg/miou"``);
            ``None`` keeps ``last.ckpt`` only.
        mode: ``"max"`` or ``"min"``.
        every_n_epochs: save cadence in epochs.

    Returns:
        The ``best.ckpt`` callback (when ``monitor`` is given), then the ``last.ckpt`` one.
    """
    common: dict[str, Any] = {
        "dirpath": str(directory),
        "save_top_k": 1,
        "save_last": False,
        "auto_insert_metric_name": False,
        "every_n_epochs": every_n_epochs,
        "enable_version_counter": False,
    }
    last = ModelCheckpoint(filename="last", monitor=None, **common)
    if monitor is None:
        return [last]
    return [ModelCheckpoint(filename="best", monitor=monitor, mode=mode, **common), last]
