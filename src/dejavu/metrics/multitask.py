"""Multi-task performance: Maninis et al.'s average relative change Δm.

``Δm = (1/T) Σ_i (-1)^{l_i} (M_i - M_ref,i) / M_ref,i × 100`` over the ``T``
metrics ``M_i`` of a model against a reference (usually the single-task
baselines), with ``l_i = 1`` when lower is better for metric ``i`` (Maninis,
Radosavovic and Kokkinos, "Attentive Single-Tasking of Multiple Tasks", CVPR
2019; the NYUD-v2 multi-task tables). It is a function of already computed
dataset-level metrics, so it inherits their pooling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from torch import Tensor

__all__ = ["HIGHER_IS_BETTER", "multitask_delta"]

_HIGHER: dict[str, bool] = {
    # segmentation (dejavu.metrics.segmentation)
    "miou": True,
    "aacc": True,
    "macc": True,
    # depth (dejavu.metrics.depth)
    "abs_err": False,
    "abs_rel": False,
    "sq_rel": False,
    "rmse": False,  # also the normals RMSE: lower is better for both
    "rmse_log": False,
    "log10": False,
    "delta1": True,
    "delta2": True,
    "delta3": True,
    # surface normals (dejavu.metrics.normals)
    "mean": False,
    "median": False,
    "within_11_25": True,
    "within_22_5": True,
    "within_30": True,
}
# panoptic (dejavu.metrics.panoptic)
_HIGHER.update({f"{m}{g}": True for m in ("pq", "sq", "rq") for g in ("", "_things", "_stuff")})

HIGHER_IS_BETTER: Mapping[str, bool] = MappingProxyType(_HIGHER)
"""Whether a higher value is better, for every scalar metric name of dejavu.metrics."""


def _direction(key: str, higher_is_better: Mapping[str, bool]) -> bool | None:
    if key in higher_is_better:
        return higher_is_better[key]
    # "depth/rmse" or "val/seg/miou" fall back to their last component.
    last = key.rsplit("/", 1)[-1]
    return higher_is_better.get(last)


def _as_float(value: float | Tensor, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where} must be a number or 0-d tensor, got {value!r}") from err
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite, got {v}")
    return v


def multitask_delta(
    metrics: Mapping[str, float | Tensor],
    reference: Mapping[str, float | Tensor],
    higher_is_better: Mapping[str, bool] = HIGHER_IS_BETTER,
) -> float:
    """Average relative change Δm (in percent) of ``metrics`` against ``reference``.

    The average runs over the keys of ``metrics``; each must also be in
    ``reference`` and have a direction in ``higher_is_better`` (looked up by
    the full key, then by its last ``/``-separated part, so ``"depth/rmse"``
    uses the entry for ``"rmse"``). Positive means better than the reference.
    Δm is scale-free, so it does not matter whether the metrics are given as
    fractions or percentages, as long as both mappings agree.

    Args:
        metrics: metric name -> value of the model under test.
        reference: metric name -> value of the reference model(s).
        higher_is_better: metric name -> True if higher is better.

    Returns:
        Δm in percent.

    Raises:
        ValueError: if ``metrics`` is empty, keys are missing from
            ``reference`` or ``higher_is_better`` (all are named), or a value
            is non-finite or a reference value is 0.

    Example:
        >>> ours = {"miou": 0.42, "depth/rmse": 0.55}
        >>> d = multitask_delta(ours, {"miou": 0.40, "depth/rmse": 0.50})
        >>> round(d, 6)  # (+5 % - 10 %) / 2
        -2.5
    """
    if len(metrics) == 0:
        raise ValueError("metrics must not be empty")
    no_ref = [k for k in metrics if k not in reference]
    no_dir = [k for k in metrics if _direction(k, higher_is_better) is None]
    if no_ref or no_dir:
        parts = []
        if no_ref:
            parts.append(f"missing from reference: {no_ref}")
        if no_dir:
            parts.append(f"missing from higher_is_better: {no_dir}")
        raise ValueError("multitask_delta: metric keys " + "; ".join(parts))
    total = 0.0
    for key, value in metrics.items():
        m = _as_float(value, f"metrics[{key!r}]")
        ref = _as_float(reference[key], f"reference[{key!r}]")
        if ref == 0.0:
            raise ValueError(f"reference[{key!r}] must be non-zero (Δm divides by it), got 0")
        sign = 1.0 if _direction(key, higher_is_better) else -1.0
        total += sign * (m - ref) / ref
    return total / len(metrics) * 100.0
