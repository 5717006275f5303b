"""Tests for dejavu.metrics.panoptic.

Hand-built one-row images whose PQ is worked out in the comments, and a
comparison on random images against a direct re-implementation of the COCO
panopticapi ``pq_compute_single_core`` / ``PQStat.pq_average`` logic.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from dejavu.metrics import (
    PanopticQuality,
    panoptic_from_segments,
    panoptic_quality,
    panoptic_stats,
)

V = 255  # VOID
PERSON, CAR, SKY, ROAD = 1, 2, 3, 4
CATEGORIES = [
    {"id": PERSON, "isthing": 1, "name": "person"},
    {"id": CAR, "isthing": 1, "name": "car"},
    {"id": SKY, "isthing": 0, "name": "sky"},
    {"id": ROAD, "isthing": 0, "name": "road"},
]


def strip(segments: list[tuple[int, int, int]]) -> torch.Tensor:
    """A 1 x 2 x 1 x W panoptic map from runs ``(length, category, instance)``."""
    cat: list[int] = []
    inst: list[int] = []
    for length, c, i in segments:
        cat += [c] * length
        inst += [i] * length
    return torch.tensor([cat, inst]).view(1, 2, 1, -1)


def pq(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    return panoptic_quality(pred, target, CATEGORIES)


def test_perfect_match() -> None:
    target = strip([(3, PERSON, 1), (2, PERSON, 2), (4, SKY, 0), (3, V, 0)])
    # Instance ids are labels only, and stuff instance ids are ignored.
    pred = strip([(3, PERSON, 7), (2, PERSON, 9), (4, SKY, 5), (3, V, 0)])
    out = pq(pred, target)
    for k in ("pq", "sq", "rq", "pq_things", "pq_stuff"):
        assert out[k].item() == 1.0, k
    # car and road never appear (TP + FP + FN = 0): NaN per class, not averaged.
    torch.testing.assert_close(
        out["pq_per_class"],
        torch.tensor([1.0, math.nan, 1.0, math.nan], dtype=torch.float64),
        equal_nan=True,
    )
    stats = panoptic_stats(pred, target, CATEGORIES)
    assert stats.tp.tolist() == [2, 0, 1, 0] and stats.fp.sum() == 0 and stats.fn.sum() == 0


@pytest.mark.parametrize(
    ("extra", "person_iou"),
    [(9, 10 / 19), (10, None), (11, None)],  # IoU 0.526 matches; exactly 0.5 and 0.476 do not
)
def test_iou_threshold_is_strictly_above_half(extra: int, person_iou: float | None) -> None:
    # target: person on pixels 0..9 (area 10), sky on 10..39 (area 30)
    # pred:   person on 0..9+extra, sky on the remaining 30 - extra pixels
    # person IoU = 10 / (10 + extra); sky IoU = (30 - extra) / 30 (> 0.5: always a TP)
    target = strip([(10, PERSON, 1), (30, SKY, 0)])
    pred = strip([(10 + extra, PERSON, 1), (30 - extra, SKY, 0)])
    out = pq(pred, target)
    sky = (30 - extra) / 30
    stats = panoptic_stats(pred, target, CATEGORIES)
    if person_iou is not None:
        # person: TP 1 -> PQ = SQ = IoU, RQ = 1
        assert stats.tp[0] == 1 and stats.fp[0] == 0 and stats.fn[0] == 0
        assert out["pq"].item() == pytest.approx((person_iou + sky) / 2)
        assert out["rq"].item() == 1.0
    else:
        # person: FP 1, FN 1 -> PQ = SQ = RQ = 0; sky: TP 1 -> RQ 1
        assert stats.tp[0] == 0 and stats.fp[0] == 1 and stats.fn[0] == 1
        assert out["pq"].item() == pytest.approx((0 + sky) / 2)
        assert out["sq"].item() == pytest.approx((0 + sky) / 2)
        assert out["rq"].item() == pytest.approx((0 + 1) / 2)
        assert out["pq_things"].item() == 0.0
    assert out["pq_stuff"].item() == pytest.approx(sky)


def test_void_pixels_leave_the_union() -> None:
    # target: person 0..3 (area 4), VOID 4..7, sky 8..11
    # pred:   person 0..7 (area 8, 4 of them on VOID), sky 8..11
    # union = 8 + 4 - 4 (intersection) - 4 (pred on VOID) = 4 -> IoU 1 (0.5 if VOID counted)
    target = strip([(4, PERSON, 1), (4, V, 0), (4, SKY, 0)])
    pred = strip([(8, PERSON, 1), (4, SKY, 0)])
    out = pq(pred, target)
    assert out["pq"].item() == 1.0
    assert out["pq_per_class"][0].item() == 1.0


@pytest.mark.parametrize(
    ("car_start", "expected_pq", "car_fp"),
    [
        # sky pred 0..8 (area 9) on gt sky 0..11: IoU 9 / 12. car 9..14 (area 6): 3 pixels on
        # VOID, ratio 3/6 = 0.5 is not > 0.5 -> FP. PQ = (0.75 + 0) / 2
        (9, (9 / 12 + 0) / 2, 1),
        # sky pred 0..9: IoU 10 / 12. car 10..15: 4 of 6 on VOID (> 0.5) -> ignored, car absent
        (10, 10 / 12, 0),
    ],
)
def test_prediction_mostly_on_void_is_not_a_false_positive(
    car_start: int, expected_pq: float, car_fp: int
) -> None:
    target = strip([(12, SKY, 0), (4, V, 0)])  # sky 0..11, VOID 12..15
    pred = strip([(car_start, SKY, 0), (6, CAR, 1), (10 - car_start, V, 0)])
    out = pq(pred, target)
    assert out["pq"].item() == pytest.approx(expected_pq)
    assert panoptic_stats(pred, target, CATEGORIES).fp[1].item() == car_fp


def test_crowd_regions() -> None:
    # target: person crowd (instance 0) on 0..5, person #3 on 6..9, sky 10..15 (area 6)
    # pred:   person #1 on 0..4 (all in the crowd region: unmatched, 5/5 > 0.5 -> not FP),
    #         sky on pixel 5 and 10..15 (area 7: IoU 6 / 7), person #2 on 6..9 (IoU 1)
    # The crowd segment never matches and is no FN.
    # person: TP 1, IoU 1 -> PQ 1; sky: PQ 6/7; overall (1 + 6/7) / 2 = 13/14
    target = strip([(6, PERSON, 0), (4, PERSON, 3), (6, SKY, 0)])
    pred = strip([(5, PERSON, 1), (1, SKY, 0), (4, PERSON, 2), (6, SKY, 0)])
    out = pq(pred, target)
    stats = panoptic_stats(pred, target, CATEGORIES)
    assert stats.tp.tolist() == [1, 0, 1, 0]
    assert stats.fp.tolist() == [0, 0, 0, 0]
    assert stats.fn.tolist() == [0, 0, 0, 0]
    assert out["pq"].item() == pytest.approx(13 / 14)
    # The crowd region only excuses predictions of its own category: a car there is a FP,
    # so car joins the average with PQ 0: (1 + 6/7 + 0) / 3 = 13/21.
    pred_car = strip([(5, CAR, 1), (1, SKY, 0), (4, PERSON, 2), (6, SKY, 0)])
    out_car = pq(pred_car, target)
    assert out_car["pq"].item() == pytest.approx(13 / 21)
    assert out_car["pq_things"].item() == pytest.approx(0.5)


def test_prediction_on_a_same_category_crowd_region_counts_for_nothing() -> None:
    # target: person crowd on 0..3 only. pred person exactly there: crowd never matches, and
    # the unmatched pred lies on the same-category crowd region -> ignored. Nothing counts.
    target = strip([(4, PERSON, 0)])
    out = pq(strip([(4, PERSON, 1)]), target)
    assert math.isnan(out["pq"].item())


def test_stuff_segments_merge_per_image_and_images_do_not_mix() -> None:
    # Image 0: road with two different instance ids is one road segment (IoU 1).
    # Image 1: the same category ids but its own segments; no road there: pred road is a FP.
    img0_t = strip([(6, ROAD, 0)])
    img0_p = strip([(3, ROAD, 1), (3, ROAD, 2)])
    img1_t = strip([(6, SKY, 0)])
    img1_p = strip([(2, ROAD, 0), (4, SKY, 0)])
    stats = panoptic_stats(torch.cat([img0_p, img1_p]), torch.cat([img0_t, img1_t]), CATEGORIES)
    # road: image 0 TP (IoU 1), image 1 FP -> PQ = 1 / (1 + 0.5) = 2/3
    # sky: image 1 IoU 4/6 -> TP
    assert stats.tp.tolist() == [0, 0, 1, 1]
    assert stats.fp.tolist() == [0, 0, 0, 1]
    out = panoptic_quality(torch.cat([img0_p, img1_p]), torch.cat([img0_t, img1_t]), CATEGORIES)
    assert out["pq_per_class"][3].item() == pytest.approx(2 / 3)
    assert out["sq_per_class"][3].item() == pytest.approx(1.0)
    assert out["rq_per_class"][3].item() == pytest.approx(2 / 3)
    assert out["pq_stuff"].item() == pytest.approx((2 / 3 + 4 / 6) / 2)
    assert math.isnan(out["pq_things"].item())


# ---------------------------------------------------------------------------
# Reference: panopticapi's pq_compute_single_core + PQStat.pq_average, written
# from its definition (COCO form: segment-id map + segments_info, VOID id 0).

OFFSET = 1 << 24
VOID = 0
IGNORED = -1  # pseudo-category counting predictions excused by VOID/crowd


class _PQStatCat:
    def __init__(self) -> None:
        self.iou = 0.0
        self.tp = 0
        self.fp = 0
        self.fn = 0


def _reference_single(
    pq_stat: dict[int, _PQStatCat],
    pan_gt: np.ndarray,
    gt_segments: list[dict[str, Any]],
    pan_pred: np.ndarray,
    pred_segments: list[dict[str, Any]],
) -> None:
    gt_segms = {el["id"]: dict(el) for el in gt_segments}
    pred_segms = {el["id"]: dict(el) for el in pred_segments}
    for segms, pan in ((gt_segms, pan_gt), (pred_segms, pan_pred)):
        labels, counts = np.unique(pan, return_counts=True)
        for label, cnt in zip(labels, counts, strict=True):
            if label in segms:
                segms[label]["area"] = int(cnt)
    pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
    gt_pred_map = {}
    labels, counts = np.unique(pan_gt_pred, return_counts=True)
    for label, intersection in zip(labels, counts, strict=True):
        gt_pred_map[(int(label // OFFSET), int(label % OFFSET))] = int(intersection)

    gt_matched, pred_matched = set(), set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_label not in gt_segms or pred_label not in pred_segms:
            continue
        if gt_segms[gt_label]["iscrowd"] == 1:
            continue
        if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
            continue
        union = (
            pred_segms[pred_label]["area"]
            + gt_segms[gt_label]["area"]
            - intersection
            - gt_pred_map.get((VOID, pred_label), 0)
        )
        iou = intersection / union
        if iou > 0.5:
            pq_stat[gt_segms[gt_label]["category_id"]].tp += 1
            pq_stat[gt_segms[gt_label]["category_id"]].iou += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    crowd_labels_dict = {}
    for gt_label, gt_info in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt_info["iscrowd"] == 1:
            crowd_labels_dict[gt_info["category_id"]] = gt_label
            continue
        pq_stat[gt_info["category_id"]].fn += 1

    for pred_label, pred_info in pred_segms.items():
        if pred_label in pred_matched:
            continue
        intersection = gt_pred_map.get((VOID, pred_label), 0)
        if pred_info["category_id"] in crowd_labels_dict:
            intersection += gt_pred_map.get(
                (crowd_labels_dict[pred_info["category_id"]], pred_label), 0
            )
        if intersection / pred_info["area"] > 0.5:
            pq_stat[IGNORED].fp += 1  # bookkeeping for the test only, not in panopticapi
            continue
        pq_stat[pred_info["category_id"]].fp += 1


def _reference_average(
    pq_stat: dict[int, _PQStatCat], categories: Sequence[Mapping[str, Any]], isthing: bool | None
) -> dict[str, float]:
    pq, sq, rq, n = 0.0, 0.0, 0.0, 0
    for cat in categories:
        if isthing is not None and (cat["isthing"] == 1) != isthing:
            continue
        s = pq_stat[cat["id"]]
        if s.tp + s.fp + s.fn == 0:
            continue
        n += 1
        pq += s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
        sq += s.iou / s.tp if s.tp != 0 else 0
        rq += s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n}


def _to_coco(x: torch.Tensor, is_target: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Our 2 x H x W encoding of one image -> (segment-id map, segments_info)."""
    thing_ids = {c["id"] for c in CATEGORIES if c["isthing"]}
    cat, inst = x[0].numpy(), x[1].numpy()
    ids = np.zeros(cat.shape, dtype=np.int64)
    segments = []
    keys: dict[tuple[int, int], int] = {}
    for (r, c), category in np.ndenumerate(cat):
        if category == V:
            continue
        thing = int(category) in thing_ids
        key = (int(category), int(inst[r, c]) if thing else 0)
        if key not in keys:
            keys[key] = len(keys) + 1
            crowd = int(is_target and thing and key[1] == 0)
            segments.append({"id": keys[key], "category_id": key[0], "iscrowd": crowd})
        ids[r, c] = keys[key]
    return ids, segments


def _random_pair(g: torch.Generator, h: int = 12, w: int = 16) -> tuple[torch.Tensor, ...]:
    def paint(x: torch.Tensor, n: int) -> None:
        for _ in range(n):
            r0 = int(torch.randint(0, h - 2, (1,), generator=g))
            c0 = int(torch.randint(0, w - 2, (1,), generator=g))
            r1 = r0 + int(torch.randint(2, 7, (1,), generator=g))
            c1 = c0 + int(torch.randint(2, 9, (1,), generator=g))
            choice = int(torch.randint(0, 6, (1,), generator=g))
            category = [PERSON, PERSON, CAR, SKY, ROAD, V][choice]
            x[0, r0:r1, c0:c1] = category
            x[1, r0:r1, c0:c1] = int(torch.randint(0, 3, (1,), generator=g))

    target = torch.full((2, h, w), 0)
    target[0] = SKY
    paint(target, 7)
    pred = target.clone()
    paint(pred, 4)
    return pred, target


def test_against_panopticapi_reference_on_random_images() -> None:
    g = torch.Generator().manual_seed(0)
    pairs = [_random_pair(g) for _ in range(16)]
    pq_stat: dict[int, _PQStatCat] = defaultdict(_PQStatCat)
    metric = PanopticQuality(CATEGORIES)
    for pred, target in pairs:
        gt_ids, gt_segments = _to_coco(target, is_target=True)
        pred_ids, pred_segments = _to_coco(pred, is_target=False)
        _reference_single(pq_stat, gt_ids, gt_segments, pred_ids, pred_segments)
        # The COCO form converts back to the same maps (stuff instance ids aside).
        back = panoptic_from_segments(torch.from_numpy(gt_ids), gt_segments)
        assert torch.equal(back[0], target[0])
        metric.update(pred[None], target[None])

    stats = (metric.tp, metric.fp, metric.fn)
    for i, cat in enumerate(CATEGORIES):
        ref = pq_stat[cat["id"]]
        assert [s[i].item() for s in stats] == [ref.tp, ref.fp, ref.fn], cat["name"]
        assert metric.iou[i].item() == pytest.approx(ref.iou, rel=1e-12)
    # The random data must exercise every kind of count, including crowd regions.
    assert metric.tp.sum() > 5 and metric.fp.sum() > 5 and metric.fn.sum() > 5
    assert pq_stat[IGNORED].fp > 0
    assert any(s["iscrowd"] for t in pairs for s in _to_coco(t[1], True)[1])

    out = metric.compute()
    for group, isthing in (("", None), ("_things", True), ("_stuff", False)):
        ref = _reference_average(pq_stat, CATEGORIES, isthing)
        for k in ("pq", "sq", "rq"):
            assert out[k + group].item() == pytest.approx(ref[k], rel=1e-12), k + group
    # One call on the whole batch gives the same as image-by-image updates.
    whole = panoptic_stats(
        torch.stack([p for p, _ in pairs]), torch.stack([t for _, t in pairs]), CATEGORIES
    )
    assert torch.equal(whole.tp, metric.tp) and torch.equal(whole.fp, metric.fp)
    assert torch.equal(whole.fn, metric.fn)


def test_panoptic_from_segments() -> None:
    ids = torch.tensor([[0, 5, 5], [9, 9, 7]])
    segs = [
        {"id": 5, "category_id": PERSON, "iscrowd": 0},
        {"id": 9, "category_id": PERSON, "iscrowd": 1},
        {"id": 7, "category_id": SKY},
    ]
    out = panoptic_from_segments(ids, segs)
    assert out.tolist() == [[[V, PERSON, PERSON], [PERSON, PERSON, SKY]], [[0, 5, 5], [0, 0, 7]]]
    with pytest.raises(ValueError, match=r"ids \[8\] that are not in segments"):
        panoptic_from_segments(torch.tensor([[5, 8]]), segs)
    with pytest.raises(ValueError, match="0 is VOID"):
        panoptic_from_segments(ids, [{"id": 0, "category_id": 1}])
    with pytest.raises(ValueError, match="void_label"):
        panoptic_from_segments(ids, [{"id": 5, "category_id": V}])


def test_bad_inputs_raise() -> None:
    x = strip([(2, PERSON, 1)])
    with pytest.raises(ValueError, match=r"pred holds category ids \[9\]"):
        pq(strip([(2, 9, 1)]), x)
    with pytest.raises(ValueError, match=r"target instance ids must be >= 0, got \[-1\]"):
        pq(x, strip([(2, PERSON, -1)]))
    with pytest.raises(ValueError, match="B x 2 x H x W"):
        pq(x[:, :1], x)
    with pytest.raises(ValueError, match="integer"):
        pq(x.float(), x)
    with pytest.raises(ValueError, match="must match target"):
        pq(x, strip([(3, PERSON, 1)]))
    with pytest.raises(ValueError, match="unique ids"):
        PanopticQuality([{"id": 1, "isthing": 1}, {"id": 1, "isthing": 0}])
    with pytest.raises(ValueError, match="equals void_label"):
        PanopticQuality([{"id": 255, "isthing": 1}])
    with pytest.raises(ValueError, match="'isthing'"):
        PanopticQuality([{"id": 1}])


def test_huge_instance_ids_give_the_same_result() -> None:
    # Ids near 2**62 would overflow the int64 segment key; they must be renumbered, with
    # instance 0 (crowd in the target) kept apart.
    target = strip([(3, PERSON, 0), (3, PERSON, 5), (2, PERSON, 2**62), (4, SKY, 0)])
    pred = strip([(3, PERSON, 2**62 - 1), (3, PERSON, 2**62), (2, PERSON, 0), (4, SKY, 0)])
    small_t = strip([(3, PERSON, 0), (3, PERSON, 5), (2, PERSON, 6), (4, SKY, 0)])
    small_p = strip([(3, PERSON, 7), (3, PERSON, 8), (2, PERSON, 0), (4, SKY, 0)])
    # person: crowd 0..2 covered by pred 2**62 - 1 (ignored), 3..5 and 6..7 matched exactly.
    stats = panoptic_stats(pred, target, CATEGORIES)
    assert stats.tp.tolist() == [2, 0, 1, 0] and stats.fp.sum() == 0 and stats.fn.sum() == 0
    small = panoptic_stats(small_p, small_t, CATEGORIES)
    assert all(torch.equal(a, b) for a, b in zip(stats, small, strict=True))


def test_huge_instance_ids_do_not_merge_segments_across_images() -> None:
    # With instance ids up to 2**62 an int64 key (image, category, instance) would wrap
    # around: person #1 of image 1 would collide with person #5 of image 0.
    target = torch.cat(
        [strip([(3, PERSON, 5), (1, PERSON, 2**62), (2, SKY, 0)]), strip([(6, PERSON, 1)])]
    )
    stats = panoptic_stats(target, target, CATEGORIES)
    assert stats.tp.tolist() == [3, 0, 1, 0] and stats.fp.sum() == 0 and stats.fn.sum() == 0
