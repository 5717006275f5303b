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

Runs are paired by seed (the same seed gives both variants the same
initialisation, data order, augmentation and labelled subset), so an effect
is measured on the per-seed differences ``variant - reference``: their mean,
their 95 % t-interval and a two-sided paired t-test
(:func:`paired_difference`). A difference whose interval contains 0 is
reported as "no measurable effect", whichever way its mean points
(:func:`effect_label`).

Example:
    >>> summarize([70.0, 72.0])
    {'mean': 71.0, 'std': 1.4142135623730951, 'values': [70.0, 72.0]}
    >>> d = paired_difference([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    >>> d["mean"], d["n"], effect_label(d)
    (2.0, 3, 'no measurable effect')
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare.formatting import EFFECT_LEGEND, format_difference
from dejavu.toolkit.compare.machine import (
    code_text,
    code_version,
    cpu_model,
    machine_info,
    machine_text,
)
from dejavu.toolkit.compare.report import (
    _final_metrics,
    _summary,
    _variant_entry,
    class_names,
    main_metric,
    paired_section,
    reference_variant,
)
from dejavu.toolkit.compare.runs import (
    RUN_RECORD,
    existing_run,
    find_run_dirs,
    fit_or_reuse,
    inference_cost,
    prune_run,
    run_overrides,
)
from dejavu.toolkit.compare.stats import (
    effect_label,
    interval_excludes_zero,
    paired_difference,
    summarize,
    summarize_metrics,
)
from dejavu.toolkit.compare.tables import (
    compare_markdown,
    compare_table,
    paired_markdown,
    per_class_markdown,
    per_seed_markdown,
)
from dejavu.toolkit.compare.variants import (
    default_variants,
    parse_variant,
    parse_variants,
    resolve_seeds,
)

__all__ = [
    "EFFECT_LEGEND",
    "RUN_RECORD",
    "class_names",
    "code_text",
    "code_version",
    "compare_markdown",
    "compare_table",
    "cpu_model",
    "default_variants",
    "effect_label",
    "existing_run",
    "find_run_dirs",
    "fit_or_reuse",
    "format_difference",
    "inference_cost",
    "interval_excludes_zero",
    "machine_info",
    "machine_text",
    "main_metric",
    "paired_difference",
    "paired_markdown",
    "paired_section",
    "parse_variant",
    "parse_variants",
    "per_class_markdown",
    "per_seed_markdown",
    "prune_run",
    "reference_variant",
    "resolve_seeds",
    "run_compare",
    "run_overrides",
    "summarize",
    "summarize_metrics",
]


def run_compare(
    config: str | Path,
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    variants: Mapping[str, Sequence[str]] | None = None,
    reference: str | None = None,
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
        reference: the variant the others are compared with, seed by seed
            (default: the first variant, ``baseline`` with the default variants).
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
        ``machine``, ``date`` and ``files``; and the paired statistics:
        ``reference`` (the variant compared with), ``main_metric``,
        ``class_names`` (None when the task has none) and ``paired``:
        ``paired[variant][metric]`` is :func:`paired_difference` of the
        reference's and the variant's per-seed values (per-class metrics
        included), plus ``seeds`` (the seeds paired) and ``unpaired_seeds``.

    Raises:
        RuntimeError: if the variants' inference networks differ in
            parameters or GMACs although none of them uses shared attention
            (DejaVu must not change the inference network).
    """
    from dejavu.toolkit.config import config_to_dict, load_config
    from dejavu.toolkit.training import default_monitor, run_fit

    variants = dict(variants) if variants is not None else default_variants()
    if not variants:
        raise ValueError("variants must name at least one override set")
    reference = reference_variant({"variants": list(variants)}, reference)
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
    names_of_classes: list[str] | None = None
    for name, variant_overrides in variants.items():
        per_seed_metrics: list[dict[str, float]] = []
        histories: list[list[dict[str, Any]]] = []
        times: list[float] = []
        checkpoints: list[str | None] = []
        cost: dict[str, Any] | None = None
        uses_sa = False
        for seed in seeds:
            cfg = load_config(
                config, run_overrides(overrides, variant_overrides, seed, out_dir, name)
            )
            say(f"[{name}] seed {seed}: training ...")
            result = fit_or_reuse(cfg, run_fit, say, enable_progress_bar)
            metrics = _final_metrics(result.metrics)
            say(
                f"[{name}] seed {seed}: done in {result.train_time_s:.1f} s: "
                + ", ".join(f"{k}={v:.4f}" for k, v in sorted(_summary(metrics).items()))
            )
            per_seed_metrics.append(metrics)
            histories.append([dict(h) for h in result.history])
            times.append(float(result.train_time_s))
            # None: a pruned run (prune_run), whose checkpoints are gone.
            last = result.last_checkpoint
            checkpoints.append(None if last is None else str(last))
            if cost is None:
                cost = inference_cost(cfg, result.last_checkpoint)
                uses_sa = cost["shared_attention"]
                if names_of_classes is None and cost["class_names"]:
                    names_of_classes = cost["class_names"]
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
        reference=reference,
        main_metric=_monitored(default_monitor, base_cfg),
        class_names=names_of_classes,
    )
    report["main_metric"] = main_metric(report)
    report["paired"] = paired_section(report, reference)
    md_path, json_path = out_dir / "compare.md", out_dir / "compare.json"
    report["files"] = {"markdown": str(md_path), "json": str(json_path)}
    md_path.write_text(compare_markdown(report))
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _monitored(default_monitor: Callable[[Any], tuple[str, str]], cfg: Any) -> str | None:
    try:
        return default_monitor(cfg)[0]
    except (KeyError, ValueError):
        return None
