"""Tasks: per-head losses worked out by hand, metrics naming, errors."""

from __future__ import annotations

import math

import pytest
import torch

from dejavu.toolkit.tasks import (
    create_task,
    depth_l1_loss,
    normals_cosine_loss,
    segmentation_ce_loss,
)


def test_segmentation_ce_skips_ignored_pixels():
    # Two pixels: uniform logits over 2 classes (loss ln 2) and one ignored.
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 255]]])
    assert segmentation_ce_loss(logits, target).item() == pytest.approx(math.log(2))
    all_ignored = torch.full((1, 1, 2), 255)
    assert segmentation_ce_loss(logits, all_ignored).item() == 0.0


def test_depth_l1_on_valid_pixels_only():
    pred = torch.tensor([[[[1.0, 5.0], [2.0, 4.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [2.0, 1.0]]]])  # 0 = invalid
    # |1-2| + |2-2| + |4-1| over 3 valid pixels.
    assert depth_l1_loss(pred, target).item() == pytest.approx(4.0 / 3.0)


def test_normals_one_minus_cosine_on_valid_pixels():
    target = torch.zeros(1, 3, 1, 3)
    target[0, 2, 0, 0] = 1.0  # (0, 0, 1)
    target[0, 0, 0, 1] = 1.0  # (1, 0, 0); the third pixel is invalid
    pred = torch.zeros(1, 3, 1, 3)
    pred[0, 2] = 2.0  # (0, 0, 2) everywhere: normalised to (0, 0, 1)
    # cos = 1 at pixel 0, 0 at pixel 1 -> mean(1 - cos) = 0.5
    assert normals_cosine_loss(pred, target).item() == pytest.approx(0.5)


def test_multitask_loss_is_weighted_sum_of_heads():
    task = create_task("multitask", num_classes=3, loss_weights={"depth": 2.0})
    g = torch.Generator().manual_seed(0)
    pred = {
        "seg": torch.randn(2, 3, 4, 5, generator=g),
        "depth": torch.rand(2, 1, 4, 5, generator=g) + 0.5,
        "normals": torch.randn(2, 3, 4, 5, generator=g),
    }
    batch = {
        "seg": torch.randint(0, 3, (2, 4, 5), generator=g),
        "depth": torch.rand(2, 1, 4, 5, generator=g) + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(2, 3, 4, 5, generator=g), dim=1),
    }
    out = task.loss(pred, batch)
    expected = out["seg"] + 2.0 * out["depth"] + out["normals"]
    torch.testing.assert_close(out["loss"], expected)
    assert task.conditioning == {"seg": "segmentation", "depth": "depth", "normals": "normals"}
    assert task.default_redaction == "bandstop"
    assert create_task("segmentation", num_classes=3).default_redaction == "random"


def test_task_metrics_are_flat_and_named_by_head():
    task = create_task("segmentation", num_classes=2)
    metrics = task.metrics()
    logits = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]]]])  # predicts class 0 twice
    metrics.update({"seg": logits}, {"seg": torch.tensor([[[0, 1]]])})
    out = metrics.compute()
    # Confusion [[1, 0], [1, 0]]: IoU0 = 1/2, IoU1 = 0 -> mIoU 0.25, aAcc 0.5.
    assert out["seg/miou"] == pytest.approx(0.25)
    assert out["seg/aacc"] == pytest.approx(0.5)
    assert out["seg/iou_per_class/0"] == pytest.approx(0.5)
    metrics.reset()
    metrics.update({"seg": logits}, {"seg": torch.tensor([[[0, 0]]])})
    assert metrics.compute()["seg/aacc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "instance_segmentation"}, "unknown task"),
        ({"name": "segmentation"}, "num_classes"),
        ({"name": "depth", "loss_weights": {"seg": 1.0}}, "unknown heads"),
    ],
)
def test_bad_task_arguments(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        create_task(name, **kwargs)


def test_missing_prediction_or_target_is_named():
    task = create_task("depth")
    with pytest.raises(ValueError, match="'depth'"):
        task.loss({}, {"depth": torch.ones(1, 1, 2, 2)})
    with pytest.raises(ValueError, match="target"):
        task.loss({"depth": torch.ones(1, 1, 2, 2)}, {})
