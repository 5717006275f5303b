"""How reports write a metric: percent or not, its digits, a paired difference.

Metrics that are fractions (mIoU, accuracies, PQ/SQ/RQ, the normals'
``within_*``) are shown in percent with 2 decimals, as papers print them;
errors (metres, degrees) with 4 decimals.

Example:
    >>> _label("seg/miou"), _label("depth/rmse")
    ('seg/miou (%)', 'depth/rmse')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dejavu.toolkit.compare.stats import interval_excludes_zero

__all__ = ["EFFECT_LEGEND", "format_difference"]


#: Metrics (last name component) that are fractions and are shown in percent, as papers do.
_PERCENT_METRICS = frozenset(
    {"miou", "aacc", "macc", "within_11_25", "within_22_5", "within_30"}
    | {f"{m}{g}" for m in ("pq", "sq", "rq") for g in ("", "_things", "_stuff")}
)


#: How the tables mark an effect (see :func:`~dejavu.toolkit.compare.stats.effect_label`).
EFFECT_LEGEND = (
    "Differences are paired by seed (variant − reference for the same seed): mean "
    "[95 % t-interval] (n = paired seeds). * marks an effect: the interval excludes 0. "
    "Without *, the interval contains 0: no measurable effect, whichever way the mean points."
)


def format_difference(stats: Mapping[str, Any], name: str = "", *, mark: bool = True) -> str:
    """``"+1.23 [-0.40, +2.86] (n=5)"``: a paired difference as the tables show it.

    Metrics that are fractions (``name`` ends in ``miou``, ``aacc``, ...; see
    the module) are shown in percentage points, others with 4 decimals. With
    ``mark``, an effect (interval excluding 0) gets a trailing ``" *"``.

    Example:
        >>> from dejavu.toolkit.compare.stats import paired_difference
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


def _is_percent(name: str) -> bool:
    parts = name.split("/")
    if len(parts) > 1 and parts[-1].isdigit() and parts[-2].endswith("_per_class"):
        # seg/iou_per_class/3, seg/acc_per_class/3, pq_per_class/3: fractions per class.
        return parts[-2].removesuffix("_per_class") in _PERCENT_METRICS | {"iou", "acc"}
    return parts[-1] in _PERCENT_METRICS


def _scale_digits(name: str) -> tuple[float, int]:
    # Percentages with 2 decimals as papers print them; errors (metres, degrees) with 4.
    return (100.0, 2) if _is_percent(name) else (1.0, 4)


def _fmt(name: str, stats: Mapping[str, Any]) -> tuple[str, str]:
    scale, d = _scale_digits(name)
    mean, std = scale * stats["mean"], scale * stats["std"]
    per_seed = ", ".join(f"{scale * v:.{d}f}" for v in stats["values"])
    return f"{mean:.{d}f} ± {std:.{d}f}", per_seed


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}"


def _label(name: str) -> str:
    return f"{name} (%)" if _is_percent(name) else name
