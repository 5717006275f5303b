"""Training-step time of every cell of a sweep grid, measured side by side.

A sweep's ``train_time_s`` is the wall time of each run's last launch, taken
while other runs share the machine; a run resumed after a kill reports only
its last part. This script measures what a cell costs per training step
instead: it builds each cell's training objective from the config exactly as
``dejavu fit`` does (:class:`~dejavu.toolkit.training.DejaVuModule`, its
optimiser), takes one real training batch of the config's data, and times the
step (forward, backward, optimiser step; not data loading) of every cell in
turn, interleaved, so a change in the machine's load hits all cells alike.
It prints medians and each cell's ratio to the reference cell, and writes them
as JSON.

The grid, ``--set`` and reference use ``dejavu sweep``'s syntax;
``--baseline`` adds a cell without DejaVu (``dejavu.enabled=false``) as the
reference. Steps are counted from ``dejavu.regen_warmup_steps``, so the
regeneration weight is at its full value.

Usage::

    python benchmarks/step_time.py configs/studies/crm.yaml --baseline --steps 20 \\
        --grid 'dejavu.crm={kind: forward},{kind: recursive, num_groups: 4}' \\
        --out benchmarks/results/step_time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from dejavu.toolkit.timing import interleaved_times, time_summary

BASELINE = "baseline (dejavu.enabled=false)"


def first_batch(cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The data module of ``cfg`` (set up for fitting) and its first training batch."""
    from dejavu.toolkit.training.datamodule import DenseDataModule

    torch.manual_seed(cfg.seed)
    dm = DenseDataModule(cfg)
    dm.setup("fit")
    return dm, next(iter(dm.train_dataloader()))


def step_function(cfg: Any, data: tuple[Any, dict[str, Any]]) -> tuple[Callable[[], None], int]:
    """One training step of ``cfg``'s objective on one real batch, and its parameter count.

    Args:
        cfg: a resolved :class:`~dejavu.toolkit.config.ExperimentConfig`.
        data: :func:`first_batch` of ``cfg`` (or of a config with the same data).

    Returns:
        ``(step, params)``: ``step()`` runs forward, backward and the optimiser
        step of the objective ``dejavu fit`` trains; ``params`` counts the
        objective's trainable parameters (base network and DejaVu's modules).
    """
    from dejavu.toolkit.training import DejaVuModule

    dm, batch = data
    torch.manual_seed(cfg.seed)
    module = DejaVuModule.from_config(
        cfg,
        total_steps=max(cfg.trainer.max_steps, 1),
        **dm.module_metadata(cfg.task.name),
    ).train()
    optimizer = module.configure_optimizers()["optimizer"]
    counter = [int(cfg.dejavu.regen_warmup_steps)]

    def step() -> None:
        out = module.model(batch, step=counter[0])
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        counter[0] += 1

    params = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    return step, params


def measure(
    config: str | Path,
    grid: Sequence[str],
    *,
    overrides: Sequence[str] = (),
    baseline: bool = False,
    reference: str | None = None,
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, Any]:
    """Time a training step of every cell of ``grid`` (and of the baseline), side by side.

    Args:
        config: an experiment config.
        grid: ``dejavu sweep --grid`` axes (may be empty with ``baseline``).
        overrides: ``--set`` overrides of every cell.
        baseline: add the cell ``dejavu.enabled=false`` as the reference.
        reference: the reference cell's name (default: the baseline, else the first cell).
        repeats, warmup: see :func:`dejavu.toolkit.timing.interleaved_times`.

    Returns:
        ``cells`` (name -> overrides, params, median/quartile step times and
        ``ratio`` to the reference's median), ``reference``, ``repeats``,
        ``warmup``, ``threads``, ``machine``, ``date``.

    Raises:
        ConfigError: a bad grid, override or reference (as ``dejavu sweep``).
    """
    from dejavu.toolkit.config import ConfigError, config_to_dict, load_config
    from dejavu.toolkit.sweep import plan_sweep

    cfgs: dict[str, Any] = {}
    cell_overrides: dict[str, list[str]] = {}
    if baseline:
        cfgs[BASELINE] = load_config(config, [*overrides, "dejavu.enabled=false"])
        cell_overrides[BASELINE] = ["dejavu.enabled=false"]
    if grid:
        plan = plan_sweep(config, grid, [0], overrides=overrides, out_dir="step_time")
        for cell in plan.cells:
            (run,) = [r for r in plan.runs if r.cell is cell]
            cfgs[cell.name] = run.cfg
            cell_overrides[cell.name] = list(cell.overrides)
    if not cfgs:
        raise ConfigError("nothing to time: give --grid axes, --baseline, or both")
    reference = reference or next(iter(cfgs))
    if reference not in cfgs:
        raise ConfigError(f"reference {reference!r} is not a cell; cells: {list(cfgs)}")
    data: dict[str, tuple[Any, dict[str, Any]]] = {}  # cells that share their data share it
    built = {}
    for name, cfg in cfgs.items():
        key = json.dumps(config_to_dict(cfg)["data"], sort_keys=True, default=str)
        if key not in data:
            data[key] = first_batch(cfg)
        built[name] = step_function(cfg, data[key])
    times = interleaved_times({n: s for n, (s, _) in built.items()}, repeats, warmup)
    timed = {name: time_summary(t) for name, t in times.items()}
    ref = timed[reference]["median_s"]
    return {
        "cells": {
            name: {
                "overrides": cell_overrides[name],
                "params": built[name][1],
                **timed[name],
                "ratio": timed[name]["median_s"] / ref,
            }
            for name in cfgs
        },
        "reference": reference,
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def table(report: Mapping[str, Any]) -> str:
    """The report as a markdown table: a row per cell."""
    ref = report["reference"]
    rows = [
        f"| cell | trainable params | step time, median [q1, q3] (s) | ratio to {ref} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, cell in report["cells"].items():
        rows.append(
            f"| {name} | {cell['params']:,} | {cell['median_s']:.3f} "
            f"[{cell['q1_s']:.3f}, {cell['q3_s']:.3f}] | {cell['ratio']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--baseline", action="store_true", help="add dejavu.enabled=false")
    parser.add_argument("--reference", help="the cell ratios are to (default: the first)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per cell first")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    parser.add_argument("--md", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    from dejavu.toolkit.config import ConfigError

    try:
        report = measure(
            args.config,
            args.grid,
            overrides=args.overrides,
            baseline=args.baseline,
            reference=args.reference,
            repeats=args.steps,
            warmup=args.warmup,
        )
    except (ConfigError, ValueError) as err:
        print(f"step_time: error: {err}", file=sys.stderr)
        return 2
    given = list(sys.argv[1:] if argv is None else argv)
    report["command"] = shlex.join(["python", "benchmarks/step_time.py", *given])
    text = table(report)
    print(text)
    for path, content in ((args.out, json.dumps(report, indent=2)), (args.md, text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content + "\n")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
