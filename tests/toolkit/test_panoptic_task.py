"""The panoptic head and task: targets, metric, decoding, pictures and COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.mask_classification import query_keys
from dejavu.toolkit.colorize import colorize_panoptic, colorize_segmentation
from dejavu.toolkit.config import config_from_dict
from dejavu.toolkit.data.coco_panoptic import rgb_to_segment_ids
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.tasks import create_task, head_spec, logged_metric_names, task_spec
from dejavu.toolkit.tasks.mask_classification import (
    panoptic_mask_targets,
    panoptic_segments,
    semantic_mask_targets,
    write_panoptic,
)
from dejavu.toolkit.visualize import training_panel

CATEGORIES = [
    {"id": 0, "name": "wall", "isthing": False},
    {"id": 1, "name": "box", "isthing": True},
    {"id": 2, "name": "floor", "isthing": False},
]
KEYS = query_keys("panoptic")
V = 255


def _truth() -> dict[str, torch.Tensor]:
    """One 4 x 6 image: wall on top, floor below, boxes 3 and 9, a crowd box, VOID."""
    seg = torch.tensor(
        [
            [0, 0, 0, 0, V, V],
            [0, 0, 1, 1, 0, 0],
            [2, 1, 1, 1, 1, 2],
            [2, 2, 2, 1, 1, 2],
        ]
    )
    inst = torch.tensor(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 0, 3, 3, 0, 0],
            [0, 0, 3, 3, 9, 0],
            [0, 0, 0, 9, 9, 0],
        ]
    )
    # pixel (2, 1) is box without an instance: the box class's crowd region
    return {"seg": seg[None], "instance": inst[None]}


def _queries_for(panoptic: torch.Tensor, num_queries: int = 6) -> dict[str, torch.Tensor]:
    """Query outputs whose panoptic inference is exactly ``panoptic`` (1 x 2 x H x W):
    one confident query per segment, mask logits +-9, the other queries "no object"."""
    cls_map, inst_map = panoptic[0]
    segments = sorted(
        {(int(c), int(i)) for c, i in zip(cls_map.flatten(), inst_map.flatten(), strict=True)}
    )
    # no query for VOID or for crowd regions (thing pixels with instance 0)
    segments = [(c, i) for c, i in segments if c != V and not (CATEGORIES[c]["isthing"] and i == 0)]
    cls = torch.full((1, num_queries, 4), -9.0)
    cls[0, :, 3] = 9.0  # no object ...
    masks = torch.full((1, num_queries, *cls_map.shape), -9.0)
    for q, (c, i) in enumerate(segments):
        cls[0, q, 3], cls[0, q, c] = -9.0, 9.0  # ... except one query per segment
        region = cls_map == c if not CATEGORIES[c]["isthing"] else (cls_map == c) & (inst_map == i)
        masks[0, q][region] = 9.0
    return {
        "panoptic": torch.zeros(1, 3, *cls_map.shape),  # only its size is read
        KEYS.class_logits: cls,
        KEYS.mask_logits: masks,
    }


def test_the_task_and_its_head() -> None:
    spec = task_spec("panoptic")
    assert spec.heads == ("panoptic",) and spec.data_keys == ("seg", "instance")
    assert spec.monitor == ("panoptic/pq", "max")
    head = head_spec("panoptic")
    assert head.conditioning == "mask_classification" and head.loss is None
    names = logged_metric_names(["panoptic"])
    assert {"panoptic/pq", "panoptic/pq_things", "panoptic/pq_stuff"} <= set(names)
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    assert task.heads == {"panoptic": 3} and task.monitor_mode("panoptic/pq_stuff") == "max"
    target = task.target(_truth(), "panoptic")
    assert target.shape == (1, 2, 4, 6) and target[0, 1, 2, 4] == 9


def test_mask_targets_by_hand() -> None:
    target = head_spec("panoptic").target_value(_truth())
    ((masks, classes),) = panoptic_mask_targets(target, 255, [False, True, False])
    # stuff first (wall, floor), then the two box instances; no mask for crowd or VOID
    assert classes.tolist() == [0, 2, 1, 1]
    assert masks.sum(dim=(1, 2)).tolist() == [8.0, 6.0, 4.0, 3.0]
    assert masks[2].nonzero().tolist() == [[1, 2], [1, 3], [2, 2], [2, 3]]
    covered = masks.sum(0)
    assert covered.max() == 1 and covered[2, 1] == 0 and covered[0, 4:].tolist() == [0, 0]
    ((sem_masks, sem_classes),) = semantic_mask_targets(_truth()["seg"], 255, 3)
    assert sem_classes.tolist() == [0, 1, 2] and sem_masks.sum().item() == 22


def test_metric_of_a_perfect_prediction_is_one_and_of_a_miss_lower() -> None:
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    truth = _truth()
    target = task.target(truth, "panoptic")
    pred = _queries_for(target)
    decoded = task.prediction(pred, "panoptic")
    # the crowd pixel and VOID are not predicted (no query covers them)
    assert decoded[0, 0, 2, 1] == V and decoded[0, 0, 0, 4] == V
    metrics = task.metrics()
    metrics.update(pred, truth)
    scores = metrics.compute()
    assert scores["panoptic/pq"] == pytest.approx(1.0)
    assert scores["panoptic/pq_things"] == pytest.approx(1.0)
    assert scores["panoptic/pq_stuff"] == pytest.approx(1.0)
    # merge the two boxes into one predicted segment: box 3 (4 px) and box 9 (3 px) vs one
    # 7-px segment: IoU 4/7 > 0.5 matches box 3, box 9 is missed (FN)
    merged = target.clone()
    merged[0, 1][merged[0, 1] == 9] = 3
    metrics.reset()
    metrics.update(_queries_for(merged), truth)
    scores = metrics.compute()
    assert scores["panoptic/pq_things"] == pytest.approx((4 / 7) / (1 + 0.5 * 1))
    assert scores["panoptic/pq_stuff"] == pytest.approx(1.0)


def test_postprocess_options_reach_the_decoding() -> None:
    task = create_task(
        "panoptic", num_classes=3, categories=CATEGORIES, postprocess={"panoptic": {"min_area": 4}}
    )
    target = task.target(_truth(), "panoptic")
    decoded = task.prediction(_queries_for(target), "panoptic")
    # box 9 has 3 pixels: below min_area 4, dropped; box 3 (4 px) stays
    assert (decoded[0, 0] == 1).sum() == 4


def test_bad_task_setups_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs the dataset's panoptic categories"):
        create_task("panoptic", num_classes=3)
    with pytest.raises(ValueError, match="got 2 categories for 3 classes"):
        create_task("panoptic", num_classes=3, categories=CATEGORIES[:2])
    with pytest.raises(ValueError, match=r"unknown panoptic post-processing options \['thresh'\]"):
        create_task(
            "panoptic",
            num_classes=3,
            categories=CATEGORIES,
            postprocess={"panoptic": {"thresh": 1}},
        )
    with pytest.raises(ValueError, match="not a head of task 'segmentation'"):
        create_task("segmentation", num_classes=3, postprocess={"seg": {}})
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    with pytest.raises(
        ValueError, match=r"batch has no 'panoptic' target \(or 'seg' and 'instance'\)"
    ):
        task.loss(_queries_for(task.target(_truth(), "panoptic")), {"seg": _truth()["seg"]})
    with pytest.raises(ValueError, match=r"trained by mask classification only.*mask2former"):
        task.loss({"panoptic": torch.zeros(1, 3, 4, 6)}, _truth())


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("task.postprocess={panoptic: {threshold: 2.0}}", "threshold must be in"),
        ("task.postprocess={panoptic: {thresh: 0.5}}", "allowed: "),
        ("task.postprocess={seg: {threshold: 0.5}}", "not a head of task 'panoptic'"),
    ],
)
def test_config_postprocess_is_checked(override: str, match: str) -> None:
    import yaml

    _, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"task": {"name": "panoptic", "postprocess": yaml.safe_load(value)}})


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("task.mask_loss={points: 512}", r"unknown loss settings \['points'\]; allowed: "),
        ("task.mask_loss={num_points: 0}", r"'num_points' must be >= 1"),
        ("task.mask_loss={num_points: 12.5}", r"'num_points' must be a whole number"),
        ("task.mask_loss={importance_sample_ratio: 1.5}", r"must be in \[0.0, 1.0\]"),
        ("task.mask_loss={class_weight: -1}", r"'class_weight' must be >= 0"),
        ("task.mask_loss={dice_weight: high}", r"must be mapping of str to float"),
        ("task.mask_loss=512", r"'task.mask_loss' must be mapping of str to float"),
    ],
)
def test_config_mask_loss_is_checked(override: str, match: str) -> None:
    import yaml

    _, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"task": {"name": "panoptic", "mask_loss": yaml.safe_load(value)}})


def test_coco_files_read_back_into_the_same_segments(tmp_path: Path) -> None:
    target = head_spec("panoptic").target_value(_truth())[0]
    written = write_panoptic("img", target, CATEGORIES, tmp_path)
    assert [p.name for p in written] == ["img_panoptic.png", "img_panoptic.json"]
    ids = rgb_to_segment_ids(np.asarray(Image.open(written[0]).convert("RGB")))
    info = json.loads(written[1].read_text())
    assert info["file_name"] == "img_panoptic.png"
    by_id = {s["id"]: s for s in info["segments_info"]}
    # wall, floor, box 3, box 9, the crowd pixel as a box segment of its own, VOID = 0
    assert sorted((s["category_name"], s["area"]) for s in by_id.values()) == [
        ("box", 1),
        ("box", 3),
        ("box", 4),
        ("floor", 6),
        ("wall", 8),
    ]
    assert (ids == 0).sum() == 2 and set(np.unique(ids)) == {0, *by_id}
    for sid, seg in by_id.items():
        region = ids == sid
        assert region.sum() == seg["area"]
        assert seg["isthing"] == (seg["category_name"] == "box")
        assert set(target[0].numpy()[region]) == {seg["category_id"]}
    # the same segments as panoptic_segments computes in memory
    again, _ = panoptic_segments(target, CATEGORIES)
    assert np.array_equal(again, ids)


def test_panoptic_pictures() -> None:
    target = head_spec("panoptic").target_value(_truth())[0]
    pic = colorize_panoptic(target, 3, outline=False)
    assert pic.shape == (4, 6, 3) and pic.dtype == np.uint8
    assert pic[0, 4].tolist() == [0, 0, 0]  # VOID black
    assert pic[1, 2].tolist() != pic[2, 4].tolist()  # two boxes, two shades
    assert pic[0, 0].tolist() == pic[1, 5].tolist()  # one wall segment, one colour
    # the first segment of a class (by id) keeps the palette colour, later ones are
    # shifted: box segments 0, 3 and 9 at [2, 1], [1, 2] and [2, 4]
    palette = colorize_segmentation(target[0].clamp(max=2), 3)
    assert pic[0, 0].tolist() == palette[0, 0].tolist()
    assert pic[2, 1].tolist() == palette[2, 1].tolist()
    assert palette[2, 1].tolist() not in (pic[1, 2].tolist(), pic[2, 4].tolist())
    outlined = colorize_panoptic(target, 3)
    assert outlined[1, 2].tolist() == [255, 255, 255]  # wall -> box 3 along the row
    assert outlined[0, 0].tolist() == pic[0, 0].tolist()
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    batch = {"image": torch.zeros(1, 3, 4, 6), **_truth()}
    out = {"pred": _queries_for(task.target(_truth(), "panoptic"))}
    panel = training_panel(batch, out, task, (0.5,) * 3, (0.2,) * 3)
    assert panel.ndim == 3 and panel.dtype == np.uint8


def test_panoptic_colours_do_not_depend_on_segment_numbering() -> None:
    # A truth (stuff as instance 0, objects 1, 2) and a prediction of the same regions
    # with every segment numbered differently (stuff 7, objects 3, 9): the same picture.
    cls = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    truth = torch.stack([cls, torch.tensor([[0, 0, 1, 1], [0, 0, 2, 2]])])
    pred = torch.stack([cls, torch.tensor([[7, 7, 3, 3], [7, 7, 9, 9]])])
    assert np.array_equal(colorize_panoptic(truth, 2), colorize_panoptic(pred, 2))
    pic = colorize_panoptic(truth, 2, outline=False)
    palette = colorize_segmentation(cls, 2)
    assert pic[0, 0].tolist() == palette[0, 0].tolist()  # stuff: its class colour
    assert pic[0, 2].tolist() == palette[0, 2].tolist()  # first object: the class colour
    assert pic[1, 2].tolist() != palette[1, 2].tolist()  # second object: told apart
