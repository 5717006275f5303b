"""Fuzzing the metrics on all-ignore images and on classes absent from prediction and truth.

Every metric is checked against a plain numpy / Python computation of its
documented definition (docs/metrics.md and the docstrings) over the pixels
and classes that are present, and the undefined values are NaN exactly where
documented:

* segmentation: a class's IoU is NaN iff it has no counted pixel in target or
  prediction (its accuracy iff no target pixel); ``miou``/``macc`` are the
  nanmeans and NaN when no class is defined, ``aacc`` NaN with no counted pixel;
* depth and normals: every value NaN when no pixel is valid;
* panoptic: a category with ``TP + FP + FN = 0`` is NaN in the per-class
  outputs and left out of the means; a mean over no category is NaN.

Nothing raises, and no value is infinite. The torchmetrics classes, fed the
images one by one (all-ignore ones included), equal the functional forms.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from fuzz_profile import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

from dejavu.metrics import (
    DepthMetrics,
    NormalsMetrics,
    PanopticQuality,
    SegmentationMetrics,
    confusion_matrix,
    depth_errors,
    normal_errors,
    panoptic_quality,
    segmentation_scores,
)

IGNORE = 255


def _assert_same(
    got: dict[str, torch.Tensor], want: dict[str, object], rtol: float, atol: float = 0.0
) -> None:
    """Same keys; NaN exactly where expected, never inf; values equal to ``rtol``/``atol``."""
    assert set(got) == set(want)
    for key, value in got.items():
        g = value.detach().double().cpu().numpy()
        w = np.asarray(want[key], dtype=np.float64)
        assert g.shape == w.shape, key
        assert not np.isinf(g).any(), (key, g)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=key)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=key)


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(a, b).shape, math.nan)
    np.divide(a, b, out=out, where=b > 0)
    return out


# ------------------------------------------------------------------ segmentation
@st.composite
def segmentation_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, set[int]]:
    """Labels drawn from a subset of the classes; whole images may be all-ignore."""
    k = draw(st.integers(1, 6))
    b, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_used = draw(st.integers(0, k)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, k))
    used = {int(c) for c in rng.choice(k, size=n_used, replace=False)}  # the others are absent
    labels = np.array(sorted(used) or [0])
    target = rng.choice(labels, size=(b, h, w))
    pred = rng.choice(labels, size=(b, h, w))
    ignore_frac = draw(st.sampled_from([0.0, 0.3, 0.3, 1.0]))
    target[rng.random((b, h, w)) < ignore_frac] = IGNORE
    if not used:
        target[:] = IGNORE
    for i in range(b):  # some images are all-ignore
        if draw(st.integers(0, 3)) == 0:
            target[i] = IGNORE
    ignored = target == IGNORE
    # At ignored pixels a prediction is never counted: any class, even out of range.
    noise = rng.choice(np.array([*range(k), IGNORE]), size=(b, h, w))
    pred = np.where(ignored & (rng.random((b, h, w)) < 0.5), noise, pred)
    return torch.from_numpy(pred), torch.from_numpy(target), k, set(range(k)) - used


def _segmentation_reference(pred: np.ndarray, target: np.ndarray, k: int) -> dict[str, object]:
    counted = target != IGNORE
    cm = np.zeros((k, k))
    np.add.at(cm, (target[counted], pred[counted]), 1)
    tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
    iou = _div(tp, gt + pr - tp)
    acc = _div(tp, gt)
    return {
        "miou": _nanmean(iou),
        "aacc": tp.sum() / cm.sum() if cm.sum() else math.nan,
        "macc": _nanmean(acc),
        "iou_per_class": iou,
        "acc_per_class": acc,
    }


@fuzz(150)
@given(batch=segmentation_batch(), logits=st.booleans())
def test_segmentation_on_ignore_and_absent_classes(batch: tuple, logits: bool) -> None:
    pred, target, k, absent = batch
    want = _segmentation_reference(pred.numpy(), target.numpy(), k)
    given_pred = pred
    if logits:  # the arg-max path: one-hot logits (ignored pixels may hold 255: any class)
        given_pred = torch.nn.functional.one_hot(pred.clamp(max=k - 1), k).permute(0, 3, 1, 2)
        given_pred = given_pred.double() * 3.0
        want = _segmentation_reference(pred.clamp(max=k - 1).numpy(), target.numpy(), k)
    got = segmentation_scores(confusion_matrix(given_pred, target, k))
    event(
        "nothing counted" if bool((target == IGNORE).all()) else f"{len(absent)} absent class(es)"
    )
    _assert_same(got, want, rtol=1e-12)
    for c in absent:  # absent from both: undefined, left out of the means
        assert math.isnan(got["iou_per_class"][c]) and math.isnan(got["acc_per_class"][c])
    # Dataset-level pooling: image by image (all-ignore ones too) = the whole batch.
    metric = SegmentationMetrics(num_classes=k)
    for i in range(pred.shape[0]):
        metric.update(given_pred[i : i + 1], target[i : i + 1])
    _assert_same(metric.compute(), want, rtol=1e-12)


# ------------------------------------------------------------------ depth
@st.composite
def depth_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    b, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    target = torch.rand(b, 1, h, w, generator=g, dtype=torch.float64) * 20 + 1e-3
    pred = torch.rand(b, 1, h, w, generator=g, dtype=torch.float64) * 25 - 2  # some <= 0
    # Invalid targets: 0 (missing), negative, NaN, inf; whole images may be invalid.
    bad = torch.tensor([0.0, -1.0, math.nan, math.inf, -math.inf], dtype=torch.float64)
    pick = torch.randint(0, len(bad), target.shape, generator=g)
    frac = draw(st.sampled_from([0.0, 0.3, 0.3, 1.0]))
    invalid = torch.rand(target.shape, generator=g) < frac
    for i in range(b):
        if draw(st.integers(0, 3)) == 0:
            invalid[i] = True
    target = torch.where(invalid, bad[pick], target)
    valid = None
    if draw(st.booleans()):
        valid = torch.rand(target.shape, generator=g) < draw(st.sampled_from([0.0, 0.5, 0.5, 1.0]))
    return pred.to(dtype), target.to(dtype), valid


def _depth_reference(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, eps: float = 1e-9
) -> dict[str, float]:
    # Per-pixel terms in the metric's compute dtype (float32, float64 for float64 input).
    cd = np.float64 if pred.dtype == torch.float64 else np.float32
    p_all, t_all = pred.double().numpy().astype(cd), target.double().numpy().astype(cd)
    mask = np.isfinite(t_all) & (t_all > 0)
    if valid is not None:
        mask &= valid.numpy()
    p, t = p_all[mask].astype(np.float64), t_all[mask].astype(np.float64)
    if p.size == 0:
        names = ("abs_err", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")
        return {k: math.nan for k in (*names, "delta1", "delta2", "delta3")}
    p_pos = np.maximum(p, eps)
    p_c, t_c = p_all[mask].clip(min=cd(eps)), t_all[mask]  # the ratio in the compute dtype
    ratio = np.maximum(p_c / t_c, t_c / p_c)
    diff = p - t
    return {
        "abs_err": np.abs(diff).mean(),
        "abs_rel": (np.abs(diff) / t).mean(),
        "sq_rel": (diff**2 / t).mean(),
        "rmse": math.sqrt((diff**2).mean()),
        "rmse_log": math.sqrt(((np.log(p_pos) - np.log(t)) ** 2).mean()),
        "log10": np.abs(np.log10(p_pos) - np.log10(t)).mean(),
        **{f"delta{k}": float((ratio < 1.25**k).mean()) for k in (1, 2, 3)},
    }


@fuzz(150)
@given(batch=depth_batch())
def test_depth_on_invalid_images(batch: tuple) -> None:
    pred, target, valid = batch
    want = _depth_reference(pred, target, valid)
    event("no valid pixel" if math.isnan(want["abs_err"]) else "some valid pixels")
    # float32 per-pixel terms (float16 input is computed in float32): a few ulps.
    tol = {"rtol": 1e-12} if pred.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    _assert_same(depth_errors(pred, target, valid), want, **tol)
    metric = DepthMetrics()
    for i in range(pred.shape[0]):
        v = None if valid is None else valid[i : i + 1]
        metric.update(pred[i : i + 1], target[i : i + 1], v)
    _assert_same(metric.compute(), want, **tol)


# ------------------------------------------------------------------ normals
@st.composite
def normals_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    b, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    target = torch.nn.functional.normalize(
        torch.randn(b, 3, h, w, generator=g, dtype=torch.float64), dim=1
    )
    pred = torch.randn(b, 3, h, w, generator=g, dtype=torch.float64) * 2
    pred[:, :, torch.rand(h, w, generator=g) < 0.2] = 0.0  # no direction: 90 degrees
    # Invalid targets: all-zero or non-finite; whole images may be invalid.
    frac = draw(st.sampled_from([0.0, 0.3, 0.3, 1.0]))
    invalid = torch.rand(b, 1, h, w, generator=g) < frac
    for i in range(b):
        if draw(st.integers(0, 3)) == 0:
            invalid[i] = True
    fill = torch.tensor([0.0, math.nan, math.inf], dtype=torch.float64)
    bad = fill[torch.randint(0, 3, (b, 1, h, w), generator=g)].expand(b, 3, h, w)
    target = torch.where(invalid, bad, target)
    valid = None
    if draw(st.booleans()):
        valid = torch.rand(b, 1, h, w, generator=g) < 0.5
    return pred, target, valid


def _angles_reference(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> np.ndarray:
    p = pred.numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    t = target.numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    mask = np.isfinite(t).all(1) & (t != 0).any(1)
    if valid is not None:
        mask &= valid.numpy().reshape(-1)
    p, t = p[mask], t[mask]
    pn = np.linalg.norm(p, axis=1)
    pu = p / np.maximum(pn, 1e-12)[:, None]
    tu = t / np.linalg.norm(t, axis=1)[:, None]
    angle = np.degrees(np.arctan2(np.linalg.norm(np.cross(pu, tu), axis=1), (pu * tu).sum(1)))
    return np.where(pn == 0, 90.0, angle)


@fuzz(150)
@given(batch=normals_batch())
def test_normals_on_invalid_images(batch: tuple) -> None:
    pred, target, valid = batch
    a = _angles_reference(pred, target, valid)
    n = a.size
    event("no valid pixel" if n == 0 else "some valid pixels")
    want = {
        "mean": a.mean() if n else math.nan,
        "median": float(np.median(a)) if n else math.nan,
        "rmse": math.sqrt((a**2).mean()) if n else math.nan,
        **{
            name: (a < thr).mean() if n else math.nan
            for name, thr in (("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30.0))
        },
    }
    _assert_same(normal_errors(pred, target, valid), want, rtol=1e-9)
    metric = NormalsMetrics()
    for i in range(pred.shape[0]):
        v = None if valid is None else valid[i : i + 1]
        metric.update(pred[i : i + 1], target[i : i + 1], v)
    got = metric.compute()
    hist_median = got.pop("median")
    want_median = want.pop("median")
    _assert_same(got, want, rtol=1e-9)
    if n:  # the histogram median: within half a 0.01-degree bin
        assert abs(float(hist_median) - want_median) <= 0.005 + 1e-9
    else:
        assert math.isnan(hist_median)


# ------------------------------------------------------------------ panoptic
def _panoptic_reference(pred: np.ndarray, target: np.ndarray, cats: list[dict], void: int) -> dict:
    """panopticapi's pq_compute_single_core, image by image, in plain Python."""
    ids = [c["id"] for c in cats]
    thing = {c["id"]: bool(c["isthing"]) for c in cats}
    iou_sum, tp, fp, fn = (defaultdict(float) for _ in range(4))

    def segments(x: np.ndarray) -> tuple[dict, np.ndarray]:
        keys = np.empty(x.shape[1:], dtype=object)
        area: dict = defaultdict(int)
        for (r, c), cat in np.ndenumerate(x[0]):
            if cat == void:
                keys[r, c] = None
                continue
            inst = int(x[1, r, c]) if thing[int(cat)] else 0
            keys[r, c] = (int(cat), inst)
            area[keys[r, c]] += 1
        return area, keys

    for pi, ti in zip(pred, target, strict=True):
        gt_area, gt_keys = segments(ti)
        pr_area, pr_keys = segments(pi)
        crowd = {g for g in gt_area if thing[g[0]] and g[1] == 0}
        inter: dict = defaultdict(int)
        for g, p in zip(gt_keys.ravel(), pr_keys.ravel(), strict=True):
            if p is not None:
                inter[(g, p)] += 1
        gt_matched, pr_matched = set(), set()
        for (g, p), n in inter.items():
            if g is None or g in crowd or g[0] != p[0]:
                continue
            union = pr_area[p] + gt_area[g] - n - inter.get((None, p), 0)
            iou = n / union
            if iou > 0.5:
                tp[g[0]] += 1
                iou_sum[g[0]] += iou
                gt_matched.add(g)
                pr_matched.add(p)
        for g in gt_area:
            if g not in gt_matched and g not in crowd:
                fn[g[0]] += 1
        for p in pr_area:
            if p in pr_matched:
                continue
            ignored = inter.get((None, p), 0)
            ignored += sum(
                n for (g, q), n in inter.items() if q == p and g in crowd and g[0] == p[0]
            )
            if ignored / pr_area[p] > 0.5:
                continue
            fp[p[0]] += 1
    per: dict[str, list[float]] = {"pq": [], "sq": [], "rq": []}
    for c in ids:
        if tp[c] + fp[c] + fn[c] == 0:
            for v in per.values():
                v.append(math.nan)
            continue
        denom = tp[c] + 0.5 * fp[c] + 0.5 * fn[c]
        per["pq"].append(iou_sum[c] / denom)
        per["sq"].append(iou_sum[c] / tp[c] if tp[c] else 0.0)
        per["rq"].append(tp[c] / denom)
    out: dict = {}
    is_thing = np.array([thing[c] for c in ids])
    for group, sel in (("", np.ones_like(is_thing)), ("_things", is_thing), ("_stuff", ~is_thing)):
        for k, v in per.items():
            out[k + group] = _nanmean(np.array(v)[sel])
    for k, v in per.items():
        out[f"{k}_per_class"] = np.array(v)
    return out


@st.composite
def panoptic_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, list[dict], int]:
    n_cats = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(0, 20), min_size=n_cats, max_size=n_cats, unique=True))
    cats = [{"id": i, "isthing": draw(st.booleans())} for i in ids]
    void = draw(st.sampled_from([255, 0, 21])) if 0 not in ids else 255
    at_least = 0 if draw(st.integers(0, 9)) == 0 else 1
    used = draw(st.lists(st.sampled_from(ids), min_size=at_least, max_size=n_cats, unique=True))
    b, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = np.array([*used, *used, void])

    def maps() -> np.ndarray:
        x = np.empty((b, 2, h, w), dtype=np.int64)
        x[:, 0] = rng.choice(labels, size=(b, h, w))
        x[:, 1] = rng.integers(0, 3, size=(b, h, w))
        return x

    pred, target = maps(), maps()
    if draw(st.booleans()):  # prediction close to the truth: true positives happen
        pred = target.copy()
        flip = rng.random((b, h, w)) < 0.2
        pred[:, 0][flip] = rng.choice(labels, size=int(flip.sum()))
    for i in range(b):  # some images are all VOID, in the truth, the prediction or both
        which = draw(st.sampled_from(["none", "none", "none", "target", "pred", "both"]))
        if which in ("target", "both"):
            target[i, 0] = void
        if which in ("pred", "both"):
            pred[i, 0] = void
    return torch.from_numpy(pred), torch.from_numpy(target), cats, void


@fuzz(150)
@given(batch=panoptic_batch())
def test_panoptic_on_void_images_and_absent_categories(batch: tuple) -> None:
    pred, target, cats, void = batch
    want = _panoptic_reference(pred.numpy(), target.numpy(), cats, void)
    absent = int(np.isnan(want["pq_per_class"]).sum())
    event("no category present" if absent == len(cats) else f"{absent} absent categories")
    event("some true positive" if want["sq"] > 0 else "no true positive")
    _assert_same(panoptic_quality(pred, target, cats, void_label=void), want, rtol=1e-12)
    metric = PanopticQuality(cats, void_label=void)
    for i in range(pred.shape[0]):
        metric.update(pred[i : i + 1], target[i : i + 1])
    _assert_same(metric.compute(), want, rtol=1e-12)


def test_one_class_keeps_the_class_dimension() -> None:
    # Regression: torchmetrics squeezes one-element tensors, so with one class the
    # metric classes returned 0-d per-class values while the functions return shape (1,).
    seg = SegmentationMetrics(num_classes=1)
    seg.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    out = seg.compute()
    assert out["iou_per_class"].shape == out["acc_per_class"].shape == (1,)
    assert out["miou"].shape == ()
    cats = [{"id": 1, "isthing": False}]
    pq = PanopticQuality(cats)
    x = torch.tensor([[[[1, 1]], [[0, 0]]]])
    pq.update(x, x)
    out = pq.compute()
    assert all(out[f"{k}_per_class"].shape == (1,) for k in ("pq", "sq", "rq"))
    assert out["pq"].shape == ()
