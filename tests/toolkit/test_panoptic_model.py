"""Mask2Former (transformers) as a base network: outputs, its loss, local weights, DejaVu."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from dejavu.dejavu import DejaVu
from dejavu.mask_classification import query_keys, semantic_log_scores
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.models import create_model, list_models
from dejavu.toolkit.models.mask2former import Mask2Former, mask2former_config
from dejavu.toolkit.tasks import create_task

CATEGORIES = [
    {"id": 0, "name": "wall", "isthing": False},
    {"id": 1, "name": "box", "isthing": True},
    {"id": 2, "name": "floor", "isthing": False},
]
KEYS = query_keys("panoptic")


def synthetic_batch(b: int = 2, h: int = 32, w: int = 48, seed: int = 0) -> dict:
    """The panoptic data contract: floor below, wall above, two boxes (things) with
    instance ids, a VOID strip and, in image 0, a crowd box (thing pixels, instance 0)."""
    g = torch.Generator().manual_seed(seed)
    seg = torch.zeros(b, h, w, dtype=torch.long)
    seg[:, h // 2 :] = 2
    inst = torch.zeros_like(seg)
    seg[:, 8:20, 4:16] = 1
    inst[:, 8:20, 4:16] = 1
    seg[:, 10:24, 28:40] = 1
    inst[:, 10:24, 28:40] = 7
    seg[:, :2] = 255
    seg[0, 26:30, 18:24] = 1  # crowd: a thing class with instance 0
    image = seg.clamp(max=3).float()[:, None].expand(b, 3, h, w) / 3
    return {
        "image": image + 0.1 * torch.randn(b, 3, h, w, generator=g),
        "seg": seg,
        "instance": inst,
    }


def test_outputs_in_training_and_evaluation() -> None:
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3)
    assert isinstance(net, Mask2Former) and net.heads == {"panoptic": 3}
    x = torch.randn(2, 3, 45, 61)  # not a multiple of 32 (padded) nor of 4
    out = net.train()(x)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "panoptic": (2, 3, 45, 61),
        KEYS.class_logits: (2, 16, 4),
        KEYS.mask_logits: (2, 16, 12, 16),  # ceil(45 / 4) x ceil(61 / 4)
        KEYS.class_layers: (2, 2, 16, 4),  # decoder_layers 3: two intermediate layers
        KEYS.mask_layers: (2, 2, 16, 12, 16),
    }
    with torch.no_grad():
        out = net.eval()(x)
    assert sorted(out) == sorted(["panoptic", KEYS.class_logits, KEYS.mask_logits])
    # the dense map is the semantic log-score map of the query outputs
    expected = semantic_log_scores(out[KEYS.class_logits], out[KEYS.mask_logits], (45, 61))
    torch.testing.assert_close(out["panoptic"], expected)


def test_full_size_configs_follow_the_paper() -> None:
    t = mask2former_config("swin_t", 133)
    assert t.backbone_config.embed_dim == 96 and list(t.backbone_config.depths) == [2, 2, 6, 2]
    assert (t.num_queries, t.decoder_layers, t.hidden_dim, t.encoder_layers) == (100, 10, 256, 6)
    big = mask2former_config("swin_l", 133)
    assert list(big.backbone_config.num_heads) == [6, 12, 24, 48] and big.num_queries == 200
    assert big.backbone_config.window_size == 12
    assert mask2former_config("swin_l", 150, num_queries=100).num_queries == 100
    for name in ("mask2former_tiny", "mask2former_swin_t", "mask2former_swin_l"):
        assert name in list_models("mask2former_*")


def test_bad_names_heads_and_options() -> None:
    with pytest.raises(ValueError, match=r"unknown model name 'mask2former_swin_xl'.*mask2former_"):
        create_model("mask2former_swin_xl", task="panoptic", num_classes=3)
    with pytest.raises(ValueError, match=r"cannot predict the \['panoptic'\] head.*mask2former"):
        create_model("fpn_test_resnet", task="panoptic", num_classes=3)
    with pytest.raises(ValueError, match="one class head"):
        create_model("mask2former_tiny", heads={"seg": 3, "depth": 1})
    with pytest.raises(ValueError, match=r"unknown Mask2Former option\(s\) \['class_weight'\]"):
        create_model("mask2former_tiny", task="panoptic", num_classes=3, class_weight=1.0)
    with pytest.raises(ValueError, match="unknown Mask2Former backbone option"):
        create_model("mask2former_tiny", task="panoptic", num_classes=3, backbone={"width": 2})


def test_loss_is_finite_and_decreases_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).train()
    batch = synthetic_batch()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = task.loss(net(batch["image"]), batch)["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0], losses


def test_loss_counts_every_decoder_layer() -> None:
    torch.manual_seed(1)
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).train()
    batch = synthetic_batch(b=1)
    pred = net(batch["image"])
    final_only = {k: v for k, v in pred.items() if k not in (KEYS.class_layers, KEYS.mask_layers)}
    # the point sampling is random: the same seed for both, and the final layer's
    # terms come first, so the full loss is the final layer's plus the rest
    torch.manual_seed(5)
    full = float(task.loss(pred, batch)["panoptic"])
    torch.manual_seed(5)
    last = float(task.loss(final_only, batch)["panoptic"])
    assert full > last > 0


def test_mask_loss_settings_reach_the_criterion() -> None:
    """``task.mask_loss`` overrides Mask2Former's settings: with the mask terms off the
    loss is the class term alone, which scales with ``class_weight``; fewer points
    still give a finite loss."""
    torch.manual_seed(2)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).train()
    batch = synthetic_batch()
    pred = net(batch["image"])
    losses = []
    for weight in (2.0, 4.0):
        task = create_task(
            "panoptic",
            num_classes=3,
            categories=CATEGORIES,
            mask_loss={"class_weight": weight, "mask_weight": 0, "dice_weight": 0},
        )
        torch.manual_seed(5)  # the matcher's point sampling is random
        losses.append(float(task.loss(pred, batch)["loss"]))
    assert losses[1] == pytest.approx(2 * losses[0], rel=1e-5)
    few = create_task(
        "panoptic", num_classes=3, categories=CATEGORIES, mask_loss={"num_points": 64}
    )
    assert few.mask_loss == {"num_points": 64.0}
    assert torch.isfinite(few.loss(pred, batch)["loss"])
    with pytest.raises(ValueError, match=r"unknown loss settings \['points'\]"):
        create_task("panoptic", num_classes=3, categories=CATEGORIES, mask_loss={"points": 64})


def test_an_image_without_segments_and_labels_out_of_range() -> None:
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).train()
    batch = synthetic_batch()
    batch["seg"] = torch.full_like(batch["seg"], 255)  # all VOID: no target mask at all
    loss = task.loss(net(batch["image"]), batch)["loss"]
    assert torch.isfinite(loss) and float(loss) > 0  # every query learns "no object"
    bad = synthetic_batch()
    bad["seg"][0, 5, 5] = 3
    with pytest.raises(ValueError, match=r"labels \[3\] outside the classes 0\.\.2"):
        task.loss(net(bad["image"]), bad)


def test_regeneration_gradient_reaches_mask2former() -> None:
    torch.manual_seed(0)
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).train()
    model = DejaVu(
        net,
        task.loss,
        conditioning=task.conditioning,
        crm="forward",
        crm_kwargs={"width": 8, "depth": 2},
        seed=0,
    )
    assert model.crm is not None and model.crm.cond_channels == 4  # 3 classes + boundary
    out = model(synthetic_batch())
    out["regen"].backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert any(float(g.abs().sum()) > 0 for n, g in grads.items() if "class_predictor" in n)
    assert any(float(g.abs().sum()) > 0 for n, g in grads.items() if "pixel_level_module" in n)


def test_crm_anchored_to_the_panoptic_truth() -> None:
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3)
    model = DejaVu(
        net,
        task.loss,
        conditioning=task.conditioning,
        crm="forward",
        crm_kwargs={"width": 8, "depth": 2},
        crm_truth_weight=1.0,
        seed=0,
    )
    out = model(synthetic_batch())
    assert float(out["regen_truth"]) > 0 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("crm", ["zero", "recursive"])
def test_class_channel_crms_get_the_semantic_channels(crm: str) -> None:
    task = create_task("panoptic", num_classes=3, categories=CATEGORIES)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3)
    kwargs = {"num_groups": 3} if crm == "recursive" else {}
    model = DejaVu(
        net, task.loss, conditioning=task.conditioning, crm=crm, crm_kwargs=kwargs, seed=0
    )
    if crm == "zero":
        assert model.crm.class_channels == slice(0, 3)  # the boundary channel is no class
    else:  # one group per class; the boundary channel rides along with each
        assert model.crm._class_idx.tolist() == [0, 1, 2]
        assert model.crm._other_idx.tolist() == [3]
    out = model(synthetic_batch())
    assert torch.isfinite(out["loss"])


def test_semantic_segmentation_with_mask2former() -> None:
    """The seg head predicted by mask classification: Mask2Former's loss on one mask per
    class present, and the mIoU of the semantic map's argmax."""
    torch.manual_seed(0)
    task = create_task("segmentation", num_classes=3)
    net = create_model("mask2former_tiny", num_classes=3).train()
    batch = synthetic_batch()
    pred = net(batch["image"])
    assert query_keys("seg").class_logits in pred
    loss = task.loss(pred, batch)["loss"]
    cross_entropy = torch.nn.functional.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)
    assert torch.isfinite(loss) and not torch.isclose(loss, cross_entropy)
    loss.backward()
    metrics = task.metrics()
    with torch.no_grad():
        metrics.update(net.eval()(batch["image"]), batch)
    assert 0.0 <= metrics.compute()["seg/miou"] <= 1.0


def test_local_weights_load_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model("mask2former_tiny", task="panoptic", num_classes=3).eval()
    net.model.save_pretrained(tmp_path / "weights")
    torch.manual_seed(1)
    loaded = create_model(
        "mask2former_tiny", task="panoptic", num_classes=3, pretrained=tmp_path / "weights"
    ).eval()
    assert loaded.pretrained_report.complete
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    # another number of classes: everything but the class predictor loads, and says so
    with pytest.warns(UserWarning, match="class_predictor"):
        other = create_model(
            "mask2former_tiny", task="panoptic", num_classes=5, pretrained=tmp_path / "weights"
        )
    # the class predictor and the (unused) criterion's class weights have K + 1 entries
    mismatched = other.pretrained_report.mismatched
    assert {m.split(".")[0] for m in mismatched} == {"class_predictor", "criterion"}
    torch.testing.assert_close(other.get_backbone().state_dict(), net.get_backbone().state_dict())
    with pytest.raises(ConfigError, match="not a transformers model folder"):
        create_model("mask2former_tiny", task="panoptic", num_classes=3, pretrained=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="another architecture"):
            create_model(
                "mask2former_tiny",
                task="panoptic",
                num_classes=3,
                pretrained=tmp_path / "weights",
                backbone={"embed_dim": 32},
                hidden_dim=64,
                feature_size=128,
                mask_feature_size=128,
            )


def test_hms_refuses_a_mask_classification_base() -> None:
    with pytest.raises(ValueError, match=r"HMS fuses per-pixel outputs.*mask classification"):
        create_model("hms_mask2former_tiny", task="segmentation", num_classes=3)
