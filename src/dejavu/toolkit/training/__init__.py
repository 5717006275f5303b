"""Training: the Lightning module and data module, checkpoints, and the runner API.

The command line is built on :func:`run_fit`, :func:`run_validate`,
:func:`run_test`, :func:`load_run` and :func:`load_eval_model`
(prediction files: :mod:`dejavu.toolkit.predict`; cost:
:mod:`dejavu.toolkit.complexity`); see
:mod:`dejavu.toolkit.training.runner` for the run directory layout, resume
and multi-GPU / multi-node use.

Example:
    >>> import tempfile
    >>> from dejavu.toolkit.config import load_config
    >>> from dejavu.toolkit.training import run_fit
    >>> out = tempfile.mkdtemp()
    >>> cfg = load_config(None, [f"output_dir={out}", f"data.root={out}", "data.num_train=2",
    ...     "data.num_val=2", "data.batch_size=2", "data.num_workers=0",
    ...     "data.kwargs={size: [32, 48]}", "model.name=fpn_test_resnet",
    ...     "trainer.max_epochs=1", "trainer.accelerator=cpu"])
    >>> result = run_fit(cfg, enable_progress_bar=False)
    >>> result.last_checkpoint.name, sorted(result.metrics)[:2]
    ('last.ckpt', ['loss', 'seg/aacc'])
"""

from __future__ import annotations

from dejavu.toolkit.training.callbacks import (
    ConfigSnapshot,
    FinishAtMaxSteps,
    ImagePanels,
    MetricsHistory,
    read_metrics,
)
from dejavu.toolkit.training.checkpoint import (
    AtomicCheckpointIO,
    BaseExport,
    make_model_checkpoint,
    split_state_dict,
)
from dejavu.toolkit.training.datamodule import DenseDataModule, EpochSampler, SeededSamples
from dejavu.toolkit.training.module import (
    DejaVuModule,
    build_objective,
    default_monitor,
)
from dejavu.toolkit.training.runner import (
    FitResult,
    build_trainer,
    load_eval_model,
    load_run,
    run_fit,
    run_test,
    run_validate,
)
from dejavu.toolkit.training.schedules import PolyLR, poly_factor, poly_scheduler

__all__ = [
    "AtomicCheckpointIO",
    "BaseExport",
    "ConfigSnapshot",
    "DejaVuModule",
    "DenseDataModule",
    "EpochSampler",
    "FinishAtMaxSteps",
    "FitResult",
    "ImagePanels",
    "MetricsHistory",
    "PolyLR",
    "SeededSamples",
    "build_objective",
    "build_trainer",
    "default_monitor",
    "load_eval_model",
    "load_run",
    "make_model_checkpoint",
    "poly_factor",
    "poly_scheduler",
    "read_metrics",
    "run_fit",
    "run_test",
    "run_validate",
    "split_state_dict",
]
