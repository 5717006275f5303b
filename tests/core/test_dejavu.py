"""The DejaVu module: gradients, zero inference cost, determinism, options."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dejavu import DejaVu
from dejavu.crm import ForwardCRM, RecursiveCRM
from dejavu.dejavu import LOSS_KEYS

NUM_CLASSES = 4


class TinySegNet(nn.Module):
    """A small base network: image -> {"seg": logits}."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)
        self.heads = {"seg": num_classes}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": self.head(self.body(x))}


def seg_loss(pred, batch):
    return F.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)


def make_batch(seed: int = 0, b: int = 2, h: int = 24, w: int = 36) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(b, 3, h, w, generator=g),
        "seg": torch.randint(0, NUM_CLASSES, (b, h, w), generator=g),
    }


def make_model(**kw) -> DejaVu:
    torch.manual_seed(0)
    kw.setdefault("crm_kwargs", {"width": 8, "depth": 2})
    return DejaVu(TinySegNet(), seg_loss, seed=0, **kw)


def test_output_has_the_same_keys_whatever_the_configuration():
    batch = make_batch()
    plain = make_model()(batch)
    cyclic = make_model(cyclic_weight=0.5, regen_warmup_steps=10)(batch)
    assert set(plain) == set(cyclic)
    for key in LOSS_KEYS:
        assert plain[key].ndim == 0 and torch.isfinite(plain[key])
    assert plain["cyclic"] == 0 and cyclic["cyclic"] > 0
    assert plain["redacted"].shape == batch["image"].shape
    assert plain["keep"].shape == (2, 1, 24, 36)
    assert plain["regenerated"].shape == plain["target"].shape == (2, 3, 12, 18)


def test_total_is_the_weighted_sum():
    model = make_model(regen_weight=0.7, cyclic_weight=0.3)
    out = model(make_batch())
    expected = out["task"] + 0.7 * out["regen"] + 0.3 * out["cyclic"]
    torch.testing.assert_close(out["loss"], expected)


def test_regeneration_gradient_reaches_base_through_conditioning():
    model = make_model()
    out = model(make_batch())
    out["regen"].backward()
    for name, p in model.base.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in model.crm.named_parameters():
        assert p.grad is not None, name
    assert any(p.grad.abs().sum() > 0 for p in model.crm.parameters())


def test_stop_gradient_ablation_blocks_the_base():
    model = make_model(stop_gradient=True)
    out = model(make_batch())
    out["regen"].backward()
    for p in model.base.parameters():
        assert p.grad is None or p.grad.abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.crm.parameters())


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def test_zero_inference_cost():
    plain = TinySegNet().eval()
    model = make_model(cyclic_weight=1.0)
    model(make_batch())["loss"].backward()
    deployed = model.eval_model().eval()
    x = torch.randn(1, 3, 40, 56)
    assert _flops(deployed, x) == _flops(plain, x) > 0
    assert sum(p.numel() for p in deployed.parameters()) == sum(
        p.numel() for p in plain.parameters()
    )
    assert set(deployed.state_dict()) == set(plain.state_dict())


def test_same_seed_same_losses_bit_for_bit():
    def run() -> list[torch.Tensor]:
        model = make_model(redaction="blocks", redaction_kwargs={"block": 8, "ratio": (0.3, 0.7)})
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for step in range(3):
            out = model(make_batch(step))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            losses.append(out["loss"].detach())
        return losses

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_generator_state_survives_state_dict_round_trip():
    model = make_model()
    model(make_batch())
    clone = copy.deepcopy(model)
    state = model.state_dict()
    expected = model(make_batch())["redacted"]
    clone.load_state_dict(state)
    torch.testing.assert_close(clone(make_batch())["redacted"], expected, rtol=0, atol=0)


def test_warm_up_is_linear_and_counts_training_steps():
    model = make_model(regen_weight=2.0, regen_warmup_steps=4)
    weights = [model(make_batch())["regen_weight"] for _ in range(6)]
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    model.eval()
    assert model(make_batch())["regen_weight"] == 2.0
    assert int(model.num_steps) == 6
    assert model.current_regen_weight(step=2) == 1.0


def test_cyclic_loss_is_task_loss_of_regenerated_image():
    model = make_model(cyclic_weight=1.0)
    batch = make_batch()
    out = model(batch)
    full = F.interpolate(out["regenerated"], size=(24, 36), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["cyclic"], seg_loss(model.base(full), batch))


class TinyBNSegNet(TinySegNet):
    """TinySegNet with a BatchNorm layer, whose running statistics inference uses."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__(num_classes)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())


def test_cyclic_pass_leaves_batchnorm_statistics_to_clean_images():
    # DejaVu-CL runs the base on regenerated images; its BatchNorm running statistics
    # must move as after the clean pass alone, or inference (which normalises clean
    # images with them) sees statistics of regenerated images.
    torch.manual_seed(0)
    base = TinyBNSegNet()
    clean_only = copy.deepcopy(base).train()
    model = DejaVu(base, seg_loss, crm_kwargs={"width": 8, "depth": 2}, cyclic_weight=1.0, seed=0)
    batch = make_batch()
    batch["image"] = batch["image"] * 3 + 2  # running stats far from the init (0, 1)
    out = model.train()(batch)
    clean_only(batch["image"])
    bn, ref = model.base.body[1], clean_only.body[1]
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1 and bn.momentum == ref.momentum
    # The pass itself normalises with the regenerated images' batch statistics and
    # reaches the base network's weights.
    full = F.interpolate(out["regenerated"], size=(24, 36), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["cyclic"], seg_loss(copy.deepcopy(model.base)(full), batch))
    out["cyclic"].backward()
    assert model.base.body[0].weight.grad is not None


def test_recursive_crm_and_crm_module_instances():
    out = make_model(crm="recursive", crm_kwargs={"width": 8, "depth": 2, "num_groups": 2})(
        make_batch()
    )
    assert out["regenerated"].shape == (2, 3, 12, 18)
    crm = ForwardCRM(NUM_CLASSES, width=8, depth=2, scale=1.0)
    model = DejaVu(TinySegNet(), seg_loss, crm=crm, seed=0)
    assert model(make_batch())["regenerated"].shape == (2, 3, 24, 36)
    assert isinstance(make_model(crm="recursive").crm, RecursiveCRM)


def test_cond_channels_derived_from_heads_or_required():
    assert make_model().crm is not None
    bare = nn.Conv2d(3, NUM_CLASSES, 1)
    with pytest.raises(ValueError, match="cond_channels"):
        DejaVu(bare, seg_loss)
    model = DejaVu(bare, seg_loss, cond_channels=NUM_CLASSES, crm_kwargs={"width": 8}, seed=0)
    assert model(make_batch())["pred"]["seg"].shape == (2, NUM_CLASSES, 24, 36)


def test_spectral_redaction_has_no_keep_mask():
    out = make_model(redaction="lowpass")(make_batch())
    assert out["keep"] is None and torch.isfinite(out["loss"])


def test_no_crm_means_no_regeneration_loss():
    out = make_model(crm=None, crm_kwargs=None)(make_batch())
    assert out["regen"] == 0 and out["regenerated"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"regen_weight": -1.0}, "regen_weight"),
        ({"regen_warmup_steps": -2}, "regen_warmup_steps"),
        ({"crm": "sideways"}, "unknown crm"),
        ({"redaction": "smudge"}, "smudge"),
        ({"text_weight": 1.0}, "text_supervision"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)


def test_bad_batches():
    model = make_model()
    with pytest.raises(ValueError, match="'image'"):
        model({"seg": torch.zeros(1, 4, 4, dtype=torch.long)})
    with pytest.raises(ValueError, match="4-D"):
        model({"image": torch.zeros(3, 8, 8), "seg": torch.zeros(1, 8, 8, dtype=torch.long)})


def test_bfloat16_autocast_on_cpu():
    model = make_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch())
    assert torch.isfinite(out["loss"].float())
    out["loss"].backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    model = make_model().cuda()
    batch = {k: v.cuda() for k, v in make_batch().items()}
    out = model(batch)
    out["loss"].backward()
    assert out["redacted"].device.type == "cuda"


def test_compiled_eval_model_matches_eager():
    model = make_model()
    deployed = model.eval_model().eval()
    x = torch.randn(1, 3, 16, 24)
    try:
        compiled = torch.compile(deployed)
        got = compiled(x)["seg"]
    except Exception as err:  # pragma: no cover - platform without a compiler
        pytest.skip(f"torch.compile unavailable here: {err}")
    torch.testing.assert_close(got, deployed(x)["seg"], rtol=1e-4, atol=1e-5)


def test_crm_truth_weight_anchors_a_learned_crm_only() -> None:
    torch.manual_seed(0)
    base = torch.nn.Conv2d(3, 4, 3, padding=1)
    loss = lambda pred, batch: F.cross_entropy(pred["seg"], batch["seg"])  # noqa: E731
    kwargs = {"cond_channels": 4, "redaction": "random", "seed": 0}
    model = DejaVu(base, loss, crm="forward", crm_kwargs={"width": 4, "depth": 1},
                   crm_truth_weight=0.5, **kwargs)  # fmt: skip
    batch = {
        "image": torch.randn(4, 3, 16, 24),
        "seg": torch.randint(0, 4, (4, 16, 24)),
        "labeled": torch.tensor([True, False, True, False]),
    }
    out = model(batch)
    assert float(out["regen_truth"].detach()) > 0
    base.zero_grad()
    out["regen_truth"].backward()
    # The truth carries no gradient to the base network; the CRM learns from it.
    assert base.weight.grad is None or float(base.weight.grad.abs().sum()) == 0.0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.crm.parameters())
    total = out["task"] + out["regen_weight"] * out["regen"] + 0.5 * out["regen_truth"]
    torch.testing.assert_close(out["loss"], total)
    off = DejaVu(base, loss, crm="forward", crm_kwargs={"width": 4, "depth": 1}, **kwargs)
    assert float(off(batch)["regen_truth"]) == 0.0
    with pytest.raises(ValueError, match="needs a learned CRM"):
        DejaVu(base, loss, crm="zero", crm_truth_weight=1.0, **kwargs)
