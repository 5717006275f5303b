"""Tests of dejavu.crm: the U-Net, CRM-F, CRM-R and the class groups (DESIGN.md section 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu.conditioning import Conditioning
from dejavu.crm import (
    NORMS,
    ForwardCRM,
    GroupMasks,
    RecursiveCRM,
    UNet,
    class_groups,
    create_crm,
    group_masks,
    list_crms,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SMALL = {"width": 4, "depth": 2}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(b: int, k: int, h: int, w: int, seed: int = 0, cond_hw: tuple[int, int] | None = None):
    g = _gen(seed)
    image = torch.randn(b, 3, h, w, generator=g)
    keep = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    ch, cw = cond_hw or (h, w)
    cond = torch.softmax(torch.randn(b, k, ch, cw, generator=g), dim=1)
    return image * keep, cond, keep


def _count_calls(module: nn.Module) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    module.register_forward_hook(hook)
    return calls


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- groups


@pytest.mark.parametrize(
    ("k", "g", "expected"),
    [
        (5, 2, [[0, 1, 2], [3, 4]]),
        (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
        (4, 4, [[0], [1], [2], [3]]),
        (2, 5, [[0], [1]]),
        (3, 1, [[0, 1, 2]]),
    ],
)
def test_class_groups_hand_examples(k: int, g: int, expected: list[list[int]]) -> None:
    assert class_groups(k, g) == expected


@pytest.mark.parametrize(("k", "g"), [(19, 4), (150, 8), (150, 150), (10, 3), (1, 1)])
def test_class_groups_properties(k: int, g: int) -> None:
    groups = class_groups(k, g)
    assert len(groups) == min(k, g)
    assert [c for grp in groups for c in grp] == list(range(k))  # contiguous, in order, complete
    sizes = [len(grp) for grp in groups]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("k", "g"), [(0, 1), (3, 0), (2.0, 1), (True, 1)])
def test_class_groups_errors(k: object, g: object) -> None:
    with pytest.raises(ValueError, match=r"num_classes|num_groups"):
        class_groups(k, g)  # type: ignore[arg-type]


def test_group_masks_values() -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1).repeat(2, 1, 3, 2)
    out = group_masks(probs, [[0, 1], [2, 3]])
    assert out.shape == (2, 2, 3, 2)
    torch.testing.assert_close(out[:, 0], torch.full((2, 3, 2), 0.3))
    torch.testing.assert_close(out[:, 1], torch.full((2, 3, 2), 0.7))
    torch.testing.assert_close(
        GroupMasks([[3], [0, 2]])(probs)[0, :, 0, 0], torch.tensor([0.4, 0.4])
    )
    with pytest.raises(ValueError, match=r"class index 4; allowed: ints in \[0, 4\)"):
        group_masks(probs, [[0, 4]])
    with pytest.raises(ValueError, match="non-empty"):
        group_masks(probs, [[0], []])


# --------------------------------------------------------------------------- UNet


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 13), (16, 24)])
def test_unet_any_size(norm: str, h: int, w: int) -> None:
    net = UNet(5, 3, width=4, depth=3, norm=norm)
    out = net(torch.randn(2, 5, h, w, generator=_gen()))
    assert out.shape == (2, 3, h, w)
    assert torch.isfinite(out).all()


def test_unet_widths_double_per_level() -> None:
    net = UNet(2, 3, width=4, depth=3)
    assert [blk[0].out_channels for blk in net.down] == [8, 16, 32]
    assert net.stem[0].in_channels == 2 and net.head.out_channels == 3
    assert UNet(2, 1, width=4, depth=0)(torch.randn(1, 2, 5, 5)).shape == (1, 1, 5, 5)


def test_unet_padding_does_not_mix_images() -> None:
    # cropping back must not shift content: a batch element only depends on itself
    net = UNet(3, 3, width=4, depth=2).eval()
    x = torch.randn(2, 3, 9, 11, generator=_gen(1))
    torch.testing.assert_close(net(x)[:1], net(x[:1]))


def test_unet_errors() -> None:
    with pytest.raises(ValueError, match="norm"):
        UNet(3, norm="layer")
    with pytest.raises(ValueError, match="depth"):
        UNet(3, depth=-1)
    with pytest.raises(ValueError, match="x must have 3 channels, got 4"):
        UNet(3)(torch.zeros(1, 4, 8, 8))


# --------------------------------------------------------------------------- both CRMs


def _make(kind: str, k: int, **kw: object):
    if kind == "forward":
        return ForwardCRM(k, **SMALL, **kw)
    return RecursiveCRM(k, **SMALL, num_groups=3, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["forward", "recursive"])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
@pytest.mark.parametrize(("h", "w"), [(15, 21), (9, 7)])
def test_crm_output_shape(device: str, kind: str, scale: float, h: int, w: int) -> None:
    crm = _make(kind, 5, scale=scale).to(device)
    redacted, cond, keep = (t.to(device) for t in _inputs(2, 5, h, w, cond_hw=(6, 5)))
    out = crm(redacted, cond, keep)
    expected = (max(1, round(h * scale)), max(1, round(w * scale)))
    assert crm.working_size(h, w) == expected
    assert out.shape == (2, 3, *expected)
    assert crm.resize_to_working(redacted).shape == out.shape
    assert out.device.type == device and torch.isfinite(out).all()


def test_working_size_values() -> None:
    crm = ForwardCRM(2, **SMALL, scale=0.5)
    assert crm.working_size(15, 21) == (8, 10)  # Python round: 7.5 -> 8, 10.5 -> 10
    assert crm.working_size(16, 24) == (8, 12)
    assert ForwardCRM(2, **SMALL, scale=0.01).working_size(15, 21) == (1, 1)
    assert ForwardCRM(2, **SMALL, scale=1.0).working_size(15, 21) == (15, 21)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "make",
    [
        lambda: ForwardCRM(4, **SMALL),
        lambda: ForwardCRM(4, **SMALL, use_keep=False, norm="batch"),
        lambda: RecursiveCRM(4, **SMALL, steps=2),
        lambda: RecursiveCRM(4, **SMALL, num_groups=2),
        lambda: RecursiveCRM(4, **SMALL, num_groups=2, group_channels=slice(0, 3), norm="none"),
    ],
)
def test_gradients_reach_parameters_and_conditioning(device: str, make) -> None:
    # Seeded init: without normalisation a tiny random U-Net can start with a
    # dead ReLU channel whose bias then gets no gradient, whatever the code.
    torch.manual_seed(0)
    crm = make().to(device)
    g = _gen(2)
    logits = torch.randn(2, 4, 12, 14, generator=g).to(device).requires_grad_(True)
    image = torch.randn(2, 3, 12, 14, generator=g).to(device)
    keep = (torch.rand(2, 1, 12, 14, generator=g) > 0.5).float().to(device)
    cond = torch.softmax(logits, dim=1)
    out = crm(image * keep, cond, keep)
    loss = (out - crm.resize_to_working(image)).abs().mean()
    loss.backward()
    for name, p in crm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_keep_none_means_nothing_removed_and_use_keep_false_ignores_it() -> None:
    redacted, cond, keep = _inputs(1, 3, 10, 10, seed=3)
    crm = ForwardCRM(3, **SMALL).eval()
    torch.testing.assert_close(crm(redacted, cond), crm(redacted, cond, torch.ones_like(keep)))
    assert not torch.allclose(crm(redacted, cond), crm(redacted, cond, keep))
    crm = RecursiveCRM(3, **SMALL, use_keep=False).eval()
    torch.testing.assert_close(crm(redacted, cond), crm(redacted, cond, keep))
    assert crm.unet.in_channels == 3 + 3 + 1


def test_inputs_are_resized_to_working_resolution() -> None:
    redacted, cond, _ = _inputs(2, 4, 12, 16, seed=4, cond_hw=(6, 8))
    keep = torch.zeros(2, 1, 12, 16)
    keep[..., ::2, ::2] = 1.0  # one pixel in four kept
    crm = ForwardCRM(4, **SMALL, scale=0.5)
    seen: list[torch.Tensor] = []
    crm.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    crm(redacted, cond, keep)
    (x,) = seen
    assert x.shape == (2, 3 + 4 + 1, 6, 8)
    torch.testing.assert_close(x[:, :3], crm.resize_to_working(redacted))
    ref = F.interpolate(redacted, size=(6, 8), mode="bilinear", antialias=True)
    torch.testing.assert_close(x[:, :3], ref)
    torch.testing.assert_close(x[:, 3:7], cond)  # already at the working size
    torch.testing.assert_close(x[:, 7:], torch.full((2, 1, 6, 8), 0.25))  # kept fraction


@pytest.mark.parametrize("kind", ["forward", "recursive"])
def test_crm_input_errors(kind: str) -> None:
    crm = _make(kind, 4)
    redacted, cond, keep = _inputs(2, 4, 8, 8)
    with pytest.raises(ValueError, match="redacted must have 3 channels, got 1"):
        crm(redacted[:, :1], cond, keep)
    with pytest.raises(ValueError, match="cond must have 4 channels, got 5"):
        crm(redacted, torch.rand(2, 5, 8, 8), keep)
    with pytest.raises(ValueError, match="cond must have batch size 2"):
        crm(redacted, cond[:1], keep)
    with pytest.raises(ValueError, match="keep must be None or a"):
        crm(redacted, cond, keep[:, :, :4])
    for scale in (0.0, 1.5, -0.5):
        with pytest.raises(ValueError, match=r"scale must be in \(0.0, 1.0\]"):
            _make(kind, 4, scale=scale)
    with pytest.raises(ValueError, match="cond_channels"):
        _make(kind, 0)


# --------------------------------------------------------------------------- CRM-R


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_recursive_single_group_runs_steps_with_shared_weights(steps: int) -> None:
    crm = RecursiveCRM(3, **SMALL, steps=steps)
    calls = _count_calls(crm.unet)
    redacted, cond, keep = _inputs(1, 3, 8, 10)
    out = crm.forward_steps(redacted, cond, keep)
    assert calls[0] == steps == crm.num_steps == len(out)
    assert sum(isinstance(m, UNet) for m in crm.modules()) == 1
    assert _n_params(crm) == _n_params(RecursiveCRM(3, **SMALL, steps=1))
    # one group: the mask is all ones, so every step replaces the image by g's output
    assert crm.groups == []
    assert torch.equal(crm(redacted, cond, keep), out[-1])
    assert RecursiveCRM(3, **SMALL).num_steps == 1


@pytest.mark.parametrize(
    ("k", "num_groups", "expected"), [(6, 3, 3), (6, 4, 4), (5, 8, 5), (6, 2, 2)]
)
def test_recursive_one_step_per_group(k: int, num_groups: int, expected: int) -> None:
    crm = RecursiveCRM(k, **SMALL, num_groups=num_groups)
    calls = _count_calls(crm.unet)
    redacted, cond, keep = _inputs(1, k, 8, 8)
    out = crm.forward_steps(redacted, cond, keep)
    assert len(crm.groups) == crm.num_steps == calls[0] == len(out) == expected
    assert expected <= num_groups


def test_recursive_parameter_count_independent_of_steps_and_groups() -> None:
    # 6 classes in 3, 4 or 5 groups: the widest group has 2 classes in each case
    n = {g: _n_params(RecursiveCRM(6, **SMALL, num_groups=g)) for g in (3, 4, 5)}
    assert len(set(n.values())) == 1
    ref = UNet(3 + 2 + 1 + 1, 3, **SMALL)  # image + widest group + mask + keep
    assert n[3] == _n_params(ref)


def test_recursive_update_equation() -> None:
    # 4 classes in groups [[0, 1], [2, 3]]; only group 0 has mass, in the left columns
    h, w = 6, 8
    cond = torch.zeros(1, 4, h, w)
    cond[0, 0, :, :3] = 1.0
    cond[0, 1, :, 3] = 0.5  # a soft column: m_1 = 0.5 there
    redacted, _, keep = _inputs(1, 4, h, w, seed=5)
    crm = RecursiveCRM(4, **SMALL, scale=1.0, num_groups=2).eval()
    assert crm.groups == [[0, 1], [2, 3]]
    ins, outs = [], []

    def record(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        ins.append(args[0])
        outs.append(out)

    crm.unet.register_forward_hook(record)
    i1, i2 = crm.forward_steps(redacted, cond, keep)

    m1 = cond[:, :2].sum(1, keepdim=True)
    expected_in1 = torch.cat([redacted, cond[:, :2], m1, keep], dim=1)
    torch.testing.assert_close(ins[0], expected_in1)
    g1 = crm.unet(expected_in1)
    torch.testing.assert_close(outs[0], g1)
    torch.testing.assert_close(i1, redacted + m1 * (g1 - redacted))
    # outside the group's mask the image is exactly I_r; inside, g's output
    assert torch.equal(i1[..., 4:], redacted[..., 4:])
    torch.testing.assert_close(i1[..., :3], g1[..., :3])
    torch.testing.assert_close(i1[..., 3], 0.5 * (redacted[..., 3] + g1[..., 3]))
    # step 2: group 1 has an all-zero mask, so nothing changes
    torch.testing.assert_close(ins[1][:, :3], i1)
    assert torch.equal(ins[1][:, 5], torch.zeros(1, h, w))
    assert torch.equal(i2, i1)
    assert torch.equal(crm(redacted, cond, keep)[..., 4:], redacted[..., 4:])


def test_recursive_phi_is_zero_padded_group_plus_other_channels() -> None:
    # panoptic-like conditioning: 5 class channels then a boundary channel
    g = _gen(6)
    cond = torch.cat(
        [
            torch.softmax(torch.randn(1, 5, 4, 4, generator=g), 1),
            torch.rand(1, 1, 4, 4, generator=g),
        ],
        dim=1,
    )
    crm = RecursiveCRM(6, **SMALL, scale=1.0, num_groups=2, group_channels=slice(0, 5))
    assert crm.groups == [[0, 1, 2], [3, 4]]
    assert crm.unet.in_channels == 3 + 3 + 1 + 1 + 1  # image, widest group, boundary, mask, keep
    ins = []
    crm.unet.register_forward_pre_hook(lambda _m, a: ins.append(a[0]))
    redacted, _, keep = _inputs(1, 6, 4, 4, seed=7)
    crm(redacted, cond, keep)
    phi1, phi2 = ins[0][:, 3:7], ins[1][:, 3:7]
    torch.testing.assert_close(phi1, torch.cat([cond[:, 0:3], cond[:, 5:6]], 1))
    zero = torch.zeros(1, 1, 4, 4)
    torch.testing.assert_close(phi2, torch.cat([cond[:, 3:5], zero, cond[:, 5:6]], 1))
    torch.testing.assert_close(ins[1][:, 7:8], cond[:, 3:5].sum(1, keepdim=True))  # m_2


def test_recursive_with_conditioning_slices() -> None:
    phi = Conditioning({"seg": "segmentation", "b": "boundary"})
    sl = phi.slices({"seg": 4, "b": 1})
    crm = RecursiveCRM(
        phi.out_channels({"seg": 4, "b": 1}), **SMALL, num_groups=4, group_channels=sl["seg"]
    )
    pred = {"seg": torch.randn(2, 4, 8, 8, requires_grad=True), "b": torch.randn(2, 1, 8, 8)}
    redacted = torch.randn(2, 3, 8, 8)
    out = crm(redacted, phi(pred, size=crm.working_size(8, 8)))
    assert out.shape == (2, 3, 4, 4) and crm.num_steps == 4
    out.sum().backward()
    assert pred["seg"].grad.abs().sum() > 0


def test_recursive_errors() -> None:
    with pytest.raises(ValueError, match=r"steps must be None or equal the number of groups \(3\)"):
        RecursiveCRM(6, **SMALL, num_groups=3, steps=2)
    with pytest.raises(ValueError, match="selects no channel"):
        RecursiveCRM(4, **SMALL, num_groups=2, group_channels=slice(4, 8))
    with pytest.raises(ValueError, match="group_channels must be a slice"):
        RecursiveCRM(4, **SMALL, num_groups=2, group_channels=[0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_groups"):
        RecursiveCRM(4, **SMALL, num_groups=0)
    with pytest.raises(ValueError, match="steps"):
        RecursiveCRM(4, **SMALL, steps=0)


def test_create_crm() -> None:
    assert {"forward", "recursive", "zero"} <= set(list_crms())
    assert isinstance(create_crm("forward", 4, **SMALL), ForwardCRM)
    crm = create_crm("recursive", 6, num_groups=2, scale=0.25, **SMALL)
    assert isinstance(crm, RecursiveCRM) and crm.num_steps == 2 and crm.scale == 0.25
    with pytest.raises(ValueError, match=r"unknown crm 'unet'; allowed: .*'forward'.*'recursive'"):
        create_crm("unet", 4)
