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

Usage::

    python benchmarks/run_studies.py --jobs 2 --collect             # all five studies
    python benchmarks/run_studies.py --only redaction crm --dry-run  # check, train nothing
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from dejavu.toolkit.sweep import documented_commands

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=STUDIES, help="studies to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time per sweep")
    parser.add_argument("--dry-run", action="store_true", help="check every cell, train nothing")
    parser.add_argument("--collect", action="store_true", help="copy results into the repo")
    args = parser.parse_args()
    for study in args.only or STUDIES:
        for cmd in commands(study, args.jobs, args.dry_run):
            print("$", shlex.join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)
            if args.collect and not args.dry_run and "sweep" in cmd:
                collect(cmd)


if __name__ == "__main__":
    main()
