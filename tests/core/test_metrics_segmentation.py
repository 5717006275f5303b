"""Tests for dejavu.metrics.segmentation: values worked out by hand and by numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_confusion_matrix

from dejavu.metrics import SegmentationMetrics, confusion_matrix, segmentation_scores

# A 2 x 2 x 3 batch (B x H x W), 255 = ignore.
TARGET = torch.tensor(
    [
        [[0, 0, 1], [1, 2, 255]],
        [[2, 2, 0], [255, 1, 1]],
    ]
)
PRED = torch.tensor(
    [
        [[0, 1, 1], [1, 2, 0]],
        [[2, 0, 0], [1, 1, 2]],
    ]
)
# Counted (target, pred) pairs, the two 255 pixels left out:
#   image 0: (0,0) (0,1) (1,1) (1,1) (2,2)
#   image 1: (2,2) (2,0) (0,0) (1,1) (1,2)
# With K = 4 (class 3 never occurs), rows = target, columns = prediction:
EXPECTED_CM = torch.tensor(
    [
        [2, 1, 0, 0],
        [0, 3, 1, 0],
        [1, 0, 2, 0],
        [0, 0, 0, 0],
    ]
)
# IoU = tp / (row + col - tp):  class 0: 2 / (3 + 3 - 2) = 0.5
#                               class 1: 3 / (4 + 4 - 3) = 0.6
#                               class 2: 2 / (3 + 3 - 2) = 0.5
#                               class 3: 0 / 0 -> NaN (left out of the mean)
EXPECTED_IOU = [0.5, 0.6, 0.5, math.nan]
EXPECTED_MIOU = (0.5 + 0.6 + 0.5) / 3
EXPECTED_AACC = 7 / 10  # diagonal 2 + 3 + 2 over 10 counted pixels
EXPECTED_ACC = [2 / 3, 3 / 4, 2 / 3, math.nan]
EXPECTED_MACC = (2 / 3 + 3 / 4 + 2 / 3) / 3


def _assert_close_nan(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


def test_confusion_matrix_by_hand() -> None:
    assert torch.equal(confusion_matrix(PRED, TARGET, num_classes=4), EXPECTED_CM)
    assert confusion_matrix(PRED, TARGET, num_classes=4).dtype == torch.int64


def test_scores_by_hand() -> None:
    s = segmentation_scores(EXPECTED_CM)
    _assert_close_nan(s["iou_per_class"], EXPECTED_IOU)
    _assert_close_nan(s["acc_per_class"], EXPECTED_ACC)
    assert s["miou"].item() == pytest.approx(EXPECTED_MIOU)
    assert s["aacc"].item() == pytest.approx(EXPECTED_AACC)
    assert s["macc"].item() == pytest.approx(EXPECTED_MACC)
    assert s["miou"].ndim == 0


def test_logits_give_the_same_matrix_as_labels() -> None:
    logits = F.one_hot(PRED, 4).permute(0, 3, 1, 2).float() * 3.0 + 0.1 * torch.randn(2, 4, 2, 3)
    assert torch.equal(confusion_matrix(logits, TARGET, num_classes=4), EXPECTED_CM)


def test_ignored_pixels_do_not_count() -> None:
    other = PRED.clone()
    other[TARGET == 255] = 3  # whatever is predicted there must not matter
    assert torch.equal(confusion_matrix(other, TARGET, num_classes=4), EXPECTED_CM)
    # Without an ignore label every pixel counts (and 255 is then out of range).
    t = TARGET.clone()
    t[t == 255] = 3
    cm = confusion_matrix(PRED, t, num_classes=4, ignore_index=None)
    assert int(cm.sum()) == TARGET.numel()
    assert int(cm[3].sum()) == 2


def test_metric_matches_functional_and_accumulates() -> None:
    m = SegmentationMetrics(num_classes=4)
    batch_value = m(PRED[:1], TARGET[:1])  # forward: the score of this batch alone
    assert batch_value["miou"].item() == pytest.approx(
        segmentation_scores(confusion_matrix(PRED[:1], TARGET[:1], 4))["miou"].item()
    )
    m.update(PRED[1:], TARGET[1:])
    out = m.compute()
    assert torch.equal(m.confmat, EXPECTED_CM)
    assert out["miou"].item() == pytest.approx(EXPECTED_MIOU)
    assert out["aacc"].item() == pytest.approx(EXPECTED_AACC)
    _assert_close_nan(out["iou_per_class"], EXPECTED_IOU)
    m.reset()
    assert int(m.confmat.sum()) == 0


def test_dataset_level_pooling_is_not_the_mean_of_per_image_scores() -> None:
    m = SegmentationMetrics(num_classes=4)
    per_image = []
    for i in range(2):
        m.update(PRED[i : i + 1], TARGET[i : i + 1])
        cm = confusion_matrix(PRED[i : i + 1], TARGET[i : i + 1], 4)
        per_image.append(segmentation_scores(cm)["miou"].item())
    pooled = m.compute()["miou"].item()
    assert pooled == pytest.approx(EXPECTED_MIOU)
    assert pooled != pytest.approx(sum(per_image) / 2)


def _numpy_scores(pred: np.ndarray, target: np.ndarray, k: int, ignore: int) -> dict:
    keep = target != ignore
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (target[keep], pred[keep]), 1)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
        acc = tp / cm.sum(1)
    return {
        "cm": cm,
        "miou": np.nanmean(iou),
        "aacc": tp.sum() / cm.sum(),
        "macc": np.nanmean(acc),
    }


def test_random_batches_against_numpy_and_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    k = 6
    target = torch.randint(0, k - 1, (3, 16, 24), generator=g)  # class 5 never in target
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    logits = torch.randn(3, k, 16, 24, generator=g)
    pred = logits.argmax(1)
    m = SegmentationMetrics(num_classes=k)
    for i in range(3):  # one image per update
        m.update(logits[i : i + 1], target[i : i + 1])
    out = m.compute()
    ref = _numpy_scores(pred.numpy(), target.numpy(), k, 255)
    assert np.array_equal(m.confmat.numpy(), ref["cm"])
    tm_cm = multiclass_confusion_matrix(pred, target, num_classes=k, ignore_index=255)
    assert torch.equal(m.confmat, tm_cm)
    for key in ("miou", "aacc", "macc"):
        assert out[key].item() == pytest.approx(ref[key])
    # Class 5 is predicted but never a target: IoU 0 (counted), accuracy NaN.
    assert out["iou_per_class"][5].item() == 0.0
    assert math.isnan(out["acc_per_class"][5].item())


def test_nothing_counted_gives_nan() -> None:
    target = torch.full((1, 2, 2), 255)
    out = SegmentationMetrics(num_classes=3)(torch.zeros(1, 2, 2, dtype=torch.long), target)
    assert all(math.isnan(out[k].item()) for k in ("miou", "aacc", "macc"))


def test_out_of_range_target_names_the_values() -> None:
    target = TARGET.clone()
    target[0, 0, 0] = 7
    target[1, 0, 0] = -1
    with pytest.raises(ValueError, match=r"target .*\[0, 3\].*ignore_index=255.*\[-1, 7\]"):
        confusion_matrix(PRED, target, num_classes=4)
    with pytest.raises(ValueError, match=r"pred .*\[9\]"):
        confusion_matrix(torch.full_like(PRED, 9), TARGET, num_classes=4)


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (PRED[0], TARGET, "pred labels of shape"),
        (torch.randn(2, 3, 2, 3), TARGET, "pred must have 4 channels"),
        (torch.randn(2, 4, 2, 4), TARGET, "do not match target"),
        (PRED, TARGET.float(), "target must hold integer labels"),
        (PRED.bool(), TARGET, "pred must hold integer labels or floating logits"),
    ],
)
def test_bad_inputs_raise(pred: torch.Tensor, target: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, target, num_classes=4)


@pytest.mark.parametrize("k", [0, -2, 2.0, True])
def test_bad_num_classes_raise(k: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetrics(num_classes=k)  # type: ignore[arg-type]


def test_bad_confmat_raises() -> None:
    with pytest.raises(ValueError, match="confmat must be a square"):
        segmentation_scores(torch.zeros(2, 3))
