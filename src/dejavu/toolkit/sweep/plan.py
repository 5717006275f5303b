"""The plan of a sweep: every run (a cell at a seed) with its resolved, validated config.

:func:`plan_sweep` checks everything a sweep needs before anything trains:
the grid, every run's config, the reference cell and the main metric.

Example:
    >>> from dejavu.toolkit.demo import default_config_dir
    >>> plan = plan_sweep(default_config_dir() / "segmentation_dejavu.yaml",
    ...                   ["dejavu.enabled=false,true"], [0], out_dir="out")
    >>> plan.reference, plan.metric, plan.direction
    ('dejavu.enabled=false', 'seg/miou', 'max')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from dejavu.toolkit import compare
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.sweep.grid import RESERVED_KEYS, Cell, GridAxis, grid_cells, parse_grid

__all__ = ["SweepPlan", "SweepRun", "plan_sweep", "plan_table"]


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity (runs key the results)
class SweepRun:
    """One training of the sweep: a cell at a seed.

    Attributes:
        cell: its cell.
        seed: its seed.
        overrides: every ``--set`` of the run (common, the cell's, seed, run directory).
        cfg: the resolved, validated config.
    """

    cell: Cell
    seed: int
    overrides: tuple[str, ...]
    cfg: Any

    @property
    def run_dir(self) -> Path:
        """``<out>/runs/<cell>/seed<s>``."""
        return Path(self.cfg.output_dir) / self.cfg.name

    @property
    def label(self) -> str:
        """``[cell] seed s``, as progress lines name the run."""
        return f"[{self.cell.name}] seed {self.seed}"


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep will train, checked before any training (:func:`plan_sweep`).

    Attributes:
        config: the experiment config file.
        overrides: the common ``--set`` overrides.
        axes: the grid axes.
        cells: every combination, in order.
        seeds: the seeds (every cell trains once per seed).
        reference: the name of the cell the others are compared with.
        metric: the main metric (``seg/miou``, ...).
        direction: ``"max"`` or ``"min"``: which way the main metric is better.
        out_dir: where runs and reports go.
        runs: one per cell and seed (cells slowest).
        base_config: the resolved config with the common overrides, as a mapping.
    """

    config: Path
    overrides: tuple[str, ...]
    axes: tuple[GridAxis, ...]
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]
    reference: str
    metric: str
    direction: str
    out_dir: Path
    runs: tuple[SweepRun, ...]
    base_config: Mapping[str, Any]


def _override_key(override: str) -> str:
    return override.partition("=")[0].strip()


def plan_sweep(
    config: str | Path,
    grid: Sequence[str],
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    reference: str | None = None,
    out_dir: str | Path | None = None,
    metric: str | None = None,
) -> SweepPlan:
    """Parse the grid and load and validate every run's config (nothing is trained).

    Args:
        config: an experiment config (YAML).
        grid: ``KEY=V1,V2,...`` strings, one per axis (see the module).
        seeds: the seeds; every cell trains once per seed.
        overrides: ``key=value`` overrides of every run (applied before the cell's).
        reference: the cell the others are compared with (default: the first).
        out_dir: where runs and reports go (default:
            ``<config output_dir>/sweep_<config stem>``).
        metric: the main metric (default: the task's, or ``trainer.monitor``).

    Raises:
        ConfigError: a bad grid, an unknown config key or invalid value in
            any cell, a key both in ``overrides`` and the grid, an unknown
            reference cell or a metric the task does not log.

    Example:
        >>> from dejavu.toolkit.demo import default_config_dir
        >>> plan = plan_sweep(default_config_dir() / "depth_dejavu.yaml",
        ...                   ["dejavu.redaction.band=[0,0.1],[0.1,0.2]"], [0, 1], out_dir="out")
        >>> len(plan.runs), plan.metric, plan.direction, str(plan.runs[3].run_dir)
        (4, 'depth/rmse', 'min', 'out/runs/dejavu.redaction.band=0.1_0.2/seed1')
    """
    from dejavu.toolkit.config import config_to_dict, load_config
    from dejavu.toolkit.tasks import task_spec
    from dejavu.toolkit.tasks.heads import metric_direction
    from dejavu.toolkit.training import default_monitor

    axes = parse_grid(grid)
    cells = grid_cells(axes)
    try:
        seed_list = compare.resolve_seeds(None, list(seeds))
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    common = [str(o) for o in overrides]
    for o in common:
        key = _override_key(o)
        if key in RESERVED_KEYS:
            raise ConfigError(f"--set {o!r}: the sweep sets {key} for every run")
        if any(a.key == key for a in axes):
            raise ConfigError(f"{key} is both a --set override and a --grid axis; give it once")
    names = [c.name for c in cells]
    ref = reference if reference is not None else names[0]
    if ref not in names:
        raise ConfigError(f"--reference {ref!r} is not a cell of the grid; the cells: {names}")

    base_cfg = load_config(config, common)
    base_dict = config_to_dict(base_cfg)
    out = Path(
        out_dir
        if out_dir is not None
        else Path(str(base_dict.get("output_dir", "runs"))) / f"sweep_{Path(config).stem}"
    )
    runs = []
    for cell in cells:
        for seed in seed_list:
            run_overrides = compare.run_overrides(common, cell.overrides, seed, out, cell.name)
            runs.append(
                SweepRun(cell, seed, tuple(run_overrides), load_config(config, run_overrides))
            )
    ref_cfg = next(r.cfg for r in runs if r.cell.name == ref)
    if metric is None:
        metric, direction = default_monitor(ref_cfg)
    else:
        try:
            direction = metric_direction(metric, task_spec(ref_cfg.task.name).heads)
        except ValueError as exc:
            raise ConfigError(f"--metric: {exc}") from None
    return SweepPlan(
        config=Path(config),
        overrides=tuple(common),
        axes=tuple(axes),
        cells=tuple(cells),
        seeds=tuple(seed_list),
        reference=ref,
        metric=metric,
        direction=direction,
        out_dir=out,
        runs=tuple(runs),
        base_config=base_dict,
    )


def plan_table(plan: SweepPlan) -> Table:
    """The cells of a plan and their overrides, as a rich table (``dejavu sweep --dry-run``)."""
    table = Table(title=f"{len(plan.cells)} cell(s) x {len(plan.seeds)} seed(s): dry run")
    table.add_column("cell", no_wrap=True, overflow="fold")  # whole: what --reference takes
    table.add_column("overrides", overflow="fold")
    table.add_column("")
    for cell in plan.cells:
        role = "reference" if cell.name == plan.reference else ""
        table.add_row(cell.name, " ".join(cell.overrides), role)
    return table
