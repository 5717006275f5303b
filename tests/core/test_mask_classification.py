"""Tests of dejavu.mask_classification: the maps made from Mask2Former's query outputs."""

from __future__ import annotations

import math

import pytest
import torch

from dejavu.conditioning import Conditioning
from dejavu.mask_classification import (
    MaskClassificationConditioning,
    check_query_outputs,
    has_query_outputs,
    mask_classification_conditioning,
    query_assignment,
    query_boundary_map,
    query_keys,
    semantic_log_scores,
    semantic_probabilities,
    semantic_scores,
)


def _two_queries() -> tuple[torch.Tensor, torch.Tensor]:
    """Two queries, K = 2, on a 1 x 2 image, with probabilities chosen to compute by hand.

    Query 0: p = (0.6, 0.2 | no object 0.2), mask 0.75 on the left pixel, 0.5 on the right.
    Query 1: p = (0.1, 0.5 | no object 0.4), mask 0.5 on the left pixel, 0.75 on the right.
    """
    cls = torch.log(torch.tensor([[[0.6, 0.2, 0.2], [0.1, 0.5, 0.4]]], dtype=torch.float64))
    logit = math.log(3.0)  # sigmoid(log 3) = 0.75
    masks = torch.tensor([[[[logit, 0.0]], [[0.0, logit]]]], dtype=torch.float64)
    return cls, masks


def test_semantic_scores_and_probabilities_by_hand() -> None:
    cls, masks = _two_queries()
    s = semantic_scores(cls, masks)
    # left: s0 = 0.6 * 0.75 + 0.1 * 0.5 = 0.5, s1 = 0.2 * 0.75 + 0.5 * 0.5 = 0.4
    # right: s0 = 0.6 * 0.5 + 0.1 * 0.75 = 0.375, s1 = 0.2 * 0.5 + 0.5 * 0.75 = 0.475
    expected = torch.tensor([[[[0.5, 0.375]], [[0.4, 0.475]]]], dtype=torch.float64)
    torch.testing.assert_close(s, expected)
    p = semantic_probabilities(cls, masks)
    torch.testing.assert_close(p, expected / expected.sum(dim=1, keepdim=True))
    torch.testing.assert_close(semantic_log_scores(cls, masks), expected.log())
    hard = semantic_probabilities(cls, masks, hard=True)
    assert hard[0, :, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # temperature 2: softmax(log s / 2) = sqrt(s) normalised
    warm = semantic_probabilities(cls, masks, temperature=2.0)
    torch.testing.assert_close(warm, expected.sqrt() / expected.sqrt().sum(dim=1, keepdim=True))


def test_query_assignment_and_boundary_by_hand() -> None:
    cls, masks = _two_queries()
    a = query_assignment(cls, masks)
    # left: w0 = (1 - 0.2) * 0.75 = 0.6, w1 = (1 - 0.4) * 0.5 = 0.3 -> (2/3, 1/3);
    # right: w0 = 0.8 * 0.5 = 0.4, w1 = 0.6 * 0.75 = 0.45 -> (8/17, 9/17)
    expected = torch.tensor([[[[2 / 3, 8 / 17]], [[1 / 3, 9 / 17]]]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)
    b = query_boundary_map(cls, masks)
    # each pixel's one neighbour is the other: 1 - (2/3 * 8/17 + 1/3 * 9/17) = 26/51
    torch.testing.assert_close(b, torch.full((1, 1, 1, 2), 26 / 51, dtype=torch.float64))
    assert query_boundary_map(cls, masks, hard=True).flatten().tolist() == [1.0, 1.0]


def test_hard_boundary_marks_both_sides_of_a_query_change() -> None:
    # 3 x 4 image: query 0 owns the left two columns, query 1 the rest.
    masks = torch.full((1, 2, 3, 4), -8.0)
    masks[0, 0, :, :2] = 8.0
    masks[0, 1, :, 2:] = 8.0
    cls = torch.zeros(1, 2, 3)
    hard = query_boundary_map(cls, masks, hard=True)[0, 0]
    assert hard.tolist() == [[0.0, 1.0, 1.0, 0.0]] * 3
    soft = query_boundary_map(cls, masks)[0, 0]
    assert soft[:, [1, 2]].min() > 0.99 and soft[:, [0, 3]].max() < 0.01


def test_no_object_queries_claim_nothing() -> None:
    # Query 1 is sure to be "no object": its mask does not draw a boundary.
    masks = torch.full((1, 2, 1, 4), -8.0)
    masks[0, 0] = 8.0
    masks[0, 1, 0, 2:] = 8.0
    cls = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 0.0, 30.0]]])
    assert query_boundary_map(cls, masks, hard=True).flatten().tolist() == [0.0] * 4
    assert query_assignment(cls, masks)[0, 0].min() > 0.999


def test_conditioning_channels_sizes_and_sums() -> None:
    g = torch.Generator().manual_seed(0)
    cls, masks = torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 7, 9, generator=g)
    out = mask_classification_conditioning(cls, masks, size=(14, 18))
    assert out.shape == (2, 5, 14, 18)
    torch.testing.assert_close(out[:, :4].sum(1), torch.ones(2, 14, 18))
    assert float(out[:, 4].min()) >= 0.0 and float(out[:, 4].max()) <= 1.0
    hard = MaskClassificationConditioning(hard=True)(cls, masks, size=(14, 18))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard[:, :4].argmax(1), out[:, :4].argmax(1))


def test_conditioning_is_differentiable() -> None:
    g = torch.Generator().manual_seed(1)
    cls = torch.randn(1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    masks = torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def soft(c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return mask_classification_conditioning(c, m, size=(5, 6))

    assert torch.autograd.gradcheck(soft, (cls, masks))
    # straight-through: the hard map's gradient is the soft map's
    w = torch.randn(1, 4, 5, 6, generator=g, dtype=torch.float64)
    (gc_soft, gm_soft) = torch.autograd.grad((soft(cls, masks) * w).sum(), (cls, masks))
    hard = mask_classification_conditioning(cls, masks, size=(5, 6), hard=True)
    (gc_hard, gm_hard) = torch.autograd.grad((hard * w).sum(), (cls, masks))
    torch.testing.assert_close(gc_hard, gc_soft)
    torch.testing.assert_close(gm_hard, gm_soft)


def test_conditioning_kind_reads_the_query_outputs() -> None:
    g = torch.Generator().manual_seed(2)
    cls, masks = torch.randn(2, 4, 4, generator=g), torch.randn(2, 4, 6, 8, generator=g)
    keys = query_keys("panoptic")
    pred = {
        "panoptic": semantic_log_scores(cls, masks, (12, 16)),
        keys.class_logits: cls,
        keys.mask_logits: masks,
    }
    phi = Conditioning({"panoptic": "mask_classification"})
    assert phi.out_channels({"panoptic": 3}) == 4
    out = phi(pred, size=(6, 8))
    torch.testing.assert_close(out, mask_classification_conditioning(cls, masks, (6, 8)))
    # the semantic part equals the segmentation kind of the dense map at the same size
    torch.testing.assert_close(
        phi(pred)[:, :3], Conditioning({"panoptic": "segmentation"})(pred)[:, :3]
    )
    with pytest.raises(ValueError, match="panoptic_query_mask"):
        phi({"panoptic": pred["panoptic"], keys.class_logits: cls})
    with pytest.raises(ValueError, match="has 4 class entries"):
        phi({**pred, "panoptic": pred["panoptic"][:, :2]})


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="class_logits must be a floating-point"):
        check_query_outputs(torch.zeros(2, 3), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="batch and query sizes"):
        check_query_outputs(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match="K \\+ 1 >= 2"):
        check_query_outputs(torch.zeros(2, 3, 1), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="size must be a pair"):
        semantic_scores(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4, 4), size=(0, 4))
    with pytest.raises(ValueError, match="temperature"):
        MaskClassificationConditioning(temperature=0.0)
    assert has_query_outputs({"seg_query_class": 1, "seg_query_mask": 2}, "seg")


def test_truth_conditioning_of_a_panoptic_target() -> None:
    from dejavu.truth_conditioning import truth_conditioning

    # 1 x 4 image: stuff 0 | thing 1 instance 3 | thing 1 instance 4 | VOID
    seg = torch.tensor([[[0, 1, 1, 255]]])
    inst = torch.tensor([[[0, 3, 4, 0]]])
    phi = Conditioning({"panoptic": "mask_classification"})
    out = truth_conditioning(phi, {"seg": seg, "instance": inst}, {"panoptic": 2}, size=(1, 4))
    assert out.shape == (1, 3, 1, 4)
    assert out[0, :2, 0].tolist() == [[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 1.0, 0.5]]
    assert out[0, 2, 0].tolist() == [1.0, 1.0, 1.0, 1.0]  # every pixel is on a border
    same = truth_conditioning(
        phi, {"panoptic": torch.stack([seg, inst], 1)}, {"panoptic": 2}, size=(1, 4)
    )
    assert torch.equal(out, same)
    # one box over the three right pixels: no border inside it
    box = {"seg": torch.tensor([[[0, 1, 1, 1]]]), "instance": torch.tensor([[[0, 3, 3, 3]]])}
    one = truth_conditioning(phi, box, {"panoptic": 2}, size=(1, 4))
    assert one[0, 2, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="nor 'seg' and 'instance'"):
        truth_conditioning(phi, {"seg": seg}, {"panoptic": 2}, size=(1, 4))
