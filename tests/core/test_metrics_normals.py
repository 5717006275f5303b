"""Tests for dejavu.metrics.normals: known angles, numpy statistics, histogram median."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dejavu.metrics import NORMALS_METRIC_NAMES, NormalsMetrics, normal_angles, normal_errors


def _pixels(vectors: list[tuple[float, float, float]]) -> torch.Tensor:
    """A 1 x 3 x 1 x N map from N vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, -1)


S20, C20 = math.sin(math.radians(20)), math.cos(math.radians(20))
# Target +z everywhere except the last pixel (all-zero: invalid).
TARGET = _pixels([(0, 0, 1)] * 6 + [(0, 0, 0)])
PRED = _pixels(
    [
        (0, 0, 1),  # same direction: 0
        (1, 0, 0),  # orthogonal: 90
        (0, 0, -1),  # opposite: 180
        (2, 0, 2),  # not unit length, normalised first: 45
        (S20, 0, C20),  # 20
        (0, 0, 0),  # no direction: scores 90 (cosine 0)
        (0, 1, 0),  # invalid target pixel: left out
    ]
)
ANGLES = [0.0, 90.0, 180.0, 45.0, 20.0, 90.0]


def test_known_angles() -> None:
    a = normal_angles(PRED, TARGET)
    torch.testing.assert_close(a, torch.tensor(ANGLES), atol=1e-4, rtol=0)


def test_statistics_by_hand() -> None:
    out = normal_errors(PRED, TARGET)
    expected = {
        "mean": sum(ANGLES) / 6,  # 425 / 6
        "median": (45.0 + 90.0) / 2,  # sorted 0 20 45 90 90 180: mean of the middle two
        "rmse": math.sqrt((0 + 90**2 + 180**2 + 45**2 + 20**2 + 90**2) / 6),
        "within_11_25": 1 / 6,  # only 0
        "within_22_5": 2 / 6,  # 0 and 20
        "within_30": 2 / 6,
    }
    assert set(out) == set(NORMALS_METRIC_NAMES)
    for k, v in expected.items():
        assert out[k].item() == pytest.approx(v, abs=1e-4), k
    m = NormalsMetrics()
    m.update(PRED, TARGET)
    binned = m.compute()
    for k, v in expected.items():
        tol = m.bin_width / 2 if k == "median" else 1e-4
        assert binned[k].item() == pytest.approx(v, abs=tol + 1e-9), k


def test_small_angles_keep_their_precision() -> None:
    # arccos of a float32 cosine would read 0 or ~0.02 degrees here.
    deg = 1e-3
    pred = _pixels([(math.sin(math.radians(deg)), 0, math.cos(math.radians(deg)))])
    assert normal_angles(pred, _pixels([(0, 0, 1)])).item() == pytest.approx(deg, rel=1e-3)


def test_target_length_does_not_matter_and_valid_mask_applies() -> None:
    a = normal_angles(PRED, TARGET * 3.0)
    torch.testing.assert_close(a, torch.tensor(ANGLES), atol=1e-4, rtol=0)
    valid = torch.ones(1, 1, 1, 7, dtype=torch.bool)
    valid[..., 2] = False  # drop the 180-degree pixel
    b = normal_angles(PRED, TARGET, valid)
    torch.testing.assert_close(b, torch.tensor(ANGLES[:2] + ANGLES[3:]), atol=1e-4, rtol=0)


def _random_normals(seed: int, b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.normalize(torch.randn(b, 3, 16, 24, generator=g), dim=1)
    target = target * (torch.rand(b, 1, 16, 24, generator=g) > 0.2)  # 20 % invalid
    pred = target + 0.4 * torch.randn(b, 3, 16, 24, generator=g)
    return pred, target


def test_random_against_numpy() -> None:
    pred, target = _random_normals(0)
    out = normal_errors(pred, target)
    p = pred.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    t = target.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    ok = np.linalg.norm(t, axis=1) != 0
    p = p[ok] / np.linalg.norm(p[ok], axis=1, keepdims=True)
    t = t[ok] / np.linalg.norm(t[ok], axis=1, keepdims=True)
    deg = np.rad2deg(np.arccos(np.clip((p * t).sum(1), -1, 1)))
    # No angle lies near a "within" threshold (margin > 1e-3 degrees; the library's float32
    # angles are good to ~1e-5 degrees here), so both counts agree on any machine.
    assert all(np.abs(deg - thr).min() > 1e-3 for thr in (11.25, 22.5, 30.0))
    ref = {
        "mean": deg.mean(),
        "median": np.median(deg),
        "rmse": np.sqrt(np.mean(deg**2)),
        "within_11_25": np.mean(deg < 11.25),
        "within_22_5": np.mean(deg < 22.5),
        "within_30": np.mean(deg < 30),
    }
    for k, v in ref.items():
        assert out[k].item() == pytest.approx(v, abs=1e-3), k


@pytest.mark.parametrize("bins", [18000, 180])
def test_histogram_median_within_half_a_bin_of_numpy(bins: int) -> None:
    m = NormalsMetrics(bins=bins)
    angles = []
    for seed, b in ((1, 1), (2, 2), (3, 1)):
        pred, target = _random_normals(seed, b)
        m.update(pred, target)
        angles.append(normal_angles(pred, target))
    out = m.compute()
    a = torch.cat(angles).double().numpy()
    assert abs(out["median"].item() - np.median(a)) <= m.bin_width / 2 + 1e-9
    assert out["mean"].item() == pytest.approx(a.mean(), rel=1e-9)
    assert out["within_30"].item() == pytest.approx(np.mean(a < 30), rel=1e-12)


def test_histogram_median_of_an_even_count_with_a_gap() -> None:
    # Angles 10 and 100: numpy's median is 55; 1-degree bins give (10.5 + 100.5) / 2.
    c10, s10 = math.cos(math.radians(10)), math.sin(math.radians(10))
    c100, s100 = math.cos(math.radians(100)), math.sin(math.radians(100))
    pred = _pixels([(s10, 0, c10), (s100, 0, c100)])
    m = NormalsMetrics(bins=180)
    m.update(pred, _pixels([(0, 0, 1)] * 2))
    assert m.compute()["median"].item() == pytest.approx(55.5)


def test_accumulation_equals_one_call_on_the_concatenation() -> None:
    batches = [_random_normals(s, b) for s, b in ((4, 1), (5, 2))]
    m = NormalsMetrics()
    for p, t in batches:
        m.update(p, t)
    whole = NormalsMetrics()
    whole.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    a, b = m.compute(), whole.compute()
    for k in NORMALS_METRIC_NAMES:
        # float64 sums in a different order: equal to rounding.
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-9), k


def test_nan_prediction_makes_every_score_nan() -> None:
    pred = PRED.clone()
    pred[0, :, 0, 1] = float("nan")
    out = normal_errors(pred, TARGET)
    m = NormalsMetrics()
    m.update(pred, TARGET)
    for o in (out, m.compute()):
        assert all(math.isnan(v.item()) for v in o.values())


def test_no_valid_pixel_gives_nan() -> None:
    out = normal_errors(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    assert all(math.isnan(v.item()) for v in out.values())


@pytest.mark.parametrize(
    ("pred", "target", "valid", "match"),
    [
        (torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 3), None, "must match target"),
        (torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), None, "pred must have 3 channels"),
        (torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2), torch.ones(1, 1, 2, 2), "bool"),
        (
            torch.ones(1, 3, 2, 2),
            torch.ones(1, 3, 2, 2),
            torch.ones(1, 3, 2, 2, dtype=torch.bool),
            r"valid must have shape \(1, 1, 2, 2\)",
        ),
    ],
)
def test_bad_inputs_raise(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        normal_angles(pred, target, valid)


@pytest.mark.parametrize("bins", [0, 1.5])
def test_bad_bins_raise(bins: object) -> None:
    with pytest.raises(ValueError, match="bins"):
        NormalsMetrics(bins=bins)  # type: ignore[arg-type]
