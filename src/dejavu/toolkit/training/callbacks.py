"""Training callbacks: image panels and the per-validation metrics history."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from dejavu.toolkit.artifact import atomic_write

__all__ = ["ConfigSnapshot", "FinishAtMaxSteps", "ImagePanels", "MetricsHistory", "read_metrics"]


class FinishAtMaxSteps(pl.Callback):
    """Validate and checkpoint when ``max_steps`` ends training in the middle of an epoch.

    Lightning stops at ``max_steps`` without validating or saving unless the step
    happens to close an epoch, so the final weights would be lost. Requesting a
    stop (``trainer.should_stop``) at that step makes Lightning run the
    validation loop, after which the checkpoint callback saves ``last.ckpt``
    (and ``best.ckpt``) as at an epoch's end.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class ConfigSnapshot(pl.Callback):
    """Write the full resolved config to ``path`` (global rank 0) when training starts,
    and into every checkpoint (``checkpoint["config"]``, what ``load_run`` rebuilds from).

    Done in ``on_fit_start`` rather than before ``Trainer.fit`` so that under an
    external launcher (torchrun, SLURM) only the process that Lightning knows as rank 0
    writes (and after the checkpoint callback has checked for an empty directory).
    """

    def __init__(self, cfg: Any, path: str | Path) -> None:
        self.cfg = cfg
        self.path = Path(path)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from dejavu.toolkit.config import save_config

        if trainer.is_global_zero:
            save_config(self.cfg, self.path)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        from dejavu.toolkit.config import config_to_dict

        checkpoint["config"] = config_to_dict(self.cfg)


class ImagePanels(pl.Callback):
    """Draw the input / truth / prediction / redacted / regenerated panel of a training batch.

    The module returns the (detached, first few) batch and outputs under
    ``"vis"`` on the steps it wants a panel for (every
    ``trainer.image_log_every_n_steps``); this callback renders them on global
    rank 0, saves ``directory / train_step<step>.png`` and adds the image to
    every TensorBoard logger as ``train/panel``.

    Args:
        directory: where the PNGs go (``<run dir>/images``).
        mean, std: the images' normalisation.
        max_images: samples (rows) per panel.
    """

    def __init__(
        self,
        directory: str | Path,
        mean: Sequence[float],
        std: Sequence[float],
        max_images: int = 4,
    ) -> None:
        self.directory = Path(directory)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.max_images = int(max_images)
        self.saved: list[Path] = []

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, Mapping) or "vis" not in outputs:
            return
        from PIL import Image

        from dejavu.toolkit.visualize import training_panel

        vis = outputs["vis"]
        step = int(vis["step"])
        panel = training_panel(
            vis["batch"], vis["out"], pl_module.task, self.mean, self.std, self.max_images
        )
        path = self.directory / f"train_step{step:07d}.png"
        self.directory.mkdir(parents=True, exist_ok=True)
        Image.fromarray(panel).save(path)
        self.saved.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("train/panel", panel, step, dataformats="HWC")


def _clean(value: float) -> float | None:
    # JSON has no NaN/inf; a metric that is undefined (e.g. no valid pixel) becomes null.
    return value if math.isfinite(value) else None


class MetricsHistory(pl.Callback):
    """Record every validation's metrics and keep ``metrics.json`` up to date.

    ``metrics.json`` holds ``{"final": {...}, "history": [{"epoch", "step",
    <metric>: value, ...}, ...]}`` with metric names without the ``val/``
    prefix (``seg/miou``, ``loss``, ...); non-finite values are written as
    ``null``. The history is part of the callback's checkpoint state, so a
    resumed run continues it. Written on global rank 0 after each validation
    (sanity checks excluded), atomically.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: list[dict[str, float | None]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            k[len("val/") :]: _clean(float(v))
            for k, v in sorted(trainer.callback_metrics.items())
            if k.startswith("val/")
        }
        self.history.append(
            {"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics}
        )
        if trainer.is_global_zero:
            self.write(metrics)

    def write(self, final: Mapping[str, float | None]) -> None:
        with atomic_write(self.path, "w") as f:
            json.dump({"final": dict(final), "history": self.history}, f, indent=2)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def read_metrics(
    path: str | Path, *, missing_ok: bool = False
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Read ``metrics.json``: ``(final, history)``, with ``null`` read back as NaN.

    Args:
        path: the run's ``metrics.json``.
        missing_ok: read a missing file as no validation yet, ``({}, [])``: a run
            killed between its first save and its first validation has none.
    """
    if missing_ok and not Path(path).is_file():
        return {}, []

    def nan(d: Mapping[str, Any]) -> dict[str, float]:
        return {k: float("nan") if v is None else v for k, v in d.items()}

    data = json.loads(Path(path).read_text())
    return nan(data.get("final", {})), [nan(h) for h in data.get("history", [])]
