"""The ``compare.json`` report: its variant entries and what is read from it.

A report holds one entry per variant (:func:`_variant_entry`: ``metrics``
name -> mean/std/values over the seeds, inference cost, histories, times,
checkpoints) plus ``variants``, ``seeds``, ``reference``, ``main_metric``,
``class_names`` and ``paired`` (:func:`paired_section`). Reports written
before a key existed are read too: the reference, the main metric and the
paired statistics are worked out from the rest.

Example:
    >>> r = {"variants": ["a", "b"], "seeds": [0, 1], "reference": "b",
    ...      "a": {"metrics": {"x": {"values": [1.0, 2.0]}}},
    ...      "b": {"metrics": {"x": {"values": [2.0, 4.0]}}}}
    >>> reference_variant(r), paired_section(r)["a"]["x"]["diffs"]
    ('b', [-1.0, -2.0])
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dejavu.toolkit.compare.stats import paired_difference, summarize_metrics

__all__ = ["class_names", "main_metric", "paired_section", "reference_variant"]


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
            if ckpt is None:  # a pruned run's (compare.prune_run)
                continue
            meta = Path(ckpt).parent / "base.json"
            if meta.is_file():
                found = json.loads(meta.read_text()).get("class_names")
                if found:
                    return [str(n) for n in found]
    return None


def _metric_name(key: str) -> str:
    # "val/seg/miou" -> "seg/miou": the split prefix says nothing here (all are val).
    return key.removeprefix("val/")


def _final_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = _metric_name(str(key))
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    # Per-class entries (seg/iou_per_class/3) stay in the JSON; tables show the summary.
    return {k: v for k, v in metrics.items() if "_per_class/" not in k}


def _variant_entry(
    per_seed: list[dict[str, float]],
    histories: list[list[dict[str, Any]]],
    times: list[float],
    checkpoints: list[str | None],
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
