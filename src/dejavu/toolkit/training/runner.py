"""Run training, evaluation and prediction from an :class:`ExperimentConfig`.

This is the API the ``dejavu`` command line is built on.

Run directory
    ``run_fit`` writes everything of a run into ``cfg.output_dir / cfg.name``:
    ``config.yaml`` (the full resolved config, written first), ``last.ckpt``
    and ``best.ckpt`` (full Lightning checkpoints), ``base.safetensors`` +
    ``base.json`` (the base network alone), ``metrics.json`` (final validation
    metrics and the per-validation history), ``tensorboard/version_<n>/`` and
    ``csv/version_<n>/metrics.csv`` (one version per launch, so a resumed run
    adds a version) and ``images/train_step<step>.png`` (image panels).
    Starting a run where the run directory holds anything is refused unless
    ``resume`` (continue it) or ``overwrite`` (move it aside to
    ``<name>.old-<date>-<time>``) is given, so a run is never overwritten by
    accident; an output directory that cannot be written, or lacks the room
    for the checkpoints, is refused before training (:mod:`~dejavu.toolkit.training.rundir`).

Resume
    ``run_fit(cfg, resume=True)`` continues from ``last.ckpt`` (weights,
    optimiser, LR schedule, global step, loop state, metrics history and the
    redaction generator). Data order and augmentation depend only on
    ``(seed, epoch, index)`` and the global RNG is reseeded from
    ``(seed, epoch, batch)`` before every training batch, so a run stopped at
    an epoch boundary and resumed ends with the same weights as an
    uninterrupted one on CPU (GPU kernels may add non-determinism unless
    ``trainer.deterministic`` is set).

Several GPUs and nodes
    ``trainer.devices: 4`` with ``trainer.strategy: ddp`` trains with
    DistributedDataParallel; Lightning launches the extra processes itself.
    Under ``torchrun`` (``torchrun --nproc_per_node 4 --nnodes 2 ...
    -m dejavu.toolkit.cli fit cfg.yaml --set trainer.devices=4 --set
    trainer.num_nodes=2 --set trainer.strategy=ddp``) or SLURM, Lightning reads the ranks from the
    environment instead. ``data.batch_size`` is per process. On CPU,
    two processes launched the way ``torchrun`` does (environment variables,
    ``strategy: ddp``, ``accelerator: cpu``) train with the gloo backend (what
    the tests do). BatchNorm statistics are per
    process unless ``trainer.sync_batchnorm`` (CUDA only) is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn

from dejavu.toolkit.artifact import BASE_WEIGHTS, load_base, load_base_weights
from dejavu.toolkit.checkpoint_files import load_state_checked, read_checkpoint
from dejavu.toolkit.config import (
    ExperimentConfig,
    TrainerConfig,
    config_from_dict,
    validate_config,
)
from dejavu.toolkit.errors import ConfigError
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
from dejavu.toolkit.training.datamodule import DenseDataModule
from dejavu.toolkit.training.faults import (
    GracefulInterrupt,
    NonFiniteGuard,
    ddp_strategy,
    distributed_errors,
    interrupt_errors,
)
from dejavu.toolkit.training.module import DejaVuModule, default_monitor
from dejavu.toolkit.training.rundir import (
    check_free_space,
    check_writable,
    checkpoint_bytes,
    move_aside,
    remove_stale_temporaries,
    start_point,
    write_errors,
)
from dejavu.toolkit.training.schedules import total_training_steps

__all__ = [
    "TOOLKIT_TRAINER_KEYS",
    "FitResult",
    "build_trainer",
    "load_eval_model",
    "load_run",
    "run_fit",
    "run_test",
    "run_validate",
    "trainer_kwargs",
]


@dataclass
class FitResult:
    """What :func:`run_fit` returns.

    Attributes:
        run_dir: ``output_dir / name``.
        last_checkpoint: ``run_dir / "last.ckpt"``; None for a finished run whose
            checkpoints were pruned (:func:`~dejavu.toolkit.compare.prune_run`).
        best_checkpoint: ``run_dir / "best.ckpt"`` (None without validation).
        metrics: the final validation metrics (``seg/miou``, ``loss``, ...).
        history: one entry per validation: ``epoch``, ``step`` and every metric.
        train_time_s: wall-clock seconds of ``Trainer.fit`` in this launch.
        moved_aside: where the previous run went (``overwrite=True``), else None.
    """

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float]
    history: list[dict[str, float]]
    train_time_s: float
    moved_aside: Path | None = None


def _want_progress(enable: bool | None) -> bool:
    return sys.stdout.isatty() if enable is None else bool(enable)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence Lightning's informational messages (device summary, tips) for a while."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def build_trainer(
    cfg: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    callbacks: Sequence[pl.Callback] = (),
    enable_progress_bar: bool | None = None,
    fit: bool = True,
) -> pl.Trainer:
    """A Lightning ``Trainer`` configured from ``cfg.trainer``.

    Args:
        cfg: the experiment config.
        run_dir: where loggers write (fit only).
        callbacks: callbacks to add.
        enable_progress_bar: a rich progress bar; ``None``: only when stdout is a terminal.
        fit: a training trainer (loggers, checkpointing) or an evaluation one (neither).
    """
    progress = _want_progress(enable_progress_bar)
    cbs = list(callbacks)
    if progress:
        cbs.append(RichProgressBar())
    loggers: Any = False
    if fit and run_dir is not None:
        loggers = [
            TensorBoardLogger(str(run_dir), name="tensorboard", default_hp_metric=False),
            CSVLogger(str(run_dir), name="csv"),
        ]
    return pl.Trainer(
        **trainer_kwargs(cfg.trainer),
        callbacks=cbs,
        logger=loggers,
        enable_checkpointing=fit,
        enable_progress_bar=progress,
        enable_model_summary=progress and fit,
        default_root_dir=str(run_dir) if run_dir is not None else None,
        plugins=[AtomicCheckpointIO()],
    )


#: ``trainer`` keys that are the toolkit's own, not ``lightning.pytorch.Trainer`` arguments.
TOOLKIT_TRAINER_KEYS: frozenset[str] = frozenset(
    {
        "monitor",
        "image_log_every_n_steps",
        "val_every_n_epochs",
        "skip_nonfinite_steps",
        "ddp_timeout_s",
    }
)


def trainer_kwargs(t: TrainerConfig) -> dict[str, Any]:
    """``lightning.pytorch.Trainer`` arguments from the ``trainer`` section, passed through.

    Every key is a ``Trainer`` argument of the same name except the toolkit's
    own (:data:`TOOLKIT_TRAINER_KEYS`); ``val_every_n_epochs`` is
    ``check_val_every_n_epoch`` and ``max_epochs`` is -1 when ``max_steps`` is set.

    Example:
        >>> from dejavu.toolkit.config import TrainerConfig
        >>> kw = trainer_kwargs(TrainerConfig(max_steps=20))
        >>> kw["max_epochs"], kw["max_steps"], kw["check_val_every_n_epoch"], "monitor" in kw
        (-1, 20, 1, False)
    """
    kwargs = {
        f.name: getattr(t, f.name)
        for f in dataclasses.fields(t)
        if f.name not in TOOLKIT_TRAINER_KEYS
    }
    kwargs["check_val_every_n_epoch"] = t.val_every_n_epochs
    if t.max_steps >= 1:
        kwargs["max_epochs"] = -1
    kwargs["strategy"] = ddp_strategy(t.strategy, t.ddp_timeout_s)  # a DDPStrategy with timeout
    return kwargs


def _resume_kwargs(trainer: pl.Trainer, ckpt_path: Path | None) -> dict[str, Any]:
    """``trainer.fit`` arguments that resume from ``ckpt_path`` with ``weights_only=True``.

    Lightning's default (``weights_only=None``) defers to torch.load's own
    default, which the environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
    turns into a full unpickler. Lightning < 2.6 has no such argument; there the
    ``weights_only=True`` read in :func:`run_fit` just before is what guards the file.
    """
    if ckpt_path is None:
        return {"ckpt_path": None}
    kwargs: dict[str, Any] = {"ckpt_path": str(ckpt_path)}
    if "weights_only" in inspect.signature(trainer.fit).parameters:
        kwargs["weights_only"] = True
    return kwargs


def run_fit(
    cfg: ExperimentConfig,
    *,
    resume: bool | str | Path = False,
    callbacks: Sequence[pl.Callback] = (),
    enable_progress_bar: bool | None = None,
    overwrite: bool = False,
) -> FitResult:
    """Train the run described by ``cfg`` (see the module docs for the run directory).

    Args:
        cfg: the experiment config.
        resume: ``True`` continues from ``run_dir / last.ckpt`` (from step 0 when
            the run directory holds a run that saved no checkpoint yet); a path
            continues from that checkpoint; ``False`` starts fresh (refused when
            the run directory holds anything).
        overwrite: start fresh even where the run directory holds a run: the old
            one is moved aside to ``<name>.old-<date>-<time>`` (nothing is
            deleted), once every check passed.
        callbacks: extra Lightning callbacks.
        enable_progress_bar: a rich progress bar and Lightning's messages; ``None``:
            only when stdout is a terminal (quiet otherwise).

    Returns:
        A :class:`FitResult`.

    Raises:
        FileExistsError: a fresh run where one already exists.
        FileNotFoundError: ``resume`` names a missing checkpoint.
        ValueError: invalid config values, a resume checkpoint that
            ``torch.load(weights_only=True)`` refuses (not a safe checkpoint), or
            an output directory that cannot be written or lacks the room.
        RunDirWriteError: a write failed during training (a full disk).
        NonFiniteLossError: a non-finite loss or gradient.
        RunInterruptedError: SIGTERM or Ctrl-C (after writing a resumable checkpoint).
    """
    validate_config(cfg)
    run_dir = cfg.run_dir
    # Never into a run that exists unless asked (resume / overwrite); a directory that
    # cannot be written is refused before anything is read (training/rundir.py).
    ckpt_path, replace = start_point(run_dir, resume, overwrite)
    check_writable(run_dir)
    if ckpt_path is not None:
        # Lightning reads the checkpoint again in trainer.fit: refuse an unsafe one first,
        # with a clear message (and before any data is prepared).
        _load_ckpt(ckpt_path)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = DenseDataModule(cfg)
    dm.setup("fit")
    validates = cfg.trainer.limit_val_batches != 0
    monitor, mode = default_monitor(cfg, dm.num_classes) if validates else (None, "max")
    cbs: list[pl.Callback] = [
        ConfigSnapshot(cfg, run_dir / "config.yaml"),
        *make_model_checkpoint(
            run_dir,
            f"val/{monitor}" if monitor else None,
            mode,
            cfg.trainer.val_every_n_epochs,
        ),
        BaseExport(run_dir, DejaVuModule.export_metadata),
        MetricsHistory(run_dir / "metrics.json"),
        FinishAtMaxSteps(),
        NonFiniteGuard(cfg.trainer.skip_nonfinite_steps),
        interrupt := GracefulInterrupt(run_dir / "last.ckpt"),
    ]
    if cfg.trainer.image_log_every_n_steps > 0:
        cbs.append(ImagePanels(run_dir / "images", dm.mean, dm.std))
    cbs.extend(callbacks)
    progress = _want_progress(enable_progress_bar)
    with _quiet(not progress), warnings.catch_warnings():
        # Checkpoints share the run directory with the logs by design.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        # The training samplers resume mid-epoch themselves (batches_done_in_epoch).
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended")
        trainer = build_trainer(cfg, run_dir=run_dir, callbacks=cbs, enable_progress_bar=progress)
        # The module gets its config sections and the run's length; building the trainer
        # first (it draws no random number) gives the world size the length depends on.
        t = cfg.trainer
        total_steps = total_training_steps(
            dm.train_batches_per_epoch(trainer.world_size),
            max_epochs=t.max_epochs,
            max_steps=t.max_steps,
            limit_train_batches=t.limit_train_batches,
            accumulate_grad_batches=t.accumulate_grad_batches,
        )
        module = DejaVuModule.from_config(
            cfg,
            total_steps=total_steps,
            **dm.module_metadata(cfg.task.name),
        )
        slots = 2 if cfg.optim.name == "adamw" else 1
        copies = 1 if ckpt_path is not None else 3  # last + best + one being written
        check_free_space(run_dir, copies * checkpoint_bytes(module, slots))
        moved = None
        if getattr(rank_zero_only, "rank", 0) == 0:  # rank from the environment (as Lightning)
            if replace:  # only now that everything else was checked
                moved = move_aside(run_dir)
                print(f"dejavu: moved the previous run to {moved}", file=sys.stderr)
            remove_stale_temporaries(run_dir)  # a killed writer's; never read
        start = time.perf_counter()
        with (  # one-line errors
            interrupt_errors(interrupt),
            write_errors(run_dir),
            distributed_errors(trainer.world_size, run_dir / "last.ckpt"),
        ):
            trainer.fit(module, datamodule=dm, **_resume_kwargs(trainer, ckpt_path))
        train_time = time.perf_counter() - start

    metrics_path = run_dir / "metrics.json"
    metrics, history = read_metrics(metrics_path, missing_ok=True)
    best = run_dir / "best.ckpt"
    return FitResult(
        run_dir=run_dir,
        last_checkpoint=run_dir / "last.ckpt",
        best_checkpoint=best if best.is_file() else None,
        metrics=metrics,
        history=history,
        train_time_s=train_time,
        moved_aside=moved,
    )


# --------------------------------------------------------------------------- loading
def _load_ckpt(path: Path) -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``: tensors and plain
    data only (:func:`~dejavu.toolkit.checkpoint_files.read_checkpoint`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is empty, not a checkpoint, truncated, corrupt, has no
            ``state_dict`` or holds anything else than tensors and plain data (a
            pickled object, which could run code when unpickled: not a safe checkpoint).
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ConfigError(
            f"{path} is not a dejavu training checkpoint (no state_dict; give a .ckpt written "
            "by dejavu fit, a base.safetensors or a run directory)"
        )
    return ckpt


def _network_name(cfg: ExperimentConfig, ckpt: dict[str, Any] | None = None) -> str:
    # How a network is named when a checkpoint's weights do not fit it.
    saved = ckpt.get("config") if ckpt is not None else None
    other = saved.get("model", {}).get("name") if isinstance(saved, dict) else None
    if other and other != cfg.model.name:
        return f"{cfg.model.name} (the checkpoint's config names {other})"
    return cfg.model.name


def _checkpoint_config(
    ckpt: dict[str, Any], path: str | Path
) -> tuple[ExperimentConfig, dict[str, Any]]:
    """The run's config and the module's hyper-parameters from a training checkpoint.

    Checkpoints keep the full config under ``"config"`` (written by
    :class:`~dejavu.toolkit.training.callbacks.ConfigSnapshot`); older ones kept it
    in the hyper-parameters, which read the same way.
    """
    hp = ckpt.get("hyper_parameters")
    hp = hp if isinstance(hp, dict) else {}
    saved = ckpt.get("config", hp.get("config"))
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} is not a dejavu training checkpoint (no saved config)")
    return config_from_dict(saved), hp


def _module_from_hparams(cfg: ExperimentConfig, hp: dict[str, Any]) -> DejaVuModule:
    from dejavu.toolkit.training.module import IMAGENET_MEAN, IMAGENET_STD

    return DejaVuModule.from_config(
        cfg,
        total_steps=int(hp.get("total_steps") or 1),
        num_classes=hp.get("num_classes"),
        class_names=hp.get("class_names"),
        mean=hp.get("mean") or IMAGENET_MEAN,
        std=hp.get("std") or IMAGENET_STD,
        input_size=hp.get("input_size"),
        categories=hp.get("categories"),
    )


def load_run(checkpoint: str | Path) -> tuple[ExperimentConfig, DejaVuModule]:
    """Rebuild the training module of a run from a Lightning checkpoint.

    Returns:
        ``(config, module)``: the run's config and its module (base network,
        regeneration parts, metrics) with the checkpoint's weights, in eval mode.
    """
    ckpt = _load_ckpt(Path(checkpoint))
    cfg, hp = _checkpoint_config(ckpt, checkpoint)
    module = _module_from_hparams(cfg, hp)
    load_state_checked(module, ckpt["state_dict"], checkpoint, _network_name(cfg))
    return cfg, module.eval()


def _eval_config(cfg: ExperimentConfig) -> ExperimentConfig:
    # The base network does not depend on the objective; skip building CRM/CLIP.
    return dataclasses.replace(cfg, dejavu=dataclasses.replace(cfg.dejavu, enabled=False))


def load_eval_model(checkpoint_or_base_safetensors: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The base network alone, in eval mode, plus what is needed to use it.

    Args:
        checkpoint_or_base_safetensors: a ``.ckpt`` of :func:`run_fit`, a
            ``base.safetensors`` (with its ``base.json`` beside it) or a run
            directory (its ``base.safetensors`` is used).

    Returns:
        ``(model, metadata)``; metadata holds ``model``, ``model_kwargs``,
        ``heads``, ``task``, ``num_classes``, ``class_names``, ``ignore_index``,
        ``mean``, ``std``, ``input_size`` (and the step/epoch it was saved at).
    """

    path = Path(checkpoint_or_base_safetensors)
    if path.is_dir():
        path = path / BASE_WEIGHTS
    if path.suffix == ".safetensors":
        # The artefact's reader; also reads `dejavu export` files, whose SA networks
        # lost their training-only regeneration branch.
        return load_base(path)

    ckpt = _load_ckpt(path)
    cfg, hp = _checkpoint_config(ckpt, path)
    module = _module_from_hparams(_eval_config(cfg), hp)
    base_state, _ = split_state_dict(ckpt["state_dict"])
    model = module.eval_model()
    load_state_checked(model, base_state, path, _network_name(cfg))
    meta = module.export_metadata()
    meta.update(epoch=ckpt.get("epoch"), global_step=ckpt.get("global_step"))
    return model.eval(), meta


def _module_for_eval(cfg: ExperimentConfig, dm: DenseDataModule, checkpoint: Path) -> DejaVuModule:
    module = DejaVuModule.from_config(_eval_config(cfg), **dm.module_metadata(cfg.task.name))
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / BASE_WEIGHTS
    if checkpoint.suffix == ".safetensors":
        load_base_weights(module.eval_model(), checkpoint, cfg.model.name)
    else:
        ckpt = _load_ckpt(checkpoint)
        base_state, _ = split_state_dict(ckpt["state_dict"])
        load_state_checked(module.eval_model(), base_state, checkpoint, _network_name(cfg, ckpt))
    return module


def _evaluate(cfg: ExperimentConfig, checkpoint: str | Path, stage: str) -> dict[str, float]:
    dm = DenseDataModule(cfg)
    module = _module_for_eval(cfg, dm, Path(checkpoint))
    with _quiet(True):
        trainer = build_trainer(cfg, fit=False, enable_progress_bar=False)
        run = trainer.validate if stage == "val" else trainer.test
        results = run(module, datamodule=dm, verbose=False)
    prefix = f"{stage}/"
    return {k[len(prefix) :]: float(v) for k, v in results[0].items() if k.startswith(prefix)}


def run_validate(cfg: ExperimentConfig, checkpoint: str | Path) -> dict[str, float]:
    """Evaluate a checkpoint (``.ckpt``, ``base.safetensors`` or run dir) on ``data.val_split``.

    Returns:
        Metric name (``seg/miou``, ``loss``, ...) -> value, pooled over the split.
    """
    return _evaluate(cfg, checkpoint, "val")


def run_test(cfg: ExperimentConfig, checkpoint: str | Path) -> dict[str, float]:
    """Evaluate a checkpoint on ``data.test_split`` (see :func:`run_validate`)."""
    return _evaluate(cfg, checkpoint, "test")
