"""Tests of dejavu.conditioning (phi(C), DESIGN.md section 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dejavu.conditioning import (
    CONDITIONING_KINDS,
    BoundaryConditioning,
    Conditioning,
    DepthConditioning,
    NormalsConditioning,
    PanopticConditioning,
    SegmentationConditioning,
    StraightThroughOneHot,
    boundary_conditioning,
    depth_conditioning,
    instance_boundary_map,
    normals_conditioning,
    panoptic_conditioning,
    resize_conditioning,
    segmentation_conditioning,
    straight_through_onehot,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- segmentation


def test_softmax_matches_hand_computation() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    z = math.exp(1) + math.exp(2) + math.exp(3)
    expected = [math.exp(1) / z, math.exp(2) / z, math.exp(3) / z]
    out = segmentation_conditioning(logits).flatten().tolist()
    assert out == pytest.approx(expected, rel=1e-6)


def test_temperature_divides_logits() -> None:
    logits = torch.tensor([0.0, math.log(4.0)]).view(1, 2, 1, 1)
    # exp(0/2) : exp(log 4 / 2) = 1 : 2  ->  [1/3, 2/3]
    out = segmentation_conditioning(logits, temperature=2.0).flatten().tolist()
    assert out == pytest.approx([1 / 3, 2 / 3], rel=1e-6)


def test_higher_temperature_flattens_masks() -> None:
    logits = torch.randn(2, 5, 4, 6, generator=_gen())
    top = [segmentation_conditioning(logits, t).amax(1).mean().item() for t in (0.5, 1.0, 4.0)]
    assert top[0] > top[1] > top[2]
    # logits 0.1 apart: at T = 1e-3 the runner-up has weight <= exp(-100)
    spaced = torch.rand(2, 5, 4, 6, generator=_gen(1)).argsort(dim=1).float() * 0.1
    assert segmentation_conditioning(spaced, 1e-3).amax(1).min().item() > 0.999


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_probabilities_sum_to_one(device: str, dtype: torch.dtype) -> None:
    logits = torch.randn(2, 7, 5, 9, generator=_gen()).to(device, dtype)
    out = segmentation_conditioning(logits)
    assert out.dtype == dtype and out.device.type == device
    torch.testing.assert_close(out.sum(1), torch.ones(2, 5, 9, device=device, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_forward_is_exactly_onehot(dtype: torch.dtype) -> None:
    logits = torch.randn(3, 6, 7, 5, generator=_gen(1), dtype=dtype)
    out = segmentation_conditioning(logits, hard=True)
    expected = F.one_hot(logits.argmax(1), 6).permute(0, 3, 1, 2).to(dtype)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_hard_forward_follows_the_logits_not_rounded_probabilities(dtype: torch.dtype) -> None:
    # Class 1 is one ulp above class 0: their softmax probabilities often round to the same
    # value (in half precision especially, and differently on different machines), and an
    # argmax of the probabilities would then pick class 0. The hard mask is the argmax of
    # the exact softmax, i.e. of the logits.
    x = torch.randn(2, 1, 8, 8, generator=_gen(6)).to(dtype)
    up = (x.float() + x.float().abs().clamp_min(1e-2) * torch.finfo(dtype).eps).to(dtype)
    assert (up > x).all()
    logits = torch.cat([x, up, torch.full_like(x, -4.0)], dim=1)
    for t in (1.0, 0.5):
        out = segmentation_conditioning(logits, temperature=t, hard=True)
        expected = torch.zeros_like(out)
        expected[:, 1] = 1
        assert torch.equal(out, expected)


def test_hard_gradient_equals_softmax_gradient() -> None:
    logits = torch.randn(2, 4, 5, 6, generator=_gen(2), dtype=torch.float64)
    weight = torch.randn(2, 4, 5, 6, generator=_gen(3), dtype=torch.float64)
    a = logits.clone().requires_grad_(True)
    (segmentation_conditioning(a, temperature=0.7, hard=True) * weight).sum().backward()
    b = logits.clone().requires_grad_(True)
    (torch.softmax(b / 0.7, dim=1) * weight).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    torch.testing.assert_close(a.grad, b.grad)


def test_straight_through_onehot_identity_gradient() -> None:
    probs = torch.rand(2, 3, 4, 4, generator=_gen(4)).requires_grad_(True)
    weight = torch.randn(2, 3, 4, 4, generator=_gen(5))
    out = StraightThroughOneHot()(probs)
    assert torch.equal(out.sum(1), torch.ones(2, 4, 4))
    (out * weight).sum().backward()
    torch.testing.assert_close(probs.grad, weight)
    # ties go to the lowest index
    tie = torch.tensor([0.4, 0.4, 0.2]).view(1, 3, 1, 1)
    assert straight_through_onehot(tie).flatten().tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("t", [0.0, -1.0, "1"])
def test_bad_temperature(t: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        segmentation_conditioning(torch.zeros(1, 2, 2, 2), temperature=t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        SegmentationConditioning(temperature=t)  # type: ignore[arg-type]


def test_segmentation_rejects_non_image() -> None:
    with pytest.raises(ValueError, match="logits"):
        segmentation_conditioning(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="floating"):
        segmentation_conditioning(torch.zeros(1, 2, 3, 4, dtype=torch.long))


# --------------------------------------------------------------------------- depth


def test_depth_hand_example() -> None:
    # log depth = [0, ln10, 2 ln10] -> mean ln10, population std ln10*sqrt(2/3)
    d = torch.tensor([1.0, 10.0, 100.0, 0.0]).view(1, 1, 2, 2)
    s = math.sqrt(1.5)
    assert depth_conditioning(d).flatten().tolist() == pytest.approx([-s, 0.0, s, 0.0], abs=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_depth_standardised_per_image(device: str, dtype: torch.dtype) -> None:
    g = _gen(6)
    depth = (torch.rand(3, 1, 8, 10, generator=g) * 20 + 0.1).to(dtype)
    depth[0, 0, :2] = 0.0  # invalid: zero
    depth[1, 0, 3, 3] = float("nan")
    depth[1, 0, 4, 4] = float("inf")
    depth[2, 0, 5, 5] = -1.0
    depth[2] *= 50.0  # another image's scale must not matter
    valid = torch.ones(3, 8, 10, dtype=torch.bool)
    valid[2, :, :3] = False
    depth, valid = depth.to(device), valid.to(device)
    out = depth_conditioning(depth, valid)
    assert out.shape == depth.shape and out.dtype == dtype
    ok = torch.isfinite(depth) & (depth > 0) & valid.unsqueeze(1)
    for b in range(3):
        v = out[b][ok[b]]
        assert abs(v.mean().item()) < 1e-5
        assert v.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
        assert torch.equal(out[b][~ok[b]], torch.zeros_like(out[b][~ok[b]]))


def test_depth_is_scale_invariant_and_monotone() -> None:
    depth = torch.rand(2, 1, 6, 7, generator=_gen(7)) + 0.5
    a, b = depth_conditioning(depth), depth_conditioning(depth * 37.0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    order = depth[0].flatten().argsort()
    assert torch.all(a[0].flatten()[order].diff() >= 0)


def test_depth_all_invalid_gives_zeros_without_nan() -> None:
    depth = torch.zeros(2, 1, 4, 5)
    depth[1] = torch.rand(1, 4, 5, generator=_gen(8)) + 1.0
    depth.requires_grad_(True)
    out = depth_conditioning(depth)
    assert torch.equal(out[0], torch.zeros(1, 4, 5))
    assert torch.isfinite(out).all()
    (out * torch.randn(2, 1, 4, 5, generator=_gen(9))).sum().backward()
    assert torch.isfinite(depth.grad).all()
    assert torch.equal(depth.grad[0], torch.zeros(1, 4, 5))
    assert depth.grad[1].abs().sum() > 0


def test_depth_constant_image_is_finite() -> None:
    depth = torch.full((1, 1, 3, 3), 2.0, requires_grad=True)
    out = depth_conditioning(depth)
    assert torch.equal(out, torch.zeros(1, 1, 3, 3))
    out.sum().backward()
    assert torch.isfinite(depth.grad).all()


def test_depth_gradcheck() -> None:
    depth = (torch.rand(2, 1, 3, 4, generator=_gen(10), dtype=torch.float64) + 0.5).requires_grad_()
    valid = torch.ones(2, 1, 3, 4, dtype=torch.bool)
    valid[1, 0, 0] = False
    assert torch.autograd.gradcheck(lambda d: depth_conditioning(d, valid), (depth,))
    assert torch.autograd.gradcheck(DepthConditioning(), (depth,))


def test_depth_float_valid_mask_and_errors() -> None:
    depth = torch.rand(1, 1, 4, 4, generator=_gen(11)) + 1.0
    mask = torch.ones(1, 1, 4, 4)
    mask[..., 0] = 0.0
    out = depth_conditioning(depth, mask)
    assert torch.equal(out[..., 0], torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="depth must have 1 channels, got 3"):
        depth_conditioning(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="valid must have shape"):
        depth_conditioning(depth, torch.ones(1, 1, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps"):
        depth_conditioning(depth, eps=0.0)


# --------------------------------------------------------------------------- normals / boundary


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normals_unit_and_zero_stays_zero(device: str, dtype: torch.dtype) -> None:
    n = (torch.randn(2, 3, 5, 6, generator=_gen(12)) * 3).to(device, dtype)
    n[0, :, 1, 2] = 0.0
    n = n.requires_grad_(True)
    out = NormalsConditioning()(n)
    norms = out.norm(dim=1)
    norms_ok = torch.ones_like(norms)
    norms_ok[0, 1, 2] = 0.0
    torch.testing.assert_close(norms, norms_ok)
    assert torch.equal(out[0, :, 1, 2], torch.zeros(3, device=device, dtype=dtype))
    # direction is kept
    torch.testing.assert_close(out[1], n[1] / n[1].norm(dim=0, keepdim=True))
    out.sum().backward()
    assert torch.isfinite(n.grad).all()


def test_normals_hand_example_and_errors() -> None:
    n = torch.tensor([0.0, -3.0, 4.0]).view(1, 3, 1, 1)
    assert normals_conditioning(n).flatten().tolist() == pytest.approx([0.0, -0.6, 0.8])
    with pytest.raises(ValueError, match="normals must have 3 channels, got 2"):
        normals_conditioning(torch.zeros(1, 2, 2, 2))


def test_boundary_and_panoptic() -> None:
    seg = torch.randn(2, 4, 5, 6, generator=_gen(13))
    bnd = torch.randn(2, 1, 5, 6, generator=_gen(14))
    torch.testing.assert_close(BoundaryConditioning()(bnd), 1 / (1 + torch.exp(-bnd)))
    out = panoptic_conditioning(seg, bnd, temperature=0.5, hard=True)
    assert out.shape == (2, 5, 5, 6)
    assert torch.equal(out[:, :4], segmentation_conditioning(seg, 0.5, hard=True))
    assert torch.equal(out[:, 4:], boundary_conditioning(bnd))
    torch.testing.assert_close(PanopticConditioning()(seg, bnd)[:, :4], torch.softmax(seg, 1))
    with pytest.raises(ValueError, match="boundary_logits must match"):
        panoptic_conditioning(seg, torch.zeros(2, 1, 5, 7))


def test_instance_boundary_map_hand_example() -> None:
    ids = torch.tensor(
        [
            [1, 1, 1, 2],
            [1, 1, 1, 2],
            [3, 3, 1, 2],
        ]
    ).unsqueeze(0)
    expected = torch.tensor(
        [
            [0, 0, 1, 1],
            [1, 1, 1, 1],
            [1, 1, 1, 1],
        ],
        dtype=torch.float32,
    ).view(1, 1, 3, 4)
    out = instance_boundary_map(ids)
    assert out.dtype == torch.float32
    assert torch.equal(out, expected)
    assert torch.equal(
        instance_boundary_map(torch.zeros(2, 3, 3, dtype=torch.long)), torch.zeros(2, 1, 3, 3)
    )


def test_instance_boundary_map_errors() -> None:
    with pytest.raises(ValueError, match="B x H x W"):
        instance_boundary_map(torch.zeros(1, 1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        instance_boundary_map(torch.zeros(1, 3, 3))


# --------------------------------------------------------------------------- resize


def test_resize_noop_returns_input() -> None:
    x = torch.randn(1, 2, 6, 8, generator=_gen(15))
    assert resize_conditioning(x, (6, 8)) is x


def test_resize_matches_bilinear_with_antialias_only_when_shrinking() -> None:
    x = torch.randn(2, 3, 16, 24, generator=_gen(16))
    down = resize_conditioning(x, (7, 11))
    ref = F.interpolate(x, size=(7, 11), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(down, ref)
    up = resize_conditioning(x, (20, 30))
    ref = F.interpolate(x, size=(20, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, ref)
    const = torch.full((1, 1, 9, 9), 0.3)
    torch.testing.assert_close(resize_conditioning(const, (4, 13)), torch.full((1, 1, 4, 13), 0.3))


@pytest.mark.parametrize("size", [(0, 3), (3,), (2.0, 3), "ab", None])
def test_resize_bad_size(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        resize_conditioning(torch.zeros(1, 1, 4, 4), size)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Conditioning


def _multitask_pred(seed: int = 17) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {
        "normals": torch.randn(2, 3, 8, 12, generator=g),
        "seg": torch.randn(2, 5, 8, 12, generator=g),
        "depth": torch.rand(2, 1, 8, 12, generator=g) * 5 + 0.1,
        "unused": torch.randn(2, 2, 8, 12, generator=g),
    }


def test_multitask_concatenation_order_and_slices() -> None:
    spec = {"seg": "segmentation", "depth": "depth", "normals": "normals"}
    phi = Conditioning(spec, temperature=2.0)
    pred = _multitask_pred()
    out = phi(pred)
    chans = {"seg": 5, "depth": 1, "normals": 3}
    sl = phi.slices(chans)
    assert sl == {"seg": slice(0, 5), "depth": slice(5, 6), "normals": slice(6, 9)}
    assert phi.out_channels(chans) == 9 == out.shape[1]
    assert phi.keys == ["seg", "depth", "normals"]
    torch.testing.assert_close(out[:, sl["seg"]], torch.softmax(pred["seg"] / 2.0, dim=1))
    torch.testing.assert_close(out[:, sl["depth"]], depth_conditioning(pred["depth"]))
    torch.testing.assert_close(out[:, sl["normals"]], normals_conditioning(pred["normals"]))


def test_panoptic_and_identity_spec() -> None:
    g = _gen(18)
    pred = {"seg": torch.randn(1, 3, 4, 4, generator=g), "b": torch.randn(1, 1, 4, 4, generator=g)}
    out = Conditioning({"seg": "segmentation", "b": "boundary"})(pred)
    torch.testing.assert_close(out, panoptic_conditioning(pred["seg"], pred["b"]))
    ident = Conditioning({"b": "identity"})(pred)
    assert torch.equal(ident, pred["b"])


def test_gradients_flow_into_every_prediction() -> None:
    spec = {"seg": "segmentation", "depth": "depth", "normals": "normals"}
    pred = {k: v.requires_grad_(True) for k, v in _multitask_pred().items()}
    for hard in (False, True):
        for v in pred.values():
            v.grad = None
        out = Conditioning(spec, hard=hard)(pred, size=(5, 7))
        (out * torch.randn(out.shape, generator=_gen(19))).sum().backward()
        for key in spec:
            assert pred[key].grad is not None, key
            assert torch.isfinite(pred[key].grad).all() and pred[key].grad.abs().sum() > 0, key
        assert pred["unused"].grad is None


def test_size_resizes_before_conditioning() -> None:
    spec = {"seg": "segmentation", "depth": "depth", "normals": "normals"}
    pred = _multitask_pred()
    pred["depth"] = F.interpolate(pred["depth"], size=(4, 6))  # mixed input sizes are allowed
    out = Conditioning(spec, hard=True)(pred, size=(5, 7))
    assert out.shape == (2, 9, 5, 7)
    seg = out[:, :5]
    # contracts hold at the output resolution
    assert torch.equal(seg, F.one_hot(seg.argmax(1), 5).permute(0, 3, 1, 2).float())
    d = out[:, 5]
    assert d.mean(dim=(1, 2)).abs().max() < 1e-5
    torch.testing.assert_close(d.std(dim=(1, 2), correction=0), torch.ones(2))
    torch.testing.assert_close(out[:, 6:].norm(dim=1), torch.ones(2, 5, 7))
    # without size, everything follows the first key
    assert Conditioning(spec)(pred).shape == (2, 9, 8, 12)


def test_conditioning_errors() -> None:
    phi = Conditioning({"seg": "segmentation", "depth": "depth"})
    with pytest.raises(ValueError, match=r"'depth'.*keys present: \['seg'\]"):
        phi({"seg": torch.zeros(1, 2, 3, 3)})
    with pytest.raises(ValueError, match=r"'depth'.*keys present"):
        phi.out_channels({"seg": 2})
    with pytest.raises(ValueError, match="must have 1 channel"):
        phi({"seg": torch.zeros(1, 2, 3, 3), "depth": torch.ones(1, 2, 3, 3)})
    with pytest.raises(ValueError, match="must have 1 channel"):
        phi.slices({"seg": 2, "depth": 3})
    with pytest.raises(ValueError, match="batch size"):
        phi({"seg": torch.zeros(1, 2, 3, 3), "depth": torch.ones(2, 1, 3, 3)})
    with pytest.raises(ValueError, match=r"allowed: 'segmentation', 'depth', 'normals'"):
        Conditioning({"seg": "softmax"})
    with pytest.raises(ValueError, match="non-empty"):
        Conditioning({})
    with pytest.raises(ValueError, match="temperature"):
        Conditioning({"seg": "segmentation"}, temperature=0)
    assert set(CONDITIONING_KINDS) == {
        "segmentation",
        "depth",
        "normals",
        "boundary",
        "identity",
        "mask_classification",
    }


def test_conditioning_moves_with_module_to() -> None:
    phi = Conditioning({"seg": "segmentation"}).to(torch.float64)
    out = phi({"seg": torch.randn(1, 3, 4, 4, dtype=torch.float64)})
    assert out.dtype == torch.float64
