"""Tests for dejavu.metrics.kitti: hand-worked values, the crops, and a numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dejavu.metrics import (
    KITTI_CROPS,
    KITTI_METRIC_NAMES,
    DepthMetrics,
    KittiDepthMetrics,
    kitti_crop_mask,
    kitti_depth_errors,
)


def _image(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).view(1, 1, len(rows), len(rows[0]))


# A 2 x 3 image. Valid pixels (min 1e-3 < g < max 80): (0,0), (0,2), (1,0), (1,2); (0,1) has
# no depth (0) and (1,1) is beyond 80 m. The prediction 100 at (1,2) is capped to 80.
TARGET = _image([[2.0, 0.0, 4.0], [10.0, 90.0, 5.0]])
PRED = _image([[2.5, 7.0, 4.0], [8.0, 50.0, 100.0]])


def test_two_by_three_by_hand() -> None:
    # (d, g) pairs: (2.5, 2) (4, 4) (8, 10) (80, 5); |d - g| = 0.5, 0, 2, 75
    # ratios max(d/g, g/d) = 1.25, 1, 1.25, 16 (1.25 is exactly representable: not < 1.25)
    out = kitti_depth_errors(PRED, TARGET, crop=None, min_depth=1e-3, max_depth=80.0)
    expected = {
        "abs_err": (0.5 + 0 + 2 + 75) / 4,
        "abs_rel": (0.5 / 2 + 0 + 2 / 10 + 75 / 5) / 4,  # 3.8625
        "sq_rel": (0.25 / 2 + 0 + 4 / 10 + 5625 / 5) / 4,  # 281.38125
        "rmse": math.sqrt((0.25 + 0 + 4 + 5625) / 4),
        "rmse_log": math.sqrt((math.log(1.25) ** 2 + math.log(0.8) ** 2 + math.log(16) ** 2) / 4),
        "log10": (math.log10(1.25) + 0 + math.log10(1.25) + math.log10(16)) / 4,
        "delta1": 1 / 4,  # only the exact prediction
        "delta2": 3 / 4,  # 1.25 < 1.5625, 16 is not
        "delta3": 3 / 4,
    }
    assert set(out) == set(KITTI_METRIC_NAMES)
    for k, v in expected.items():
        assert out[k].shape == (1,) and out[k].dtype == torch.float64, k
        assert out[k].item() == pytest.approx(v, rel=1e-6), k


@pytest.mark.parametrize("crop", ["garg", "eigen"])
def test_two_by_three_cropped_by_hand(crop: str) -> None:
    # On 2 x 3 both crops keep row int(f * 2) = 0 only (0.408 * 2 and 0.332 * 2 truncate to 0,
    # 0.99 * 2 and 0.91 * 2 to 1) and columns int(0.036 * 3) = 0 to int(0.964 * 3) = 2
    # (exclusive): pixels (0, 0) and (0, 1); (0, 1) has no depth, so one pair (2.5, 2).
    assert kitti_crop_mask(2, 3, crop).tolist() == [[True, True, False], [False, False, False]]
    out = kitti_depth_errors(PRED, TARGET, crop=crop)
    assert out["abs_rel"].item() == pytest.approx(0.25)
    assert out["rmse"].item() == pytest.approx(0.5)
    assert out["delta1"].item() == 0.0 and out["delta2"].item() == 1.0


def test_crops_on_a_small_image_and_at_kitti_size() -> None:
    # 10 x 20: Garg rows int(4.08)=4 .. int(9.92)=9, columns int(0.72)=0 .. int(19.28)=19;
    # Eigen rows int(3.32)=3 .. int(9.14)=9, same columns.
    for crop, (r0, r1, c0, c1) in {"garg": (4, 9, 0, 19), "eigen": (3, 9, 0, 19)}.items():
        expected = torch.zeros(10, 20, dtype=torch.bool)
        expected[r0:r1, c0:c1] = True
        assert torch.equal(kitti_crop_mask(10, 20, crop), expected), crop
    # A KITTI frame, 375 x 1242: the crops the depth codebases evaluate on.
    sizes = {"garg": (153, 371, 44, 1197), "eigen": (124, 342, 44, 1197)}
    for crop, (r0, r1, c0, c1) in sizes.items():
        mask = kitti_crop_mask(375, 1242, crop)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert (rows[0].item(), rows[-1].item() + 1, cols[0].item(), cols[-1].item() + 1) == (
            r0,
            r1,
            c0,
            c1,
        ), crop
        assert mask.sum().item() == (r1 - r0) * (c1 - c0)
    assert kitti_crop_mask(3, 4, None).all()
    assert KITTI_CROPS["garg"] == (0.40810811, 0.99189189, 0.03594771, 0.96405229)
    assert KITTI_CROPS["eigen"] == (0.3324324, 0.91351351, 0.0359477, 0.96405229)


def test_the_crop_drops_what_lies_outside_it() -> None:
    # An error only outside the Garg crop does not count; inside it does.
    target = torch.full((1, 1, 10, 20), 10.0)
    pred = target.clone()
    pred[..., 0, :] = 20.0  # row 0 is above the crop
    assert kitti_depth_errors(pred, target, crop="garg")["abs_rel"].item() == 0.0
    assert kitti_depth_errors(pred, target, crop=None)["abs_rel"].item() == pytest.approx(0.1)


def test_images_are_averaged_not_pixels() -> None:
    # Image A: one valid pixel, abs_rel 0.5; image B: three valid pixels, abs_rel 0.
    target = torch.tensor([[[[2.0, 0.0, 0.0]]], [[[1.0, 2.0, 3.0]]]])
    pred = torch.tensor([[[[3.0, 5.0, 5.0]]], [[[1.0, 2.0, 3.0]]]])
    m = KittiDepthMetrics(crop=None)
    m.update(pred, target)
    assert m.compute()["abs_rel"].item() == pytest.approx(0.25)  # (0.5 + 0) / 2 images
    pooled = DepthMetrics()
    pooled.update(pred, target)
    assert pooled.compute()["abs_rel"].item() == pytest.approx(0.125)  # 0.5 / 4 pixels


def test_image_without_valid_pixel_is_left_out() -> None:
    target = torch.zeros(2, 1, 2, 3)
    target[0, 0, 0, 0] = 4.0
    pred = torch.full((2, 1, 2, 3), 5.0)
    per_image = kitti_depth_errors(pred, target, crop=None)
    assert per_image["abs_rel"][0].item() == pytest.approx(0.25)
    assert math.isnan(per_image["abs_rel"][1].item())
    m = KittiDepthMetrics(crop=None)
    m.update(pred, target)
    assert m.compute()["abs_rel"].item() == pytest.approx(0.25) and m.images.item() == 1
    m.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' warning
        assert all(math.isnan(v.item()) for v in m.compute().values())  # nothing seen


def test_non_finite_predictions_are_capped() -> None:
    target = torch.tensor([4.0, 4.0]).view(1, 1, 1, 2)
    pred = torch.tensor([float("nan"), float("inf")]).view(1, 1, 1, 2)
    out = kitti_depth_errors(pred, target, crop=None, min_depth=1.0, max_depth=8.0)
    # nan -> min_depth 1 (|1 - 4| = 3), inf -> max_depth 8 (|8 - 4| = 4)
    assert out["abs_err"].item() == pytest.approx(3.5)
    assert all(math.isfinite(v.item()) for v in out.values())


# ----------------------------------------------------------------- numpy reference
def _compute_errors(gt: np.ndarray, pred: np.ndarray) -> tuple[float, ...]:
    """The standard per-image compute_errors of the KITTI depth codebases (numpy, float64)."""
    thresh = np.maximum(gt / pred, pred / gt)
    a1, a2, a3 = ((thresh < 1.25**k).mean() for k in (1, 2, 3))
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    return abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3


def _numpy_eval(
    preds: list[np.ndarray], gts: list[np.ndarray], crop: str | None, lo: float, hi: float
) -> dict[str, float]:
    rows = []
    for pred, gt in zip(preds, gts, strict=True):
        pred = np.clip(pred.astype(np.float64), lo, hi)
        gt = gt.astype(np.float64)
        mask = (gt > lo) & (gt < hi)
        if crop is not None:
            h, w = gt.shape
            f = np.array(KITTI_CROPS[crop]) * np.array([h, h, w, w])
            c = f.astype(np.int32)
            eval_mask = np.zeros_like(mask)
            eval_mask[c[0] : c[1], c[2] : c[3]] = True
            mask &= eval_mask
        if mask.any():
            rows.append(_compute_errors(gt[mask], pred[mask]))
    means = np.mean(rows, axis=0)
    names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
    return dict(zip(names, means, strict=True))


def _random_batch(seed: int, b: int, h: int = 37, w: int = 100) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 1, h, w, generator=g) * 95 + 0.01  # some beyond 80 m
    target[torch.rand(target.shape, generator=g) < 0.7] = 0.0  # sparse, as LiDAR
    pred = (target + 0.5) * torch.exp(0.4 * torch.randn(target.shape, generator=g))
    pred[torch.rand(target.shape, generator=g) < 0.02] = 1e-5  # below min_depth
    return pred, target


@pytest.mark.parametrize(
    ("crop", "lo", "hi"), [("garg", 1e-3, 80.0), ("eigen", 1e-3, 80.0), (None, 0.5, 50.0)]
)
def test_random_against_the_numpy_compute_errors(crop: str | None, lo: float, hi: float) -> None:
    batches = [_random_batch(s, b) for s, b in ((0, 2), (1, 1), (2, 3))]
    m = KittiDepthMetrics(crop=crop, min_depth=lo, max_depth=hi)
    for pred, target in batches:
        m.update(pred, target)
    out = m.compute()
    preds = [p[0].numpy() for pred, _ in batches for p in pred]
    gts = [t[0].numpy() for _, target in batches for t in target]
    ref = _numpy_eval(preds, gts, crop, lo, hi)
    # No ratio lies near a delta threshold, so float32 and float64 agree on every side.
    ok = [(g > lo) & (g < hi) for g in gts]
    d = np.concatenate([np.clip(p[k], lo, hi) for p, k in zip(preds, ok, strict=True)])
    g = np.concatenate([t[k] for t, k in zip(gts, ok, strict=True)]).astype(np.float64)
    ratios = np.maximum(d / g, g / d)
    assert all(np.abs(ratios / 1.25**k - 1).min() > 1e-5 for k in (1, 2, 3))
    assert m.images.item() == 6
    for k, v in ref.items():
        assert out[k].item() == pytest.approx(v, rel=1e-5), k
    # Batching does not matter: one update with everything gives the same.
    whole = KittiDepthMetrics(crop=crop, min_depth=lo, max_depth=hi)
    whole.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    for k in KITTI_METRIC_NAMES:
        assert whole.compute()[k].item() == pytest.approx(out[k].item(), rel=1e-9), k


def test_valid_mask_and_half_precision() -> None:
    pred, target = _random_batch(5, 2)
    valid = torch.rand(target.shape, generator=torch.Generator().manual_seed(6)) < 0.5
    masked = kitti_depth_errors(pred, target, valid)
    zeroed = kitti_depth_errors(pred, torch.where(valid, target, 0.0))
    for k in KITTI_METRIC_NAMES:
        torch.testing.assert_close(masked[k], zeroed[k], rtol=1e-12, atol=0)
    half = kitti_depth_errors(pred.half(), target.half())
    ref = kitti_depth_errors(pred.half().float(), target.half().float())
    for k in KITTI_METRIC_NAMES:
        torch.testing.assert_close(half[k], ref[k], rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crop": "benchmark"}, "unknown crop 'benchmark'; allowed: 'garg', 'eigen' or None"),
        ({"min_depth": 0.0}, "min_depth"),
        ({"min_depth": 10.0, "max_depth": 5.0}, "max_depth"),
    ],
)
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KittiDepthMetrics(**kwargs)
    with pytest.raises(ValueError, match=match):
        kitti_depth_errors(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="must match target"):
        kitti_depth_errors(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
