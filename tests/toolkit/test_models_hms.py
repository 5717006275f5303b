"""HMS, hierarchical multi-scale attention (hrnet18_ocr_hms, hrnet48_ocr_hms, hms_<model>)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dejavu.toolkit.models import HierarchicalMultiScale, OCRHRNet, create_model, list_models
from dejavu.toolkit.models.hms import (
    ATTENTION_KEY,
    DEFAULT_SCALES,
    TRAIN_SCALES,
    attention_fuse,
    hierarchical_fusion,
)
from dejavu.toolkit.tasks import create_task

ODD = (45, 61)
# Narrow widths keep the CPU tests fast; dropout 0 makes training-mode passes repeatable.
SMALL = {"ocr_channels": 32, "key_channels": 16, "attention_channels": 8, "dropout": 0.0}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_registered_names_wrap_the_ocr_networks() -> None:
    names = list_models()
    assert {"hrnet18_ocr_hms", "hrnet48_ocr_hms", "hms_hrnet18"} <= set(names)
    for name, variant in (("hrnet18_ocr_hms", "hrnet_w18_small"), ("hrnet48_ocr_hms", "hrnet_w48")):
        net = create_model(name, num_classes=19)
        assert isinstance(net, HierarchicalMultiScale) and isinstance(net.base, OCRHRNet)
        assert net.base.variant == variant and net.scales == DEFAULT_SCALES == (0.5, 1.0, 2.0)
        # the attention head reads OCR's augmented representation (512 channels)
        assert net.attention[0][0].in_channels == 512 and net.attention[0][0].out_channels == 256
    assert TRAIN_SCALES == (0.5, 1.0)


@pytest.mark.parametrize("size", [ODD, (33, 40)])
def test_shapes_in_training_and_eval(size: tuple[int, int]) -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=6, **SMALL)
    x = torch.randn(2, 3, *size)
    out = net.train()(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "seg": (2, 6, *size),
        "seg_aux": (2, 6, *size),
    }
    with torch.no_grad():
        out = net.eval()(x)
    assert list(out) == ["seg"] and out["seg"].shape == (2, 6, *size)
    assert torch.isfinite(out["seg"]).all()


def test_default_widths_at_an_odd_size() -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=5)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, *ODD))["seg"].shape == (1, 5, *ODD)


def test_training_fuses_0_5_into_1_0_with_the_low_scale_attention() -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=4, **SMALL).train()
    x = torch.randn(2, 3, *ODD)
    with torch.no_grad():
        out = net(x)
        hi = net.predict_scale(x, 1.0)
        lo = net.predict_scale(x, 0.5)
    assert lo["seg"].shape[-2:] == (22, 30) and lo[ATTENTION_KEY].shape == (2, 1, 22, 30)
    a = _up(lo[ATTENTION_KEY], ODD)
    assert a.min() > 0 and a.max() < 1
    for key in ("seg", "seg_aux"):  # the auxiliary soft regions are fused the same way
        expected = a * _up(lo[key], ODD) + (1 - a) * hi[key]
        torch.testing.assert_close(out[key], expected)


def test_inference_fuses_the_scales_hierarchically() -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=4, **SMALL).eval()
    x = torch.randn(1, 3, 40, 56)
    attention_calls: list[tuple[int, ...]] = []
    net.attention.register_forward_hook(lambda m, a, o: attention_calls.append(tuple(o.shape)))
    with torch.no_grad():
        out = net(x)["seg"]
        # the highest scale's attention is never used, so it is not computed
        assert [shape[-2:] for shape in attention_calls] == [(16, 16), (8, 8)]  # 1.0, 0.5
        p2, p1, p05 = (net.predict_scale(x, s) for s in (2.0, 1.0, 0.5))
    # NVIDIA's nscale_forward: 2.0 down to 1.0, fused with 1.0's attention; 0.5 up, fused
    size = (40, 56)
    fused = p1[ATTENTION_KEY] * p1["seg"] + (1 - p1[ATTENTION_KEY]) * _up(p2["seg"], size)
    a = _up(p05[ATTENTION_KEY], size)
    fused = a * _up(p05["seg"], size) + (1 - a) * fused
    torch.testing.assert_close(out, fused)


def test_one_scale_is_the_base_network() -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=4, scales=[1.0], **SMALL).eval()
    x = torch.randn(1, 3, *ODD)
    with torch.no_grad():
        torch.testing.assert_close(net(x)["seg"], net.base(x)["seg"])


def test_fusion_helpers() -> None:
    low, high = torch.full((1, 1, 2, 2), 4.0), torch.zeros(1, 1, 4, 4)
    fused = attention_fuse(low, high, torch.full((1, 1, 2, 2), 0.25), (4, 4))
    torch.testing.assert_close(fused, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="descending"):
        hierarchical_fusion([(0.5, {"seg": low}), (1.0, {"seg": high})])
    with pytest.raises(ValueError, match="no attention"):
        hierarchical_fusion([(1.0, {"seg": high}), (0.5, {"seg": low})])
    with pytest.raises(ValueError, match="at least one"):
        hierarchical_fusion([])


def test_any_base_network_through_the_family() -> None:
    net = create_model("hms_fpn_test_resnet", num_classes=3, attention_channels=4)
    assert isinstance(net, HierarchicalMultiScale)
    # without head features the attention reads the base's raw outputs
    assert net.attention[0][0].in_channels == 3
    out = net.train()(torch.randn(2, 3, *ODD))
    assert list(out) == ["seg"] and out["seg"].shape == (2, 3, *ODD)
    mtl = create_model("hms_fpn_test_resnet", task="multitask", num_classes=3)
    with torch.no_grad():
        out = mtl.eval()(torch.randn(1, 3, *ODD))
    assert (out["depth"] > 0).all()
    torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(1, *ODD))
    assert net.get_backbone() is net.base.get_backbone()


def test_bad_options_are_refused() -> None:
    for scales, match in (([], "non-empty"), ([1.0, 0.0], "positive"), ([1, 1.0], "repeat")):
        with pytest.raises(ValueError, match=match):
            create_model("hrnet18_ocr_hms", num_classes=3, scales=scales)
    with pytest.raises(ValueError, match="attention_channels"):
        create_model("hrnet18_ocr_hms", num_classes=3, attention_channels=0)
    for name in ("hms_hrnet18_ocr_hms", "hms_hms_hrnet18", "hms_sa_hrnet18", "hms_nonet"):
        with pytest.raises(ValueError, match="unknown model name"):
            create_model(name, num_classes=3)


def test_gradient_reaches_every_part() -> None:
    net = create_model("hrnet18_ocr_hms", num_classes=3, **SMALL).train()
    task = create_task("segmentation", num_classes=3)
    x, y = torch.randn(2, 3, 32, 40), torch.randint(0, 3, (2, 32, 40))
    parts = task.loss(net(x), {"seg": y})
    assert sorted(parts) == ["loss", "seg", "seg_aux"]
    parts["loss"].backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert net.attention[-2].weight.grad.abs().sum() > 0


def test_a_single_scale_checkpoint_loads_into_the_base(tmp_path: Path) -> None:
    single = create_model("hrnet18_ocr", num_classes=3, ocr_channels=32, key_channels=16)
    torch.save(single.state_dict(), tmp_path / "ocr.pth")
    net = create_model(
        "hrnet18_ocr_hms",
        num_classes=3,
        ocr_channels=32,
        key_channels=16,
        pretrained=tmp_path / "ocr.pth",
    )
    assert net.pretrained_report.complete
    x = torch.randn(1, 3, 32, 32)
    net.scales = (1.0,)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x)["seg"], single.eval()(x)["seg"])


def test_dejavu_conditions_on_the_fused_prediction() -> None:
    from dejavu import DejaVu

    task = create_task("segmentation", num_classes=4)
    base = create_model("hrnet18_ocr_hms", num_classes=4, **SMALL)
    model = DejaVu(base, task, conditioning=task.conditioning, redaction="random", seed=0)
    seen: dict[str, torch.Tensor] = {}
    model.conditioning.register_forward_hook(lambda m, args, out: seen.update(args[0]))
    image = torch.randn(2, 3, 32, 48)
    batch = {"image": image, "seg": torch.randint(0, 4, (2, 32, 48))}
    out = model.train()(batch)
    assert seen["seg"] is out["pred"]["seg"]
    with torch.no_grad():
        fused = base(image)["seg"]  # training mode: scales 1.0 and 0.5, fused
        single = base.predict_scale(image, 1.0)["seg"]
    torch.testing.assert_close(seen["seg"].detach(), fused)
    assert (seen["seg"].detach() - single).abs().max() > 1e-3  # not the 1.0 scale alone
    torch.testing.assert_close(out["task"], out["task/seg"] + 0.4 * out["task/seg_aux"])
    out["loss"].backward()
    assert base.attention[-2].weight.grad is not None
