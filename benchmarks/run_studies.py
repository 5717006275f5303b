"""Run the studies of issue #13: every command documented in ``configs/studies/*.yaml``.

Each study config names its exact commands in ``# $ `` comment lines
(:func:`dejavu.toolkit.sweep.documented_commands`): ``dejavu sweep`` grids and
the scripts they need first (``python benchmarks/tiny_clip.py``). This script
runs them in order from the repository root, ``dejavu sweep`` with ``--jobs``
added, so re-running it after an interruption reuses finished runs and resumes
unfinished ones. With ``--collect`` each sweep's ``sweep.json`` and
``sweep.md`` are copied to ``benchmarks/results/study_<out>.{json,md}`` and its
plots to ``docs/img/study_<out>_<axis>.png`` (``<out>``: the last part of its
``--out``, e.g. ``redaction_depth``).

The studies take longer than one working session, and a machine's run folders
may not outlive it. ``--archive`` prunes each finished run (``dejavu prune``:
the checkpoints go, 64 MB a run) and keeps what a sweep reuses (``config.yaml``,
``metrics.json``, ``base.json``, ``result.json``: a few KB) and the training
logs (``csv/version_*/metrics.csv``, ~50 KB) under
``benchmarks/results/study_runs/``, which is committed; ``--restore`` puts those
records back under ``runs/studies/`` so that the sweeps reuse them instead of
training them again. A run killed mid-way is not archived: it trains again.
``--skip-collected`` does not run a sweep again whose results are already in
``benchmarks/results/study_<out>.json`` (it puts that file in its ``--out``
folder as ``sweep.json``, where the study's report step reads it).

Usage::

    python benchmarks/run_studies.py --jobs 2 --collect             # all five studies
    python benchmarks/run_studies.py --only redaction crm --dry-run  # check, train nothing
    python benchmarks/run_studies.py --restore --archive --skip-collected --jobs 2 --collect
    python benchmarks/run_studies.py --archive-only                  # before a session ends
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from dejavu.toolkit.compare import RUN_RECORD, find_run_dirs, prune_run
from dejavu.toolkit.compare.runs import prunable
from dejavu.toolkit.sweep import documented_commands

ROOT = Path(__file__).resolve().parents[1]
#: Where the studies' runs train (their documented ``--out`` folders are under it).
RUNS = ROOT / "runs" / "studies"
#: Where their pruned records are kept in the repository.
ARCHIVE = ROOT / "benchmarks" / "results" / "study_runs"
#: What a pruned run keeps that a sweep needs to reuse it.
KEPT = ("config.yaml", "metrics.json", "base.json", RUN_RECORD)
#: Its training logs too (per-step loss terms, ~50 KB a run): benchmarks/train_losses.py
#: reads them, and no other file holds the training terms.
KEPT_LOGS = "csv/version_*/metrics.csv"
#: The studies in the order they run (cheapest first, so early results come early).
STUDIES = ("multitask", "redaction", "band_sweep", "crm", "shared_attention")


def commands(study: str, jobs: int, dry_run: bool) -> list[list[str]]:
    """The study's documented commands as this Python runs them."""
    out = []
    for argv in documented_commands(ROOT / "configs" / "studies" / f"{study}.yaml"):
        if argv[0] == "dejavu":
            cmd = [sys.executable, "-m", "dejavu.toolkit.cli", *argv[1:], "--jobs", str(jobs)]
            out.append([*cmd, "--dry-run"] if dry_run else cmd)
        elif argv[0] == "python" and not dry_run:
            out.append([sys.executable, *argv[1:]])
    return out


def collected(argv: list[str]) -> Path:
    """Where :func:`collect` puts the JSON of the sweep ``argv`` runs."""
    name = Path(argv[argv.index("--out") + 1]).name
    return ROOT / "benchmarks" / "results" / f"study_{name}.json"


def reuse_collected(argv: list[str]) -> bool:
    """Put the sweep's collected JSON in its ``--out`` folder; False when there is none."""
    found = collected(argv)
    if not found.is_file():
        return False
    out = ROOT / argv[argv.index("--out") + 1]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(found, out / "sweep.json")
    return True


def collect(argv: list[str]) -> None:
    """Copy a finished sweep's JSON, table and plots into the repository's results."""
    out = ROOT / argv[argv.index("--out") + 1]
    name = out.name
    for suffix in ("json", "md"):
        src = out / f"sweep.{suffix}"
        if src.is_file():
            shutil.copy(src, ROOT / "benchmarks" / "results" / f"study_{name}.{suffix}")
    for plot in sorted(out.glob("sweep_*.png")):
        shutil.copy(plot, ROOT / "docs" / "img" / f"study_{name}_{plot.stem[len('sweep_') :]}.png")


def archive(runs: Path = RUNS, to: Path = ARCHIVE) -> int:
    """Prune every finished run under ``runs`` and copy its record to ``to``.

    Unfinished runs are left whole (they resume from ``last.ckpt``). Returns the
    number of runs archived.
    """
    count = 0
    for run_dir in find_run_dirs(runs):
        if prunable(run_dir)[1] is not None:
            continue
        prune_run(run_dir)
        dest = to / run_dir.relative_to(runs)
        dest.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, dest / name)
        for log in run_dir.glob(KEPT_LOGS):
            (dest / log.relative_to(run_dir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, dest / log.relative_to(run_dir))
        count += 1
    return count


def restore(archived: Path = ARCHIVE, runs: Path = RUNS) -> int:
    """Copy archived run records back under ``runs`` where no run directory is.

    Returns the number of runs restored; a run directory that exists (finished,
    or being trained) is left as it is.
    """
    count = 0
    for record in find_run_dirs(archived):
        dest = runs / record.relative_to(archived)
        if dest.exists():
            continue
        shutil.copytree(record, dest)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=STUDIES, help="studies to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time per sweep")
    parser.add_argument("--dry-run", action="store_true", help="check every cell, train nothing")
    parser.add_argument("--collect", action="store_true", help="copy results into the repo")
    parser.add_argument(
        "--restore", action="store_true", help=f"first put the records of {ARCHIVE} back"
    )
    parser.add_argument(
        "--archive", action="store_true", help=f"prune each finished sweep's runs into {ARCHIVE}"
    )
    parser.add_argument(
        "--archive-only", action="store_true", help="archive every finished run now, train nothing"
    )
    parser.add_argument(
        "--skip-collected",
        action="store_true",
        help="do not run a sweep again whose study_<out>.json is in benchmarks/results",
    )
    args = parser.parse_args()
    if args.archive_only:
        print(f"archived {archive()} finished run(s) into {ARCHIVE}")
        return
    if args.restore:
        print(f"restored {restore()} run(s) from {ARCHIVE}")
    for study in args.only or STUDIES:
        for cmd in commands(study, args.jobs, args.dry_run):
            if args.skip_collected and "sweep" in cmd and reuse_collected(cmd):
                print(f"# collected before, not run again: {collected(cmd)}", flush=True)
                continue
            print("$", shlex.join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)
            if args.collect and not args.dry_run and "sweep" in cmd:
                collect(cmd)
            if args.archive and not args.dry_run and "sweep" in cmd:
                print(f"archived {archive()} finished run(s) into {ARCHIVE}", flush=True)


if __name__ == "__main__":
    main()
