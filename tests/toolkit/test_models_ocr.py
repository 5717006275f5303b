"""HRNet-OCR (hrnet18_ocr, hrnet48_ocr): the OCR head and its training-only auxiliary loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu.toolkit.models import OCRHRNet, create_model
from dejavu.toolkit.models.ocr import ObjectAttention, OCRHead, object_region_features
from dejavu.toolkit.tasks import aux_key, create_task, head_spec, output_spec

ODD = (45, 61)
# Narrow OCR widths keep the CPU tests fast; the defaults (512 / 256) are tested by counts.
SMALL = {"ocr_channels": 32, "key_channels": 16}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registered_names_build_with_the_ocr_head() -> None:
    for name in ("hrnet18_ocr", "hrnet48_ocr"):
        net = create_model(name, num_classes=19)
        assert isinstance(net, OCRHRNet) and isinstance(net.ocr, OCRHead), name
        assert net.class_head == "seg" and net.head_feature_channels == 512
        assert net.ocr.attention.key_channels == 256
    assert create_model("hrnet18_ocr", num_classes=3).variant == "hrnet_w18_small"
    assert create_model("hrnet48_ocr", num_classes=3).variant == "hrnet_w48"


@pytest.mark.parametrize("size", [ODD, (33, 40), (64, 96)])
def test_seg_and_aux_shapes_in_training_and_eval(size: tuple[int, int]) -> None:
    net = create_model("hrnet18_ocr", num_classes=7, **SMALL)
    x = torch.randn(2, 3, *size)
    out = net.train()(x)
    assert list(out) == ["seg", "seg_aux"]
    assert out["seg"].shape == out["seg_aux"].shape == (2, 7, *size)
    with torch.no_grad():
        out = net.eval()(x)
    assert list(out) == ["seg"] and out["seg"].shape == (2, 7, *size)
    assert torch.isfinite(out["seg"]).all()


def test_default_widths_at_an_odd_size() -> None:
    net = create_model("hrnet18_ocr", num_classes=5)
    out = net.train()(torch.randn(2, 3, *ODD))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "seg": (2, 5, *ODD),
        "seg_aux": (2, 5, *ODD),
    }


def test_multitask_heads_get_the_hrnet_head_and_ocr_needs_one_class_head() -> None:
    net = create_model("mtl_hrnet18_ocr", num_classes=5, **SMALL)
    assert set(net.decoder.heads) == {"depth", "normals"}  # seg is OCR's
    out = net.train()(torch.randn(2, 3, *ODD))
    assert sorted(out) == ["depth", "normals", "seg", "seg_aux"]
    assert (out["depth"] > 0).all()
    torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(2, *ODD))
    with pytest.raises(ValueError, match="exactly one"):
        create_model("hrnet18_ocr", task="depth")
    with pytest.raises(ValueError, match="ocr_channels must be a positive int"):
        create_model("hrnet18_ocr", num_classes=3, ocr_channels=0)
    with pytest.raises(ValueError, match="dropout"):
        create_model("hrnet18_ocr", num_classes=3, dropout=1.0)


def test_object_region_features_are_softmax_weighted_pixel_averages() -> None:
    feats, regions = torch.randn(2, 6, 5, 7), torch.randn(2, 3, 5, 7)
    got = object_region_features(feats, regions)
    assert got.shape == (2, 6, 3)
    for b in range(2):
        for k in range(3):
            w = regions[b, k].flatten().softmax(0)
            torch.testing.assert_close(got[b, :, k], feats[b].flatten(1) @ w)
    with pytest.raises(ValueError, match="share"):
        object_region_features(feats, regions[..., :4])


def test_pixel_region_relation_is_a_softmax_over_the_regions() -> None:
    attn = ObjectAttention(8, 4).eval()
    pixels, regions = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 3)
    relation = attn.relation(pixels, regions)
    assert relation.shape == (2, 35, 3)
    torch.testing.assert_close(relation.sum(-1), torch.ones(2, 35))
    # query/key/value/out transforms are conv-BN-ReLU, as in the official block
    for part in (attn.query[0], attn.query[1], attn.key[0], attn.key[1], attn.value, attn.out):
        assert [type(m) for m in part] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    # the context follows the relation: regions that all look alike give one context
    same = attn(pixels, regions[:, :, :1].expand(-1, -1, 3))
    torch.testing.assert_close(same, attn.out(attn.value(regions[:, :, :1, None])).expand_as(same))


def test_the_augmented_representation_uses_context_and_pixels() -> None:
    head = OCRHead(24, num_classes=5, ocr_channels=16, key_channels=8).eval()
    assert head.fuse[0][0].in_channels == 32  # concat(context, pixels)
    assert head.bottleneck[0].kernel_size == (3, 3)
    assert [m.kernel_size for m in head.regions if isinstance(m, nn.Conv2d)] == [(1, 1), (1, 1)]
    out = head(torch.randn(1, 24, 9, 11))
    torch.testing.assert_close(out.logits, head.classifier(out.features))


def test_hrnet48_ocr_head_has_the_official_layers() -> None:
    # HRNet-OCR's head for W48 (C = 48+96+192+384 = 720), K = 19, D = 512, d = 256:
    # aux 1x1 C->C, BN, 1x1 C->K; 3x3 C->D, BN; OCR block: query/key 2x (1x1, BN), value
    # and out 1x1 + BN; fuse 1x1 2D->D + BN; classifier 1x1 D->K (+ bias). (The official
    # code also gives the two convs before a BN a bias, which BN makes redundant.)
    c, k, d, e = 720, 19, 512, 256
    bn = 2
    expected = (
        (c * c + bn * c + c * k + k)
        + (c * d * 9 + bn * d)
        + 2 * (d * e + bn * e + e * e + bn * e)
        + (d * e + bn * e)
        + (e * d + bn * d)
        + (2 * d * d + bn * d)
        + (d * k + k)
    )
    net = create_model("hrnet48_ocr", num_classes=k)
    assert net.feature_channels == c
    assert sum(p.numel() for p in net.ocr.parameters()) == expected
    assert len(net.decoder.heads) == 0


def test_aux_loss_is_added_with_weight_0_4_in_training_only() -> None:
    task = create_task("segmentation", num_classes=4)
    net = create_model("hrnet18_ocr", num_classes=4, **SMALL)
    x, y = torch.randn(2, 3, *ODD), torch.randint(0, 4, (2, *ODD))
    y[0, :5] = 255
    batch = {"image": x, "seg": y}
    pred = net.train()(x)
    parts = task.loss(pred, batch)
    main = F.cross_entropy(pred["seg"], y, ignore_index=255)
    aux = F.cross_entropy(pred["seg_aux"], y, ignore_index=255)
    torch.testing.assert_close(parts["seg"], main)
    torch.testing.assert_close(parts["seg_aux"], aux)
    torch.testing.assert_close(parts["loss"], main + 0.4 * aux)
    assert head_spec("seg").aux_weight == 0.4 and output_spec(aux_key("seg")) is head_spec("seg")
    with torch.no_grad():
        pred = net.eval()(x)
    parts = task.loss(pred, batch)
    assert sorted(parts) == ["loss", "seg"]
    torch.testing.assert_close(parts["loss"], F.cross_entropy(pred["seg"], y, ignore_index=255))


def test_aux_weight_follows_the_head_weight_or_its_own() -> None:
    pred = {"seg": torch.zeros(1, 3, 2, 2), "seg_aux": torch.zeros(1, 3, 2, 2)}
    batch = {"seg": torch.zeros(1, 2, 2, dtype=torch.long)}
    ce = torch.log(torch.tensor(3.0))
    scaled = create_task("segmentation", num_classes=3, loss_weights={"seg": 2.0})
    torch.testing.assert_close(scaled.loss(pred, batch)["loss"], 2.0 * ce + 0.8 * ce)
    own = create_task("segmentation", num_classes=3, loss_weights={"seg_aux": 1.0})
    torch.testing.assert_close(own.loss(pred, batch)["loss"], 2.0 * ce)
    with pytest.raises(ValueError, match=r"unknown heads \['depth_aux'\].*'seg_aux'"):
        create_task("segmentation", num_classes=3, loss_weights={"depth_aux": 1.0})


def test_gradient_reaches_every_part() -> None:
    # the task loss (main + aux) trains everything ...
    net = create_model("hrnet18_ocr", num_classes=3, **SMALL).train()
    task = create_task("segmentation", num_classes=3)
    x, y = torch.randn(2, 3, 32, 40), torch.randint(0, 3, (2, 32, 40))
    task.loss(net(x), {"seg": y})["loss"].backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    # ... and the main output alone reaches the soft-region head too: the regions are part
    # of the inference network (they pool the object features), not an extra branch
    net.zero_grad(set_to_none=True)
    net(x)["seg"].mean().backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert net.ocr.regions[-1].weight.grad.abs().sum() > 0


def test_inference_computes_the_regions_once_and_skips_only_the_aux_output() -> None:
    net = create_model("hrnet18_ocr", num_classes=3, **SMALL)
    calls: list[int] = []
    net.ocr.regions.register_forward_hook(lambda *_: calls.append(1))
    original = F.interpolate

    def interpolations(training: bool) -> int:
        count = [0]

        def counting(*args, **kwargs):
            count[0] += 1
            return original(*args, **kwargs)

        with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
            mp.setattr(F, "interpolate", counting)
            net.train(training)(torch.randn(2, 3, *ODD))
        return count[0]

    # the regions run in both modes (OCR pools with them); training only adds the
    # resizing of the aux output to the input size for its loss
    assert interpolations(True) == interpolations(False) + 1
    assert calls == [1, 1]


def test_dejavu_trains_ocr_with_the_aux_loss_and_conditions_on_seg() -> None:
    from dejavu import DejaVu

    task = create_task("segmentation", num_classes=4)
    base = create_model("hrnet18_ocr", num_classes=4, **SMALL)
    model = DejaVu(base, task, conditioning=task.conditioning, redaction="random", seed=0)
    seen: dict[str, torch.Tensor] = {}
    model.conditioning.register_forward_hook(lambda m, args, out: seen.update(args[0]))
    batch = {"image": torch.randn(2, 3, 32, 48), "seg": torch.randint(0, 4, (2, 32, 48))}
    out = model.train()(batch)
    assert sorted(out["pred"]) == ["seg", "seg_aux"]
    assert seen["seg"] is out["pred"]["seg"]
    torch.testing.assert_close(out["task"], out["task/seg"] + 0.4 * out["task/seg_aux"])
    torch.testing.assert_close(out["loss"], out["task"] + out["regen_weight"] * out["regen"])
    assert model.crm is not None and model.crm.cond_channels == 4  # K, not 2K: seg only
    out["loss"].backward()
    assert base.ocr.regions[0].weight.grad is not None
