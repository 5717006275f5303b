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
import datetime as _dt
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from dejavu.toolkit import compare
from dejavu.toolkit.compare.formatting import _fmt, _fmt_p, _label, _scale_digits
from dejavu.toolkit.compare.report import _final_metrics, _summary
from dejavu.toolkit.compare.tables import _md_table
from dejavu.toolkit.errors import ConfigError

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

#: How runs are launched: in this process or ``dejavu fit`` subprocesses (``local``), as
#: jobs of submitit's local executor (``submitit-local``) or on a SLURM cluster (``slurm``).
LAUNCHERS: tuple[str, ...] = ("local", "submitit-local", "slurm")

#: Config keys the sweep sets for every run (the seed and the run directory).
RESERVED_KEYS: tuple[str, ...] = ("seed", "output_dir", "name")

#: Longer cell names are cut and end in a hash of the full name (file systems cap names at 255).
_NAME_LIMIT = 120

_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_OPEN, _CLOSE = "[{", {"]": "[", "}": "{"}


# ----------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class GridAxis:
    """One ``--grid`` axis: a config key and its values.

    Attributes:
        key: the dotted config key (``dejavu.redaction``).
        texts: each value as written (what the run's ``key=text`` override holds).
        values: each value parsed as YAML.
    """

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    """One combination of the grid's values.

    Attributes:
        name: :func:`cell_name` of its values (its run directory's name).
        overrides: ``key=value`` per axis, in axis order.
        values: axis key -> parsed value.
    """

    name: str
    overrides: tuple[str, ...]
    values: Mapping[str, Any]


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets, braces and quotes.

    A quote opens a quoted string only at the start of a value or after ``[``,
    ``{``, ``,`` or ``:`` (so ``it's`` is a plain word).

    Raises:
        ConfigError: for an unbalanced bracket or brace or an unclosed quote.

    Example:
        >>> split_values("[0,0.1],[0.1,0.2]")
        ['[0,0.1]', '[0.1,0.2]']
        >>> split_values("{name: random, p: 0.25},'a, b',c")
        ['{name: random, p: 0.25}', "'a, b'", 'c']
    """
    pieces: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    start = 0
    previous = ","  # the last character that was not a space
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if quote == '"' and ch == "\\":
                i += 1  # an escaped character inside "..."
            elif ch == quote:
                quote = None
        elif ch in "'\"" and previous in ",[{:":
            quote = ch
        elif ch in _OPEN:
            stack.append(ch)
        elif ch in _CLOSE:
            if not stack or stack[-1] != _CLOSE[ch]:
                raise ConfigError(
                    f"unbalanced {ch!r} at position {i + 1} of {text!r}: brackets and braces "
                    "must pair up within a value"
                )
            stack.pop()
        elif ch == "," and not stack:
            pieces.append(text[start:i])
            start = i + 1
        if not ch.isspace():
            previous = ch
        i += 1
    if quote is not None or stack:
        what = f"quote {quote}" if quote is not None else f"{stack[-1]!r}"
        raise ConfigError(f"unclosed {what} in {text!r}")
    pieces.append(text[start:])
    return pieces


def parse_grid_axis(text: str) -> GridAxis:
    """Parse ``KEY=V1,V2,...`` (see the module for the syntax) into a :class:`GridAxis`.

    Raises:
        ConfigError: a missing ``=`` or key, a key the sweep sets itself
            (:data:`RESERVED_KEYS`), an empty value, invalid YAML, or two
            values that give the same cell name.

    Example:
        >>> axis = parse_grid_axis("dejavu.redaction={name: blocks},{name: random, p: 0.25}")
        >>> axis.key, axis.values
        ('dejavu.redaction', ({'name': 'blocks'}, {'name': 'random', 'p': 0.25}))
    """
    from dejavu.toolkit.config.loading import _parse_yaml

    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ConfigError(
            f"--grid must look like KEY=V1,V2,... with a dotted config key, e.g. "
            f"dejavu.enabled=false,true; got {text!r}"
        )
    if key in RESERVED_KEYS:
        raise ConfigError(
            f"--grid {key}: the sweep sets {', '.join(RESERVED_KEYS)} for every run "
            "(seeds with --seeds / --seed-list, run directories with --out)"
        )
    texts = [piece.strip() for piece in split_values(rest)]
    for i, piece in enumerate(texts):
        if not piece:
            raise ConfigError(
                f"--grid {text!r}: value {i + 1} is empty (no trailing comma; write null "
                "for a null value)"
            )
    values = tuple(
        _parse_yaml(piece, f"--grid {key}, value {i + 1}") for i, piece in enumerate(texts)
    )
    seen: dict[str, str] = {}
    for piece, value in zip(texts, values, strict=True):
        name = value_name(value)
        if name in seen:
            raise ConfigError(
                f"--grid {key}: the values {seen[name]!r} and {piece!r} both give cells the "
                f"name {name!r} (they are equal, or differ only in characters a name cannot "
                "hold); give each value once"
            )
        seen[name] = piece
    return GridAxis(key, tuple(texts), values)


def parse_grid(texts: Sequence[str]) -> list[GridAxis]:
    """Parse every ``--grid`` argument; each key may be given once.

    Example:
        >>> [a.key for a in parse_grid(["optim.lr=0.1,0.2", "dejavu.enabled=false,true"])]
        ['optim.lr', 'dejavu.enabled']
    """
    if isinstance(texts, str):
        raise ConfigError(f"grid must be a list of 'KEY=V1,V2,...' strings, got {texts!r}")
    axes = [parse_grid_axis(t) for t in texts]
    if not axes:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    keys = [a.key for a in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
    return axes


def value_name(value: Any) -> str:
    """A value as a short, file-system-safe word (the value part of a cell name).

    Booleans and null as YAML writes them; a list's items joined by ``_``; a
    mapping's ``name`` or ``kind`` first (bare), then ``key-value`` pairs; any
    run of characters other than letters, digits, ``.``, ``_`` and ``-``
    becomes one ``_``.

    Example:
        >>> value_name(False), value_name(1e-3), value_name([0, 0.1])
        ('false', '0.001', '0_0.1')
        >>> value_name({"name": "bandstop", "band": [0.05, 0.25]})
        'bandstop_band-0.05_0.25'
    """
    return _UNSAFE.sub("_", _raw_name(value)).strip("_") or "empty"


def _raw_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        lead = next((k for k in ("name", "kind") if k in value), None)
        parts = [_raw_name(value[lead])] if lead is not None else []
        parts += [f"{k}-{_raw_name(v)}" for k, v in value.items() if k != lead]
        return "_".join(parts) or "empty"
    if isinstance(value, list | tuple):
        return "_".join(_raw_name(v) for v in value) or "empty"
    return str(value)


def cell_name(assignments: Sequence[tuple[str, Any]]) -> str:
    """The name of the cell with these ``(key, value)`` pairs: ``key=value`` joined by ``+``.

    Deterministic and file-system safe (see :func:`value_name`); a name longer
    than 120 characters is cut and ends in 8 hex digits of its full form's hash.

    Example:
        >>> cell_name([("dejavu.enabled", False)])
        'dejavu.enabled=false'
        >>> cell_name([("dejavu.redaction", {"name": "random", "p": 0.25}), ("optim.lr", 0.01)])
        'dejavu.redaction=random_p-0.25+optim.lr=0.01'
    """
    name = "+".join(f"{key}={value_name(value)}" for key, value in assignments)
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_LIMIT - 9]}-{digest}"
    return name


def grid_cells(axes: Sequence[GridAxis]) -> list[Cell]:
    """Every combination of the axes' values, the first axis varying slowest.

    Example:
        >>> cells = grid_cells(parse_grid(["a.b=1,2", "c=x"]))
        >>> [(c.name, c.overrides) for c in cells]
        [('a.b=1+c=x', ('a.b=1', 'c=x')), ('a.b=2+c=x', ('a.b=2', 'c=x'))]
    """
    cells: list[Cell] = []
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        pairs = [(a.key, a.values[i]) for a, i in zip(axes, combo, strict=True)]
        overrides = tuple(f"{a.key}={a.texts[i]}" for a, i in zip(axes, combo, strict=True))
        cells.append(Cell(cell_name(pairs), overrides, dict(pairs)))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):  # only cut names can meet
        raise ConfigError("two cells of the grid got the same name; shorten the grid's values")
    return cells


# ----------------------------------------------------------------------------- plan
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


# ------------------------------------------------------------------------ launchers
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads(jobs: int) -> int:
    return max(1, _cores() // max(1, jobs))


def train_run(
    config: str, overrides: Sequence[str], plugins: Sequence[str] = (), threads: int | None = None
) -> Any:
    """Train, resume or reuse one run (:func:`~dejavu.toolkit.compare.fit_or_reuse`): a job.

    What a submitit job runs; importable, so the job pickles it by reference.

    Args:
        config: the experiment config file.
        overrides: the run's overrides (:attr:`SweepRun.overrides`).
        plugins: ``--plugin`` files or modules to import first.
        threads: torch threads (None: torch's default).

    Returns:
        The run's :class:`~dejavu.toolkit.training.FitResult`.
    """
    import torch

    from dejavu.toolkit.cli import load_plugins
    from dejavu.toolkit.config import load_config
    from dejavu.toolkit.training import run_fit

    if threads is not None:
        torch.set_num_threads(int(threads))
    load_plugins([str(p) for p in plugins])
    cfg = load_config(config, list(overrides))
    return compare.fit_or_reuse(cfg, run_fit, lambda line: print(line, flush=True), False)


class TrainJob:
    """:func:`train_run` as a submitit job that SLURM may stop and submitit requeue.

    When a job reaches its time limit or is preempted, submitit calls
    :meth:`checkpoint` and requeues the job with what it returns: the same
    run, which :func:`~dejavu.toolkit.compare.fit_or_reuse` then resumes from
    its ``last.ckpt`` (what submitit's ``helpers.Checkpointable`` does, without
    importing submitit here).

    Example:
        >>> job = TrainJob()
        >>> callable(job) and hasattr(job, "checkpoint")
        True
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return train_run(*args, **kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The submission to requeue: this job with the same arguments."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def make_executor(
    launcher: str,
    folder: str | Path,
    *,
    partition: str | None = None,
    gpus_per_node: int | None = None,
    timeout_min: int | None = None,
    array_parallelism: int | None = None,
    options: Sequence[str] = (),
) -> Any:
    """A submitit executor for ``launcher`` (``"slurm"`` or ``"submitit-local"``), configured.

    ``slurm``: ``submitit.AutoExecutor(folder, cluster="slurm")`` with
    ``timeout_min`` (required: submitit's default is 5 minutes), ``partition``,
    ``gpus_per_node``, ``array_parallelism`` (jobs of the array at a time) and
    ``options``, ``KEY=VALUE`` strings passed as ``slurm_KEY`` (the value
    parsed as YAML; any ``SlurmExecutor`` parameter: ``qos``, ``account``,
    ``cpus_per_task``, ``mem``, ``constraint``, ``additional_parameters``...).
    ``submitit-local``: ``submitit.LocalExecutor(folder)`` with
    ``timeout_min`` (default a week) and ``gpus_per_node``.

    Raises:
        ConfigError: submitit is not installed (the ``slurm`` extra), SLURM is
            not there, an option that the launcher does not take, or one that
            submitit refuses.
    """
    from dejavu.toolkit.config.loading import _parse_yaml

    if launcher not in ("slurm", "submitit-local"):
        raise ConfigError(f"submitit launchers are 'slurm' and 'submitit-local', got {launcher!r}")
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError(
            f"--launcher {launcher} needs submitit: pip install 'dejavu-dense[slurm]' "
            "(or pip install 'submitit>=1.5')"
        ) from exc
    params: dict[str, Any] = {}
    executor: Any
    if gpus_per_node is not None:
        params["gpus_per_node"] = int(gpus_per_node)
    if launcher == "submitit-local":
        for given, flag in (
            (partition, "--partition"),
            (array_parallelism, "--slurm-array-parallelism"),
            (options, "--slurm-option"),
        ):
            if given:
                raise ConfigError(f"{flag} applies to --launcher slurm only")
        executor = submitit.LocalExecutor(folder=str(folder))
        # submitit's local default is 2 minutes: far too short for a training.
        params["timeout_min"] = int(timeout_min) if timeout_min is not None else 7 * 24 * 60
    else:
        if timeout_min is None:
            raise ConfigError(
                "--launcher slurm needs --timeout-min (SLURM stops a job after it; submitit's "
                "default is 5 minutes); a run stopped by it resumes when the same sweep runs again"
            )
        params["timeout_min"] = int(timeout_min)
        params["name"] = "dejavu-sweep"
        if partition is not None:
            params["slurm_partition"] = str(partition)
        if array_parallelism is not None:
            params["slurm_array_parallelism"] = int(array_parallelism)
        for option in options:
            key, sep, text = option.partition("=")
            key = key.strip()
            if not sep or not re.fullmatch(r"[a-z_]+", key):
                raise ConfigError(
                    f"--slurm-option must look like KEY=VALUE with a submitit SlurmExecutor "
                    f"parameter as KEY (qos, account, cpus_per_task, mem, ...), got {option!r}"
                )
            params[f"slurm_{key}"] = _parse_yaml(text, f"--slurm-option {option!r}")
        try:
            executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        except RuntimeError as exc:  # no srun: not a SLURM machine
            raise ConfigError(
                f"--launcher slurm: {exc} (use --launcher submitit-local or --jobs here)"
            ) from None
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"submitit refused the job options {params}: {exc}") from None
    return executor


def _fit_command(run: SweepRun, config: Path, plugins: Sequence[str], resume: bool) -> list[str]:
    # `dejavu fit CONFIG --set ...` through this interpreter (a venv's `dejavu` may not be on PATH).
    cmd = [sys.executable, "-m", "dejavu.toolkit.cli"]
    for plugin in plugins:
        cmd += ["--plugin", str(plugin)]
    cmd += ["fit", str(config), "--no-progress"]
    for override in run.overrides:
        cmd += ["--set", override]
    return [*cmd, "--resume"] if resume else cmd


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail if line.strip())


class _Subprocesses:
    """``dejavu fit`` subprocesses, ``jobs`` at a time; terminated together on an error."""

    def __init__(self, plan: SweepPlan, plugins: Sequence[str], jobs: int) -> None:
        self.plan, self.plugins, self.jobs = plan, list(plugins), jobs
        self.env = {**os.environ, "OMP_NUM_THREADS": str(_threads(jobs))}
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()

    def log_path(self, run: SweepRun) -> Path:
        return self.plan.out_dir / "logs" / run.cell.name / f"seed{run.seed}.log"

    def fit(self, run: SweepRun, resume: bool) -> Any:
        cmd = _fit_command(run, self.plan.config, self.plugins, resume)
        log = self.log_path(run)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:  # appended: a resumed run keeps its earlier log
            sink.write(
                f"$ OMP_NUM_THREADS={self.env['OMP_NUM_THREADS']} {shlex.join(cmd)}\n".encode()
            )
            sink.flush()
            proc = subprocess.Popen(cmd, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
            with self.lock:
                self.procs.add(proc)
            try:
                code = proc.wait()
            finally:
                with self.lock:
                    self.procs.discard(proc)
        state, result = compare.existing_run(run.cfg)
        if code != 0 or state != "finished":
            raise RuntimeError(
                f"{run.label}: `dejavu fit` exited with status {code}; its log: {log} "
                f"(last lines: {_log_tail(log)})"
            )
        return result

    def stop(self) -> None:
        # SIGTERM: each run writes a resumable last.ckpt and stops.
        with self.lock:
            for proc in self.procs:
                proc.terminate()


# --------------------------------------------------------------------------- running
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


def _done_line(run: SweepRun, result: Any) -> str:
    metrics = _summary(_final_metrics(result.metrics))
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    return f"{run.label}: done in {result.train_time_s:.1f} s: {shown}"


def _run_all(
    plan: SweepPlan,
    todo: Sequence[SweepRun],
    *,
    jobs: int,
    launcher: str,
    executor: Any,
    plugins: Sequence[str],
    say: Callable[[str], Any],
    advance: Callable[[str], None],
) -> dict[SweepRun, Any]:
    """Train (or resume) ``todo``; the :class:`FitResult` of each. Failed runs are reported
    together once the others are done (what finished is kept and reused next time)."""
    from dejavu.toolkit.training import run_fit

    results: dict[SweepRun, Any] = {}
    failures: list[str] = []

    def finish(run: SweepRun, result: Any) -> None:
        results[run] = result
        say(_done_line(run, result))
        advance(run.label)

    if launcher == "local" and jobs == 1:
        for run in todo:
            say(f"{run.label}: training ...")
            finish(run, compare.fit_or_reuse(run.cfg, run_fit, say, False))
    elif launcher == "local":
        pool = _Subprocesses(plan, plugins, jobs)
        say(f"training {len(todo)} run(s), {jobs} at a time, {_threads(jobs)} thread(s) each")
        with ThreadPoolExecutor(max_workers=jobs) as threads:
            futures = {}
            for run in todo:
                state, _ = compare.existing_run(run.cfg)
                futures[threads.submit(pool.fit, run, state != "new")] = run
                say(f"{run.label}: queued (log {pool.log_path(run)})")
            try:
                for future in as_completed(futures):
                    try:
                        finish(futures[future], future.result())
                    except RuntimeError as exc:
                        failures.append(str(exc))
                        say(str(exc))
            except BaseException:
                threads.shutdown(wait=False, cancel_futures=True)
                pool.stop()
                raise
    else:
        failures = _run_submitit(plan, todo, executor, jobs, launcher, plugins, say, finish)
    if failures:
        raise RuntimeError(
            f"{len(failures)} run(s) of the sweep failed (the others are kept; run the same "
            "command again to resume): " + "; ".join(failures)
        )
    return results


def _run_submitit(
    plan: SweepPlan,
    todo: Sequence[SweepRun],
    executor: Any,
    jobs: int,
    launcher: str,
    plugins: Sequence[str],
    say: Callable[[str], Any],
    finish: Callable[[SweepRun, Any], None],
) -> list[str]:
    # The local executor starts every job it is given at once: give it `jobs` at a time.
    # SLURM gets them all as one array (--slurm-array-parallelism limits it there).
    local = launcher == "submitit-local"
    limit = jobs if local else len(todo)
    threads = _threads(jobs) if local else None
    poll_s = 0.5 if local else 15.0
    pending, failures = list(todo), []
    running: list[tuple[Any, SweepRun]] = []
    try:
        while pending or running:
            batch, pending = pending[: limit - len(running)], pending[limit - len(running) :]
            if batch:
                with executor.batch():
                    submitted = [
                        executor.submit(
                            TrainJob(), str(plan.config), list(r.overrides), list(plugins), threads
                        )
                        for r in batch
                    ]
                for job, run in zip(submitted, batch, strict=True):
                    say(f"{run.label}: job {job.job_id} (logs {job.paths.stdout.parent})")
                    running.append((job, run))
            done = [(job, run) for job, run in running if job.done()]
            for job, run in done:
                running.remove((job, run))
                try:
                    result = job.result()
                except Exception as exc:  # the job's traceback is in its message and logs
                    last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                    failures.append(
                        f"{run.label}: job {job.job_id} failed: {last[0]} (logs {job.paths.stderr})"
                    )
                    say(failures[-1])
                else:
                    finish(run, result)
            if not done:
                time.sleep(poll_s)
    except BaseException:
        for job, run in running:  # no job is left training a run that a new sweep would resume
            say(f"{run.label}: cancelling job {job.job_id}")
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        raise
    return failures


# --------------------------------------------------------------------------- report
def mean_interval(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """The t-interval of the mean of ``values`` (None for fewer than two values).

    The interval of :func:`~dejavu.toolkit.compare.paired_difference` against 0,
    so that every interval of a report follows one convention.

    Example:
        >>> [round(x, 4) for x in mean_interval([1.0, 2.0, 3.0])]
        [-0.4841, 4.4841]
    """
    return compare.paired_difference([0.0] * len(values), values, confidence)["ci"]


def _finite(data: Any) -> Any:
    # JSON has no NaN: a metric without a value (a class absent from val) is written as null.
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def _view(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report in ``compare.json``'s shape (cells as variants), for compare's functions."""
    view: dict[str, Any] = {
        "variants": list(report["cells"]),
        "seeds": report["seeds"],
        "reference": report["reference"],
        "main_metric": report["main_metric"],
        "config": report["config"],
    }
    if "paired" in report:
        view["paired"] = report["paired"]
    for name, entry in report["cells"].items():
        view[name] = entry
    return view


def _plain(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def sweep_markdown(report: Mapping[str, Any]) -> str:
    """``sweep.md``: the main metric per cell with its paired difference vs the reference,
    every final metric per cell (mean ± std), the paired differences of every metric,
    inference cost and training time, and where it ran."""
    view = _view(report)
    metric, ref = report["main_metric"], report["reference"]
    cells = list(report["cells"])
    label = _label(metric)
    better = "higher" if report["metric_direction"] == "max" else "lower"
    grid = "; ".join(
        f"`{key}` = {', '.join(_plain(v) for v in values)}"
        for key, values in report["grid"].items()
    )
    common = " ".join(f"`{o}`" for o in report["overrides"]) or "(none)"
    lines = [
        f"# Sweep: {Path(report['config_path']).name}",
        "",
        f"Config `{report['config_path']}`, common overrides {common}.",
        f"Grid: {grid} ({len(cells)} cells x {len(report['seeds'])} seeds). "
        f"Seeds: {', '.join(map(str, report['seeds']))}; run s of every cell uses seed s, so "
        "cells are compared seed by seed.",
        f"Main metric: **{metric}** ({better} is better). Reference cell: **{ref}**. "
        "Values are final validation metrics; metrics marked (%) are in percent "
        "(differences in percentage points).",
        "",
        f"## {label}",
        "",
        compare.EFFECT_LEGEND,
        "",
    ]
    lines += _md_table(_main_headers(report), _main_rows(report), left=1)

    names = sorted(set().union(*(_summary(c["metrics"]) for c in report["cells"].values())))
    rows = []
    for name in cells:
        stats = report["cells"][name]["metrics"]
        rows.append([name, *(_mean_std(m, stats.get(m))[0] for m in names)])
    lines += [
        "",
        "## Every final metric (mean ± std over seeds)",
        "",
        *_md_table(["cell", *(_label(m) for m in names)], rows),
    ]
    section = compare.paired_markdown(view)
    if section:
        lines += ["", "## " + section.rstrip("\n")]
    rows = []
    for name in cells:
        entry = report["cells"][name]
        times = ", ".join(f"{t:.1f}" for t in entry["train_time_s"])
        rows.append([name, f"{entry['params']:,}", f"{entry['gmacs']:.4f}", times])
    lines += [
        "",
        "## Inference cost and training time",
        "",
        *_md_table(["cell", "params", "GMACs", "training time per seed (s)"], rows),
        "",
        "Cells and their overrides:",
        "",
    ]
    for name in cells:
        overrides = " ".join(f"`{o}`" for o in report["cells"][name]["overrides"])
        lines.append(f"- **{name}**: {overrides}")
    machine = report["machine"]
    plots = report["files"].get("plots", [])
    if plots:
        lines += ["", "Plots: " + ", ".join(f"`{Path(p).name}`" for p in plots) + "."]
    lines += [
        "",
        f"Runs: {report['launcher']} launcher, {report['jobs']} at a time. Machine: "
        f"{machine.get('processor')}, {machine.get('cpu_count')} CPUs, "
        f"GPU {machine.get('cuda') or 'none'}, torch {machine.get('torch')}; "
        f"date {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def _mean_std(name: str, stats: Mapping[str, Any] | None) -> tuple[str, str]:
    # compare's format, with "-" for a metric without a value (null in sweep.json).
    if not stats or stats.get("mean") is None or stats.get("std") is None:
        return "-", "-"
    if any(v is None for v in stats["values"]):
        return "-", ", ".join("-" if v is None else f"{v:.4f}" for v in stats["values"])
    return _fmt(name, stats)


def _main_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Per cell: mean ± std, per seed, difference vs the reference [95 % CI], p, verdict."""
    metric, ref = report["main_metric"], report["reference"]
    rows = []
    for name, entry in report["cells"].items():
        mean_std, per_seed = _mean_std(metric, entry["metrics"].get(metric))
        if name == ref:
            diff, p, verdict = "(reference)", "", ""
        else:
            pd = report["paired"].get(name, {}).get(metric)
            diff = compare.format_difference(pd, metric) if pd else "-"
            p = _fmt_p(pd.get("p_value")) if pd else "-"
            verdict = compare.effect_label(pd) if pd else "-"
        rows.append([name, mean_std, per_seed, diff, p, verdict])
    return rows


def _main_headers(report: Mapping[str, Any]) -> list[str]:
    ref = report["reference"]
    return [
        "cell",
        "mean ± std",
        "per seed",
        f"difference vs {ref} [95 % CI]",
        "p (paired t-test)",
        "verdict",
    ]


def sweep_table(report: Mapping[str, Any]) -> Table:
    """The main metric per cell as a rich table (what ``dejavu sweep`` prints)."""
    metric = report["main_metric"]
    table = Table(
        title=f"{_label(metric)}: final value over {len(report['seeds'])} seed(s)",
        caption=compare.EFFECT_LEGEND,
    )
    for i, header in enumerate(_main_headers(report)):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for row in _main_rows(report):
        table.add_row(*row)
    return table


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def axis_positions(values: Sequence[Any]) -> tuple[list[float], list[str] | None] | None:
    """Where a grid axis's values go on a plot's x axis, and their tick labels.

    Numbers go at themselves (no labels); ``[lo, hi]`` intervals of numbers (a
    spectral band) at their midpoints, labelled ``lo-hi``; any other axis is
    not numeric (None).

    Example:
        >>> axis_positions([0.5, 2])
        ([0.5, 2.0], None)
        >>> axis_positions([[0, 0.1], [0.1, 0.2]])
        ([0.05, 0.15000000000000002], ['0-0.1', '0.1-0.2'])
        >>> axis_positions([True, False]) is None
        True
    """
    if values and all(_number(v) for v in values):
        return [float(v) for v in values], None
    pairs = [v for v in values if isinstance(v, list | tuple) and len(v) == 2]
    if values and len(pairs) == len(values) and all(_number(x) for v in pairs for x in v):
        return [(float(lo) + float(hi)) / 2 for lo, hi in pairs], [
            f"{lo:g}-{hi:g}" for lo, hi in pairs
        ]
    return None


def sweep_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """One ``sweep_<axis>.png`` per numeric grid axis: the main metric against the axis.

    A numeric axis holds numbers or ``[lo, hi]`` intervals (:func:`axis_positions`).
    Each point is a cell's mean over the seeds with its 95 % t-interval
    (:func:`mean_interval`; no bar for one seed); cells that share the values
    of the other axes form one line. An axis of numbers whose positive values
    span more than a factor 100 gets a log scale.

    Returns:
        The files written (none when no axis is numeric).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["main_metric"]
    scale, _ = _scale_digits(metric)
    better = "higher" if report["metric_direction"] == "max" else "lower"
    cells = report["cells"]
    written: list[Path] = []
    for axis in report["grid"]:
        values = list(report["grid"][axis])
        placed = axis_positions(values)
        if placed is None:
            continue
        xs_of, ticks = placed
        others = [k for k in report["grid"] if k != axis]
        lines: dict[str, list[tuple[float, float, list[float] | None]]] = {}
        for entry in cells.values():
            stats = entry["metrics"].get(metric)
            if stats is None or not all(math.isfinite(v) for v in stats["values"]):
                continue
            key = ", ".join(f"{k}={_plain(entry['values'][k])}" for k in others)
            ci = mean_interval(stats["values"])
            x = xs_of[values.index(entry["values"][axis])]
            lines.setdefault(key, []).append((x, stats["mean"], ci))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for key, points in lines.items():
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            ys = [scale * p[1] for p in points]
            err = [
                [scale * (p[1] - p[2][0]) if p[2] else 0.0 for p in points],
                [scale * (p[2][1] - p[1]) if p[2] else 0.0 for p in points],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=key or None)
        if ticks is not None:
            ax.set_xticks(xs_of, ticks, rotation=30, fontsize=8)
        elif min(xs_of) > 0 and max(xs_of) / min(xs_of) > 100:
            ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{_label(metric)} ({better} is better)")
        ax.set_title(
            f"{metric} vs {axis}: mean and 95 % interval over {len(report['seeds'])} seed(s)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        if any(lines):
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"sweep_{_UNSAFE.sub('_', axis)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


# ------------------------------------------------------------------------------ main
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


def _report(
    plan: SweepPlan, results: Mapping[SweepRun, Any], status: Mapping[SweepRun, str]
) -> dict[str, Any]:
    """Per-run records, per-cell summaries and the paired statistics."""
    runs: list[dict[str, Any]] = []
    cells: dict[str, Any] = {}
    class_names = None
    for cell in plan.cells:
        mine = [r for r in plan.runs if r.cell.name == cell.name]
        # The inference network does not depend on the seed: its cost is measured once.
        cost = compare.inference_cost(mine[0].cfg, results[mine[0]].last_checkpoint)
        class_names = class_names or cost["class_names"]
        per_seed = []
        for run in mine:
            result = results[run]
            metrics = _final_metrics(result.metrics)
            per_seed.append(metrics)
            runs.append(
                {
                    "cell": cell.name,
                    "overrides": list(cell.overrides),
                    "seed": run.seed,
                    "metrics": metrics,
                    "params": cost["params"],
                    "gmacs": cost["gmacs"],
                    "train_time_s": float(result.train_time_s),
                    "status": status[run],
                    "run_dir": str(run.run_dir),
                    "history": [dict(h) for h in result.history],
                }
            )
        cells[cell.name] = {
            "overrides": list(cell.overrides),
            "values": dict(cell.values),
            "metrics": compare.summarize_metrics(per_seed),
            "params": cost["params"],
            "gmacs": cost["gmacs"],
            "shared_attention": cost["shared_attention"],
            "train_time_s": [float(results[r].train_time_s) for r in mine],
            "checkpoints": [str(results[r].last_checkpoint) for r in mine],
        }
    report: dict[str, Any] = {
        "config_path": str(plan.config),
        "config": dict(plan.base_config),
        "overrides": list(plan.overrides),
        "grid": {a.key: list(a.values) for a in plan.axes},
        "seeds": list(plan.seeds),
        "reference": plan.reference,
        "main_metric": plan.metric,
        "metric_direction": plan.direction,
        "cells": cells,
        "runs": runs,
        "machine": compare.machine_info(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "class_names": class_names,
    }
    view = _view(report)
    if plan.metric not in cells[plan.reference]["metrics"]:  # e.g. no validation: fall back
        report["main_metric"] = compare.main_metric({**view, "main_metric": None})
    report["paired"] = compare.paired_section(view, plan.reference)
    return report
