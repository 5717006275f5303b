"""The statistics of a comparison: mean ± sample std over seeds, and paired differences.

The standard deviation is the sample one (``ddof=1``; 0 for a single seed).
An effect is measured on the per-seed differences ``variant - reference``:
their mean, 95 % t-interval and two-sided paired t-test
(:func:`paired_difference`); an interval that contains 0 is "no measurable
effect", whichever way the mean points (:func:`effect_label`).

Example:
    >>> round(summarize([70.0, 72.0])["std"], 4)
    1.4142
    >>> effect_label(paired_difference([1.0, 2.0, 3.0], [1.5, 2.4, 3.6]))
    'effect'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "effect_label",
    "interval_excludes_zero",
    "paired_difference",
    "summarize",
    "summarize_metrics",
]


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
