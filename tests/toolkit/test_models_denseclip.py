"""DenseCLIP (denseclip_tiny, denseclip_vit_b16, denseclip_r50): encoders, prompts, score
maps, the auxiliary loss, frozen text encoder, local CLIP weights, and a fit on ADE20K."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from dejavu.toolkit.cli import main
from dejavu.toolkit.complexity import model_complexity
from dejavu.toolkit.config import load_config
from dejavu.toolkit.data.ade20k import ADE20K_CLASSES
from dejavu.toolkit.export import export_checkpoint
from dejavu.toolkit.models import DenseCLIP, create_model
from dejavu.toolkit.models.denseclip import (
    CLIP_MEAN,
    CLIP_STD,
    DENSECLIP_TINY_CLIP,
    score_maps,
)
from dejavu.toolkit.tasks import create_task
from dejavu.toolkit.training import load_eval_model, run_fit

NAMES = ["sky", "road", "car"]
# A tiny ResNet CLIP (open_clip ModifiedResNet) to test the ResNet path at CPU size.
TINY_RN: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "width": 32, "heads": 2, "layers": 1},
}
# Small decoder widths for the tests that build networks directly.
SMALL = {
    "context_decoder_width": 16,
    "context_decoder_heads": 2,
    "context_decoder_layers": 1,
    "fpn_channels": 16,
    "decoder_channels": 16,
}
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("DEJAVU_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _tiny(**kwargs) -> DenseCLIP:
    return create_model("denseclip_tiny", num_classes=len(NAMES), class_names=NAMES, **kwargs)


def _to_clip(image: torch.Tensor) -> torch.Tensor:
    # ImageNet-normalised -> CLIP-normalised, written out independently of the network
    def channels(values) -> torch.Tensor:
        return torch.tensor(values).view(1, 3, 1, 1)

    rgb = image * channels([0.229, 0.224, 0.225]) + channels([0.485, 0.456, 0.406])
    return (rgb - channels(CLIP_MEAN)) / channels(CLIP_STD)


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("size", [(45, 61), (64, 96), (17, 30)])
def test_seg_and_aux_shapes_and_the_aux_output_only_in_training(size) -> None:
    net = _tiny()
    x = torch.randn(2, 3, *size)
    out = net.train()(x)
    assert list(out) == ["seg", "seg_aux"]
    assert out["seg"].shape == out["seg_aux"].shape == (2, 3, *size)
    with torch.no_grad():
        out = net.eval()(x)
    assert list(out) == ["seg"] and out["seg"].shape == (2, 3, *size)
    assert torch.isfinite(out["seg"]).all()


def test_other_heads_and_one_class_head() -> None:
    net = create_model("denseclip_tiny", task="multitask", num_classes=3, class_names=NAMES)
    out = net.train()(torch.randn(2, 3, 32, 64))
    assert sorted(out) == ["depth", "normals", "seg", "seg_aux"]
    assert (out["depth"] > 0).all()
    torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(2, 32, 64))
    with pytest.raises(ValueError, match="exactly one"):
        create_model("denseclip_tiny", task="depth", class_names=NAMES)


def test_aux_loss_is_the_score_maps_cross_entropy_with_weight_0_4() -> None:
    task = create_task("segmentation", num_classes=3)
    net = _tiny()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    y[0, :7] = 255
    pred = net.train()(x)
    parts = task.loss(pred, {"image": x, "seg": y})
    main_ce = F.cross_entropy(pred["seg"], y, ignore_index=255)
    aux_ce = F.cross_entropy(pred["seg_aux"], y, ignore_index=255)
    torch.testing.assert_close(parts["loss"], main_ce + 0.4 * aux_ce)


# ------------------------------------------------------------------ score maps


def test_score_maps_are_normalised_dot_products_over_tau() -> None:
    # no dropout, so that the training-mode forward (the only one with seg_aux) is
    # deterministic and embed() sees what forward() saw
    net = _tiny(context_decoder_dropout=0.0, dropout=0.0, tau=0.05).train()
    x = torch.randn(2, 3, 64, 96)  # a multiple of 32: no padding
    emb = net.embed(x)
    z, t = emb.dense_embedding, emb.text_embeddings
    assert z.shape == (2, 32, 4, 6) and t.shape == (2, 3, 32)  # stride 16, D = 32
    # cosine similarity of every pixel with every class, one pair at a time
    expected = torch.empty(2, 3, 4, 6)
    for b in range(2):
        for k in range(3):
            expected[b, k] = F.cosine_similarity(z[b], t[b, k].view(-1, 1, 1), dim=0)
    torch.testing.assert_close(score_maps(z, t), expected, rtol=1e-5, atol=1e-6)
    out = net(x)
    up = F.interpolate(expected / 0.05, size=(64, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["seg_aux"], up, rtol=1e-4, atol=1e-4)
    # and they are concatenated to the stride-16 level of the FPN (the patch grid)
    assert net.score_level == 2
    assert [c.in_channels for c in net.fpn.inner_blocks[net.score_level].modules()
            if isinstance(c, torch.nn.Conv2d)] == [32 + 3]  # fmt: skip


def test_score_maps_checks_shapes() -> None:
    with pytest.raises(ValueError, match="same D"):
        score_maps(torch.zeros(1, 8, 2, 2), torch.zeros(1, 3, 4))


def test_vit_embeddings_match_open_clip_at_clips_own_size() -> None:
    net = _tiny().eval()
    x = torch.randn(2, 3, 64, 64)  # DENSECLIP_TINY_CLIP's image size: no resized positions
    with torch.no_grad():
        levels, pooled, dense = net.encode_image(_to_clip(x))
        torch.testing.assert_close(pooled, net.clip.encode_image(_to_clip(x)))
        # embed() re-normalises ImageNet-normalised input to CLIP's statistics itself
        torch.testing.assert_close(net.embed(x).global_embedding, pooled)
    assert [tuple(f.shape[-2:]) for f in levels] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert dense.shape == (2, 32, 4, 4)


def test_resnet_dense_attention_pool_matches_clips_pooling() -> None:
    net = DenseCLIP({"seg": 3}, TINY_RN, NAMES, **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        levels, pooled, dense = net.encode_image(x)
        torch.testing.assert_close(pooled, net.clip.visual(x))  # CLIP's attention pooling
        out = net(torch.randn(1, 3, 45, 61))
    assert [f.shape[1] for f in levels] == [32, 64, 128, 256]
    assert [tuple(f.shape[-2:]) for f in levels] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert dense.shape == (2, 32, 2, 2) and net.score_level == 3  # the last level
    assert out["seg"].shape == (1, 3, 45, 61)


# ------------------------------------------------------------------ prompts


def test_learned_context_equal_to_word_embeddings_is_the_handcrafted_prompt() -> None:
    # CoOp-style prompts: with the context vectors set to the word embeddings of
    # "a photo of a", the class embedding is CLIP's embedding of "a photo of a <name>"
    tok = open_clip.tokenizer.SimpleTokenizer()
    words = tok.encode("a photo of a")
    net = _tiny(context_tokens=len(words)).eval()
    with torch.no_grad():
        net.contexts.copy_(net.clip.token_embedding.weight[words].unsqueeze(0))
        got = net.class_embeddings()
        prompts = tok([f"a photo of a {n}" for n in NAMES], context_length=77)
        expected = net.clip.encode_text(prompts)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert got.shape == (3, 32)
    assert net.class_tokens.shape == (3, 5)  # start, name, end, padding


def test_text_encoder_is_frozen_while_prompts_and_context_decoder_train() -> None:
    net = _tiny()
    frozen = {n: p for n, p in net.clip.named_parameters() if not n.startswith("visual.")}
    assert frozen and not any(p.requires_grad for p in frozen.values())
    out = net.train()(torch.randn(2, 3, 64, 64))
    (out["seg"].logsumexp(1).mean() + out["seg_aux"].logsumexp(1).mean()).backward()
    assert all(p.grad is None for p in frozen.values())
    for name in ("contexts", "gamma"):
        grad = getattr(net, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    for part in (net.context_decoder, net.clip.visual, net.fpn, net.merge, net.classifier):
        assert all(p.grad is not None for p in part.parameters()), type(part).__name__
    # gamma starts small, as in the paper: the decoder's update barely moves the prompts
    assert net.gamma.detach().eq(1e-4).all()


# ------------------------------------------------------------------ the paper's variants


def test_paper_variants_build_offline_with_clips_sizes() -> None:
    k = len(NAMES)
    vit = create_model("denseclip_vit_b16", num_classes=k, class_names=NAMES)
    rn = create_model("denseclip_r50", num_classes=k, class_names=NAMES)
    # CLIP's parameter counts as open_clip publishes them: 149.62 M and 102.01 M
    assert round(sum(p.numel() for p in vit.clip.parameters()) / 1e6, 2) == 149.62
    assert round(sum(p.numel() for p in rn.clip.parameters()) / 1e6, 2) == 102.01
    assert vit.out_indices == [3, 5, 7, 11] and vit.score_level == 2 and rn.score_level == 3
    fpn_in = [[b[0].in_channels for b in net.fpn.inner_blocks] for net in (vit, rn)]
    assert fpn_in == [[768, 768, 768 + k, 768], [256, 512, 1024, 2048 + k]]
    for net, dim in ((vit, 512), (rn, 1024)):
        dec = net.context_decoder
        assert len(dec.decoder) == 3 and dec.text_proj[1].out_features == 256
        assert dec.decoder[0].self_attn.heads == 4
        assert net.gamma.shape == (dim,) and net.gamma.detach().eq(1e-4).all()
        assert net.contexts.shape == (1, 8, 512) and net.class_tokens.shape == (k, 5)
        assert net.tau == 0.07
        assert isinstance(net.clip.transformer.resblocks[0].mlp.gelu, open_clip.model.QuickGELU)
        with torch.no_grad():
            out = net.eval()(torch.randn(1, 3, 64, 64))
        assert out["seg"].shape == (1, k, 64, 64)


# ------------------------------------------------------------------ weights and options


def test_clip_weights_load_from_a_local_file(tmp_path: Path) -> None:
    clip = open_clip.CLIP(**DENSECLIP_TINY_CLIP)
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    net = create_model("denseclip_tiny", num_classes=3, class_names=NAMES, pretrained=path)
    report = net.pretrained_report
    assert report.target == "CLIP model" and report.complete
    for name, value in clip.state_dict().items():
        torch.testing.assert_close(net.clip.state_dict()[name], value, msg=name)
    # a whole DenseCLIP network saved and loaded back
    torch.save(net.state_dict(), tmp_path / "net.pt")
    again = create_model(
        "denseclip_tiny", num_classes=3, class_names=NAMES, pretrained=tmp_path / "net.pt"
    )
    assert again.pretrained_report.target == "whole network" and again.pretrained_report.complete
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x)["seg"], net.eval()(x)["seg"])


def test_class_names_from_a_dataset_or_a_list() -> None:
    net = create_model("denseclip_tiny", num_classes=150, class_names="ade20k")
    assert net.class_names == ADE20K_CLASSES and net.class_tokens.shape == (150, 5)
    with pytest.raises(ValueError, match="class_names"):
        create_model("denseclip_tiny", num_classes=3)
    with pytest.raises(ValueError, match="3 classes, 2 names"):
        create_model("denseclip_tiny", num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="registered dataset"):
        create_model("denseclip_tiny", num_classes=3, class_names="nowhere")
    with pytest.raises(ValueError, match="no fixed class names"):
        create_model("denseclip_tiny", num_classes=3, class_names="folder")
    with pytest.warns(UserWarning, match="cut"):
        create_model("denseclip_tiny", num_classes=1, class_names=["a very long class name"])


def test_unknown_and_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\].*allowed: class_names"):
        _tiny(bogus=1)
    with pytest.raises(ValueError, match="out_indices"):
        _tiny(out_indices=[0, 1, 2])
    with pytest.raises(ValueError, match="tau"):
        _tiny(tau=0.0)
    with pytest.raises(ValueError, match="context_tokens"):
        _tiny(context_tokens=-1)
    with pytest.raises(ValueError, match="exceeds"):
        _tiny(context_tokens=80)
    with pytest.raises(ValueError, match="multiple of its heads"):
        _tiny(context_decoder_width=10, context_decoder_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        _tiny(dropout=1.0)
    patch8 = {**DENSECLIP_TINY_CLIP, "vision_cfg": {**DENSECLIP_TINY_CLIP["vision_cfg"]}}
    patch8["vision_cfg"]["patch_size"] = 8
    net = DenseCLIP({"seg": 3}, patch8, NAMES, out_indices=[0, 1, 2, 3], **SMALL)
    assert net.score_level == 1  # stride 8
    patch4 = {**patch8, "vision_cfg": {**patch8["vision_cfg"], "patch_size": 4}}
    with pytest.raises(ValueError, match="patch size 16 or 8"):
        DenseCLIP({"seg": 3}, patch4, NAMES, out_indices=[0, 1, 2, 3], **SMALL)


# ------------------------------------------------------------------ command line


def test_dejavu_models_lists_them(capsys) -> None:
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.split()
    for name in ("denseclip_tiny", "denseclip_vit_b16", "denseclip_r50"):
        assert name in listed, name


@pytest.fixture(scope="module")
def ade20k_runs(tmp_path_factory) -> dict[bool, Path]:
    """The CPU config on the real ADE20K sample: 20 steps with DejaVu, 2 without."""
    root = SHARED_DATA / "samples" / "ade20k"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DEJAVU_DATA to the shared data folder)")
    out = tmp_path_factory.mktemp("denseclip_fit")
    runs = {}
    for enabled, steps in ((True, 20), (False, 2)):
        name = "denseclip_tiny_" + ("dejavu" if enabled else "baseline")
        cfg = load_config(
            REPO / "configs" / "ade20k" / f"{name}.yaml",
            [
                f"output_dir={out}",
                f"data.root={root}",
                f"trainer.max_steps={steps}",
                *([] if enabled else ["trainer.val_every_n_epochs=1"]),
            ],
        )
        runs[enabled] = run_fit(cfg, enable_progress_bar=False).run_dir
    return runs


@pytest.mark.realdata
def test_twenty_step_fit_on_the_ade20k_sample(ade20k_runs) -> None:
    run = ade20k_runs[True]
    final = json.loads((run / "metrics.json").read_text())["final"]
    assert 0.0 <= final["seg/miou"] <= 1.0
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    logged = [r for r in rows if r.get("train/task/seg_aux")]
    assert len(logged) == 20, "every step logs the score maps' auxiliary loss"
    for r in logged:
        total = float(r["train/task/seg"]) + 0.4 * float(r["train/task/seg_aux"])
        assert float(r["train/task"]) == pytest.approx(total, rel=1e-5)
        assert float(r["train/regen"]) > 0
    net, meta = load_eval_model(run)
    assert meta["model"] == "denseclip_tiny" and meta["num_classes"] == 150
    assert meta["model_kwargs"] == {"class_names": "ade20k"}
    with torch.no_grad():
        assert list(net(torch.zeros(1, 3, 40, 56))) == ["seg"]


@pytest.mark.realdata
def test_dejavu_ts_on_denseclip_from_one_clip_file(tmp_path: Path) -> None:
    # The seed's ADE20K row at tiny scale: DenseCLIP initialised from a CLIP file and
    # DejaVu-TS's frozen CLIP read from the same file (open_clip's local-dir layout: its
    # config beside its weights, as the full-size config uses one ViT-B/16 file for both).
    root = SHARED_DATA / "samples" / "ade20k"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DEJAVU_DATA to the shared data folder)")
    clip_dir = tmp_path / "tiny_clip"
    clip_dir.mkdir()
    config = {"model_cfg": DENSECLIP_TINY_CLIP, "preprocess_cfg": {}}
    (clip_dir / "open_clip_config.json").write_text(json.dumps(config))
    weights = clip_dir / "open_clip_pytorch_model.bin"
    torch.save(open_clip.CLIP(**DENSECLIP_TINY_CLIP).state_dict(), weights)
    cfg = load_config(
        REPO / "configs" / "ade20k" / "denseclip_tiny_dejavu.yaml",
        [
            f"output_dir={tmp_path}",
            f"data.root={root}",
            "trainer.max_steps=2",
            "trainer.val_every_n_epochs=1",
            f"model.pretrained={weights}",
            f"dejavu.text={{weight: 0.5, model_name: 'local-dir:{clip_dir}', "
            f"pretrained: '{weights}'}}",
        ],
    )
    run = run_fit(cfg, enable_progress_bar=False).run_dir
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    texts = [float(r["train/text"]) for r in rows if r.get("train/text")]
    assert len(texts) == 2 and all(0.0 < t <= 2.0 for t in texts)
    net, meta = load_eval_model(run)
    assert meta["dejavu"] is True and list(net(torch.zeros(1, 3, 32, 32))) == ["seg"]


@pytest.mark.realdata
def test_inference_cost_is_the_same_with_and_without_dejavu(ade20k_runs) -> None:
    (base_d, meta_d), (base_b, meta_b) = (load_eval_model(ade20k_runs[e]) for e in (True, False))
    assert meta_d["dejavu"] is True and meta_b["dejavu"] is False
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (base_b, base_d)]
    assert shapes[0] == shapes[1]
    cost_b = model_complexity(base_b, (1, 3, 64, 96))
    cost_d = model_complexity(base_d, (1, 3, 64, 96))
    assert cost_b == cost_d and cost_b["gmacs"] > 0
    assert cost_b["params"] == sum(p.numel() for p in base_b.parameters())


@pytest.mark.realdata
def test_export_to_onnx_and_torchscript_is_verified(ade20k_runs, tmp_path: Path) -> None:
    import onnx

    ckpt = ade20k_runs[True] / "last.ckpt"
    result = export_checkpoint(
        ckpt, "onnx", tmp_path / "model.onnx", input_size=(64, 96), dynamo=False
    )
    assert result.ok and list(result.diffs) == ["seg"], result.diffs
    assert [o.name for o in onnx.load(str(result.path)).graph.output] == ["seg"]
    result = export_checkpoint(ckpt, "torchscript", tmp_path / "model.pt", input_size=(64, 96))
    assert result.ok and list(result.diffs) == ["seg"], result.diffs
