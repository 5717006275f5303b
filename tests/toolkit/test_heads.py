"""Head specifications: one place per head, unknown heads refused everywhere, monitors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dejavu.toolkit.colorize import colorize_normals
from dejavu.toolkit.data.transforms import hflip_sample, pad_sample
from dejavu.toolkit.data.unlabeled import with_empty_targets
from dejavu.toolkit.models import activate_outputs, check_heads
from dejavu.toolkit.tasks import (
    Task,
    create_task,
    head_spec,
    list_heads,
    list_targets,
    logged_metric_names,
    metric_direction,
    task_heads,
)
from dejavu.toolkit.visualize import colorize_prediction


def test_builtin_heads_and_targets() -> None:
    assert list_heads() == ["depth", "normals", "panoptic", "seg"]
    assert list_targets() == ["depth", "instance", "normals", "panoptic", "seg"]
    seg, depth, normals = head_spec("seg"), head_spec("depth"), head_spec("normals")
    assert (seg.channels, depth.channels, normals.channels) == (None, 1, 3)
    assert (seg.conditioning, depth.conditioning, normals.conditioning) == (
        "segmentation",
        "depth",
        "normals",
    )
    assert seg.monitor == ("miou", "max") and depth.monitor == ("rmse", "min")
    assert seg.target.fill_value(ignore_index=7) == 7.0 and depth.target.fill_value() == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: head_spec("edges"),
        lambda: check_heads({"edges": 2}),
        lambda: activate_outputs({"edges": torch.zeros(1, 2, 2, 2)}),
        lambda: colorize_prediction("edges", torch.zeros(2, 2, 2)),
        lambda: Task("custom", {"edges": 2}).loss(
            {"edges": torch.zeros(1, 2, 2, 2)}, {"edges": torch.zeros(1, 2, 2)}
        ),
        lambda: Task("custom", {"edges": 2}).metrics(),
        lambda: pad_sample({"edges": torch.zeros(2, 2)}, (0, 0, 1, 1)),
        lambda: with_empty_targets({"image": torch.zeros(3, 2, 2)}, ["edges"]),
    ],
)
def test_an_unknown_head_is_an_error_never_a_default(call) -> None:
    with pytest.raises(ValueError, match="'edges'"):
        call()


def test_task_uses_each_heads_spec() -> None:
    task = create_task("multitask", num_classes=3)
    assert task.conditioning == {"seg": "segmentation", "depth": "depth", "normals": "normals"}
    assert task_heads("multitask", 3) == {"seg": 3, "depth": 1, "normals": 3}
    pred = {
        "seg": torch.zeros(1, 3, 2, 2),
        "depth": torch.ones(1, 1, 2, 2),
        "normals": torch.nn.functional.normalize(torch.ones(1, 3, 2, 2), dim=1),
    }
    batch = {
        "seg": torch.zeros(1, 2, 2, dtype=torch.long),
        "depth": torch.full((1, 1, 2, 2), 2.0),
        "normals": pred["normals"].clone(),
    }
    parts = task.loss(pred, batch)
    assert parts["seg"].item() == pytest.approx(np.log(3), abs=1e-6)
    assert parts["depth"].item() == pytest.approx(1.0)
    assert parts["normals"].item() == pytest.approx(0.0, abs=1e-6)


def test_logged_names_are_exactly_the_monitorable_ones() -> None:
    task = create_task("segmentation", num_classes=4)
    metrics = task.metrics()
    metrics.update({"seg": torch.randn(2, 4, 3, 3)}, {"seg": torch.randint(0, 4, (2, 3, 3))})
    logged = ["loss", *metrics.compute()]
    assert sorted(logged) == sorted(logged_metric_names(["seg"], num_classes=4))
    for name in logged:
        assert task.monitor_mode(name) in ("max", "min")
    for bad in ("seg/iou/3", "seg/iou_per_class/4", "seg/rmse", "depth/rmse"):
        with pytest.raises(ValueError, match="not a logged metric"):
            task.monitor_mode(bad)
    assert metric_direction("depth/delta1", ["depth"]) == "max"


def test_depth_activation_is_the_specs() -> None:
    raw = torch.tensor([-200.0, 0.0, 2.0]).view(1, 1, 1, 3)
    soft = activate_outputs({"depth": raw})["depth"]
    torch.testing.assert_close(soft, torch.nn.functional.softplus(raw) + 1e-6)
    torch.testing.assert_close(
        activate_outputs({"depth": raw}, depth_activation="exp")["depth"], raw.exp()
    )
    with pytest.raises(ValueError, match="depth_activation"):
        activate_outputs({"depth": raw}, depth_activation="relu")


def test_target_rules_come_from_the_spec() -> None:
    normals = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 1, 2).clone()
    flipped = hflip_sample({"normals": normals, "seg": torch.tensor([[1, 2]])})
    assert flipped["normals"][0, 0, 0].item() == -1.0  # the spec's flip_x_channel
    assert flipped["seg"].tolist() == [[2, 1]]
    padded = pad_sample({"seg": torch.zeros(1, 1, dtype=torch.long)}, (0, 0, 1, 0))
    assert padded["seg"].tolist() == [[0, 255]]
    empty = with_empty_targets({"image": torch.zeros(3, 1, 2)}, ["seg", "depth"], ignore_index=9)
    assert empty["seg"].tolist() == [[9, 9]] and empty["depth"].dtype == torch.float32


def test_colourisers_come_from_the_spec() -> None:
    n = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)
    assert np.array_equal(colorize_prediction("normals", n), colorize_normals(n))
    spec = head_spec("depth")
    target = torch.tensor([[[0.0, 1.0, 3.0]]])
    assert spec.colour_range(target) == (1.0, 3.0)
    assert spec.to_array(torch.ones(1, 2, 2)).shape == (2, 2)
    assert head_spec("seg").to_array(torch.randn(3, 2, 2)).dtype == np.uint8


def test_a_registered_head_is_a_one_place_change() -> None:
    from dejavu.toolkit.tasks import heads as heads_module

    edges = dataclasses.replace(
        head_spec("depth"),
        key="edges",
        target=dataclasses.replace(head_spec("depth").target, key="edges"),
    )
    heads_module.register_head(edges)
    try:
        task = Task("edges", {"edges": 1})
        assert task.conditioning == {"edges": "depth"}
        assert check_heads({"edges": 1}) == {"edges": 1}
        assert "edges/rmse" in logged_metric_names(["edges"])
        padded = pad_sample({"edges": torch.ones(1, 1, 1)}, (0, 0, 1, 0))
        assert padded["edges"].flatten().tolist() == [1.0, 0.0]
    finally:
        heads_module._HEADS.pop("edges")
        heads_module._TARGETS.pop("edges")
