"""Tests for dejavu.losses: SSIM and the regeneration loss."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from dejavu.losses import (
    REGEN_LOSSES,
    SSIM,
    RegenerationLoss,
    gaussian_window,
    regeneration_loss,
    ssim,
)

DTYPES = [torch.float32, torch.float64]


def _pair(seed: int = 0, shape=(2, 3, 16, 24), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    y = (x + 0.3 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


# --------------------------------------------------------------------------- SSIM


def test_gaussian_window_matches_formula() -> None:
    w = gaussian_window(5, 1.0, dtype=torch.float64)
    raw = torch.exp(-0.5 * torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64) ** 2)
    torch.testing.assert_close(w, raw / raw.sum())


@pytest.mark.parametrize(("window_size", "sigma", "data_range"), [(11, 1.5, None), (9, 1.0, 1.0)])
def test_ssim_matches_torchmetrics(window_size: int, sigma: float, data_range) -> None:
    # torchmetrics derives its Gaussian window from sigma (int(3.5 sigma + 0.5) * 2 + 1),
    # so the pairs above are the ones where both use the same window.
    x, y = _pair()
    ours = ssim(x, y, window_size, sigma, data_range)
    ref = tm_ssim(x, y, sigma=sigma, data_range=data_range)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    _, ref_map = tm_ssim(x, y, sigma=sigma, data_range=data_range, return_full_image=True)
    torch.testing.assert_close(
        ssim(x, y, window_size, sigma, data_range, reduction="none"), ref_map, atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_ssim_identical_is_one(dtype: torch.dtype) -> None:
    x, _ = _pair(dtype=dtype)
    smap = ssim(x, x, reduction="none")
    assert smap.shape == x.shape
    assert smap.dtype == dtype
    torch.testing.assert_close(smap, torch.ones_like(smap), atol=1e-4, rtol=0)


def test_ssim_of_constant_images_has_closed_form() -> None:
    # Constant images have zero variance: SSIM = (2ab + c1) / (a^2 + b^2 + c1).
    a, b, L = 0.2, 0.7, 1.0
    x = torch.full((1, 2, 12, 13), a, dtype=torch.float64)
    y = torch.full((1, 2, 12, 13), b, dtype=torch.float64)
    c1 = (0.01 * L) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    smap = ssim(x, y, data_range=L, reduction="none")
    torch.testing.assert_close(smap, torch.full_like(smap, expected))


def test_ssim_map_is_local() -> None:
    # A change in one corner lowers SSIM only within the window's reach.
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[..., :4, :4] += 0.5
    smap = ssim(x, y, window_size=7, sigma=1.0, data_range=1.0, reduction="none")
    assert smap[..., :4, :4].max() < 0.99
    torch.testing.assert_close(smap[..., 12:, 12:], torch.ones_like(smap[..., 12:, 12:]))


def test_ssim_gradcheck() -> None:
    x, y = _pair(shape=(1, 2, 7, 8), dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y, 5, 1.0, 1.0, "none"), (x,))


def test_ssim_module_matches_function() -> None:
    x, y = _pair()
    m = SSIM(window_size=7, sigma=1.2, data_range=1.0, reduction="none")
    torch.testing.assert_close(m(x, y), ssim(x, y, 7, 1.2, 1.0, "none"))
    assert "window_size=7" in repr(m)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_size": 4}, "window_size"),
        ({"window_size": 0}, "window_size"),
        ({"sigma": 0.0}, "sigma"),
        ({"data_range": -1.0}, "data_range"),
        ({"reduction": "sum"}, "reduction"),
    ],
)
def test_ssim_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    x, y = _pair()
    with pytest.raises(ValueError, match=match):
        ssim(x, y, **kwargs)


def test_ssim_rejects_bad_shapes() -> None:
    x, y = _pair()
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 24\).*\(2, 3, 16, 12\)"):
        ssim(x, y[..., :12])
    with pytest.raises(ValueError, match="window_size // 2"):
        ssim(x[..., :5, :], y[..., :5, :])


# ---------------------------------------------------------------- regeneration loss


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_kinds_match_hand_values(dtype: torch.dtype) -> None:
    pred = torch.zeros(1, 1, 2, 2, dtype=dtype)
    target = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]], dtype=dtype)
    # |d| = 1, 2, 0, 3
    assert regeneration_loss(pred, target, "l1").item() == pytest.approx(6 / 4)
    assert regeneration_loss(pred, target, "l2").item() == pytest.approx(14 / 4)
    eps = 0.5
    charb = sum((v * v + eps * eps) ** 0.5 for v in (1.0, 2.0, 0.0, 3.0)) / 4
    assert regeneration_loss(pred, target, "charbonnier", eps=eps).item() == pytest.approx(
        charb, rel=1e-6
    )


def test_charbonnier_tends_to_l1() -> None:
    pred, target = _pair()
    l1 = regeneration_loss(pred, target, "l1")
    charb = regeneration_loss(pred, target, "charbonnier", eps=1e-6)
    torch.testing.assert_close(charb, l1, atol=1e-5, rtol=0)


def test_weighting_of_kept_and_redacted_pixels() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).expand(1, 2, 2, 2)
    keep = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # Per channel: kept |d| = 1, 4; redacted |d| = 2, 3. Two identical channels.
    # sum(w * l) / (C * H * W) = 2 * (0.5 * (1 + 4) + 3.0 * (2 + 3)) / 8
    expected = 2 * (0.5 * 5 + 3.0 * 5) / 8
    got = regeneration_loss(pred, target, "l1", keep, redacted_weight=3.0, kept_weight=0.5)
    assert got.item() == pytest.approx(expected)
    # Unit weights with a mask equal the plain mean (normalised by element count).
    torch.testing.assert_close(
        regeneration_loss(pred, target, "l1", keep), regeneration_loss(pred, target, "l1")
    )
    # Zero weight on kept pixels: only redacted errors count.
    only_redacted = regeneration_loss(pred, target, "l2", keep, kept_weight=0.0)
    assert only_redacted.item() == pytest.approx(2 * (4 + 9) / 8)


def test_keep_at_other_resolution_is_area_resized() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.ones(1, 1, 2, 2)
    # Full-resolution 4x4 mask: top-left 2x2 block fully kept, the others a quarter kept.
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., :2, :2] = 1.0
    keep[..., 2, 2] = keep[..., 0, 2] = keep[..., 2, 0] = 1.0
    # Low-res kept fractions: 1, 0.25, 0.25, 0.25; w = 2 * (1 - k) + 1 * k = 2 - k.
    expected = ((2 - 1.0) + 3 * (2 - 0.25)) / 4
    got = regeneration_loss(pred, target, "l1", keep, redacted_weight=2.0)
    assert got.item() == pytest.approx(expected)
    # A bool B x H x W mask is accepted as well.
    got_bool = regeneration_loss(pred, target, "l1", keep[:, 0] > 0.5, redacted_weight=2.0)
    assert got_bool.item() == pytest.approx(expected)


def test_l1_ssim_is_the_stated_mix() -> None:
    pred, target = _pair(seed=3)
    a = 0.85
    L = float(target.max() - target.min())
    smap = ssim(pred, target, data_range=L, reduction="none")
    expected = ((1 - a) * (pred - target).abs() + a * ((1 - smap) / 2).clamp(0, 1)).mean()
    torch.testing.assert_close(regeneration_loss(pred, target, "l1+ssim"), expected)
    # Perfect regeneration costs nothing; ssim_weight 0 reduces it to l1.
    assert regeneration_loss(target, target, "l1+ssim").item() == pytest.approx(0.0, abs=1e-5)
    torch.testing.assert_close(
        regeneration_loss(pred, target, "l1+ssim", ssim_weight=0.0),
        regeneration_loss(pred, target, "l1"),
    )


def test_l1_ssim_with_a_mask_weights_the_ssim_term() -> None:
    pred, target = _pair(seed=4)
    keep = torch.zeros(2, 1, 16, 24)
    keep[..., :8, :] = 1.0
    full = regeneration_loss(pred, target, "l1+ssim")
    kept_only = regeneration_loss(pred, target, "l1+ssim", keep, redacted_weight=0.0)
    redacted_only = regeneration_loss(pred, target, "l1+ssim", keep, kept_weight=0.0)
    # The two halves partition the elements, so their (element-count normalised) sum is the total.
    torch.testing.assert_close(kept_only + redacted_only, full)


@pytest.mark.parametrize("kind", REGEN_LOSSES)
def test_gradients_flow_to_pred_only_where_weighted(kind: str) -> None:
    pred, target = _pair(seed=5)
    pred.requires_grad_(True)
    keep = torch.ones(2, 1, 16, 24)
    keep[..., :, 12:] = 0.0
    regeneration_loss(pred, target, kind, keep, kept_weight=0.0).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad[..., 12:].abs().sum() > 0
    if kind != "l1+ssim":  # SSIM windows reach across the mask boundary
        assert pred.grad[..., :12].abs().sum() == 0


@pytest.mark.parametrize("kind", ["l2", "charbonnier", "l1+ssim"])
def test_gradcheck(kind: str) -> None:
    pred, target = _pair(seed=6, shape=(1, 2, 7, 8), dtype=torch.float64)
    keep = (torch.rand(1, 1, 7, 8, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: regeneration_loss(p, target, kind, keep, redacted_weight=2.0), (pred,)
    )


def test_half_inputs_are_computed_in_float32() -> None:
    pred, target = _pair(seed=7)
    out = regeneration_loss(pred.half(), target.half(), "l2")
    assert out.dtype == torch.float32
    ref = regeneration_loss(pred.half().float(), target.half().float(), "l2")
    torch.testing.assert_close(out, ref)


def test_module_matches_function() -> None:
    pred, target = _pair(seed=8)
    keep = (torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    m = RegenerationLoss("charbonnier", redacted_weight=2.0, kept_weight=0.5, eps=0.1)
    torch.testing.assert_close(
        m(pred, target, keep),
        regeneration_loss(pred, target, "charbonnier", keep, 2.0, 0.5, eps=0.1),
    )
    assert "charbonnier" in repr(m)
    assert list(m.parameters()) == []


def test_module_compiles() -> None:
    pred, target = _pair(seed=9)
    m = RegenerationLoss("l1", redacted_weight=2.0)
    keep = torch.ones(2, 1, 16, 24)
    compiled = torch.compile(m, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(pred, target, keep), m(pred, target, keep))


def test_errors_name_the_problem() -> None:
    pred, target = _pair()
    with pytest.raises(ValueError, match=r"pred \(2, 3, 16, 24\) and target \(2, 3, 8, 24\)"):
        regeneration_loss(pred, target[..., :8, :])
    with pytest.raises(ValueError, match=r"kind.*'l1', 'l2', 'charbonnier', 'l1\+ssim'"):
        regeneration_loss(pred, target, "huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redacted_weight"):
        regeneration_loss(pred, target, redacted_weight=-1.0)
    with pytest.raises(ValueError, match="kept_weight"):
        RegenerationLoss(kept_weight=-0.5)
    with pytest.raises(ValueError, match="eps"):
        regeneration_loss(pred, target, "charbonnier", eps=0.0)
    with pytest.raises(ValueError, match="ssim_weight"):
        regeneration_loss(pred, target, "l1+ssim", ssim_weight=1.5)
    with pytest.raises(ValueError, match="keep must have shape"):
        regeneration_loss(pred, target, keep=torch.ones(3, 1, 16, 24))
    with pytest.raises(ValueError, match="pred must be 4-D"):
        regeneration_loss(pred[0], target[0])
    with pytest.raises(ValueError, match=r"l1\+ssim"):
        regeneration_loss(pred[..., :4, :4], target[..., :4, :4], "l1+ssim")


def test_gradient_kind_hand_computed() -> None:
    from dejavu.losses import regeneration_loss

    target = torch.zeros(1, 1, 2, 3)
    pred = torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 0.0, 3.0]]]])
    # d = pred: |dx| = [[1, 0, 0], [0, 3, 0]], |dy| = [[0, 1, 2], [0, 0, 0]]; sum 7 over 6.
    loss = regeneration_loss(pred, target, "gradient")
    assert float(loss) == pytest.approx(7 / 6)
    # A constant offset has no gradient: only edges count.
    assert float(regeneration_loss(target + 5.0, target, "gradient")) == 0.0
