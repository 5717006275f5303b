"""Tests of CRM-0 (dejavu.crm.zero): the parameter-free class-colour regenerator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dejavu import DejaVu
from dejavu.crm import ZeroCRM, class_colour_fill, create_crm


def _two_region_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A 1 x 3 x 6 x 8 image: left 3 columns red-ish, the rest blue-ish; its true masks."""
    image = torch.zeros(1, 3, 6, 8)
    image[:, 0, :, :3] = 2.0
    image[:, 2, :, 3:] = -1.0
    truth = torch.zeros(1, 2, 6, 8)
    truth[:, 0, :, :3] = 1.0
    truth[:, 1, :, 3:] = 1.0
    return image, truth


def test_fill_is_the_hand_computed_shrunk_class_mean() -> None:
    image, truth = _two_region_scene()
    keep = torch.ones(1, 1, 6, 8)
    keep[..., 1] = 0  # one column of class 0 hidden
    keep[..., 5:7] = 0  # two columns of class 1 hidden
    prior = 2.0
    fill = class_colour_fill(image * keep, truth, keep, tile=None, prior=prior)
    # Visible: class 0 has 12 pixels of (2, 0, 0), class 1 has 18 of (0, 0, -1); 30 in all.
    mean_all = torch.tensor([2.0 * 12, 0.0, -18.0]) / 30
    mu0 = (torch.tensor([24.0, 0.0, 0.0]) + prior * mean_all) / (12 + prior)
    mu1 = (torch.tensor([0.0, 0.0, -18.0]) + prior * mean_all) / (18 + prior)
    torch.testing.assert_close(fill[0, :, 0, 1], mu0)
    torch.testing.assert_close(fill[0, :, 0, 6], mu1)


def test_truth_regenerates_better_than_uniform_and_wrong_masks() -> None:
    image, truth = _two_region_scene()
    keep = (torch.rand(1, 1, 6, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    crm = ZeroCRM(cond_channels=2, scale=1.0, prior=1e-3)
    err = {}
    for name, cond in {
        "truth": truth,
        "uniform": torch.full_like(truth, 0.5),
        "shifted": truth.roll(2, dims=-1),  # boundary two columns off
    }.items():
        out = crm(image * keep, cond, keep)
        err[name] = float(((out - image).abs() * (1 - keep)).sum())
    assert err["truth"] < 1e-2
    assert err["uniform"] > 1.0 and err["shifted"] > 1.0
    # Only the partition matters, not which class is called what.
    out = crm(image * keep, truth.flip(1), keep)
    assert float(((out - image).abs() * (1 - keep)).sum()) < 1e-2


def test_kept_pixels_are_untouched_and_output_at_working_size() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 16, 24, generator=g)
    keep = (torch.rand(2, 1, 16, 24, generator=g) < 0.5).float()
    cond = torch.softmax(torch.randn(2, 4, 16, 24, generator=g), dim=1)
    crm = ZeroCRM(cond_channels=4, scale=1.0, tile=4)
    out = crm(image * keep, cond, keep)
    torch.testing.assert_close(out * keep, image * keep)
    half = ZeroCRM(cond_channels=4, scale=0.5)
    assert half(image * keep, cond, keep).shape == (2, 3, 8, 12)
    assert sum(p.numel() for p in crm.parameters()) == 0


def test_tiles_use_local_colours() -> None:
    # One class whose colour differs between the left and right halves: per-image
    # averaging mixes them, 4-pixel tiles recover each half.
    image = torch.zeros(1, 3, 8, 8)
    image[..., :4] = 1.0
    image[..., 4:] = -1.0
    keep = torch.ones(1, 1, 8, 8)
    keep[..., ::2, ::2] = 0
    cond = torch.ones(1, 1, 8, 8)
    tiled = ZeroCRM(1, scale=1.0, tile=4, prior=1e-6)(image * keep, cond, keep)
    whole = ZeroCRM(1, scale=1.0, prior=1e-6)(image * keep, cond, keep)
    torch.testing.assert_close(tiled, image, atol=1e-5, rtol=0)
    assert float((whole - image).abs().max()) > 0.9


def test_gradient_moves_probabilities_towards_the_matching_colour() -> None:
    image, _ = _two_region_scene()
    keep = torch.ones(1, 1, 6, 8)
    keep[..., 0, 2] = 0  # one hidden pixel of class 0 (red)
    logits = torch.zeros(1, 2, 6, 8)
    logits[:, 0, :, :3] = 4.0
    logits[:, 1, :, 3:] = 4.0
    logits[:, :, 0, 2] = 0.0  # the hidden pixel is undecided
    logits.requires_grad_(True)
    crm = ZeroCRM(cond_channels=2, scale=1.0)
    out = crm(image * keep, torch.softmax(logits, 1), keep)
    ((out - image).abs() * (1 - keep)).sum().backward()
    assert logits.grad is not None
    # Descending the loss raises the red class's logit at the hidden red pixel.
    assert float(logits.grad[0, 0, 0, 2]) < 0 < float(logits.grad[0, 1, 0, 2])


def test_class_channels_ignore_extra_conditioning() -> None:
    image, truth = _two_region_scene()
    keep = torch.ones(1, 1, 6, 8)
    keep[..., 1] = 0
    extra = torch.randn(1, 1, 6, 8)
    crm = ZeroCRM(cond_channels=3, scale=1.0, class_channels=slice(0, 2))
    plain = ZeroCRM(cond_channels=2, scale=1.0)
    torch.testing.assert_close(
        crm(image * keep, torch.cat([truth, extra], 1), keep), plain(image * keep, truth, keep)
    )


def test_errors() -> None:
    crm = ZeroCRM(cond_channels=2)
    with pytest.raises(ValueError, match="needs a keep mask"):
        crm(torch.randn(1, 3, 8, 8), torch.rand(1, 2, 8, 8), None)
    with pytest.raises(ValueError, match="tile"):
        ZeroCRM(2, tile=0)
    with pytest.raises(ValueError, match="prior"):
        ZeroCRM(2, prior=0.0)
    with pytest.raises(ValueError, match="class_channels"):
        ZeroCRM(2, class_channels=slice(5, 6))
    with pytest.raises(ValueError, match="cond"):
        crm(torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))


def test_dejavu_with_crm_zero_trains_the_base_network() -> None:
    torch.manual_seed(0)
    base = torch.nn.Conv2d(3, 4, 3, padding=1)
    model = DejaVu(
        base,
        lambda pred, batch: F.cross_entropy(pred["seg"], batch["seg"]),
        crm="zero",
        cond_channels=4,
        crm_kwargs={"tile": 4},
        redaction="blocks",
        redaction_kwargs={"block": 4, "ratio": 0.5},
        seed=0,
    )
    assert isinstance(model.crm, ZeroCRM) and isinstance(create_crm("zero", 4), ZeroCRM)
    batch = {"image": torch.randn(2, 3, 16, 24), "seg": torch.randint(0, 4, (2, 16, 24))}
    out = model(batch)
    assert float(out["regen"].detach()) > 0
    out["regen"].backward()
    assert base.weight.grad is not None and float(base.weight.grad.abs().sum()) > 0


def test_fill_stays_within_the_visible_colours_at_half_resolution() -> None:
    # The class means are convex combinations of visible colours; a resize that leaks
    # visible colour into fully redacted cells (bilinear) would push them outside.
    g = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 64, 96, generator=g) * 4 - 2
    keep = torch.ones(2, 1, 64, 96)
    keep[..., :32, :32] = 0
    keep[..., 32:, 48:80] = 0
    cond = F.one_hot(torch.randint(0, 3, (2, 64, 96), generator=g), 3).permute(0, 3, 1, 2)
    out = ZeroCRM(3, scale=0.5, tile=8, prior=1e-3)(image * keep, cond.float(), keep)
    assert float(out.max()) <= float(image.max()) + 1e-4
    assert float(out.min()) >= float(image.min()) - 1e-4
