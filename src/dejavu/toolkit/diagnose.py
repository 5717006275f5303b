"""``dejavu diagnose``: can a DejaVu design teach the network anything, before a long training?

DejaVu teaches the base network only through the conditioning: the
regeneration loss must be lower when the prediction is right. This module
measures that on a split's images, with the same redactions for every
variant, by regenerating with the conditioning taken from

- ``truth``: the ground truth (ignored pixels keep the network's own conditioning);
- ``own``: the network's own prediction, as in training;
- ``other``: the ground truth of another image of the batch (half a batch away);
- ``uniform``: no information (``1 / K`` for class channels, 0 for the rest);

and reports two numbers (both ours):

- **informativeness** ``= 1 - err(truth) / err(uniform)``: does the CRM use the
  conditioning at all;
- **headroom** ``= 1 - err(truth) / err(own)``: how much the regeneration loss
  still rewards fixing the network's errors. This is the number a design has
  to raise; the gradient that reaches the network is proportional to it.

``err`` is the design's own regeneration loss (kind and pixel weights), on
the CRM's working resolution. The network (and a learned CRM) comes from a
checkpoint, or from a short training of the config (``steps``), which is the
state DejaVu acts on early in a run.

Example:
    >>> headroom_figures({"truth": 0.9, "own": 1.0, "uniform": 1.5, "other": 1.4})
    {'informativeness': 0.4, 'headroom': 0.1}
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from dejavu.dejavu import DejaVu
from dejavu.toolkit.errors import ConfigError

__all__ = ["VARIANTS", "headroom_figures", "run_diagnose"]

#: The conditioning variants the CRM is evaluated with, in report order.
VARIANTS: tuple[str, ...] = ("truth", "own", "other", "uniform")


def headroom_figures(errors: Mapping[str, float]) -> dict[str, float]:
    """Informativeness and headroom from the per-variant regeneration errors.

    Example:
        >>> headroom_figures({"truth": 1.0, "own": 1.0, "uniform": 2.0})
        {'informativeness': 0.5, 'headroom': 0.0}
    """
    truth = float(errors["truth"])

    def ratio(other: str) -> float:
        ref = float(errors[other])
        return 1.0 - truth / ref if ref > 0 else math.nan

    return {"informativeness": round(ratio("uniform"), 6), "headroom": round(ratio("own"), 6)}


def _short_run(cfg: Any, steps: int, work_dir: Path, log: Callable[[str], None]) -> Path:
    """Train ``cfg`` for ``steps`` steps (no validation) in ``work_dir``; reuse a finished one."""
    from dejavu.toolkit.training import run_fit

    t = dataclasses.replace(
        cfg.trainer, max_steps=steps, limit_val_batches=0, image_log_every_n_steps=0
    )
    short = dataclasses.replace(
        cfg, name=f"diagnose_{cfg.name}_s{cfg.seed}_{steps}", output_dir=str(work_dir), trainer=t
    )
    last = short.run_dir / "last.ckpt"
    if last.is_file():
        step = int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))
        if step >= steps:
            log(f"reusing {last} ({step} steps)")
            return last
    log(f"training {short.name} for {steps} steps in {short.run_dir}")
    started = short.run_dir.is_dir() and any(short.run_dir.iterdir())
    run_fit(short, resume=started, enable_progress_bar=False)  # from step 0 if nothing saved
    return last


def _train_crm(
    objective: Any,
    loader: DataLoader,
    steps: int,
    lr: float,
    log: Callable[[str], None],
) -> None:
    """Fit a learned CRM on the frozen network's own conditioning for ``steps`` steps."""
    params = [p for p in objective.crm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    objective.crm.train()
    step = 0
    while step < steps:
        for batch in loader:
            image = batch["image"]
            with torch.no_grad():
                pred = objective.predict(image)
                redacted = objective.redaction(image, generator=objective.generator)
                cond = objective.conditioning(
                    pred, size=objective.crm.working_size(*image.shape[-2:])
                )
            regenerated = objective.crm(redacted.image, cond, redacted.keep)
            target = objective.crm.resize_to_working(image)
            loss = objective.regen_loss(regenerated, target, keep=redacted.keep)
            if getattr(objective, "crm_truth_weight", 0.0) > 0:
                loss = loss + objective.crm_truth_weight * objective.truth_regeneration_loss(
                    redacted, cond, target, batch, None
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0:
                log(f"  CRM step {step}/{steps}: regen {float(loss.detach()):.4f}")
            if step >= steps:
                break
    objective.crm.eval()


def run_diagnose(
    cfg: Any,
    checkpoint: str | Path | None = None,
    *,
    steps: int = 300,
    crm_steps: int = 300,
    split: str = "val",
    num_images: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    work_dir: str | Path = "runs/diagnose",
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure how much the regeneration error of ``cfg``'s design depends on the prediction.

    Args:
        cfg: an :class:`~dejavu.toolkit.config.ExperimentConfig` with DejaVu enabled.
        checkpoint: a run's checkpoint for the network (and, when the run used the
            same ``dejavu`` settings, its CRM). ``None``: train ``cfg`` for ``steps``
            steps first (reused when ``work_dir`` already holds that run).
        steps: length of that short training.
        crm_steps: steps to fit a learned CRM on the frozen network when the
            checkpoint has none for this design (parameter-free CRMs need none).
        split: the split whose images are regenerated (``val`` by default).
        num_images: use the first N images of the split (None: all).
        batch_size: evaluation batch size (>= 2: ``other`` pairs images of a batch).
        seed: seed of the redactions (the same for every variant).
        work_dir: where the short training runs are written.
        out: write the report as JSON here.
        log: progress lines.

    Returns:
        The report: per-variant ``errors``, ``informativeness``, ``headroom``, the
        network's task metrics on those images, and what was measured.
    """
    from dejavu.toolkit.compare import machine_info
    from dejavu.toolkit.config import config_to_dict, validate_config
    from dejavu.toolkit.data import pad_collate
    from dejavu.toolkit.training import DejaVuModule, DenseDataModule, load_run
    from dejavu.truth_conditioning import truth_conditioning

    validate_config(cfg)
    if not cfg.dejavu.enabled:
        raise ConfigError("diagnose needs a DejaVu config (dejavu.enabled: true), got a baseline")
    if batch_size < 2:
        raise ValueError(
            f"batch_size must be >= 2 (the 'other' variant pairs images), got {batch_size}"
        )
    dm = DenseDataModule(cfg)
    module = DejaVuModule.from_config(cfg, **dm.module_metadata(cfg.task.name))
    objective = module.model
    if not isinstance(objective, DejaVu) or objective.crm is None:
        raise ConfigError("diagnose needs a design with a CRM (dejavu.crm), found none")
    crm = objective.crm

    source = Path(checkpoint) if checkpoint is not None else None
    if source is None:
        source = _short_run(cfg, steps, Path(work_dir), log)
        trained_steps: int | None = steps
    else:
        trained_steps = None
    run_cfg, trained = load_run(source)
    module.model.base.load_state_dict(trained.model.base.state_dict())
    trained_crm = getattr(trained.model, "crm", None)
    same_design = run_cfg.dejavu == cfg.dejavu and trained_crm is not None
    learned = any(True for _ in crm.parameters())
    crm_source = "none (parameter-free)"
    if learned and same_design and trained_crm is not None:
        crm.load_state_dict(trained_crm.state_dict())
        crm_source = f"checkpoint {source}"
    module.eval()

    dataset = dm.dataset(split)
    if num_images is not None:
        dataset = Subset(dataset, range(min(num_images, len(dataset))))  # type: ignore[arg-type]
    loader = DataLoader(
        dataset, batch_size=batch_size, collate_fn=functools.partial(pad_collate, multiple=1)
    )
    if learned and not same_design:
        train_loader = DataLoader(
            dm.dataset("train"),
            batch_size=cfg.data.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=functools.partial(pad_collate, multiple=cfg.data.pad_to_multiple or 1),
        )
        log(f"fitting the CRM on the frozen network for {crm_steps} steps")
        torch.manual_seed(seed)
        _train_crm(objective, train_loader, crm_steps, cfg.optim.lr * cfg.optim.crm_lr_mult, log)
        crm_source = f"fitted for {crm_steps} steps on the frozen network"

    heads = dict(module.task.heads)
    phi = objective.conditioning
    class_channels = [
        phi.slices(heads)[k] for k, kind in phi.spec.items() if kind == "segmentation"
    ]
    metrics = module.task.metrics()
    totals = dict.fromkeys(VARIANTS, 0.0)
    counts = dict.fromkeys(VARIANTS, 0)
    with torch.no_grad():
        for i, batch in enumerate(loader):
            image = batch["image"]
            b = image.shape[0]
            objective.generator.manual_seed(seed * 1_000_003 + i)
            redacted = objective.redaction(image, generator=objective.generator)
            pred = objective.predict(image)
            metrics.update(pred, batch)
            size = crm.working_size(*image.shape[-2:])
            own = phi(pred, size=size)
            truth = truth_conditioning(
                phi, batch, heads, size, module.task.ignore_index, fill=own
            ).to(own.dtype)
            uniform = torch.zeros_like(own)
            for sl in class_channels:
                uniform[:, sl] = 1.0 / (sl.stop - sl.start)
            variants = {"truth": truth, "own": own, "uniform": uniform}
            if b >= 2:
                variants["other"] = truth.roll(max(1, b // 2), dims=0)
            target = crm.resize_to_working(image)
            for name, cond in variants.items():
                regenerated = crm(redacted.image, cond, redacted.keep)
                loss = objective.regen_loss(regenerated, target, keep=redacted.keep)
                totals[name] += float(loss) * b
                counts[name] += b
    errors = {k: totals[k] / counts[k] for k in VARIANTS if counts[k] > 0}
    figures = headroom_figures(errors)
    task_metrics = {k: float(v) for k, v in metrics.compute().items() if "per_class" not in k}
    report = {
        "config": cfg.name,
        "design": {
            "crm": dict(cfg.dejavu.crm),
            "redaction": dict(cfg.dejavu.redaction),
            "conditioning": dict(cfg.dejavu.conditioning),
            "regen_loss": dict(cfg.dejavu.regen_loss),
        },
        "network": str(source),
        "network_steps": trained_steps,
        "crm_source": crm_source,
        "crm_parameters": sum(p.numel() for p in crm.parameters()),
        "split": split,
        "num_images": counts["own"],
        "seed": seed,
        "errors": errors,
        **figures,
        "task_metrics": task_metrics,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "resolved_config": config_to_dict(cfg),
    }
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
