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
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from dejavu.toolkit.errors import RunExistsError

__all__ = [
    "EFFECT_LEGEND",
    "class_names",
    "compare_markdown",
    "compare_table",
    "cpu_model",
    "default_variants",
    "effect_label",
    "existing_run",
    "fit_or_reuse",
    "format_difference",
    "inference_cost",
    "interval_excludes_zero",
    "machine_info",
    "main_metric",
    "paired_difference",
    "paired_markdown",
    "paired_section",
    "parse_variant",
    "parse_variants",
    "per_class_markdown",
    "per_seed_markdown",
    "reference_variant",
    "resolve_seeds",
    "run_compare",
    "run_overrides",
    "summarize",
    "summarize_metrics",
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


def summarize_metrics(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of every metric that each run has (one mapping per seed, in order).

    A metric missing from one run is left out: its values could not be paired by seed.

    Example:
        >>> summarize_metrics([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
        {'a': {'mean': 2.0, 'std': 1.4142135623730951, 'values': [1.0, 3.0]}}
    """
    names = sorted(set().union(*per_seed)) if per_seed else []
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [m[name] for m in per_seed if name in m]
        if len(values) == len(per_seed):
            metrics[name] = summarize(values)
    return metrics


#: How the tables mark an effect (see :func:`effect_label`).
EFFECT_LEGEND = (
    "Differences are paired by seed (variant − reference for the same seed): mean "
    "[95 % t-interval] (n = paired seeds). * marks an effect: the interval excludes 0. "
    "Without *, the interval contains 0: no measurable effect, whichever way the mean points."
)


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> dict[str, Any]:
    """Paired differences ``b - a`` (one per seed), their mean, t-interval and paired t-test.

    ``a[i]`` and ``b[i]`` must come from the same seed. The interval is the
    t-interval over the differences, ``mean ± t_{(1+confidence)/2, n-1} · sd / sqrt(n)``
    with the sample sd (``ddof=1``); the p-value is that of the two-sided paired
    t-test (``scipy.stats.ttest_rel(b, a)``).

    With one pair the interval is undefined: ``std``, ``t_crit``, ``ci`` and
    ``p_value`` are None and ``reason`` says why (never NaN). When every
    difference is the same (sd 0) the interval is that point and the p-value
    is 0 (or 1 when the differences are all 0), with a ``reason``.

    Returns:
        ``diffs`` (per pair, ``b - a``), ``n``, ``mean``, ``std``, ``confidence``,
        ``t_crit``, ``ci`` (``[lo, hi]``), ``p_value``, ``effect`` (the interval
        excludes 0), ``verdict`` (:func:`effect_label`) and ``reason`` (None
        unless something was undefined or degenerate).

    Raises:
        ValueError: for sequences of different or zero length, non-finite
            values, or a confidence outside (0, 1).

    Example:
        >>> d = paired_difference([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
        >>> d["diffs"], d["mean"], d["std"], round(d["t_crit"], 4)
        ([1.0, 2.0, 3.0], 2.0, 1.0, 4.3027)
        >>> [round(x, 4) for x in d["ci"]], d["verdict"]
        ([-0.4841, 4.4841], 'no measurable effect')
    """
    from scipy import stats

    xs = [float(v) for v in a]
    ys = [float(v) for v in b]
    if len(xs) != len(ys):
        raise ValueError(f"paired values need equal lengths, got {len(xs)} and {len(ys)}")
    if not xs:
        raise ValueError("paired_difference needs at least one pair")
    if not all(np.isfinite(xs + ys)):
        raise ValueError("paired values must be finite (drop the seeds without a value)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    diffs = [y - x for x, y in zip(xs, ys, strict=True)]
    arr = np.asarray(diffs, dtype=np.float64)
    n = int(arr.size)
    mean = float(arr.mean())
    out: dict[str, Any] = {
        "diffs": diffs,
        "n": n,
        "mean": mean,
        "std": None,
        "confidence": confidence,
        "t_crit": None,
        "ci": None,
        "p_value": None,
        "reason": None,
    }
    if n < 2:
        out["reason"] = "one paired seed: no spread, so no interval and no test (need n >= 2)"
    else:
        std = float(arr.std(ddof=1))
        t_crit = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
        half = t_crit * std / float(np.sqrt(n))
        out.update(std=std, t_crit=t_crit, ci=[mean - half, mean + half])
        if std > 0.0:
            t_stat = mean / (std / float(np.sqrt(n)))
            out["p_value"] = float(2.0 * stats.t.sf(abs(t_stat), n - 1))
        else:
            out["p_value"] = 1.0 if mean == 0.0 else 0.0
            out["reason"] = "every paired difference is the same (sd 0): the interval is a point"
    out["effect"] = interval_excludes_zero(out["ci"])
    out["verdict"] = effect_label(out)
    return out


def interval_excludes_zero(ci: Sequence[float] | None) -> bool:
    """Whether an interval ``[lo, hi]`` lies wholly above or below 0 (False for None).

    An end point at exactly 0 counts as containing 0.

    Example:
        >>> interval_excludes_zero([0.4, 2.9]), interval_excludes_zero([-0.4, 2.9])
        (True, False)
    """
    if ci is None:
        return False
    lo, hi = float(ci[0]), float(ci[1])
    return lo > 0.0 or hi < 0.0


def effect_label(stats: Mapping[str, Any]) -> str:
    """The words a report uses for a paired difference (from :func:`paired_difference`).

    ``"effect"`` when the interval excludes 0; ``"no measurable effect"`` when
    it contains 0, whichever way the mean points; ``"no interval (n=1)"`` (or
    ``n=0``) when there are too few paired seeds for an interval.

    Example:
        >>> effect_label({"ci": [-0.5, 1.5], "mean": 0.5, "n": 5})
        'no measurable effect'
    """
    if stats.get("ci") is None:
        return f"no interval (n={stats.get('n', 0)})"
    return "effect" if interval_excludes_zero(stats["ci"]) else "no measurable effect"


def format_difference(stats: Mapping[str, Any], name: str = "", *, mark: bool = True) -> str:
    """``"+1.23 [-0.40, +2.86] (n=5)"``: a paired difference as the tables show it.

    Metrics that are fractions (``name`` ends in ``miou``, ``aacc``, ...; see
    the module) are shown in percentage points, others with 4 decimals. With
    ``mark``, an effect (interval excluding 0) gets a trailing ``" *"``.

    Example:
        >>> format_difference(paired_difference([0.50, 0.52], [0.53, 0.56]), "seg/miou")
        '+3.50 [-2.85, +9.85] (n=2)'
    """
    if stats.get("n", 0) == 0 or stats.get("mean") is None:
        return "-"
    scale, d = _scale_digits(name)
    text = f"{scale * stats['mean']:+.{d}f}"
    ci = stats.get("ci")
    if ci is None:
        return f"{text} (n={stats['n']}, no interval)"
    text += f" [{scale * ci[0]:+.{d}f}, {scale * ci[1]:+.{d}f}] (n={stats['n']})"
    if mark and interval_excludes_zero(ci):
        text += " *"
    return text


def reference_variant(report: Mapping[str, Any], reference: str | None = None) -> str:
    """The variant the others are compared with: ``reference``, the report's, or the first.

    Example:
        >>> reference_variant({"variants": ["baseline", "dejavu"]})
        'baseline'
    """
    variants = list(report["variants"])
    ref = reference if reference is not None else report.get("reference") or variants[0]
    if ref not in variants:
        raise ValueError(f"reference {ref!r} is not one of the variants {variants}")
    return str(ref)


def _variant_seeds(report: Mapping[str, Any], variant: str) -> list[int]:
    # Reports written so far train every variant on every seed; a variant entry may
    # name its own seeds ("seeds") when it does not.
    return [int(s) for s in report[variant].get("seeds", report["seeds"])]


def _by_seed(report: Mapping[str, Any], variant: str, name: str) -> dict[int, float] | None:
    stats = report[variant]["metrics"].get(name)
    if stats is None:
        return None
    seeds = _variant_seeds(report, variant)
    values = stats["values"]
    if len(values) != len(seeds):
        return None
    return {s: float(v) for s, v in zip(seeds, values, strict=True)}


def _not_paired(reason: str, unpaired: list[int], confidence: float) -> dict[str, Any]:
    return {
        "diffs": [],
        "n": 0,
        "mean": None,
        "std": None,
        "confidence": confidence,
        "t_crit": None,
        "ci": None,
        "p_value": None,
        "reason": reason,
        "effect": False,
        "verdict": "no interval (n=0)",
        "seeds": [],
        "unpaired_seeds": unpaired,
    }


def _pair_metric(
    report: Mapping[str, Any], ref: str, variant: str, name: str, confidence: float
) -> dict[str, Any] | None:
    a, b = _by_seed(report, ref, name), _by_seed(report, variant, name)
    if a is None or b is None:
        return None
    seeds = [s for s in a if s in b and np.isfinite(a[s]) and np.isfinite(b[s])]
    unpaired = sorted((set(a) | set(b)) - set(seeds))
    if not seeds:
        return _not_paired(
            f"no seed with a finite value in both {ref} and {variant}", unpaired, confidence
        )
    stats = paired_difference([a[s] for s in seeds], [b[s] for s in seeds], confidence)
    stats["seeds"] = seeds
    stats["unpaired_seeds"] = unpaired
    return stats


def paired_section(
    report: Mapping[str, Any], reference: str | None = None, confidence: float = 0.95
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired differences of every metric, every variant against the reference.

    ``section[variant][metric]`` is :func:`paired_difference` of the reference's
    and the variant's values over the seeds both have a finite value for
    (``seeds``; the others are listed in ``unpaired_seeds``), in the reference's
    seed order. Per-class entries (``seg/iou_per_class/3``) are included. Works
    on any ``compare.json`` report, including those written before the report
    had a ``paired`` key.

    Example:
        >>> r = {"variants": ["a", "b"], "seeds": [0, 1],
        ...      "a": {"metrics": {"x": {"values": [1.0, 2.0]}}},
        ...      "b": {"metrics": {"x": {"values": [2.0, 4.0]}}}}
        >>> s = paired_section(r)["b"]["x"]
        >>> s["diffs"], s["seeds"], s["unpaired_seeds"]
        ([1.0, 2.0], [0, 1], [])
    """
    ref = reference_variant(report, reference)
    section: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in report["variants"]:
        if variant == ref:
            continue
        names = sorted(set(report[ref]["metrics"]) & set(report[variant]["metrics"]))
        entry: dict[str, dict[str, Any]] = {}
        for name in names:
            stats = _pair_metric(report, ref, variant, name, confidence)
            if stats is not None:
                entry[name] = stats
        section[variant] = entry
    return section


def _paired(report: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    # The report's own section, or one computed now for reports written without it.
    stored = report.get("paired")
    return stored if stored is not None else paired_section(report)


def _task_metric(task: Any) -> str | None:
    # The metric that picks best.ckpt for the task (its spec's), when the task is registered.
    from dejavu.toolkit.tasks import list_tasks, task_spec

    return task_spec(task).monitor[0] if task in list_tasks() else None


def main_metric(report: Mapping[str, Any]) -> str | None:
    """The metric a claim is about: the report's ``main_metric``, else the config's.

    The config's is ``trainer.monitor`` or the task's main metric (``seg/miou``
    for segmentation and multi-task, ``depth/rmse``, ``normals/mean``, as for
    ``best.ckpt``); when the runs lack it, the first summary metric other
    than ``loss``. None for a report without metrics.

    Example:
        >>> main_metric({"variants": ["a"], "config": {"task": {"name": "depth"}},
        ...              "a": {"metrics": {"depth/abs_err": {}, "depth/rmse": {}}}})
        'depth/rmse'
    """
    variants = list(report["variants"])
    have = set(report[variants[0]]["metrics"]) if variants else set()
    cfg = report.get("config") or {}
    trainer = cfg.get("trainer") or {}
    task = (cfg.get("task") or {}).get("name")
    for name in (report.get("main_metric"), trainer.get("monitor"), _task_metric(task)):
        if name and name in have:
            return str(name)
    summary = sorted(_summary({n: None for n in have}))
    rest = [n for n in summary if n != "loss"] or summary
    return rest[0] if rest else None


def class_names(report: Mapping[str, Any], variant: str | None = None) -> list[str] | None:
    """Class names: the report's ``class_names``, else those in the runs' ``base.json``.

    ``base.json`` is looked up beside each checkpoint the report lists (of
    ``variant``, default: every variant in turn). None when neither has them.
    """
    names = report.get("class_names")
    if names:
        return [str(n) for n in names]
    for v in [variant] if variant is not None else list(report["variants"]):
        for ckpt in report[v].get("checkpoints", []):
            meta = Path(ckpt).parent / "base.json"
            if meta.is_file():
                found = json.loads(meta.read_text()).get("class_names")
                if found:
                    return [str(n) for n in found]
    return None


def _metric_name(key: str) -> str:
    # "val/seg/miou" -> "seg/miou": the split prefix says nothing here (all are val).
    return key.removeprefix("val/")


def _is_percent(name: str) -> bool:
    parts = name.split("/")
    if len(parts) > 1 and parts[-1].isdigit() and parts[-2].endswith("_per_class"):
        # seg/iou_per_class/3, seg/acc_per_class/3, pq_per_class/3: fractions per class.
        return parts[-2].removesuffix("_per_class") in _PERCENT_METRICS | {"iou", "acc"}
    return parts[-1] in _PERCENT_METRICS


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
        checkpoints: list[str] = []
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
            checkpoints.append(str(result.last_checkpoint))
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


def _same_run_config(saved: Mapping[str, Any], cfg: Any) -> bool:
    """Whether a run directory's ``config.yaml`` describes the run ``cfg`` would train.

    The saved mapping is read back through the current schema, so keys added to
    the config since (with their defaults) do not make an old run look different.
    A baseline (``dejavu.enabled: false``) does not depend on the other ``dejavu``
    settings, so they are left out of its comparison: changing the DejaVu design
    does not invalidate the finished baselines.
    """
    from dejavu.toolkit.config import config_from_dict, config_to_dict

    try:
        old = config_to_dict(config_from_dict(dict(saved)))
    except ValueError:
        return False
    new = config_to_dict(cfg)
    if not new["dejavu"]["enabled"] and not old["dejavu"]["enabled"]:
        old.pop("dejavu")
        new.pop("dejavu")
    return old == new


def run_overrides(
    overrides: Sequence[str],
    variant_overrides: Sequence[str],
    seed: int,
    out_dir: str | Path,
    variant: str,
) -> list[str]:
    """The overrides of run ``seed`` of ``variant``, in ``<out_dir>/runs/<variant>/seed<s>``.

    The common overrides come first, then the variant's, then the seed and the
    run directory (``output_dir`` and ``name``), which nothing else may set.

    Example:
        >>> run_overrides(["optim.lr=0.1"], ["dejavu.enabled=false"], 3, "out", "baseline")
        ['optim.lr=0.1', 'dejavu.enabled=false', 'seed=3', 'output_dir=out/runs/baseline',
         'name=seed3']
    """
    return [
        *overrides,
        *variant_overrides,
        f"seed={int(seed)}",
        f"output_dir={Path(out_dir) / 'runs' / variant}",
        f"name=seed{int(seed)}",
    ]


def existing_run(cfg: Any) -> tuple[str, Any]:
    """What the run directory of ``cfg`` holds: ``(state, result)``.

    ``state`` is ``"new"`` (no directory, or an empty one), ``"started"`` (files
    but no ``last.ckpt`` yet: a launch killed before its first save, which
    starts again from step 0), ``"unfinished"`` (a ``last.ckpt`` short of the
    configured last epoch or step: to resume) or ``"finished"`` (its last
    validation reached the end). ``result`` is a
    :class:`~dejavu.toolkit.training.FitResult` for a finished run (its
    ``train_time_s`` is the wall time from the config snapshot, written at the
    start of the last launch, to the last save), None otherwise.

    Raises:
        RunExistsError: the directory holds a run of another config.
    """
    from dejavu.toolkit.config import load_yaml
    from dejavu.toolkit.training import FitResult
    from dejavu.toolkit.training.callbacks import read_metrics

    run_dir = Path(cfg.output_dir) / cfg.name
    last = run_dir / "last.ckpt"
    if not last.exists():
        started = run_dir.is_dir() and any(run_dir.iterdir())
        return ("started" if started else "new"), None
    if not _same_run_config(load_yaml(run_dir / "config.yaml"), cfg):
        raise RunExistsError(
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
        return "unfinished", None
    best = run_dir / "best.ckpt"
    return "finished", FitResult(
        run_dir=run_dir,
        last_checkpoint=last,
        best_checkpoint=best if best.exists() else None,
        metrics=final,
        history=history,
        # Wall time from the config snapshot (written at the start) to the last save.
        train_time_s=last.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime,
    )


def fit_or_reuse(cfg: Any, run_fit: Callable[..., Any], say: Callable[[str], None], bar: Any):
    """Train one run of the comparison, or pick up what an earlier launch left.

    A run directory that already holds this exact resolved config is reused
    when its training finished (the last validation reached the configured
    last epoch or step) and resumed from ``last.ckpt`` otherwise, so an
    interrupted ``compare`` continues where it stopped, and runs trained
    separately (e.g. in parallel, with the same overrides) are collected
    instead of trained again (see :func:`existing_run`).
    """
    state, result = existing_run(cfg)
    run_dir = Path(cfg.output_dir) / cfg.name
    if state == "finished":
        say(f"reusing the finished run in {run_dir}")
        return result
    if state == "unfinished":
        say(f"resuming the unfinished run in {run_dir}")
    # resume=True: a run that saved nothing yet ("started") starts from step 0.
    return run_fit(cfg, resume=state != "new", enable_progress_bar=bar)


def inference_cost(cfg: Any, checkpoint: str | Path) -> dict[str, Any]:
    """Parameters and GMACs of a run's inference network, at the run's input size.

    Returns:
        ``params`` (int), ``gmacs`` (float, one image), ``shared_attention``
        (whether the network has a DejaVu-SA block, which is inference compute)
        and ``class_names`` (None when the checkpoint has none).
    """
    from dejavu.toolkit import complexity
    from dejavu.toolkit.config import config_to_dict
    from dejavu.toolkit.training import load_eval_model

    model, meta = load_eval_model(checkpoint)
    cost = complexity.model_complexity(model, (1, 3, *_input_size(config_to_dict(cfg), meta)))
    names = meta.get("class_names")
    return {
        "params": int(cost["params"]),
        "gmacs": float(cost["gmacs"]),
        "shared_attention": bool(getattr(model, "supports_shared_attention", False)),
        "class_names": [str(c) for c in names] if names else None,
    }


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
    metrics = summarize_metrics(per_seed)
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


def _others(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    ref = reference_variant(report)
    return ref, [v for v in report["variants"] if v != ref]


def _diff_header(report: Mapping[str, Any], variant: str) -> str:
    ref, others = _others(report)
    head = f"difference vs {ref} [95 % CI]"
    return head if len(others) == 1 else f"{variant}: {head}"


def _label(name: str) -> str:
    return f"{name} (%)" if _is_percent(name) else name


def _rows(report: Mapping[str, Any]) -> list[list[str]]:
    variants = report["variants"]
    _, others = _others(report)
    paired = _paired(report) if others else {}
    names = sorted(set().union(*(_summary(report[v]["metrics"]) for v in variants)))
    rows = []
    for name in names:
        row = [_label(name)]
        for v in variants:
            st = report[v]["metrics"].get(name)
            row.extend(_fmt(name, st) if st else ("-", "-"))
        for v in others:
            pd = paired.get(v, {}).get(name)
            row.append(format_difference(pd, name) if pd else "-")
        rows.append(row)
    cost_note = "equal" if report["inference_cost_equal"] else "DIFFERENT (shared attention)"
    tail = [""] * len(others)
    rows.append(["params", *[x for v in variants for x in (f"{report[v]['params']:,}", "")], *tail])
    rows.append(["GMACs", *[x for v in variants for x in (f"{report[v]['gmacs']:.4f}", "")], *tail])
    rows.append(["inference cost", *[x for _ in variants for x in (cost_note, "")], *tail])
    return rows


def _headers(report: Mapping[str, Any]) -> list[str]:
    variants = report["variants"]
    _, others = _others(report)
    headers = ["metric", *[h for v in variants for h in (f"{v} mean ± std", "per seed")]]
    headers.extend(_diff_header(report, v) for v in others)
    return headers


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> list[str]:
    # The first `left` columns are text (left-aligned), the others numbers.
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|",
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def compare_table(report: Mapping[str, Any]) -> Table:
    """The report as a rich table: per variant mean ± std and per-seed values, then
    one paired difference vs the reference [95 % CI] per other variant (legend below)."""
    n = len(report["seeds"])
    _, others = _others(report)
    table = Table(
        title=f"final validation metrics over {n} seed(s): {', '.join(map(str, report['seeds']))}",
        caption=EFFECT_LEGEND if others else None,
    )
    for i, header in enumerate(_headers(report)):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in _rows(report):
        table.add_row(*row)
    return table


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}"


def paired_markdown(report: Mapping[str, Any]) -> str:
    """Markdown table of the paired differences of every summary metric vs the reference.

    One row per metric and variant: the difference [95 % CI] (n), the paired
    t-test's p-value, the verdict (``effect`` / ``no measurable effect``,
    :func:`effect_label`) and the seeds left unpaired. Reports without a
    ``paired`` key get it computed. Empty for a single variant.
    """
    ref, others = _others(report)
    if not others:
        return ""
    paired = _paired(report)
    names = sorted(set().union(*(_summary(paired.get(v, {})) for v in others)))
    rows = []
    for name in names:
        for v in others:
            st = paired.get(v, {}).get(name)
            if st is None:
                continue
            unpaired = ", ".join(map(str, st.get("unpaired_seeds", []))) or "-"
            rows.append(
                [
                    _label(name),
                    f"{v} − {ref}",
                    format_difference(st, name, mark=False),
                    _fmt_p(st.get("p_value")),
                    effect_label(st),
                    unpaired,
                ]
            )
    headers = [
        "metric",
        "variant − reference",
        "mean difference [95 % CI] (n)",
        "p (paired t-test)",
        "verdict",
        "unpaired seeds",
    ]
    title = f"Paired differences vs {ref} (same seed; two-sided paired t-test)"
    return "\n".join([title, "", *_md_table(headers, rows, left=2)]) + "\n"


def per_seed_markdown(report: Mapping[str, Any], metric: str | None = None) -> str:
    """Markdown table of one metric seed by seed (default :func:`main_metric`).

    Columns: seed, the reference's value, then per other variant its value
    and its difference to the reference; the last row is the mean paired
    difference [95 % CI]. Empty when the report has no such metric.
    """
    metric = metric or main_metric(report)
    if metric is None:
        return ""
    ref, others = _others(report)
    scale, d = _scale_digits(metric)
    by_seed = {v: _by_seed(report, v, metric) or {} for v in [ref, *others]}
    seeds: list[int] = []
    for v in [ref, *others]:
        seeds += [s for s in _variant_seeds(report, v) if s not in seeds]
    headers = ["seed", ref]
    for v in others:
        headers += [v, f"{v} − {ref}"]

    def cell(v: str, seed: int) -> str:
        x = by_seed[v].get(seed)
        return "-" if x is None or not np.isfinite(x) else f"{scale * x:.{d}f}"

    rows = []
    for seed in seeds:
        row = [str(seed), cell(ref, seed)]
        for v in others:
            a, b = by_seed[ref].get(seed), by_seed[v].get(seed)
            diff = "-"
            if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
                diff = f"{scale * (b - a):+.{d}f}"
            row += [cell(v, seed), diff]
        rows.append(row)
    if others:
        paired = _paired(report)
        last = ["mean difference [95 % CI]", ""]
        for v in others:
            st = paired.get(v, {}).get(metric)
            last += ["", format_difference(st, metric) if st else "-"]
        rows.append(last)
    return "\n".join([f"Per seed: {_label(metric)}", "", *_md_table(headers, rows)]) + "\n"


_PER_CLASS_IOU = re.compile(r"^(?P<prefix>.*iou_per_class)/(?P<index>\d+)$")


def per_class_markdown(report: Mapping[str, Any]) -> str:
    """Markdown table(s) of per-class IoU (%): mean ± std per variant, paired difference.

    One row per class, named from :func:`class_names` when the report (or the
    runs' ``base.json``) has names, by index otherwise; one table per
    ``...iou_per_class`` group. Empty when the report has no per-class IoU.
    """
    ref, others = _others(report)
    groups: dict[str, list[int]] = {}
    for key in report[ref]["metrics"]:
        m = _PER_CLASS_IOU.match(key)
        if m:
            groups.setdefault(m["prefix"], []).append(int(m["index"]))
    if not groups:
        return ""
    names = class_names(report)
    paired = _paired(report) if others else {}
    out: list[str] = []
    for prefix, indices in sorted(groups.items()):
        headers = ["class", *[f"{v} mean ± std" for v in report["variants"]]]
        headers += [_diff_header(report, v) for v in others]
        rows = []
        for c in sorted(indices):
            key = f"{prefix}/{c}"
            label = names[c] if names is not None and c < len(names) else str(c)
            row = [label]
            for v in report["variants"]:
                st = report[v]["metrics"].get(key)
                row.append(_fmt(key, st)[0] if st else "-")
            for v in others:
                pd = paired.get(v, {}).get(key)
                row.append(format_difference(pd, key) if pd else "-")
            rows.append(row)
        out += [f"Per-class IoU (%), {prefix}", "", *_md_table(headers, rows), ""]
    return "\n".join(out)


def compare_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: the main table with the paired differences vs the
    reference, the paired statistics, the main metric seed by seed, per-class IoU,
    then the inference cost, the overrides, the machine and date.

    Reports written before the paired statistics existed get them computed.
    """
    ref, others = _others(report)
    lines = [
        "# Baseline vs DejaVu",
        "",
        f"Seeds: {', '.join(map(str, report['seeds']))}. Values are final validation metrics, "
        "mean ± sample std (ddof=1) over seeds; metrics marked (%) are in percent "
        "(differences in percentage points).",
        "",
    ]
    if others:
        lines += [f"Reference: **{ref}**. {EFFECT_LEGEND}", ""]
    lines += _md_table(_headers(report), _rows(report))
    for section in (
        paired_markdown(report),
        per_seed_markdown(report) if others else "",
        per_class_markdown(report),
    ):
        if section:
            lines += ["", section.rstrip("\n")]
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
