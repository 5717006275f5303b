"""Tests of dejavu.panoptic_inference: Mask2Former's panoptic and semantic inference."""

from __future__ import annotations

import pytest
import torch

from dejavu.mask_classification import semantic_scores
from dejavu.panoptic_inference import PanopticInference, panoptic_inference, semantic_inference

V = 255  # VOID
WALL, BOX, FLOOR = 0, 1, 2
ISTHING = [False, True, False]


def _scene(scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight hand-placed queries on a 4 x 6 grid of cells (each ``scale`` x ``scale`` pixels).

    q0 wall: rows 0-1 except cells (1, 4), (1, 5); q1 box: rows 2-3, cols 0-1;
    q2 box: rows 2-3, cols 4-5; q3 floor: rows 2-3, col 2; q4 floor: rows 2-3, col 3;
    q5 box with a flat class distribution (score 0.25): everywhere; q6 "no object":
    everywhere; q7 box, a little less sure than q0: cells (0, 4), (0, 5), (1, 4), (1, 5).
    """
    cls = torch.zeros(1, 8, 4)
    for q, k in ((0, WALL), (1, BOX), (2, BOX), (3, FLOOR), (4, FLOOR), (6, 3)):
        cls[0, q, k] = 10.0
    cls[0, 7, BOX] = 9.0
    on = torch.zeros(8, 4, 6, dtype=torch.bool)
    on[0, :2] = True
    on[0, 1, 4:] = False
    on[1, 2:, :2] = True
    on[2, 2:, 4:] = True
    on[3, 2:, 2] = True
    on[4, 2:, 3] = True
    on[5] = on[6] = True
    on[7, :2, 4:] = True
    masks = torch.where(on, 6.0, -6.0)[None]
    if scale > 1:
        masks = masks.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return cls, masks


def test_panoptic_map_by_hand() -> None:
    cls, masks = _scene()
    out = panoptic_inference(cls, masks, ISTHING)
    assert out.dtype == torch.long and out.shape == (1, 2, 4, 6)
    # q5 (score 0.25) and q6 (no object) are not kept; q7 keeps 2 of its 4 mask
    # cells (q0 wins the other two): 2 / 4 < 0.8, dropped, its cells VOID.
    assert out[0, 0].tolist() == [
        [WALL] * 6,
        [WALL] * 4 + [V, V],
        [BOX, BOX, FLOOR, FLOOR, BOX, BOX],
        [BOX, BOX, FLOOR, FLOOR, BOX, BOX],
    ]
    # ids in query order: q0 1, q1 2, q2 3, q3 4; q4 is floor again: merged into 4
    assert out[0, 1].tolist() == [
        [1] * 6,
        [1] * 4 + [0, 0],
        [2, 2, 4, 4, 3, 3],
        [2, 2, 4, 4, 3, 3],
    ]


def test_options_change_the_map_as_documented() -> None:
    cls, masks = _scene()
    # min_area 3: the 2-cell floor segments q3 and q4 go; the rest stays
    out = panoptic_inference(cls, masks, ISTHING, min_area=3)
    assert out[0, 0, 2:, 2:4].unique().tolist() == [V]
    assert out[0, 1].tolist()[2] == [2, 2, 0, 0, 3, 3]
    # overlap_threshold 0.5: q7 keeps half its mask, enough now: a box with id 5
    out = panoptic_inference(cls, masks, ISTHING, overlap_threshold=0.4)
    assert out[0, 0, 1, 4:].tolist() == [BOX, BOX] and out[0, 1, 1, 4:].tolist() == [5, 5]
    # threshold above every score: nothing is kept, all VOID
    out = panoptic_inference(cls, masks, ISTHING, threshold=0.99999)
    assert out[0, 0].unique().tolist() == [V] and out[0, 1].unique().tolist() == [0]
    # floor as a thing class: q3 and q4 stay apart
    out = panoptic_inference(cls, masks, [False, True, True])
    assert out[0, 1, 2].tolist() == [2, 2, 4, 5, 3, 3]
    # the mask logits are resized (bilinear) before anything else
    big = panoptic_inference(cls, masks, ISTHING, size=(8, 12))
    up = torch.nn.functional.interpolate(masks, size=(8, 12), mode="bilinear")
    assert big.shape == (1, 2, 8, 12)
    assert torch.equal(big, panoptic_inference(cls, up, ISTHING))


def test_agrees_with_transformers_post_processing() -> None:
    """Against transformers' post_process_panoptic_segmentation on the same scene at
    384 x 384 (its working size, so its resize is the identity), stuff classes fused."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerForUniversalSegmentationOutput,
    )

    cls, masks = _scene(scale=64)
    masks = masks[:, :, :384, :384]  # 4 x 6 cells of 64 px -> 256 x 384; pad rows below
    masks = torch.cat([masks, masks[:, :, -1:].expand(-1, -1, 128, -1)], dim=2)
    assert masks.shape[-2:] == (384, 384)
    processor = transformers.Mask2FormerImageProcessor()
    outputs = Mask2FormerForUniversalSegmentationOutput(
        class_queries_logits=cls, masks_queries_logits=masks
    )
    theirs = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.8, overlap_mask_area_threshold=0.8, label_ids_to_fuse={WALL, FLOOR}
    )[0]
    ours = panoptic_inference(cls, masks, ISTHING)[0]
    seg = theirs["segmentation"].long()
    labels = {s["id"]: s["label_id"] for s in theirs["segments_info"]}
    # the same partition of the pixels into segments, with the same classes
    for sid, label in labels.items():
        region = seg == sid
        ids = ours[1][region].unique()
        assert ids.numel() == 1 and int(ids) > 0
        assert torch.equal(region, ours[1] == ids)
        assert ours[0][region].unique().tolist() == [label]
    assert torch.equal(seg == 0, ours[1] == 0)  # VOID where they have no segment
    assert len(labels) == 4  # wall, two boxes, one fused floor


def test_semantic_inference_agrees_with_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerForUniversalSegmentationOutput,
    )

    g = torch.Generator().manual_seed(0)
    cls = 3 * torch.randn(2, 5, 4, generator=g)
    masks = 4 * torch.randn(2, 5, 24, 24, generator=g)
    masks = torch.nn.functional.interpolate(masks, size=(384, 384), mode="bilinear")
    processor = transformers.Mask2FormerImageProcessor()
    outputs = Mask2FormerForUniversalSegmentationOutput(
        class_queries_logits=cls, masks_queries_logits=masks
    )
    theirs = torch.stack(processor.post_process_semantic_segmentation(outputs))
    ours = semantic_inference(cls, masks)
    # compare where the top two classes are not tied to float precision
    top2 = semantic_scores(cls, masks).topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert clear.float().mean() > 0.99
    assert torch.equal(ours[clear], theirs[clear].long())


def test_module_and_bad_inputs() -> None:
    cls, masks = _scene()
    post = PanopticInference(ISTHING, min_area=3)
    assert torch.equal(post(cls, masks), panoptic_inference(cls, masks, ISTHING, min_area=3))
    with pytest.raises(ValueError, match="one flag per class"):
        panoptic_inference(cls, masks, [True, False])
    with pytest.raises(ValueError, match="threshold must be in"):
        panoptic_inference(cls, masks, ISTHING, threshold=1.5)
    with pytest.raises(ValueError, match="min_area must be an int"):
        PanopticInference(ISTHING, min_area=-1)
    with pytest.raises(ValueError, match="void_label must be an int >= the number of classes"):
        panoptic_inference(cls, masks, ISTHING, void_label=1)
    with pytest.raises(ValueError, match="mask_logits"):
        panoptic_inference(cls, masks[0], ISTHING)
