"""``DejaVuModule``: the LightningModule that trains a base network with or without DejaVu.

Both variants hold the trainable objective under ``self.model``, with the base
network at ``self.model.base``:

- ``dejavu.enabled: true``: ``self.model`` is the core
  :class:`~dejavu.dejavu.DejaVu` (base network + conditioning + CRM [+ frozen
  CLIP]), ONE module, so DDP wraps a single forward;
- ``dejavu.enabled: false``: ``self.model`` is the core
  :class:`~dejavu.dejavu.TaskOnly`, the same base network with the task loss
  only and the same output contract.

Everything else (data, optimiser, schedule, metrics, checkpoints) is shared,
so a baseline run and a DejaVu run differ only by the objective. Validation
and test run the base network alone (:meth:`DejaVuModule.eval_model`), and
their metrics read predictions only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn

from dejavu.dejavu import LOSS_KEYS, DejaVu, TaskOnly, prediction_dict
from dejavu.toolkit.config import (
    DejaVuConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    TaskConfig,
    config_from_dict,
)
from dejavu.toolkit.tasks import Task, TaskMetrics, create_task, metric_direction, task_spec
from dejavu.toolkit.training.datamodule import derive_seed
from dejavu.toolkit.training.schedules import poly_scheduler

__all__ = ["DejaVuModule", "build_objective", "default_monitor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_monitor(cfg: ExperimentConfig, num_classes: int | None = None) -> tuple[str, str]:
    """The validation metric (without ``val/``) and mode (``max``/``min``) for ``best.ckpt``.

    ``trainer.monitor`` when set (any metric the task logs, see
    :func:`~dejavu.toolkit.tasks.heads.logged_metric_names`), else the task's
    own (its first head's spec: ``seg/miou``, ``depth/rmse``, ``normals/mean``).

    Raises:
        ValueError: for a ``trainer.monitor`` that is not logged.

    Example:
        >>> default_monitor(ExperimentConfig())
        ('seg/miou', 'max')
    """
    spec = task_spec(cfg.task.name)
    name = cfg.trainer.monitor
    if name is None:
        return spec.monitor
    try:
        return name, metric_direction(name, spec.heads, num_classes)
    except ValueError as exc:
        raise ValueError(f"trainer.monitor: {exc}") from None


def build_objective(
    dejavu: DejaVuConfig,
    task: Task,
    base: nn.Module,
    *,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> DejaVu | TaskOnly:
    """The trainable objective: ``DejaVu``, or ``TaskOnly`` (the baseline) when disabled.

    Args:
        dejavu: the config's ``dejavu`` section.
        task: the task (loss, conditioning spec, ignore index).
        base: the base network.
        seed: seed of the redaction generator.
        class_names: class names (DejaVu-TS builds its prompts from them).
        mean, std: image normalisation (DejaVu-TS un-normalises for CLIP).
    """
    output_key = next(iter(task.heads))
    if not dejavu.enabled:
        return TaskOnly(base, task.loss, output_key=output_key)

    from dejavu.conditioning import Conditioning
    from dejavu.losses import RegenerationLoss

    dj = dejavu
    redaction = dict(dj.redaction)
    crm = dict(dj.crm)
    text = dict(dj.text)
    text_weight = float(text.pop("weight", 0.0))
    text_module = None
    if text_weight > 0:
        from dejavu.text_supervision import TextSupervision

        if not class_names:
            raise ValueError("dejavu.text.weight > 0 needs the dataset's class names")
        text_module = TextSupervision(
            list(class_names), image_mean=tuple(mean), image_std=tuple(std), **text
        )
    return DejaVu(
        base,
        task.loss,
        conditioning=Conditioning(task.conditioning, **dj.conditioning),
        crm=crm.pop("kind", "forward"),
        crm_kwargs=crm,
        redaction=redaction.pop("name"),
        redaction_kwargs=redaction,
        regen_loss=RegenerationLoss(**dj.regen_loss),
        regen_weight=dj.regen_weight,
        regen_warmup_steps=dj.regen_warmup_steps,
        cyclic_weight=dj.cyclic_weight,
        text_supervision=text_module,
        text_weight=text_weight,
        sa_weight=dj.sa_weight,
        crm_truth_weight=dj.crm_truth_weight,
        ignore_index=task.ignore_index,
        stop_gradient=dj.stop_gradient,
        output_key=output_key,
        seed=seed,
    )


def _slice(x: Any, n: int) -> Any:
    if isinstance(x, Tensor):
        return x[:n].detach()
    if isinstance(x, Mapping):
        return {k: _slice(v, n) for k, v in x.items()}
    if isinstance(x, list):
        return x[:n]
    return x


def _section(cls: type[Any], value: Any) -> Any:
    # A config section, or the plain mapping it was saved as in a checkpoint's hparams.
    if isinstance(value, cls):
        return value
    return getattr(config_from_dict({_SECTION_KEYS[cls]: dict(value)}), _SECTION_KEYS[cls])


_SECTION_KEYS: dict[type[Any], str] = {
    TaskConfig: "task",
    ModelConfig: "model",
    DejaVuConfig: "dejavu",
    OptimConfig: "optim",
}


class DejaVuModule(pl.LightningModule):
    """Train a dense-prediction network with (or without) the DejaVu objective.

    The module takes the config sections it uses (``task``, ``model``,
    ``dejavu``, ``optim``), never the whole config, and the run's length in
    optimiser steps from the runner (:func:`DejaVuModule.from_config` builds
    one from an :class:`~dejavu.toolkit.config.ExperimentConfig`).

    Args:
        task, model, dejavu, optim: the config sections (or their mappings, as
            saved in a checkpoint's hyper-parameters).
        total_steps: optimiser steps of the whole run (the poly schedule's length).
        seed: the run's seed (redaction generator, per-step RNG of stochastic layers).
        image_log_every_n_steps: cadence of the training image panels (0: off).
        run_name: the run's name (recorded in ``base.json``).
        num_classes: the dataset's number of classes (class heads).
        class_names: the dataset's class names (metadata, DejaVu-TS prompts).
        mean, std: the dataset's normalisation (panels, export metadata).
        input_size: ``(H, W)`` the network is trained/evaluated at (metadata).
        categories: the dataset's panoptic categories (``{"id", "name", "isthing"}``
            per class), for a task whose heads use them (``panoptic``); else None.

    Attributes:
        model: the trainable objective; ``model.base`` is the base network.
        task: the :class:`~dejavu.toolkit.tasks.Task`.

    Logged: ``train/loss``, ``train/task``, ``train/regen``, ``train/cyclic``,
    ``train/text``, ``train/sa``, ``train/task/<head>``, ``train/regen_weight``,
    ``train/lr``, ``train/labeled_in_batch`` (rows with targets) and
    ``train/labeled_fraction_in_batch`` per step; ``val/loss`` (task loss) and
    ``val/<head>/<metric>`` per validation; ``test/...`` likewise.

    Example:
        >>> cfg = config_from_dict({"model": {"name": "fpn_test_resnet"}})
        >>> module = DejaVuModule.from_config(cfg, total_steps=100, num_classes=6)
        >>> out = module(torch.zeros(2, 3, 32, 48))  # the base network's predictions
        >>> out["seg"].shape
        torch.Size([2, 6, 32, 48])
        >>> module.eval_model() is module.model.base, module.total_steps()
        (True, 100)
    """

    def __init__(
        self,
        task: TaskConfig | Mapping[str, Any],
        model: ModelConfig | Mapping[str, Any],
        dejavu: DejaVuConfig | Mapping[str, Any],
        optim: OptimConfig | Mapping[str, Any],
        *,
        total_steps: int,
        seed: int = 0,
        image_log_every_n_steps: int = 0,
        run_name: str = "experiment",
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: Sequence[int] | None = None,
        categories: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        from dejavu.toolkit.models import create_model

        self.task_config: TaskConfig = _section(TaskConfig, task)
        self.model_config: ModelConfig = _section(ModelConfig, model)
        self.dejavu_config: DejaVuConfig = _section(DejaVuConfig, dejavu)
        self.optim_config: OptimConfig = _section(OptimConfig, optim)
        if isinstance(total_steps, bool) or int(total_steps) < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self._total_steps = int(total_steps)
        self.seed = int(seed)
        self.image_log_every_n_steps = int(image_log_every_n_steps)
        self.run_name = str(run_name)
        self.save_hyperparameters(
            {
                "task": dataclasses.asdict(self.task_config),
                "model": dataclasses.asdict(self.model_config),
                "dejavu": dataclasses.asdict(self.dejavu_config),
                "optim": dataclasses.asdict(self.optim_config),
                "total_steps": self._total_steps,
                "seed": self.seed,
                "image_log_every_n_steps": self.image_log_every_n_steps,
                "run_name": self.run_name,
                "num_classes": num_classes,
                "class_names": list(class_names) if class_names is not None else None,
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "input_size": [int(v) for v in input_size] if input_size is not None else None,
                **({"categories": [dict(c) for c in categories]} if categories else {}),
            }
        )
        self.class_names = list(class_names) if class_names is not None else None
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.task = create_task(
            self.task_config.name,
            num_classes=num_classes,
            loss_weights=self.task_config.loss_weights,
            ignore_index=self.task_config.ignore_index,
            metrics=self.task_config.metrics,
            categories=categories,
            postprocess=self.task_config.postprocess,
            mask_loss=self.task_config.mask_loss,
        )
        base = create_model(
            self.model_config.name,
            heads=self.task.heads,
            pretrained=self.model_config.pretrained,
            **self.model_config.kwargs,
        )
        self.model = build_objective(
            self.dejavu_config,
            self.task,
            base,
            seed=self.seed,
            class_names=self.class_names,
            mean=self.mean,
            std=self.std,
        )
        self.val_metrics = self.task.metrics()
        self.test_metrics = self.task.metrics()
        self._last_panel_step = -1

    @classmethod
    def from_config(
        cls, cfg: ExperimentConfig | Mapping[str, Any], *, total_steps: int = 1, **metadata: Any
    ) -> DejaVuModule:
        """The module of a run: ``cfg``'s sections, its seed, name and panel cadence.

        Args:
            cfg: the experiment config (or its mapping, as older checkpoints saved it).
            total_steps: optimiser steps of the run (the runner computes them;
                1 for a module that only evaluates).
            **metadata: ``num_classes``, ``class_names``, ``mean``, ``std``, ``input_size``,
                ``categories``.
        """
        cfg = cfg if isinstance(cfg, ExperimentConfig) else config_from_dict(cfg)
        return cls(
            cfg.task,
            cfg.model,
            cfg.dejavu,
            cfg.optim,
            total_steps=total_steps,
            seed=cfg.seed,
            image_log_every_n_steps=cfg.trainer.image_log_every_n_steps,
            run_name=cfg.name,
            **metadata,
        )

    # ------------------------------------------------------------------ inference
    def eval_model(self) -> nn.Module:
        """The base network alone (shares its weights with this module)."""
        return self.model.eval_model()

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predictions of the base network: ``image (B x 3 x H x W) -> dict``."""
        return prediction_dict(self.eval_model()(image), next(iter(self.task.heads)))

    def export_metadata(self) -> dict[str, Any]:
        """What ``base.json`` records: enough to rebuild and use the base network."""
        return {
            "format": "dejavu-base",
            "format_version": 1,
            "model": self.model_config.name,
            "model_kwargs": dict(self.model_config.kwargs),
            "heads": dict(self.task.heads),
            "task": self.task_config.name,
            "num_classes": self.task.num_classes,
            "class_names": self.class_names,
            "ignore_index": self.task.ignore_index,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.hparams.get("input_size"),
            "dejavu": bool(self.dejavu_config.enabled),
            "experiment": self.run_name,
            "epoch": int(self.current_epoch) if self._trainer is not None else None,
            "global_step": int(self.global_step) if self._trainer is not None else None,
            # what decodes a panoptic head's outputs (dejavu predict)
            **(
                {"categories": self.task.categories, "postprocess": self.task.postprocess}
                if self.task.categories is not None
                else {}
            ),
        }

    # ------------------------------------------------------------------ training
    def _panel_due(self) -> bool:
        every = self.image_log_every_n_steps
        step = self.global_step
        return every > 0 and step % every == 0 and step != self._last_panel_step

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Stochastic layers (dropout, drop-path) draw from the global RNG: seed it from
        # (seed, epoch, batch, rank) so that a resumed run draws what an uninterrupted one would.
        torch.manual_seed(
            derive_seed(self.seed, 1, self.current_epoch, batch_idx, self.global_rank)
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        out = self.model(batch, step=self.global_step)
        # Every loss term of the step, for the non-finite guard (training/faults.py).
        self.loss_terms = {
            k: v.detach() for k, v in out.items() if k in LOSS_KEYS or k.startswith("task/")
        }
        bs = int(batch["image"].shape[0])
        logs: dict[str, Any] = {f"train/{k}": out[k].detach() for k in LOSS_KEYS}
        logs.update({f"train/{k}": v.detach() for k, v in out.items() if k.startswith("task/")})
        logs["train/regen_weight"] = float(out["regen_weight"])
        logs["train/lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        labeled = batch.get("labeled")
        n_labeled = int(labeled.sum()) if isinstance(labeled, Tensor) else bs
        logs["train/labeled_in_batch"] = float(n_labeled)
        logs["train/labeled_fraction_in_batch"] = n_labeled / bs
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=bs)
        self.log("train/loss_epoch", out["loss"].detach(), on_step=False, on_epoch=True,
                 batch_size=bs, prog_bar=True, sync_dist=True)  # fmt: skip
        result: dict[str, Any] = {"loss": out["loss"]}
        if self._panel_due():
            self._last_panel_step = self.global_step
            keep = ("pred", "redacted", "regenerated")
            n = 4
            result["vis"] = {
                "step": self.global_step,
                "batch": _slice({k: v for k, v in batch.items() if k != "name"}, n),
                "out": _slice({k: out[k] for k in keep}, n),
            }
        return result

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict[str, Any], metrics: TaskMetrics, prefix: str) -> None:
        pred = self(batch["image"])
        loss = self.task.loss(pred, batch)["loss"]
        self.log(f"{prefix}/loss", loss, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=int(batch["image"].shape[0]))  # fmt: skip
        metrics.update(pred, batch)

    def _eval_epoch_end(self, metrics: TaskMetrics, prefix: str) -> dict[str, float]:
        values = metrics.compute()  # torchmetrics all-reduces the states under DDP
        metrics.reset()
        if not self.trainer.sanity_checking:
            # The values are already identical on every rank; sync_dist averages equal
            # numbers (exactly) and keeps every rank's logged value the same.
            self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=True)
        return values

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self(batch["image"])

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups: base vs. regeneration parts (``crm_lr_mult``), each split into
        decayed weights and undecayed norms/biases (1-D parameters)."""
        o = self.optim_config
        base_ids = {id(p) for p in self.eval_model().parameters()}
        groups: list[dict[str, Any]] = []
        parts = {
            "base": [p for p in self.eval_model().parameters() if p.requires_grad],
            "regeneration": [
                p for p in self.model.parameters() if p.requires_grad and id(p) not in base_ids
            ],
        }
        for part, params in parts.items():
            lr = o.lr * (o.crm_lr_mult if part == "regeneration" else 1.0)
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for suffix, ps, wd in (("", decay, o.weight_decay), ("_no_decay", no_decay, 0.0)):
                if ps:
                    groups.append({"params": ps, "lr": lr, "weight_decay": wd,
                                   "name": part + suffix})  # fmt: skip
        return groups

    def total_steps(self) -> int:
        """Optimiser steps of the whole run (the poly schedule's length), from the runner."""
        return self._total_steps

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        o = self.optim_config
        groups = self.parameter_groups()
        if o.name == "adamw":
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                groups, lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        scheduler = poly_scheduler(optimizer, self.total_steps(), o.poly_power, o.warmup_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
