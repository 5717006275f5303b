"""Tests for dejavu.metrics.depth: hand-worked values and numpy formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dejavu.metrics import DEPTH_METRIC_NAMES, DepthMetrics, depth_errors


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, 1, -1)


def test_by_hand() -> None:
    # Pixel 2 has target 0 (invalid). Valid pairs (d, g) and |d - g|, ratio:
    #   (1.2, 1) 0.2 1.2 | (1, 1) 0 1 | (3, 2) 1.0 1.5 | (3.4, 2) 1.4 1.7
    pred = _row([1.2, 1.0, 3.0, 3.0, 3.4])
    target = _row([1.0, 1.0, 0.0, 2.0, 2.0])
    out = depth_errors(pred, target)
    expected = {
        "abs_err": (0.2 + 0 + 1.0 + 1.4) / 4,  # 0.65
        "abs_rel": (0.2 + 0 + 0.5 + 0.7) / 4,  # 0.35
        "sq_rel": (0.04 + 0 + 1.0 / 2 + 1.96 / 2) / 4,  # 0.38
        "rmse": math.sqrt((0.04 + 0 + 1.0 + 1.96) / 4),  # sqrt(0.75)
        "rmse_log": math.sqrt((math.log(1.2) ** 2 + math.log(1.5) ** 2 + math.log(1.7) ** 2) / 4),
        "log10": (math.log10(1.2) + math.log10(1.5) + math.log10(1.7)) / 4,
        "delta1": 2 / 4,  # 1.2 and 1 are < 1.25
        "delta2": 3 / 4,  # 1.5 < 1.5625 but 1.7 is not
        "delta3": 4 / 4,  # 1.7 < 1.953125
    }
    assert set(out) == set(DEPTH_METRIC_NAMES)
    for k, v in expected.items():
        assert out[k].item() == pytest.approx(v, rel=1e-6), k
        assert out[k].dtype == torch.float64 and out[k].ndim == 0


def test_non_positive_prediction_is_clamped_for_log_and_ratio_terms_only() -> None:
    pred = _row([-1.0, 0.0])
    target = _row([2.0, 2.0])
    out = depth_errors(pred, target, eps=1e-9)
    assert out["abs_err"].item() == pytest.approx((3.0 + 2.0) / 2)  # raw prediction
    assert out["rmse"].item() == pytest.approx(math.sqrt((9.0 + 4.0) / 2))
    assert out["rmse_log"].item() == pytest.approx(math.log(2.0 / 1e-9), rel=1e-6)
    assert out["delta3"].item() == 0.0
    assert all(math.isfinite(v.item()) for v in out.values())


def _numpy_errors(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    d = pred[valid].astype(np.float64)
    g = target[valid].astype(np.float64)
    ratio = np.maximum(d / g, g / d)
    return {
        "abs_err": np.mean(np.abs(d - g)),
        "abs_rel": np.mean(np.abs(d - g) / g),
        "sq_rel": np.mean((d - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((d - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(d) - np.log(g)) ** 2)),
        "log10": np.mean(np.abs(np.log10(d) - np.log10(g))),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
    }


def _random_batch(seed: int, b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 1, 16, 24, generator=g) * 9 + 0.5
    target[torch.rand(target.shape, generator=g) < 0.2] = 0.0  # missing depth
    target[0, 0, 0, :3] = float("nan")  # non-finite targets are invalid too
    pred = target.nan_to_num(3.0) * torch.exp(0.3 * torch.randn(target.shape, generator=g))
    pred[pred == 0] = 1.0
    valid = torch.rand(target.shape, generator=g) < 0.9
    return pred, target, valid


def test_random_against_numpy_with_invalid_pixels_and_mask() -> None:
    pred, target, valid = _random_batch(0)
    out = depth_errors(pred, target, valid)
    t = target.numpy()
    ok = np.isfinite(t) & (t > 0) & valid.numpy()
    ref = _numpy_errors(pred.numpy(), t, ok)
    # No ratio lies near a delta threshold (relative margin > 1e-5, float32 rounding is
    # ~6e-8), so the library's float32 ratios and numpy's float64 ones fall on the same
    # side of every threshold on any machine.
    d, g = pred.numpy()[ok].astype(np.float64), t[ok].astype(np.float64)
    ratio = np.maximum(d / g, g / d)
    assert all(np.abs(ratio / thr - 1).min() > 1e-5 for thr in (1.25, 1.25**2, 1.25**3))
    for k in DEPTH_METRIC_NAMES:
        assert out[k].item() == pytest.approx(ref[k], rel=1e-5), k


def test_metric_pools_pixels_over_batches() -> None:
    batches = [_random_batch(s, b) for s, b in ((1, 1), (2, 3), (3, 2))]
    m = DepthMetrics()
    for p, t, v in batches:
        m.update(p, t, v)
    out = m.compute()
    cat = [torch.cat(x) for x in zip(*batches, strict=True)]
    whole = depth_errors(*cat)
    for k in DEPTH_METRIC_NAMES:
        assert out[k].item() == pytest.approx(whole[k].item(), rel=1e-9), k
    # Pooling over pixels is not the mean of per-batch scores (batches differ in size).
    per_batch = [depth_errors(*b)["rmse"].item() for b in batches]
    assert out["rmse"].item() != pytest.approx(sum(per_batch) / 3, rel=1e-4)
    m.reset()
    assert m.sum_n.item() == 0.0 and m.sum_abs.item() == 0.0


def test_no_valid_pixel_gives_nan() -> None:
    out = depth_errors(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert all(math.isnan(v.item()) for v in out.values())


def test_half_precision_inputs() -> None:
    pred, target, _ = _random_batch(4)
    out16 = depth_errors(pred.half(), target.half())
    ref = depth_errors(pred.half().float(), target.half().float())
    for k in DEPTH_METRIC_NAMES:
        assert out16[k].item() == pytest.approx(ref[k].item(), rel=1e-6), k


@pytest.mark.parametrize(
    ("pred", "target", "valid", "match"),
    [
        (torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3), None, "must match target"),
        (torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2), None, "pred must have 1 channels"),
        (torch.ones(1, 2, 2), torch.ones(1, 2, 2), None, "pred must be 4-D"),
        (
            torch.ones(1, 1, 2, 2),
            torch.ones(1, 1, 2, 2),
            torch.ones(1, 1, 2, 2),
            "valid must be a bool",
        ),
        (
            torch.ones(1, 1, 2, 2),
            torch.ones(1, 1, 2, 2),
            torch.ones(1, 2, 2, dtype=torch.bool),
            "valid of shape",
        ),
    ],
)
def test_bad_inputs_raise(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        depth_errors(pred, target, valid)


def test_bad_eps_raises() -> None:
    with pytest.raises(ValueError, match="eps"):
        DepthMetrics(eps=0.0)
