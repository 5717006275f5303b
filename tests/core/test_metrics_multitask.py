"""Tests for dejavu.metrics.multitask (Δm) and the package's public surface."""

from __future__ import annotations

import pytest
import torch

from dejavu.metrics import (
    HIGHER_IS_BETTER,
    DepthMetrics,
    NormalsMetrics,
    PanopticQuality,
    SegmentationMetrics,
    multitask_delta,
)


def test_delta_by_hand() -> None:
    # miou +5 % (higher better): +5; abs_err 0.45 vs 0.50 is 10 % lower (lower better): +10;
    # normals mean unchanged: 0. Δm = (5 + 10 + 0) / 3 = 5.
    metrics = {"miou": 0.42, "abs_err": 0.45, "mean": 20.0}
    reference = {"miou": 0.40, "abs_err": 0.50, "mean": 20.0}
    assert multitask_delta(metrics, reference) == pytest.approx(5.0)
    # Worse on every metric: negative.
    worse = {"miou": 0.38, "abs_err": 0.55, "mean": 22.0}
    assert multitask_delta(worse, reference) == pytest.approx((-5 - 10 - 10) / 3)


def test_prefixed_keys_custom_directions_and_tensors() -> None:
    metrics = {"seg/miou": torch.tensor(0.5), "depth/rmse": torch.tensor(0.6)}
    reference = {"seg/miou": 0.4, "depth/rmse": 0.5, "unused": 1.0}
    # +25 % and -20 %: (25 - 20) / 2
    assert multitask_delta(metrics, reference) == pytest.approx(2.5)
    flipped = {"seg/miou": False, "depth/rmse": True}
    assert multitask_delta(metrics, reference, flipped) == pytest.approx(-2.5)


def test_missing_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"missing from reference: \['abs_rel'\]"):
        multitask_delta({"miou": 0.4, "abs_rel": 0.1}, {"miou": 0.4})
    with pytest.raises(ValueError, match=r"missing from higher_is_better: \['my_score'\]"):
        multitask_delta({"my_score": 1.0}, {"my_score": 1.0})


@pytest.mark.parametrize(
    ("metrics", "reference", "match"),
    [
        ({}, {}, "must not be empty"),
        ({"miou": 0.4}, {"miou": 0.0}, "non-zero"),
        ({"miou": float("nan")}, {"miou": 0.4}, "finite"),
        ({"miou": "high"}, {"miou": 0.4}, "number"),
    ],
)
def test_bad_values_raise(metrics: dict, reference: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        multitask_delta(metrics, reference)


def test_table_covers_every_scalar_metric_and_is_read_only() -> None:
    cats = [{"id": 1, "isthing": True}, {"id": 2, "isthing": False}]
    outputs = [
        SegmentationMetrics(3)(torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))),
        DepthMetrics()(torch.rand(1, 1, 4, 4) + 1, torch.rand(1, 1, 4, 4) + 1),
        NormalsMetrics()(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)),
        PanopticQuality(cats)(
            torch.ones(1, 2, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, 2, dtype=torch.long)
        ),
    ]
    scalar_names = {k for out in outputs for k, v in out.items() if v.ndim == 0}
    assert scalar_names <= set(HIGHER_IS_BETTER), scalar_names - set(HIGHER_IS_BETTER)
    assert HIGHER_IS_BETTER["miou"] and HIGHER_IS_BETTER["pq_stuff"]
    assert not HIGHER_IS_BETTER["abs_err"] and not HIGHER_IS_BETTER["mean"]
    with pytest.raises(TypeError):
        HIGHER_IS_BETTER["miou"] = False  # type: ignore[index]
