"""``dejavu demo``: baseline vs DejaVu on the embedded scenes, in a few minutes on a CPU.

For each of segmentation, depth and surface normals the demo trains the same
small network twice from the same seed, data and schedule: once with the task
loss alone (the baseline) and once with DejaVu (redaction + conditional
regeneration; a spatial redaction for segmentation, a spectral band-stop for
depth and normals, as the paper recommends). It then prints the final
validation metrics side by side and writes one panel per task: input, ground
truth, baseline prediction, DejaVu prediction, the redacted input and what the
CRM regenerated from it.

It shows that the whole pipeline works end to end. It is not an experiment:
one seed, a few hundred steps, a tiny network and synthetic data, so the
differences it prints are within seed-to-seed noise. ``dejavu compare``
with full schedules and several seeds is the tool for a claim.

Example:
    >>> import io, tempfile
    >>> out = tempfile.mkdtemp()
    >>> result = run_demo(out, quick=True, tasks=["depth"], cache_dir=out,
    ...                   console=Console(file=io.StringIO()))
    >>> sorted(result.panels), sorted(result.metrics["depth"])
    (['depth'], ['baseline', 'dejavu'])
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from dejavu._validation import check_choice

__all__ = [
    "DEMO_TASKS",
    "FULL",
    "HEADLINE_METRICS",
    "NOT_EVIDENCE",
    "QUICK",
    "DemoResult",
    "DemoSettings",
    "default_config_dir",
    "demo_config",
    "demo_overrides",
    "demo_panel",
    "demo_table",
    "demo_threads",
    "run_demo",
]

#: The tasks the demo trains, in order.
DEMO_TASKS: tuple[str, ...] = ("segmentation", "depth", "normals")

#: The metrics the demo's table shows per task (all are in ``demo.json``).
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "segmentation": ("seg/miou", "seg/aacc"),
    "depth": ("depth/abs_err", "depth/rmse", "depth/delta1"),
    "normals": ("normals/mean", "normals/median", "normals/within_11_25"),
}

#: Printed with every demo result.
NOT_EVIDENCE = (
    "Demo scale: one seed, a few hundred steps of a tiny network on synthetic scenes. "
    "Differences at this scale are within seed-to-seed noise: they are NOT evidence for or against "
    "DejaVu. For a claim, run `dejavu compare CONFIG --seeds N` with a full schedule."
)


@dataclass(frozen=True)
class DemoSettings:
    """The size of a demo run.

    Attributes:
        model: base network (``create_model`` name).
        size: ``(H, W)`` of the rendered scenes.
        num_train, num_val: images per split.
        batch_size: training batch size.
        max_steps: optimiser steps per training.
        crm_width: width of the CRM's U-Net.
        lr: peak learning rate (AdamW, poly decay).
        panel_images: rows of each panel.
    """

    model: str
    size: tuple[int, int]
    num_train: int
    num_val: int
    batch_size: int
    max_steps: int
    crm_width: int
    lr: float
    panel_images: int


# Timed on 2 shared CPU cores: a DejaVu step of fpn_test_efficientnet (1.9 M
# parameters) at 8 x 96 x 128 takes ~0.15 s, a baseline step ~0.1 s, so six
# trainings of 200 steps plus rendering and validation stay under 5 minutes.
FULL = DemoSettings(
    model="fpn_test_efficientnet",
    size=(96, 128),
    num_train=800,
    num_val=64,
    batch_size=8,
    max_steps=200,
    crm_width=16,
    lr=2e-3,
    panel_images=3,
)

#: A seconds-long version for tests (meaningless numbers).
QUICK = DemoSettings(
    model="fpn_test_efficientnet",
    size=(32, 48),
    num_train=8,
    num_val=4,
    batch_size=4,
    max_steps=2,
    crm_width=8,
    lr=2e-3,
    panel_images=2,
)


def default_config_dir() -> Path:
    """``configs/scenes`` of the source tree: the configs the demo trains, scaled down."""
    return Path(__file__).resolve().parents[3] / "configs" / "scenes"


def demo_overrides(
    settings: DemoSettings,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> list[str]:
    """The ``--set`` overrides that scale a ``configs/scenes`` config down to the demo.

    Only the size of the run changes (network, image size and count, steps,
    CRM width, learning rate without warm-up, CPU, no image panels); the task,
    redaction, conditioning and losses are the config's.

    Example:
        >>> demo_overrides(QUICK, "out")[:2]
        ['output_dir=out', 'seed=0']
    """
    h, w = settings.size
    steps_per_epoch = max(1, settings.num_train // settings.batch_size)
    return [
        f"output_dir={output_dir}",
        f"seed={int(seed)}",
        f"data.root={'null' if cache_dir is None else cache_dir}",
        f"data.kwargs={{size: [{h}, {w}]}}",
        f"data.crop_size=[{h}, {w}]",
        f"data.num_train={settings.num_train}",
        f"data.num_val={settings.num_val}",
        f"data.batch_size={settings.batch_size}",
        "data.num_workers=0",
        f"model.name={settings.model}",
        f"dejavu.crm.width={settings.crm_width}",
        f"optim.lr={settings.lr}",
        "optim.warmup_steps=0",
        f"trainer.max_steps={settings.max_steps}",
        f"trainer.max_epochs={settings.max_steps // steps_per_epoch + 1}",
        "trainer.accelerator=cpu",
        f"trainer.log_every_n_steps={max(1, min(10, settings.max_steps))}",
        "trainer.image_log_every_n_steps=0",
    ]


def demo_config(
    task: str,
    dejavu: bool,
    settings: DemoSettings = FULL,
    output_dir: str | Path = "demo_out/runs",
    cache_dir: str | Path | None = None,
    seed: int = 0,
    config_dir: str | Path | None = None,
) -> Any:
    """The :class:`~dejavu.toolkit.config.ExperimentConfig` of one demo training.

    ``configs/scenes/<task>_dejavu.yaml`` (or ``_baseline.yaml``) with
    :func:`demo_overrides`: the baseline and DejaVu configs differ only in
    ``dejavu.enabled`` (the redaction is the config's: spatial ``random`` for
    segmentation, spectral ``bandstop`` for depth and normals).

    Example:
        >>> cfg = demo_config("depth", dejavu=True)
        >>> cfg.name, cfg.dejavu.redaction["name"], cfg.model.name
        ('depth_dejavu', 'bandstop', 'fpn_test_efficientnet')
    """
    from dejavu.toolkit.config import load_config

    check_choice(task, "task", DEMO_TASKS)
    variant = "dejavu" if dejavu else "baseline"
    path = Path(config_dir or default_config_dir()) / f"{task}_{variant}.yaml"
    overrides = [*demo_overrides(settings, output_dir, cache_dir, seed), f"name={task}_{variant}"]
    return load_config(path, overrides)


# ---------------------------------------------------------------------- panels
def _batch(dataset: Any, n: int) -> dict[str, torch.Tensor]:
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    return {
        k: torch.stack([s[k] for s in samples])
        for k in samples[0]
        if isinstance(samples[0][k], torch.Tensor)
    }


@torch.no_grad()
def demo_panel(
    task: str,
    baseline_checkpoint: str | Path,
    dejavu_checkpoint: str | Path,
    cfg: Any,
    num_images: int = 3,
) -> np.ndarray:
    """Input, ground truth, baseline and DejaVu predictions, redacted, regenerated.

    Args:
        task: ``"segmentation"``, ``"depth"`` or ``"normals"``.
        baseline_checkpoint, dejavu_checkpoint: ``last.ckpt`` of the two runs.
        cfg: either run's config (for the validation data).
        num_images: rows (validation images).

    Returns:
        The panel, ``H' x W' x 3`` uint8.
    """
    from dejavu.toolkit.tasks import head_spec, task_spec
    from dejavu.toolkit.training import DenseDataModule, load_eval_model, load_run
    from dejavu.toolkit.visualize import colorize_prediction, denormalize, make_panel

    check_choice(task, "task", DEMO_TASKS)
    key = task_spec(task).heads[0]
    spec = head_spec(key)
    dm = DenseDataModule(cfg)
    batch = _batch(dm.dataset("val"), num_images)
    baseline, meta = load_eval_model(baseline_checkpoint)
    _, module = load_run(dejavu_checkpoint)
    objective = module.model.eval()
    base_pred = baseline.eval()(batch["image"])[key]
    # The DejaVu objective in eval mode redacts with its own generator, predicts
    # and regenerates: exactly what it does in training, minus the update.
    out = objective(batch)
    dv_pred = out["pred"][key]
    mean, std = meta["mean"], meta["std"]
    n = batch["image"].shape[0]
    num_classes = meta.get("num_classes")

    def colour(value: torch.Tensor, i: int) -> np.ndarray:
        # Coloured over the truth's range (depth), so that equal colours mean equal values.
        return colorize_prediction(key, value[i], num_classes, spec.colour_range(batch[key][i]))

    columns: list[tuple[str, list[np.ndarray]]] = [
        ("input", [denormalize(batch["image"][i], mean, std) for i in range(n)]),
        ("ground truth", [colour(batch[key], i) for i in range(n)]),
        ("baseline", [colour(base_pred, i) for i in range(n)]),
        ("DejaVu", [colour(dv_pred, i) for i in range(n)]),
        ("redacted", [denormalize(out["redacted"][i], mean, std) for i in range(n)]),
        ("regenerated", [denormalize(out["regenerated"][i], mean, std) for i in range(n)]),
    ]
    return make_panel(columns, suptitle=f"{task}: baseline vs DejaVu (validation images)")


# ---------------------------------------------------------------------- result
@dataclass
class DemoResult:
    """What :func:`run_demo` measured and wrote.

    Attributes:
        metrics: task -> variant (``"baseline"``/``"dejavu"``) -> final validation metrics.
        train_time_s: task -> variant -> training seconds.
        panels: task -> PNG path.
        wall_time_s: the whole demo, seconds.
        settings: the :class:`DemoSettings` used.
        files: other files written (``demo.json``, ``demo.md``).
        threads: torch intra-op threads used (see :func:`demo_threads`).
    """

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    train_time_s: dict[str, dict[str, float]] = field(default_factory=dict)
    panels: dict[str, Path] = field(default_factory=dict)
    wall_time_s: float = 0.0
    settings: DemoSettings = FULL
    files: dict[str, Path] = field(default_factory=dict)
    threads: int = 1


def _higher_is_better(name: str) -> bool | None:
    from dejavu.metrics import HIGHER_IS_BETTER

    return HIGHER_IS_BETTER.get(name.rsplit("/", 1)[-1])


def _table_rows(
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for task, variants in metrics.items():
        for name in HEADLINE_METRICS[task]:
            b, d = variants["baseline"].get(name), variants["dejavu"].get(name)
            if b is None or d is None:
                continue
            percent = name.rsplit("/", 1)[-1] in ("miou", "aacc", "within_11_25")
            scale, unit = (100.0, " (%)") if percent else (1.0, "")
            higher = _higher_is_better(name)
            arrow = "" if higher is None else (" ↑" if higher else " ↓")
            if higher is None or b == d:
                ahead = "-"
            else:
                ahead = "DejaVu" if (d > b) == higher else "baseline"
            rows.append(
                (
                    task,
                    f"{name}{unit}{arrow}",
                    f"{scale * b:.2f}",
                    f"{scale * d:.2f}",
                    f"{scale * (d - b):+.2f}",
                    ahead,
                )
            )
    return rows


def demo_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Table:
    """The headline metrics of every task, baseline vs DejaVu, as a rich table."""
    table = Table(
        title="final validation metrics, one seed (see the note below)",
        caption="↑ higher is better, ↓ lower is better",
    )
    for col, justify in (
        ("task", "left"),
        ("metric", "left"),
        ("baseline", "right"),
        ("DejaVu", "right"),
        ("Δ", "right"),
        ("ahead", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in _table_rows(metrics):
        table.add_row(*row)
    return table


def _markdown(result: DemoResult) -> str:
    lines = [
        "# dejavu demo: baseline vs DejaVu on the embedded scenes",
        "",
        f"> {NOT_EVIDENCE}",
        "",
        "| task | metric | baseline | DejaVu | DejaVu - baseline | ahead (demo scale) |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _table_rows(result.metrics)]
    s = result.settings
    lines += [
        "",
        f"Model `{s.model}`, scenes {s.size[0]}x{s.size[1]}, {s.num_train} training and "
        f"{s.num_val} validation images, {s.max_steps} steps of batch {s.batch_size}, seed 0. "
        f"Wall time {result.wall_time_s:.0f} s.",
        "",
    ]
    lines += [f"![{task}]({path.name})" for task, path in result.panels.items()]
    return "\n".join(lines) + "\n"


def demo_threads() -> int:
    """Intra-op threads for the demo: the idle cores, at least 1, at most torch's default.

    Measured on 2 cores shared with two other trainings: with 2 threads a step
    took 0.4 to 5.5 s (the threads wait for each other while one is
    descheduled), with 1 thread a steady 0.17 s; on an idle machine 2 threads
    take 0.1 s. So the demo counts the cores the load average leaves free.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on Windows
        busy = 0.0
    free = int((cores or 1) - busy + 0.5)
    return max(1, min(torch.get_num_threads(), free))


def _say(console: Console, text: str) -> None:
    # Plain text (paths must not be wrapped or read as markup), flushed so that
    # progress shows when the output goes to a file or a pipe.
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    console.file.flush()


def _fresh_run_dir(run_dir: Path) -> None:
    # A previous demo's run is replaced, not resumed; only remove what looks like a run.
    if run_dir.is_dir() and (run_dir / "config.yaml").is_file():
        shutil.rmtree(run_dir)


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    quick: bool = False,
    console: Console | None = None,
    tasks: Sequence[str] = DEMO_TASKS,
    cache_dir: str | Path | None = None,
    settings: DemoSettings | None = None,
    config_dir: str | Path | None = None,
) -> DemoResult:
    """Train baseline and DejaVu per task, print the comparison, write panels.

    The runs are ``configs/scenes/<task>_{baseline,dejavu}.yaml`` scaled down
    to the demo's size (:func:`demo_config`).

    Args:
        out_dir: where runs (``runs/<task>_<variant>``), panels
            (``<task>_panel.png``), ``demo.json`` and ``demo.md`` go.
        quick: use :data:`QUICK` (seconds; for tests) instead of :data:`FULL`.
        console: where to print (default: a new rich console on stdout).
        tasks: a subset of :data:`DEMO_TASKS`.
        cache_dir: where the rendered scenes are cached (default: the scenes
            dataset's own cache folder).
        settings: explicit :class:`DemoSettings` (overrides ``quick``).
        config_dir: the folder of the scenes configs (default :func:`default_config_dir`).

    Returns:
        A :class:`DemoResult`.
    """
    start = time.perf_counter()
    console = console or Console()
    settings = settings or (QUICK if quick else FULL)
    tasks = list(tasks)
    for task in tasks:
        check_choice(task, "task", DEMO_TASKS)
    if not tasks:
        raise ValueError(f"tasks must name at least one of {DEMO_TASKS}")
    out_dir = Path(out_dir)
    previous_threads = torch.get_num_threads()
    threads = demo_threads()
    torch.set_num_threads(threads)
    try:
        result = _run(out_dir, settings, tasks, console, cache_dir, threads, config_dir)
    finally:
        torch.set_num_threads(previous_threads)
    result.wall_time_s = time.perf_counter() - start
    _report(result, out_dir, console)
    return result


def _run(
    out_dir: Path,
    settings: DemoSettings,
    tasks: Sequence[str],
    console: Console,
    cache_dir: str | Path | None,
    threads: int,
    config_dir: str | Path | None = None,
) -> DemoResult:
    from PIL import Image

    from dejavu.toolkit.training import run_fit

    runs = out_dir / "runs"
    _say(
        console,
        f"dejavu demo: baseline vs DejaVu for {', '.join(tasks)} on the embedded scenes "
        f"({settings.model}, {settings.max_steps} steps each, CPU, {threads} thread(s))",
    )
    result = DemoResult(settings=settings, threads=threads)
    for task in tasks:
        result.metrics[task] = {}
        result.train_time_s[task] = {}
        checkpoints: dict[str, Path] = {}
        cfg = None
        for variant in ("baseline", "dejavu"):
            cfg = demo_config(
                task, variant == "dejavu", settings, runs, cache_dir, config_dir=config_dir
            )
            _fresh_run_dir(cfg.run_dir)
            _say(console, f"  {task:<12} {variant:<8} training ...")
            fit = run_fit(cfg, enable_progress_bar=False)
            result.metrics[task][variant] = dict(fit.metrics)
            result.train_time_s[task][variant] = fit.train_time_s
            assert fit.last_checkpoint is not None  # only a pruned run's is None
            checkpoints[variant] = fit.last_checkpoint
            _say(console, f"  {task:<12} {variant:<8} done in {fit.train_time_s:.1f} s")
        panel = demo_panel(
            task, checkpoints["baseline"], checkpoints["dejavu"], cfg, settings.panel_images
        )
        path = out_dir / f"{task}_panel.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(panel).save(path)
        result.panels[task] = path
    return result


def _report(result: DemoResult, out_dir: Path, console: Console) -> None:
    settings = result.settings
    console.print(demo_table(result.metrics))
    console.print(Panel(NOT_EVIDENCE, title="note", border_style="yellow"), markup=False)
    for task, path in result.panels.items():
        _say(console, f"panel ({task}): {path}")
    json_path, md_path = out_dir / "demo.json", out_dir / "demo.md"
    json_path.write_text(
        json.dumps(
            {
                "metrics": result.metrics,
                "train_time_s": result.train_time_s,
                "wall_time_s": result.wall_time_s,
                "threads": result.threads,
                "settings": asdict(settings),
                "panels": {k: str(v) for k, v in result.panels.items()},
                "note": NOT_EVIDENCE,
            },
            indent=2,
        )
        + "\n"
    )
    md_path.write_text(_markdown(result))
    result.files = {"json": json_path, "markdown": md_path}
    _say(console, f"wrote {md_path} and {json_path}; total {result.wall_time_s:.0f} s")
