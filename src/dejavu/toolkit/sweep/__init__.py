"""``dejavu sweep``: a grid of settings over paired seeds, with paired statistics and plots.

:func:`run_sweep` trains every **cell** of a grid (every combination of the
values of its axes, ``--grid KEY=V1,V2,...``) once per seed, with the
machinery of ``dejavu compare`` (:mod:`dejavu.toolkit.compare`): run ``s`` of
cell ``c`` lives in ``<out>/runs/<c>/seed<s>``, a finished run with the same
resolved config is reused and an unfinished one resumed, every final
validation metric is summarised as mean ± sample std over the seeds, and each
cell is compared with a **reference** cell seed by seed (same seed: same
initialisation, data order and augmentation), with the 95 % t-interval and
paired t-test of :func:`~dejavu.toolkit.compare.paired_difference`. A
difference whose interval contains 0 is "no measurable effect".

Grid syntax: ``KEY=V1,V2,...``; each value is parsed as YAML, as a ``--set``
value is, and the values are split at the commas that lie outside brackets,
braces and quotes. So a list or a mapping is one value as written:
``dejavu.redaction.band=[0,0.1],[0.1,0.2]`` has two values, and
``dejavu.redaction={name: random, p: 0.25},{name: blocks}`` too. A cell is
named from its values (:func:`cell_name`): ``dejavu.enabled=false``,
``dejavu.redaction=random_p-0.25+optim.lr=0.001`` (axes joined by ``+``).

Runs go in-process one after the other (``jobs=1``), as ``dejavu fit``
subprocesses ``jobs`` at a time (``OMP_NUM_THREADS = cores // jobs`` each, a
log per run under ``<out>/logs/``), or as ``submitit`` jobs (SLURM, or
submitit's local executor). The outputs are ``sweep.json`` (every run: cell,
overrides, seed, final metrics, inference parameters and GMACs, training
time; per cell: the summaries and paired statistics; the machine),
``sweep.md`` and, for each numeric axis (numbers, or ``[lo, hi]`` intervals
such as spectral bands), ``sweep_<axis>.png``: the main metric against the
axis, mean with its 95 % interval, one line per value of the other axes.
See docs/sweep.md.

Example:
    >>> axes = parse_grid(["dejavu.enabled=false,true", "optim.lr=1e-3,2e-3"])
    >>> [c.name for c in grid_cells(axes)][:2]
    ['dejavu.enabled=false+optim.lr=0.001', 'dejavu.enabled=false+optim.lr=0.002']
    >>> grid_cells(axes)[0].overrides
    ('dejavu.enabled=false', 'optim.lr=1e-3')
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit import compare
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.sweep.documented import documented_commands
from dejavu.toolkit.sweep.grid import (
    RESERVED_KEYS,
    Cell,
    GridAxis,
    cell_name,
    grid_cells,
    parse_grid,
    parse_grid_axis,
    split_values,
    value_name,
)
from dejavu.toolkit.sweep.launchers import LAUNCHERS, TrainJob, _run_all, make_executor, train_run
from dejavu.toolkit.sweep.plan import SweepPlan, SweepRun, plan_sweep, plan_table
from dejavu.toolkit.sweep.plots import axis_positions, compute_axes, sweep_plots
from dejavu.toolkit.sweep.report import (
    _finite,
    _report,
    mean_interval,
    sweep_markdown,
    sweep_table,
)

__all__ = [
    "LAUNCHERS",
    "RESERVED_KEYS",
    "Cell",
    "GridAxis",
    "SweepPlan",
    "SweepRun",
    "TrainJob",
    "axis_positions",
    "cell_name",
    "compute_axes",
    "documented_commands",
    "grid_cells",
    "make_executor",
    "mean_interval",
    "parse_grid",
    "parse_grid_axis",
    "plan_sweep",
    "plan_table",
    "run_sweep",
    "split_values",
    "sweep_markdown",
    "sweep_plots",
    "sweep_table",
    "train_run",
    "value_name",
]


# Each run's threads: the cores this process may use, shared by the runs at a time
# (OMP_NUM_THREADS = cores // jobs). Decided here, for the launchers that take it.
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads(jobs: int) -> int:
    return max(1, _cores() // max(1, jobs))


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """``advance(description)``: a rich progress bar on stderr (a no-op when not enabled)."""
    if not enabled:
        yield lambda _description: None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=total)
        # A label is "[cell] seed s": its brackets would otherwise read as rich markup.
        yield lambda description: bar.update(task, advance=1, description=escape(description))


def run_sweep(
    config: str | Path,
    grid: Sequence[str],
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    reference: str | None = None,
    out_dir: str | Path | None = None,
    metric: str | None = None,
    jobs: int = 1,
    launcher: str = "local",
    slurm: Mapping[str, Any] | None = None,
    plugins: Sequence[str] = (),
    log: Callable[[str], Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every cell of the grid once per seed; write ``sweep.json``, ``sweep.md``, plots.

    Every config is loaded and validated, and every existing run directory
    checked, before anything trains (:func:`plan_sweep`). Runs already
    finished with the same resolved config are reused, unfinished ones
    resumed (:func:`~dejavu.toolkit.compare.fit_or_reuse`).

    Args:
        config, grid, seeds, overrides, reference, out_dir, metric: see
            :func:`plan_sweep`.
        jobs: runs at a time. With the ``local`` launcher, 1 trains in this
            process; more run ``dejavu fit`` subprocesses with
            ``OMP_NUM_THREADS = cores // jobs``, each logging to
            ``<out>/logs/<cell>/seed<s>.log``. With ``submitit-local``, the
            jobs given to the executor at a time.
        launcher: one of :data:`LAUNCHERS`.
        slurm: :func:`make_executor` options (``partition``, ``gpus_per_node``,
            ``timeout_min``, ``array_parallelism``, ``options``) for the submitit
            launchers.
        plugins: ``--plugin`` files or modules the subprocesses and jobs import.
        log: called with each line of progress.
        progress: show a rich progress bar on stderr.

    Returns:
        The report that ``sweep.json`` holds: ``runs`` (per run: ``cell``,
        ``overrides``, ``seed``, ``metrics``, ``params``, ``gmacs``,
        ``train_time_s``, ``status`` (trained, resumed or reused), ``run_dir``,
        ``history``); ``cells`` (per cell: ``overrides``, ``values``, ``metrics``
        (name -> mean/std/values over the seeds), ``params``, ``gmacs``,
        ``shared_attention``, ``train_time_s``, ``checkpoints``); ``paired``
        (``paired[cell][metric]``: the paired difference vs the reference, as
        in ``compare.json``); ``grid``, ``seeds``, ``reference``,
        ``main_metric``, ``metric_direction``, ``config``, ``config_path``,
        ``overrides``, ``launcher``, ``jobs``, ``machine``, ``date``,
        ``class_names`` and ``files``. Non-finite values are written as null.

    Raises:
        ConfigError: bad input (before any training).
        RuntimeError: runs that failed (after the others finished).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive int, got {jobs!r}")
    if launcher == "slurm" and jobs != 1:
        raise ConfigError(
            "--jobs sets the runs at a time on this machine; on SLURM use --slurm-array-parallelism"
        )
    if launcher == "local" and slurm:
        raise ConfigError(
            f"the job options {sorted(k for k, v in slurm.items() if v)} need "
            "--launcher slurm or submitit-local"
        )
    say = log or (lambda _line: None)
    plan = plan_sweep(
        config,
        grid,
        seeds,
        overrides=overrides,
        reference=reference,
        out_dir=out_dir,
        metric=metric,
    )
    states = {run: compare.existing_run(run.cfg) for run in plan.runs}  # a foreign run: refused
    executor = None
    if launcher != "local":
        executor = make_executor(launcher, plan.out_dir / "submitit", **dict(slurm or {}))
    plan.out_dir.mkdir(parents=True, exist_ok=True)

    results: dict[SweepRun, Any] = {}
    status: dict[SweepRun, str] = {}
    todo = []
    for run in plan.runs:
        state, result = states[run]
        if state == "finished":
            say(f"{run.label}: reusing the finished run in {run.run_dir}")
            results[run], status[run] = result, "reused"
        else:
            todo.append(run)
            status[run] = "resumed" if state == "unfinished" else "trained"
    say(
        f"sweep: {len(plan.cells)} cell(s) x {len(plan.seeds)} seed(s); "
        f"{len(plan.runs) - len(todo)} finished already, {len(todo)} to train"
    )
    with _progress_bar(len(todo), progress) as advance:
        results.update(
            _run_all(
                plan,
                todo,
                jobs=jobs,
                threads=_threads(jobs),
                launcher=launcher,
                executor=executor,
                plugins=plugins,
                say=say,
                advance=advance,
            )
        )

    report = _report(plan, results, status)
    report.update(launcher=launcher, jobs=jobs)
    md_path, json_path = plan.out_dir / "sweep.md", plan.out_dir / "sweep.json"
    plots = sweep_plots(report, plan.out_dir)
    report["files"] = {
        "markdown": str(md_path),
        "json": str(json_path),
        "plots": [str(p) for p in plots],
    }
    md_path.write_text(sweep_markdown(report))
    report = _finite(report)
    json_path.write_text(json.dumps(report, indent=2, default=str, allow_nan=False) + "\n")
    return report
