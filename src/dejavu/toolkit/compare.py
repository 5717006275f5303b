"""Baseline vs DejaVu over several seeds: the comparison a claim needs.

:func:`run_compare` trains every variant (by default the baseline,
``dejavu.enabled=false``, and DejaVu, ``dejavu.enabled=true``) from the same
config with the same schedule, once per seed, then reports each final
validation metric as mean +- std over the seeds together with the per-seed
values, and the parameter count and GMACs of every variant's inference
network. DejaVu trains extra parts but must run the same network at
inference; the report checks that the costs are equal.

The standard deviation is the sample one (``ddof=1``; 0 for a single seed),
so ``mean +- std`` describes the spread of a new seed's result.

Example:
    >>> summarize([70.0, 72.0])
    {'mean': 71.0, 'std': 1.4142135623730951, 'values': [70.0, 72.0]}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

__all__ = [
    "compare_markdown",
    "compare_table",
    "cpu_model",
    "default_variants",
    "machine_info",
    "parse_variant",
    "parse_variants",
    "resolve_seeds",
    "run_compare",
    "summarize",
]

#: Metrics (last name component) that are fractions and are shown in percent, as papers do.
_PERCENT_METRICS = frozenset(
    {"miou", "aacc", "macc", "within_11_25", "within_22_5", "within_30"}
    | {f"{m}{g}" for m in ("pq", "sq", "rq") for g in ("", "_things", "_stuff")}
)


def default_variants() -> dict[str, list[str]]:
    """The two variants of a DejaVu claim: the baseline and DejaVu itself."""
    return {"baseline": ["dejavu.enabled=false"], "dejavu": ["dejavu.enabled=true"]}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """Parse ``"NAME:key=value,key=value"`` into ``(NAME, ["key=value", ...])``.

    Commas inside a value (``redaction.cutoff=[0.1,0.3]``) are kept: a new
    override starts only where a comma is followed by ``key=``.

    Example:
        >>> parse_variant("bandstop:dejavu.redaction=bandstop,dejavu.band=[0.1,0.3]")
        ('bandstop', ['dejavu.redaction=bandstop', 'dejavu.band=[0.1,0.3]'])
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(
            f"variant must look like NAME:key=value[,key=value...] with NAME made of letters, "
            f"digits, '_', '-' or '.', got {text!r}"
        )
    overrides = [o.strip() for o in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", rest) if o.strip()]
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"variant {name!r}: override must be key=value, got {o!r}")
    return name, overrides


def parse_variants(texts: Sequence[str]) -> dict[str, list[str]]:
    """Parse several ``NAME:overrides`` strings (see :func:`parse_variant`); names must differ.

    Example:
        >>> parse_variants(["a:dejavu.enabled=false", "b:dejavu.enabled=true"])
        {'a': ['dejavu.enabled=false'], 'b': ['dejavu.enabled=true']}
    """
    variants: dict[str, list[str]] = {}
    for text in texts:
        name, overrides = parse_variant(text)
        if name in variants:
            raise ValueError(f"variant name {name!r} is given twice; names must be unique")
        variants[name] = overrides
    return variants


def resolve_seeds(num_seeds: int | None, seed_list: Sequence[int] | None) -> list[int]:
    """Seeds ``0..num_seeds-1`` or an explicit list (exactly one of the two).

    Example:
        >>> resolve_seeds(3, None)
        [0, 1, 2]
    """
    if (num_seeds is None) == (seed_list is None):
        raise ValueError("give either seeds (a count) or seed_list (explicit seeds), not both")
    if seed_list is not None:
        seeds = [int(s) for s in seed_list]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seed_list must be non-empty and without repeats, got {seed_list!r}")
        return seeds
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {num_seeds!r}")
    return list(range(num_seeds))


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (``ddof=1``) and the values themselves.

    Example:
        >>> summarize([1.0])
        {'mean': 1.0, 'std': 0.0, 'values': [1.0]}
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize needs at least one value")
    arr = np.asarray(vals, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": vals}


def _metric_name(key: str) -> str:
    # "val/seg/miou" -> "seg/miou": the split prefix says nothing here (all are val).
    return key.removeprefix("val/")


def _is_percent(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in _PERCENT_METRICS


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo; platform.processor() is empty on most Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where the comparison ran (reported with its numbers)."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _final_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = _metric_name(str(key))
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def run_compare(
    config: str | Path,
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    variants: Mapping[str, Sequence[str]] | None = None,
    out_dir: str | Path | None = None,
    log: Callable[[str], Any] | None = None,
    enable_progress_bar: bool = False,
) -> dict[str, Any]:
    """Train every variant once per seed and write ``compare.md`` and ``compare.json``.

    Run ``s`` of variant ``v`` lives in ``<out_dir>/runs/<v>/seed<s>``. A run
    found there with the same resolved config is reused when finished and
    resumed when not, so an interrupted comparison continues where it stopped
    and runs trained separately (say, in parallel with ``dejavu fit ... --set
    output_dir=<out_dir>/runs/<v> --set name=seed<s>``) are collected.

    Args:
        config: an experiment config; the variants' overrides are applied on
            top of it (so it may be the DejaVu config or its base).
        seeds: the seeds; every variant trains once per seed, with the same
            schedule.
        overrides: ``key=value`` overrides applied to every run.
        variants: name -> overrides (default :func:`default_variants`).
        out_dir: where runs and reports go (default:
            ``<config output_dir>/compare_<config stem>``).
        log: called with a line of progress (e.g. ``console.print``).
        enable_progress_bar: show the trainer's progress bar.

    Returns:
        The report that ``compare.json`` holds: one entry per variant with
        ``metrics`` (name -> mean/std/values), ``params``, ``gmacs``,
        ``history`` (one list per seed), ``train_time_s``, ``checkpoints``
        and, with segmentation, ``miou`` (per-seed, percent); plus
        ``config``, ``seeds``, ``variants``, ``inference_cost_equal``,
        ``machine``, ``date`` and ``files``.

    Raises:
        RuntimeError: if the variants' inference networks differ in
            parameters or GMACs although none of them uses shared attention
            (DejaVu must not change the inference network).
    """
    from dejavu.toolkit.config import config_to_dict, load_config
    from dejavu.toolkit.training import load_eval_model, model_complexity, run_fit

    variants = dict(variants) if variants is not None else default_variants()
    if not variants:
        raise ValueError("variants must name at least one override set")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    say = log or (lambda _msg: None)

    base_cfg = load_config(config, list(overrides))
    base_dict = config_to_dict(base_cfg)
    if out_dir is None:
        out_dir = Path(str(base_dict.get("output_dir", "runs"))) / f"compare_{Path(config).stem}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {}
    for name, variant_overrides in variants.items():
        per_seed_metrics: list[dict[str, float]] = []
        histories: list[list[dict[str, Any]]] = []
        times: list[float] = []
        checkpoints: list[str] = []
        cost: dict[str, Any] | None = None
        uses_sa = False
        for seed in seeds:
            run_overrides = [
                *overrides,
                *variant_overrides,
                f"seed={seed}",
                f"output_dir={out_dir / 'runs' / name}",
                f"name=seed{seed}",
            ]
            cfg = load_config(config, run_overrides)
            say(f"[{name}] seed {seed}: training ...")
            result = _fit_or_reuse(cfg, run_fit, say, enable_progress_bar)
            metrics = _final_metrics(result.metrics)
            say(
                f"[{name}] seed {seed}: done in {result.train_time_s:.1f} s: "
                + ", ".join(f"{k}={v:.4f}" for k, v in sorted(_summary(metrics).items()))
            )
            per_seed_metrics.append(metrics)
            histories.append([dict(h) for h in result.history])
            times.append(float(result.train_time_s))
            checkpoints.append(str(result.last_checkpoint))
            if cost is None:
                model, meta = load_eval_model(result.last_checkpoint)
                cost = model_complexity(model, (1, 3, *_input_size(config_to_dict(cfg), meta)))
                uses_sa = bool(getattr(model, "supports_shared_attention", False))
        assert cost is not None
        report[name] = _variant_entry(
            per_seed_metrics, histories, times, checkpoints, cost, list(variant_overrides), uses_sa
        )

    costs = {(report[n]["params"], round(report[n]["gmacs"], 6)) for n in variants}
    equal = len(costs) == 1
    if not equal and not any(report[n]["shared_attention"] for n in variants):
        raise RuntimeError(
            "the variants' inference networks differ in cost although none uses shared "
            "attention: "
            + ", ".join(
                f"{n}: {report[n]['params']} params, {report[n]['gmacs']:.4f} GMACs"
                for n in variants
            )
        )
    report.update(
        variants=list(variants),
        inference_cost_equal=equal,
        config=base_dict,
        overrides=list(overrides),
        seeds=seeds,
        machine=machine_info(),
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    md_path, json_path = out_dir / "compare.md", out_dir / "compare.json"
    report["files"] = {"markdown": str(md_path), "json": str(json_path)}
    md_path.write_text(compare_markdown(report))
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _fit_or_reuse(cfg: Any, run_fit: Callable[..., Any], say: Callable[[str], None], bar: Any):
    """Train one run of the comparison, or pick up what an earlier launch left.

    A run directory that already holds this exact resolved config is reused
    when its training finished (the last validation reached the configured
    last epoch or step) and resumed from ``last.ckpt`` otherwise, so an
    interrupted ``compare`` continues where it stopped, and runs trained
    separately (e.g. in parallel, with the same overrides) are collected
    instead of trained again.
    """
    from dejavu.toolkit.config import config_to_dict, load_yaml
    from dejavu.toolkit.training import FitResult
    from dejavu.toolkit.training.callbacks import read_metrics

    run_dir = Path(cfg.output_dir) / cfg.name
    last = run_dir / "last.ckpt"
    if not last.exists():
        return run_fit(cfg, enable_progress_bar=bar)
    if load_yaml(run_dir / "config.yaml") != config_to_dict(cfg):
        raise FileExistsError(
            f"{run_dir} holds a run with a different config; remove it or choose another --out"
        )
    final, history = read_metrics(run_dir / "metrics.json")
    t = cfg.trainer
    done = bool(history) and (
        history[-1]["step"] >= t.max_steps
        if t.max_steps > 0
        else history[-1]["epoch"] >= t.max_epochs - 1
    )
    if not done:
        say(f"resuming the unfinished run in {run_dir}")
        return run_fit(cfg, resume=True, enable_progress_bar=bar)
    say(f"reusing the finished run in {run_dir}")
    best = run_dir / "best.ckpt"
    return FitResult(
        run_dir=run_dir,
        last_checkpoint=last,
        best_checkpoint=best if best.exists() else None,
        metrics=final,
        history=history,
        # Wall time from the config snapshot (written at the start) to the last save.
        train_time_s=last.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime,
    )


def _input_size(cfg: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[int, int]:
    for source in (meta, cfg.get("data", {}) if isinstance(cfg.get("data"), Mapping) else {}):
        for key in ("input_size", "image_size", "crop_size", "size"):
            value = source.get(key)
            if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
                return int(value[0]), int(value[1])
    return 96, 128


def _variant_entry(
    per_seed: list[dict[str, float]],
    histories: list[list[dict[str, Any]]],
    times: list[float],
    checkpoints: list[str],
    cost: Mapping[str, Any],
    overrides: list[str],
    uses_sa: bool,
) -> dict[str, Any]:
    names = sorted(set().union(*per_seed)) if per_seed else []
    metrics: dict[str, Any] = {}
    for name in names:
        values = [m[name] for m in per_seed if name in m]
        if len(values) == len(per_seed):
            metrics[name] = summarize(values)
    entry: dict[str, Any] = {
        "overrides": overrides,
        "metrics": metrics,
        "params": int(cost["params"]),
        "gmacs": float(cost["gmacs"]),
        "shared_attention": uses_sa,
        "history": histories,
        "train_time_s": times,
        "checkpoints": checkpoints,
    }
    miou = next((k for k in metrics if k.rsplit("/", 1)[-1] == "miou"), None)
    if miou is not None:
        entry["miou"] = [100.0 * v for v in metrics[miou]["values"]]
    return entry


def _summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    # Per-class entries (seg/iou_per_class/3) stay in the JSON; tables show the summary.
    return {k: v for k, v in metrics.items() if "_per_class/" not in k}


def _scale_digits(name: str) -> tuple[float, int]:
    # Percentages with 2 decimals as papers print them; errors (metres, degrees) with 4.
    return (100.0, 2) if _is_percent(name) else (1.0, 4)


def _fmt(name: str, stats: Mapping[str, Any]) -> tuple[str, str]:
    scale, d = _scale_digits(name)
    mean, std = scale * stats["mean"], scale * stats["std"]
    per_seed = ", ".join(f"{scale * v:.{d}f}" for v in stats["values"])
    return f"{mean:.{d}f} ± {std:.{d}f}", per_seed


def _rows(report: Mapping[str, Any]) -> list[list[str]]:
    variants = report["variants"]
    names = sorted(set().union(*(_summary(report[v]["metrics"]) for v in variants)))
    with_delta = len(variants) == 2
    rows = []
    for name in names:
        label = f"{name} (%)" if _is_percent(name) else name
        row = [label]
        stats = [report[v]["metrics"].get(name) for v in variants]
        for st in stats:
            row.extend(_fmt(name, st) if st else ("-", "-"))
        if with_delta:
            scale, d = _scale_digits(name)
            ok = all(stats)
            row.append(f"{scale * (stats[1]['mean'] - stats[0]['mean']):+.{d}f}" if ok else "-")
        rows.append(row)
    cost_note = "equal" if report["inference_cost_equal"] else "DIFFERENT (shared attention)"
    tail = [""] if with_delta else []
    rows.append(["params", *[x for v in variants for x in (f"{report[v]['params']:,}", "")], *tail])
    rows.append(["GMACs", *[x for v in variants for x in (f"{report[v]['gmacs']:.4f}", "")], *tail])
    rows.append(["inference cost", *[x for _ in variants for x in (cost_note, "")], *tail])
    return rows


def _headers(report: Mapping[str, Any]) -> list[str]:
    variants = report["variants"]
    headers = ["metric", *[h for v in variants for h in (f"{v} mean ± std", "per seed")]]
    if len(variants) == 2:
        headers.append(f"{variants[1]} − {variants[0]}")
    return headers


def compare_table(report: Mapping[str, Any]) -> Table:
    """The report as a rich table (one mean ± std and one per-seed column per variant)."""
    n = len(report["seeds"])
    table = Table(
        title=f"final validation metrics over {n} seed(s): {', '.join(map(str, report['seeds']))}"
    )
    for i, header in enumerate(_headers(report)):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in _rows(report):
        table.add_row(*row)
    return table


def compare_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: the table, the overrides, the machine and date."""
    headers = _headers(report)
    lines = [
        "# Baseline vs DejaVu",
        "",
        f"Seeds: {', '.join(map(str, report['seeds']))}. Values are final validation metrics, "
        "mean ± sample std (ddof=1) over seeds; metrics marked (%) are in percent.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    equal = report["inference_cost_equal"]
    lines += [
        "",
        "Inference networks: "
        + ("identical parameters and GMACs." if equal else "different cost (shared attention)."),
        "",
        "Variants:",
        "",
    ]
    for v in report["variants"]:
        overrides = " ".join(f"`{o}`" for o in report[v]["overrides"]) or "(none)"
        times = ", ".join(f"{t:.1f}" for t in report[v]["train_time_s"])
        lines.append(f"- **{v}**: {overrides}; training time per seed (s): {times}")
    machine = report["machine"]
    lines += [
        "",
        f"Common overrides: {' '.join(f'`{o}`' for o in report['overrides']) or '(none)'}",
        "",
        f"Machine: {machine.get('processor')}, {machine.get('cpu_count')} CPUs, "
        f"GPU {machine.get('cuda') or 'none'}, torch {machine.get('torch')}; "
        f"date {report['date']}.",
        "",
    ]
    return "\n".join(lines)
