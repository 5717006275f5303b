"""Tests of the SPADE CRM (dejavu.crm.spade): shapes, registry, the bottleneck, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dejavu.crm import SPADE, CRMBase, SpadeCRM, create_crm, crm_class, list_crms

SMALL = {"width": 4, "depth": 2, "hidden": 8}


def _inputs(b: int, k: int, h: int, w: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, 3, h, w, generator=g, dtype=dtype)
    keep = (torch.rand(b, 1, h, w, generator=g) > 0.5).to(dtype)
    cond = torch.softmax(torch.randn(b, k, h, w, generator=g, dtype=dtype), dim=1)
    return image, cond, keep


def _crm(seed: int = 0, **kwargs) -> SpadeCRM:
    torch.manual_seed(seed)
    return SpadeCRM(**{"cond_channels": 5, **SMALL, **kwargs})


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("h", "w"), [(15, 21), (9, 9), (1, 1), (7, 33), (16, 24)])
@pytest.mark.parametrize("scale", [0.5, 1.0])
@pytest.mark.parametrize("depth", [1, 3])
def test_output_shape_any_size(h: int, w: int, scale: float, depth: int) -> None:
    crm = _crm(depth=depth, scale=scale)
    image, cond, keep = _inputs(2, 5, h, w)
    out = crm(image * keep, cond, keep)
    assert out.shape == (2, 3, *crm.working_size(h, w))
    assert out.shape == crm.resize_to_working(image).shape
    assert torch.isfinite(out).all()


def test_cond_of_another_size_and_no_keep() -> None:
    crm = _crm()
    image = torch.randn(2, 3, 20, 30)
    out = crm(image, torch.rand(2, 5, 7, 11))  # keep None: nothing removed
    assert out.shape == (2, 3, 10, 15)


@pytest.mark.parametrize("use_keep", [True, False])
def test_image_channels_and_use_keep(use_keep: bool) -> None:
    crm = _crm(image_channels=1, use_keep=use_keep)
    assert crm.stem[0].in_channels == 1 + int(use_keep)
    image, cond, keep = _inputs(1, 5, 12, 12)
    assert crm(image[:, :1], cond, keep).shape == (1, 1, 6, 6)


# --------------------------------------------------------------------------- registry


def test_registered() -> None:
    assert "spade" in list_crms()
    assert crm_class("spade") is SpadeCRM
    crm = create_crm("spade", cond_channels=11, width=8, depth=2, hidden=4, image_skip=True)
    assert isinstance(crm, SpadeCRM) and isinstance(crm, CRMBase)
    assert (crm.cond_channels, crm.width, crm.depth, crm.hidden, crm.image_skip) == (
        11,
        8,
        2,
        4,
        True,
    )
    assert "hidden=4" in repr(crm) and "image_skip=True" in repr(crm)


# --------------------------------------------------------------------------- conditioning


def test_conditioning_changes_output_and_gets_gradients() -> None:
    crm = _crm()
    image, cond, keep = _inputs(2, 5, 16, 20)
    _, other, _ = _inputs(2, 5, 16, 20, seed=1)
    out = crm(image * keep, cond, keep)
    assert (out - crm(image * keep, other, keep)).abs().max() > 1e-3
    cond = cond.clone().requires_grad_(True)
    crm(image * keep, cond, keep).square().mean().backward()
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    # Every level's SPADE net gets a gradient: the conditioning acts at every resolution.
    for block in crm.decoder:
        assert block.spade.shared[0].weight.grad.abs().sum() > 0


def test_spade_modulates_a_parameter_free_norm() -> None:
    spade = SPADE(channels=8, cond_channels=3, hidden=4)
    assert not any(p.requires_grad for p in spade.norm.parameters())  # affine=False: none
    assert sum(p.numel() for p in spade.norm.parameters()) == 0
    x, cond = torch.randn(2, 8, 5, 6), torch.rand(2, 3, 5, 6)
    with torch.no_grad():
        spade.gamma_beta.weight.zero_()
        spade.gamma_beta.bias.zero_()
    # gamma = beta = 0: plain normalisation.
    torch.testing.assert_close(spade(x, cond), F.group_norm(x, spade.norm.num_groups))
    with torch.no_grad():
        spade.gamma_beta.bias[:8] = 1.0  # gamma = 1
        spade.gamma_beta.bias[8:] = 0.5  # beta = 0.5
    torch.testing.assert_close(spade(x, cond), 2 * F.group_norm(x, spade.norm.num_groups) + 0.5)


# --------------------------------------------------------------------------- bottleneck


def _patched(image: torch.Tensor, size: int = 2) -> torch.Tensor:
    """``image`` with a small ``size x size`` region changed."""
    other = image.clone()
    other[..., 5 : 5 + size, 6 : 6 + size] += 3.0
    return other


def test_structure_encoder_sees_image_and_keep_only() -> None:
    crm = _crm(cond_channels=7, width=4, depth=3)
    # The encoder's only input conv reads [I_r, keep]: no conditioning channel.
    assert crm.stem[0].in_channels == 3 + 1
    # One SPADE block per level; each reads the conditioning, and the full-resolution
    # block's features come from the decoder alone (no image skip).
    assert len(crm.decoder) == crm.depth + 1
    assert all(b.spade.shared[0].in_channels == 7 for b in crm.decoder)
    assert crm.decoder[-1].spade.channels == crm.width
    assert _crm(width=4, depth=3, image_skip=True).decoder[-1].spade.channels == 2 * 4
    # The code is at 1 / 2**depth of the (padded) working resolution.
    image, _, keep = _inputs(2, 7, 32, 48)
    code, full = crm.encode(crm.resize_to_working(image), F.avg_pool2d(keep, 2))
    assert code.shape == (2, 4 * 2**3, 2, 3) and full.shape == (2, 4, 16, 24)


def test_code_does_not_depend_on_the_conditioning(monkeypatch: pytest.MonkeyPatch) -> None:
    crm = _crm()
    codes: list[torch.Tensor] = []
    encode = crm.encode

    def spy(*args):
        out = encode(*args)
        codes.append(out[0])
        return out

    monkeypatch.setattr(crm, "encode", spy)
    image, cond, keep = _inputs(1, 5, 16, 16)
    _, other, _ = _inputs(1, 5, 16, 16, seed=3)
    crm(image * keep, cond, keep)
    crm(image * keep, other, keep)
    torch.testing.assert_close(codes[0], codes[1], rtol=0, atol=0)


@pytest.mark.parametrize("image_skip", [False, True])
def test_image_reaches_the_decoder_only_through_the_code(
    image_skip: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swap in image A's bottleneck code while running on image B (A with a small patch
    changed): without ``image_skip`` the output is exactly A's, so nothing of B reaches the
    output except through the code; with ``image_skip`` B's full-resolution features leak."""
    crm = _crm(image_skip=image_skip, scale=1.0).eval()
    image_a, cond, _ = _inputs(1, 5, 16, 16)
    image_b = _patched(image_a)
    keep = torch.ones(1, 1, 16, 16)
    out_a = crm(image_a, cond, keep)
    out_b = crm(image_b, cond, keep)
    assert (out_a - out_b).abs().max() > 1e-4  # the patch does change the output
    code_a, _ = crm.encode(image_a, keep)
    encode = crm.encode
    monkeypatch.setattr(crm, "encode", lambda r, k: (code_a, encode(r, k)[1]))
    mixed = crm(image_b, cond, keep)
    if image_skip:
        assert (mixed - out_a).abs().max() > 1e-4
    else:
        torch.testing.assert_close(mixed, out_a, rtol=0, atol=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width must be an int >= 1, got 0"),
        ({"width": 2.5}, "width must be an int >= 1"),
        ({"depth": 0}, "depth must be an int >= 1, got 0"),
        ({"depth": True}, "depth must be an int >= 1"),
        ({"hidden": 0}, "hidden must be an int >= 1, got 0"),
        ({"cond_channels": 0}, "cond_channels must be an int >= 1"),
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.5}, "scale"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpadeCRM(**{"cond_channels": 5, **SMALL, **kwargs})


def test_bad_inputs() -> None:
    crm = _crm()
    image, cond, keep = _inputs(2, 5, 12, 12)
    with pytest.raises(ValueError, match="cond must have 5 channels, got 4"):
        crm(image, cond[:, :4], keep)
    with pytest.raises(ValueError, match="redacted must have 3 channels, got 1"):
        crm(image[:, :1], cond, keep)
    with pytest.raises(ValueError, match="cond must have batch size 2"):
        crm(image, cond[:1], keep)
    with pytest.raises(ValueError, match="keep must be None or a"):
        crm(image, cond, keep[..., :6])
    with pytest.raises(ValueError, match="floating-point"):
        crm(image, cond.long(), keep)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("image_skip", [False, True])
def test_gradcheck(image_skip: bool) -> None:
    torch.manual_seed(0)
    crm = SpadeCRM(3, width=2, depth=1, hidden=2, scale=1.0, image_skip=image_skip).double()
    image, cond, keep = _inputs(1, 3, 4, 6, dtype=torch.float64)
    redacted = (image * keep).requires_grad_(True)
    cond = cond.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, c: crm(r, c, keep), (redacted, cond))


def test_training_reduces_l1() -> None:
    """A few Adam steps on a fixed batch whose image is a colour per class region: the
    structure is in the conditioning, which is what this CRM is built to use."""
    crm = _crm(scale=1.0)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, 4, 4), generator=g).repeat_interleave(4, 1)
    cond = F.one_hot(labels.repeat_interleave(4, 2), 5).permute(0, 3, 1, 2).float()
    colours = torch.randn(5, 3, generator=g)
    image = torch.einsum("bkhw,kc->bchw", cond, colours)
    keep = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    target = crm.resize_to_working(image)
    opt = torch.optim.Adam(crm.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.l1_loss(crm(image * keep, cond, keep), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
