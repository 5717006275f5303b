"""The ``dejavu`` command line: train, evaluate, compare, export, visualise.

Every sub-command is a thin layer over a library function (``run_fit``,
``run_compare``, ``export_checkpoint``, ...), so anything the CLI does can be
done from Python too.

Exit status: 0 on success; 2 for a user error, a
:class:`~dejavu.toolkit.errors.ConfigError` (a bad config or value, a missing
or foreign file; also argparse's own usage errors), printed as one line
``dejavu: error: ...`` (``--debug`` adds the traceback); 1 for anything else
(a bug, a failure in the middle of a training), printed with its traceback;
1 also when a command ran but its check failed (an export that does not
match); 130 when interrupted. A training run that stops for a reason the
user must act on (:class:`~dejavu.toolkit.errors.TrainingStoppedError`: a
non-finite loss, 1; SIGTERM, 143, or Ctrl-C, 130, after writing a
resumable checkpoint) is reported in one line, with how to resume.

Example:
    >>> main(["redactions"])
    none
    random
    checkerboard
    blocks
    lowpass
    highpass
    bandpass
    bandstop
    choice
    0
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import dejavu
from dejavu.toolkit.errors import (
    ConfigError,
    RunExistsError,
    RunInterruptedError,
    TrainingStoppedError,
    UserPathError,
    one_line,
    user_input,
)

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _console() -> Console:
    # Built per call so that output follows sys.stdout when tests capture it. Written to
    # a file or a pipe, tables get room (rich would assume 80 columns and wrap cells).
    width = None if sys.stdout.isatty() else 140
    return Console(file=sys.stdout, highlight=False, width=width)


def _error(message: str) -> None:
    print(f"dejavu: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------- parser
def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        type=Path,
        help="experiment config (YAML), e.g. configs/scenes/segmentation_dejavu.yaml",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set trainer.max_steps=100 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``dejavu`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="dejavu",
        description=(
            "DejaVu: conditional regenerative learning for dense prediction. "
            "Train with `fit`, measure the effect with `compare`, try it with `demo`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dejavu {dejavu.__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Lightning's informational messages"
    )
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="import a .py file or a module first, e.g. one that registers a redaction, CRM, "
        "model, dataset or task (repeatable; see docs/extending.md)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("fit", help="train a model from a config", description="Train a model.")
    _add_config_args(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="resume from CKPT, or from the run's last checkpoint when CKPT is omitted",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh where the run directory already holds a run: the old run is moved "
        "aside to <name>.old-<date>-<time> (nothing is deleted)",
    )
    p.add_argument("--output-dir", type=Path, help="where the run is written (config output_dir)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--json", type=Path, help="also write the final metrics to this JSON file")
    p.set_defaults(handler=_cmd_fit)

    for name, helptext in (
        ("validate", "evaluate a checkpoint on the validation split"),
        ("test", "evaluate a checkpoint on the test split"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:])
        _add_config_args(p)
        p.add_argument("--ckpt", type=Path, required=True, help="checkpoint to evaluate")
        p.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
        p.set_defaults(handler=_cmd_evaluate, split=name)

    p = sub.add_parser(
        "predict",
        help="write predictions for images",
        description="Predict images (default: the validation split) and write PNGs.",
    )
    _add_config_args(p)
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint to predict with")
    p.add_argument(
        "--input", nargs="+", type=Path, default=None, metavar="PATH", help="image files"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "compare",
        help="train baseline and DejaVu over several seeds and compare",
        description=(
            "Train the baseline (dejavu.enabled=false) and the DejaVu variant with the same "
            "schedule and seeds; report every final validation metric as mean +- std, "
            "per-seed values, the paired difference to the reference variant (same seed) "
            "with its 95% t-interval and paired t-test, and the inference cost of both "
            "models. A difference whose interval contains 0 is reported as 'no measurable "
            "effect'. Writes compare.md and compare.json. Progress goes to stderr, the "
            "table to stdout."
        ),
    )
    _add_config_args(p)
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    p.add_argument("--seed-list", type=int, nargs="+", default=None, help="explicit seeds")
    p.add_argument(
        "--variants",
        "--variant",
        dest="variants",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME:KEY=VALUE[,KEY=VALUE...]",
        help=(
            "named override sets to compare instead of the default two "
            "(baseline:dejavu.enabled=false dejavu:dejavu.enabled=true), e.g. "
            "--variants base:dejavu.enabled=false blocks:dejavu.redaction.name=blocks"
        ),
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="variant the others are compared with, seed by seed (default: the first)",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.set_defaults(handler=_cmd_compare)

    p = sub.add_parser(
        "sweep",
        help="train a grid of settings over paired seeds and compare the cells",
        description=(
            "Train every combination of the --grid values (a cell) once per seed, reusing "
            "finished runs and resuming unfinished ones as compare does; report every final "
            "metric per cell as mean +- std and the paired difference of each cell to the "
            "reference cell (same seed) with its 95%% t-interval and paired t-test. Writes "
            "sweep.md, sweep.json and a plot per numeric axis (sweep_<axis>.png). See "
            "docs/sweep.md."
        ),
    )
    _add_config_args(p)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="an axis of the grid (repeatable): values parsed as YAML, split at the commas "
        "outside brackets, braces and quotes, e.g. --grid dejavu.enabled=false,true or "
        "--grid 'dejavu.redaction.band=[0,0.1],[0.1,0.2]'",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    p.add_argument("--seed-list", type=int, nargs="+", default=None, help="explicit seeds")
    p.add_argument(
        "--reference",
        default=None,
        metavar="CELL",
        help="cell the others are compared with, seed by seed (default: the first cell)",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time (local: 1 trains in this process, more run `dejavu fit` "
        "subprocesses with OMP_NUM_THREADS = cores // jobs)",
    )
    p.add_argument(
        "--metric",
        default=None,
        help="main metric of the table and plots (default: the task's, e.g. seg/miou)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check every cell's config and print the cells and runs; train nothing",
    )
    p.add_argument(
        "--launcher",
        default="local",
        choices=["local", "submitit-local", "slurm"],
        help="where runs train: here (local), as submitit jobs on this machine "
        "(submitit-local) or on a SLURM cluster (slurm; needs the slurm extra)",
    )
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per job (submitit)")
    p.add_argument(
        "--timeout-min", type=int, default=None, help="time limit per job in minutes (submitit)"
    )
    p.add_argument("--slurm-array-parallelism", type=int, default=None, help="SLURM jobs at a time")
    p.add_argument(
        "--slurm-option",
        dest="slurm_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any submitit SlurmExecutor parameter, e.g. --slurm-option qos=high "
        "--slurm-option cpus_per_task=8 (repeatable)",
    )
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser(
        "diagnose",
        help="does the regeneration loss reward a better prediction? (minutes, not a training)",
        description=(
            "Regenerate a split's images with the design's CRM conditioned on the ground "
            "truth, the network's own prediction, another image's truth and no information; "
            "print the errors, informativeness = 1 - err(truth)/err(uniform) and headroom = "
            "1 - err(truth)/err(own). Without --ckpt the config is first trained for --steps."
        ),
    )
    _add_config_args(p)
    p.add_argument("--ckpt", type=Path, default=None, help="network (and CRM) checkpoint")
    p.add_argument("--steps", type=int, default=300, help="short training when no --ckpt")
    p.add_argument(
        "--crm-steps", type=int, default=300, help="fit a learned CRM absent from --ckpt"
    )
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--num-images", type=int, default=None, help="first N images of the split")
    p.add_argument("--seed", type=int, default=0, help="seed of the redactions")
    p.add_argument(
        "--work-dir", type=Path, default=Path("runs/diagnose"), help="short trainings go here"
    )
    p.add_argument("--json", type=Path, default=None, help="write the report to this JSON file")
    p.set_defaults(handler=_cmd_diagnose)

    p = sub.add_parser(
        "redact",
        help="figure of an image and its redactions",
        description="Write a figure: the input beside each redaction of it.",
    )
    p.add_argument("image", type=Path, help="input image (PNG, JPEG, ...)")
    p.add_argument(
        "--mode",
        dest="modes",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME",
        help="redactions to show (default: lowpass bandstop random checkerboard blocks)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output PNG (default: <image>_redact.png)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random redactions")
    p.add_argument(
        "--set-param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="redaction parameter for every mode that takes it, e.g. --set-param cutoff=0.2",
    )
    p.add_argument("--max-size", type=int, default=512, help="longest side the image is cut to")
    p.set_defaults(handler=_cmd_redact)

    p = sub.add_parser(
        "panel",
        help="figure of runs side by side: input, truth, predictions, redacted, regenerated",
        description=(
            "Write a figure with one row per dataset image: the input, the ground truth, "
            "each run's prediction and, for runs trained with DejaVu, a redaction of the "
            "image and what the CRM regenerates from it."
        ),
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="LABEL=CKPT",
        help="runs to show: LABEL=<checkpoint or run directory> (or a bare path)",
    )
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument(
        "--index",
        dest="indices",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3],
        help="dataset indices, one row each (default: 0 1 2 3)",
    )
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0, help="seed of the redactions shown")
    p.add_argument("--data-root", type=Path, default=None, help="dataset root (config's otherwise)")
    p.set_defaults(handler=_cmd_panel)

    p = sub.add_parser(
        "export",
        help="export the inference network and verify it",
        description=(
            "Export the base network alone (no regeneration parts) and check that the "
            "exported file gives the PyTorch outputs (max abs diff <= --atol)."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="training checkpoint")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"])
    p.add_argument("--out", type=Path, default=None, help="output file")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--atol", type=float, default=1e-4, help="allowed max abs difference")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser(
        "prune",
        help="delete finished runs' checkpoints, keeping their results",
        description=(
            "Delete last.ckpt, best.ckpt and base.safetensors of every finished run under "
            "the paths (a run directory, or a compare or sweep --out), keeping config.yaml, "
            "metrics.json, base.json and the logs, plus result.json (its training time): "
            "compare and sweep still reuse a pruned run. Unfinished runs are left whole "
            "(they resume from last.ckpt). A pruned run can no longer be evaluated or "
            "exported: --keep-base keeps its network."
        ),
    )
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="run or output folders")
    p.add_argument("--keep-base", action="store_true", help="keep base.safetensors")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    p.set_defaults(handler=_cmd_prune)

    p = sub.add_parser(
        "demo",
        help="baseline vs DejaVu on the embedded scenes (a few minutes on a CPU)",
        description=(
            "Train baseline and DejaVu on the embedded procedural scenes for segmentation, "
            "depth and normals; print the comparison and write panels. Demo-scale numbers "
            "show the pipeline works; they are not evidence for or against the method."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds), for tests")
    p.add_argument(
        "--configs",
        type=Path,
        default=None,
        help="folder of the scenes configs it scales down (default: the source tree's "
        "configs/scenes)",
    )
    p.set_defaults(handler=_cmd_demo)

    for name, what in (
        ("models", "base networks (and the open families)"),
        ("redactions", "redactions"),
        ("crms", "conditional regeneration modules (dejavu.crm.kind)"),
        ("datasets", "datasets"),
        ("tasks", "tasks"),
    ):
        p = sub.add_parser(name, help=f"list the registered {what}")
        p.set_defaults(handler=_cmd_list, registry=name)
    return parser


# ------------------------------------------------------------------- helpers
def _load_config(args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    from dejavu.toolkit.config import load_config

    return load_config(args.config, [*args.overrides, *extra])


def _metrics_table(title: str, metrics: Mapping[str, float]) -> Table:
    # Per-class values (seg/iou_per_class/<k>) would bury the summary; --json keeps them.
    shown = {k: v for k, v in metrics.items() if "_per_class/" not in k}
    hidden = len(metrics) - len(shown)
    caption = f"{hidden} per-class values not shown (write them with --json)" if hidden else None
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(shown):
        value = shown[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


#: Commands that run a Lightning Trainer.
_TRAINER_COMMANDS = frozenset(
    {"fit", "validate", "test", "predict", "compare", "sweep", "demo", "diagnose"}
)


def _quiet_lightning() -> None:
    import logging

    # Lightning sets its loggers to INFO when imported, so import it first.
    import lightning.pytorch  # noqa: F401

    # "GPU available: False ..." and friends: useful when debugging, noise otherwise.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's own use of a torch API that torch deprecated: nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _write_json(path: Path, data: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ commands
def _resume_command(args: argparse.Namespace) -> str:
    """The ``dejavu fit`` command that continues this run (same config and overrides)."""
    import shlex

    words = ["dejavu"]
    for plugin in getattr(args, "plugins", None) or []:
        words += ["--plugin", str(plugin)]
    words += ["fit", str(args.config)]
    for override in args.overrides:
        words += ["--set", override]
    if args.output_dir is not None:
        words += ["--output-dir", str(args.output_dir)]
    return shlex.join([*words, "--resume"])


def _cmd_fit(args: argparse.Namespace) -> int:
    from dejavu.toolkit.training import run_fit

    extra = [f"output_dir={args.output_dir}"] if args.output_dir is not None else []
    cfg = _load_config(args, extra)
    resume: bool | str = args.resume if args.resume is True else False
    if isinstance(args.resume, str):
        ckpt = Path(args.resume)
        if not ckpt.is_file():
            raise UserPathError(f"--resume checkpoint not found: {ckpt}")
        resume = str(ckpt)
    try:
        result = run_fit(
            cfg,
            resume=resume,
            overwrite=args.overwrite,
            enable_progress_bar=False if args.no_progress else None,
        )
    except FileExistsError as exc:  # names --resume and --overwrite
        raise RunExistsError(str(exc)) from exc
    except RunInterruptedError as exc:  # SIGTERM / Ctrl-C: say how to go on, exactly
        if not exc.resumable:
            raise
        raise RunInterruptedError(
            f"{exc}; continue with: {_resume_command(args)}", exc.exit_code, resumable=True
        ) from None
    console = _console()
    console.print(_metrics_table("final validation metrics", result.metrics))
    print(f"run directory:   {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint}")
    print(f"training time:   {result.train_time_s:.1f} s")
    if args.json is not None:
        _write_json(args.json, result.metrics)
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dejavu.toolkit.training import run_test, run_validate

    if not args.ckpt.is_file():
        raise UserPathError(f"checkpoint not found: {args.ckpt}")
    cfg = _load_config(args)
    fn = run_validate if args.split == "validate" else run_test
    metrics = fn(cfg, args.ckpt)
    _console().print(_metrics_table(f"{args.split}: {args.ckpt}", metrics))
    if args.json is not None:
        _write_json(args.json, metrics)
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from dejavu.toolkit.predict import run_predict

    if not args.ckpt.is_file():
        raise UserPathError(f"checkpoint not found: {args.ckpt}")
    for path in args.input or []:
        if not path.exists():
            raise UserPathError(f"input not found: {path}")
    cfg = _load_config(args)
    written = run_predict(cfg, args.ckpt, args.input, args.out)
    print(f"wrote {len(written)} file(s) to {args.out}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from dejavu.toolkit.compare import (
        compare_table,
        default_variants,
        parse_variants,
        resolve_seeds,
        run_compare,
    )

    with user_input():
        seeds = resolve_seeds(args.seeds, args.seed_list)
        variants = parse_variants(args.variants) if args.variants else default_variants()
    console = _console()
    report = run_compare(
        args.config,
        seeds=seeds,
        overrides=args.overrides,
        variants=variants,
        reference=args.reference,
        out_dir=args.out,
        # Progress to stderr, results (the table, the files written) to stdout.
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    console.print(compare_table(report))
    print(f"wrote {report['files']['markdown']} and {report['files']['json']}")
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dejavu.toolkit.compare import resolve_seeds
    from dejavu.toolkit.sweep import plan_sweep, plan_table, run_sweep, sweep_table

    with user_input():
        seeds = resolve_seeds(args.seeds, args.seed_list)
    common = {
        "overrides": args.overrides,
        "reference": args.reference,
        "out_dir": args.out,
        "metric": args.metric,
    }
    if args.dry_run:
        plan = plan_sweep(args.config, args.grid, seeds, **common)
        _console().print(plan_table(plan))
        print(f"main metric: {plan.metric} ({plan.direction}); runs in {plan.out_dir / 'runs'}")
        return EXIT_OK
    slurm = {
        "partition": args.partition,
        "gpus_per_node": args.gpus_per_node,
        "timeout_min": args.timeout_min,
        "array_parallelism": args.slurm_array_parallelism,
        "options": args.slurm_options,
    }
    report = run_sweep(
        args.config,
        args.grid,
        seeds,
        jobs=args.jobs,
        launcher=args.launcher,
        slurm={k: v for k, v in slurm.items() if v},
        plugins=args.plugins,
        # Progress to stderr, results (the table, the files written) to stdout.
        log=lambda line: print(line, file=sys.stderr, flush=True),
        progress=True,
        **common,
    )
    _console().print(sweep_table(report))
    files = report["files"]
    print(f"wrote {files['markdown']}, {files['json']}" + "".join(f", {p}" for p in files["plots"]))
    return EXIT_OK


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from dejavu.toolkit.diagnose import run_diagnose

    if args.ckpt is not None and not args.ckpt.is_file():
        raise UserPathError(f"checkpoint not found: {args.ckpt}")
    cfg = _load_config(args)
    report = run_diagnose(
        cfg,
        args.ckpt,
        steps=args.steps,
        crm_steps=args.crm_steps,
        split=args.split,
        num_images=args.num_images,
        seed=args.seed,
        work_dir=args.work_dir,
        out=args.json,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    table = Table(title=f"regeneration error by conditioning ({report['split']}, "
                  f"{report['num_images']} images)")  # fmt: skip
    table.add_column("conditioning")
    table.add_column("error", justify="right")
    table.add_column("vs own", justify="right")
    own = report["errors"]["own"]
    for name, err in report["errors"].items():
        table.add_row(name, f"{err:.5f}", f"{100 * (err / own - 1):+.2f} %")
    _console().print(table)
    print(f"informativeness: {report['informativeness']:.4f}")
    print(f"headroom:        {report['headroom']:.4f}")
    if args.json is not None:
        print(f"wrote {args.json}")
    return EXIT_OK


def _cmd_redact(args: argparse.Namespace) -> int:
    from dejavu.toolkit.redact_figure import DEFAULT_MODES, parse_params, save_redaction_figure

    out = args.out or args.image.with_name(args.image.stem + "_redact.png")
    with user_input():  # the figure is a function of the user's image, names and values only
        path = save_redaction_figure(
            args.image,
            out,
            modes=args.modes or DEFAULT_MODES,
            seed=args.seed,
            params=parse_params(args.params),
            max_size=args.max_size,
        )
    print(f"wrote {path}")
    return EXIT_OK


def _cmd_panel(args: argparse.Namespace) -> int:
    from dejavu.toolkit.prediction_panel import parse_run_specs, save_prediction_panel

    with user_input():
        runs = parse_run_specs(args.runs)
    path = save_prediction_panel(
        runs,
        args.out,
        args.indices,
        split=args.split,
        seed=args.seed,
        data_root=args.data_root,
    )
    print(f"wrote {path}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from dejavu.toolkit.export import export_checkpoint

    result = export_checkpoint(
        args.checkpoint, args.format, args.out, input_size=args.input_size, atol=args.atol
    )
    table = Table(
        title=f"{result.format} export ({result.exporter}), input 1x3x"
        f"{result.input_size[0]}x{result.input_size[1]}"
    )
    table.add_column("output")
    table.add_column("max abs diff vs PyTorch", justify="right")
    for key, diff in result.diffs.items():
        table.add_row(key, f"{diff:.3e}")
    console = _console()
    console.print(table)
    print(f"wrote {result.path}")
    if not result.ok:
        _error(
            f"exported model differs from PyTorch by {result.max_abs_diff:.3e} "
            f"(> atol {result.atol:.1e})"
        )
        return EXIT_FAILED
    print(f"verified: max abs diff {result.max_abs_diff:.3e} <= {result.atol:.1e}")
    return EXIT_OK


def _cmd_prune(args: argparse.Namespace) -> int:
    from dejavu.toolkit.compare import find_run_dirs, prune_run
    from dejavu.toolkit.compare.runs import prunable

    freed, pruned, left = 0, 0, []
    for path in args.paths:
        if not path.is_dir():
            raise UserPathError(f"not a folder: {path} (give a run directory or an --out folder)")
        runs = find_run_dirs(path)
        if not runs:
            raise UserPathError(f"no run directories of dejavu fit under {path}")
        for run_dir in runs:
            files, why_not = prunable(run_dir, keep_base=args.keep_base)
            if why_not:
                left.append(f"{run_dir}: {why_not}")
                continue
            freed += sum(f.stat().st_size for f in files)
            if not args.dry_run:
                prune_run(run_dir, keep_base=args.keep_base)
            pruned += bool(files)
    verb = "would prune" if args.dry_run else "pruned"
    print(f"{verb} {pruned} run(s), {freed / 2**20:.1f} MiB")
    for line in left:
        print(f"left whole: {line}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from dejavu.toolkit.demo import run_demo

    run_demo(args.out, quick=args.quick, console=_console(), config_dir=args.configs)
    return EXIT_OK


def _registered(registry: str) -> list[str]:
    # Each listing reads its registry: what `dejavu <verb>` prints is what a config accepts.
    if registry == "models":
        from dejavu.toolkit.models import family_patterns, list_models

        return [*list_models(), *family_patterns()]
    if registry == "redactions":
        from dejavu.redaction import redaction_names

        return list(redaction_names())
    if registry == "crms":
        from dejavu.crm import list_crms

        return list_crms()
    if registry == "datasets":
        from dejavu.toolkit.data import list_datasets

        return list_datasets()
    from dejavu.toolkit.tasks import list_tasks

    return list_tasks()


def _cmd_list(args: argparse.Namespace) -> int:
    for name in _registered(args.registry):
        print(name)
    return EXIT_OK


def load_plugins(plugins: Sequence[str]) -> None:
    """Import each plugin: a ``.py`` file (by path) or a module (by dotted name).

    A plugin registers what it adds when imported (``register_redaction``,
    ``register_crm``, ``register_model``, ``register_dataset``,
    ``register_head`` / ``register_task``); see docs/extending.md.

    Raises:
        UserPathError: a ``.py`` file that does not exist.
        ConfigError: a module that cannot be found.
    """
    import importlib
    import importlib.util

    for plugin in plugins:
        if plugin.endswith(".py"):
            path = Path(plugin)
            if not path.is_file():
                raise UserPathError(f"--plugin file not found: {path}")
            name = f"dejavu_plugin_{path.stem}"
            loaded = sys.modules.get(name)
            if loaded is not None and Path(str(loaded.__file__)).resolve() == path.resolve():
                continue  # imported already (its classes are registered)
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(plugin)
            except ModuleNotFoundError as exc:
                raise ConfigError(f"--plugin module not found: {plugin} ({exc})") from exc


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dejavu`` command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for a user error (:class:`ConfigError`,
        one line), 1 for any other failure (with its traceback) or a failed
        check (e.g. an export that does not match), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        load_plugins(args.plugins)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if not args.verbose and args.command in _TRAINER_COMMANDS:
        _quiet_lightning()
    try:
        return handler(args)
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        _error(one_line(exc))
        return EXIT_USAGE
    except TrainingStoppedError as exc:  # a run stopped for a reason the user must act on
        if args.debug:
            traceback.print_exc()
        _error(one_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # a bug or a failure mid-run: keep the traceback
        traceback.print_exc()
        _error(f"{type(exc).__name__}: {exc} (not a usage error; the traceback is above)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
