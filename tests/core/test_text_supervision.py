"""Tests for DejaVu-TS (dejavu.text_supervision) with a tiny random open_clip model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu.text_supervision import (
    TextSupervision,
    build_prompt,
    present_class_names,
    text_supervision_loss,
)

open_clip = pytest.importorskip("open_clip")

NAMES = ["road", "car", "sky", "tree"]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _tiny_clip(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return open_clip.CLIP(
        embed_dim=TINY_CFG["embed_dim"],
        vision_cfg=open_clip.CLIPVisionCfg(**TINY_CFG["vision_cfg"]),
        text_cfg=open_clip.CLIPTextCfg(**TINY_CFG["text_cfg"]),
    )


@pytest.fixture(scope="module")
def tokenizer():
    # The BPE vocabulary ships inside open_clip, so this works offline.
    return open_clip.tokenizer.SimpleTokenizer(context_length=16)


def _ts(tokenizer, **kw) -> TextSupervision:
    return TextSupervision(
        NAMES, model=kw.pop("model", None) or _tiny_clip(), tokenizer=tokenizer, **kw
    )


def _target() -> torch.Tensor:
    t = torch.full((2, 16, 24), 255, dtype=torch.long)
    t[0, :, :12] = 1  # car: 192 px
    t[0, :8, 12:] = 2  # sky: 96 px
    t[0, 8:, 12:18] = 0  # road: 48 px
    t[1] = 3  # tree everywhere
    return t


# ------------------------------------------------------------------ prompts


def test_build_prompt() -> None:
    assert build_prompt(["road", "car", "sky"]) == "a photo of road, car and sky"
    assert build_prompt(["road", "car"]) == "a photo of road and car"
    assert build_prompt(["road"]) == "a photo of road"
    assert build_prompt([]) == "a photo"
    assert build_prompt(["cat"], template="{} in the street") == "cat in the street"
    assert build_prompt([], template="{} in the street") == "in the street"
    with pytest.raises(ValueError, match="template"):
        build_prompt(["road"], template="a photo")
    with pytest.raises(ValueError, match="template"):
        build_prompt(["road"], template="{} and {}")


def test_present_class_names_orders_by_pixel_count() -> None:
    t = _target()
    assert present_class_names(t, NAMES) == [["car", "sky", "road"], ["tree"]]
    # Fractions of labelled pixels in image 0: car 192/336, sky 96/336, road 48/336.
    assert present_class_names(t, NAMES, min_fraction=0.2) == [["car", "sky"], ["tree"]]
    assert present_class_names(t, NAMES, min_fraction=1.0) == [[], ["tree"]]
    # Ties keep class-index order; an all-ignored image names nothing.
    tie = torch.tensor([[[2, 0], [0, 2]], [[255, 255], [255, 255]]])
    assert present_class_names(tie, NAMES) == [["road", "sky"], []]
    # A custom ignore label.
    assert present_class_names(torch.tensor([[[-1, 1]]]), NAMES, ignore_index=-1) == [["car"]]


def test_present_class_names_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"labels in \[0, 7\].*4 class names"):
        present_class_names(torch.tensor([[[0, 7]]]), NAMES)
    with pytest.raises(ValueError, match="B x H x W"):
        present_class_names(torch.zeros(1, 1, 2, 2, dtype=torch.long), NAMES)
    with pytest.raises(ValueError, match="integer dtype"):
        present_class_names(torch.zeros(1, 2, 2), NAMES)
    with pytest.raises(ValueError, match="min_fraction"):
        present_class_names(torch.zeros(1, 2, 2, dtype=torch.long), NAMES, min_fraction=1.5)


def test_text_supervision_loss_bounds() -> None:
    e = torch.randn(3, 8)
    assert text_supervision_loss(e, e).item() == pytest.approx(0.0, abs=1e-6)
    assert text_supervision_loss(e, -e).item() == pytest.approx(2.0)
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0]])
    assert text_supervision_loss(a, b).item() == pytest.approx(1 - 2**-0.5)


# --------------------------------------------------------------------- module


def test_loss_matches_manual_clip_computation(tokenizer) -> None:
    clip = _tiny_clip()
    ts = _ts(tokenizer, model=clip)
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 16, 24, generator=g)
    target = _target()
    assert ts.prompts(target) == ["a photo of car, sky and road", "a photo of tree"]

    # Independent reconstruction of the documented pipeline.
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    rgb = image * std + mean
    rgb = F.interpolate(rgb, size=(32, 32), mode="bilinear", antialias=True)
    cmean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    cstd = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(clip.encode_image((rgb - cmean) / cstd), dim=-1)
        txt = F.normalize(clip.encode_text(tokenizer(ts.prompts(target))), dim=-1)
    expected = (1 - (img * txt).sum(-1)).mean()
    torch.testing.assert_close(ts(image, target), expected, atol=1e-5, rtol=1e-5)


def test_loss_in_range_and_gradient_reaches_image_only(tokenizer) -> None:
    ts = _ts(tokenizer)
    for seed in range(3):
        image = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(seed))
        image.requires_grad_(True)
        loss = ts(image, _target())
        assert 0.0 <= loss.item() <= 2.0
        loss.backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in ts.clip_model.parameters())


def test_clip_stays_frozen_and_out_of_the_module_tree(tokenizer) -> None:
    ts = _ts(tokenizer)
    parent = nn.ModuleDict({"ts": ts, "head": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert ts.training and parent["head"].training
    assert not any(m.training for m in ts.clip_model.modules())
    ts.train()
    assert not ts.clip_model.training
    # Checkpoints and optimisers never see CLIP ...
    assert all(k.startswith("head.") for k in parent.state_dict())
    n_head = sum(p.numel() for p in parent["head"].parameters())
    assert sum(p.numel() for p in parent.parameters()) == n_head
    # ... so a parent can load its own state dict strictly.
    parent.load_state_dict(parent.state_dict(), strict=True)
    # ... and .apply(init) cannot reinitialise it.
    before = [p.clone() for p in ts.clip_model.parameters()]
    parent.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert all(torch.equal(a, b) for a, b in zip(before, ts.clip_model.parameters(), strict=True))


def test_to_moves_clip_and_clears_text_cache(tokenizer) -> None:
    ts = _ts(tokenizer)
    parent = nn.Sequential(ts)
    target = _target()
    image = torch.randn(2, 3, 16, 24)
    loss32 = ts(image, target)
    assert len(ts._text_cache) == 2
    parent.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in ts.clip_model.parameters())
    assert len(ts._text_cache) == 0
    loss64 = ts(image.double(), target)
    assert loss64.dtype == torch.float64
    torch.testing.assert_close(loss64.float(), loss32, atol=1e-4, rtol=0)


def test_text_embeddings_are_cached(tokenizer) -> None:
    calls: list[list[str]] = []

    def counting_tokenizer(texts: list[str]) -> torch.Tensor:
        calls.append(list(texts))
        return tokenizer(texts)

    ts = TextSupervision(NAMES, model=_tiny_clip(), tokenizer=counting_tokenizer)
    image = torch.randn(2, 3, 16, 24)
    target = _target()
    first = ts(image, target)
    second = ts(image, target)
    torch.testing.assert_close(first, second)
    assert calls == [["a photo of car, sky and road", "a photo of tree"]]
    # A batch with one known and one new prompt tokenizes only the new one; duplicates once.
    t2 = target.clone()
    t2[0] = 0
    ts(image, t2)
    assert calls[-1] == ["a photo of road"]
    ts(image, torch.zeros(2, 4, 4, dtype=torch.long))  # cached "a photo of road", twice
    assert len(calls) == 2
    ts(image, torch.full((2, 4, 4), 2, dtype=torch.long))
    assert calls[-1] == ["a photo of sky"]
    # A bounded cache evicts the least recently used prompt.
    small = TextSupervision(NAMES, model=_tiny_clip(), tokenizer=tokenizer, text_cache_size=1)
    small(image, target)
    assert list(small._text_cache) == ["a photo of tree"]


def test_loads_weights_from_a_local_file(tmp_path: Path, tokenizer) -> None:
    # Register a tiny architecture as a json config, save random weights, and
    # load them through the real open_clip.create_model(pretrained=<path>) route.
    name = "dejavu-test-tiny-clip"
    (tmp_path / f"{name}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(1)
    source = open_clip.create_model(name)
    weights = tmp_path / "tiny_clip.bin"
    torch.save(source.state_dict(), weights)

    ts = TextSupervision(NAMES, model_name=name, pretrained=weights)
    loaded = ts.clip_model
    for (k, a), (_, b) in zip(
        source.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert ts.clip_size == (32, 32)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    # The tokenizer came from the registered config (context length 16), offline.
    image = torch.randn(2, 3, 16, 24)
    reference = TextSupervision(NAMES, model=source.eval(), tokenizer=tokenizer)
    torch.testing.assert_close(ts(image, _target()), reference(image, _target()))


def _clip_folder(folder: Path, seed: int) -> tuple[nn.Module, Path]:
    """An open_clip local-dir: folder (config beside weights) of the tiny CLIP."""
    folder.mkdir()
    config = {"model_cfg": TINY_CFG, "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    source = _tiny_clip(seed)
    weights = folder / "open_clip_pytorch_model.bin"
    torch.save(source.state_dict(), weights)
    return source, weights


def test_loads_a_local_dir_folder_without_pretrained(tmp_path: Path) -> None:
    # The folder gives the architecture and the weights; pretrained may be left out,
    # or name the folder's own file (the study command's form); the tokenizer's
    # context length comes from the folder's config, offline.
    source, weights = _clip_folder(tmp_path / "clip", seed=3)
    for pretrained in (None, weights):
        ts = TextSupervision(
            NAMES, model_name=f"local-dir:{tmp_path / 'clip'}", pretrained=pretrained
        )
        for (k, a), (_, b) in zip(
            source.state_dict().items(), ts.clip_model.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), k
        assert ts.clip_size == (32, 32)
        assert ts.tokenizer(["a photo of road"]).shape == (1, 16)


def test_local_dir_folders_that_would_load_the_wrong_clip_are_refused(tmp_path: Path) -> None:
    _, weights = _clip_folder(tmp_path / "clip", seed=0)
    name = f"local-dir:{tmp_path / 'clip'}"
    # pretrained naming another file: open_clip would silently ignore it.
    other = tmp_path / "other.bin"
    torch.save(_tiny_clip(1).state_dict(), other)
    with pytest.raises(ValueError, match=r"other\.bin.*not the weights file"):
        TextSupervision(NAMES, model_name=name, pretrained=other)
    # Two weights files: which one open_clip picks is its own rule, not the user's.
    torch.save(_tiny_clip(1).state_dict(), tmp_path / "clip" / "extra.pth")
    with pytest.raises(FileNotFoundError, match=r"exactly one.*extra\.pth"):
        TextSupervision(NAMES, model_name=name)
    # No weights at all: open_clip would only warn and return a random CLIP.
    for f in (weights, tmp_path / "clip" / "extra.pth"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"exactly one.*found none"):
        TextSupervision(NAMES, model_name=name)
    with pytest.raises(FileNotFoundError, match=r"open_clip_config\.json"):
        TextSupervision(NAMES, model_name=f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match=r"hf-hub.*local-dir"):
        TextSupervision(NAMES, model_name="hf-hub:timm/ViT-B-16-SigLIP")


def test_clear_errors(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(ValueError, match=r"pretrained='/path/to/.*model=\.\.\."):
        TextSupervision(NAMES)
    missing = tmp_path / "nope.bin"
    with pytest.raises(FileNotFoundError, match=r"nope\.bin"):
        TextSupervision(NAMES, pretrained=missing)
    # A pretrained *tag* is not a file: it is refused, never downloaded.
    with pytest.raises(FileNotFoundError, match="openai"):
        TextSupervision(NAMES, pretrained="openai")
    with pytest.raises(ValueError, match="either model"):
        TextSupervision(NAMES, pretrained=missing, model=_tiny_clip(), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="class_names"):
        TextSupervision("road", model=_tiny_clip(), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="template"):
        _ts(tokenizer, template="no placeholder")
    with pytest.raises(ValueError, match="image_std"):
        _ts(tokenizer, image_std=(0.2, 0.0, 0.2))
    ts = _ts(tokenizer)
    with pytest.raises(ValueError, match="regenerated must have 3 channels"):
        ts(torch.randn(2, 4, 16, 24), _target())
    with pytest.raises(ValueError, match="batch size"):
        ts(torch.randn(3, 3, 16, 24), _target())
    with pytest.raises(ValueError, match="B x H x W"):
        ts(torch.randn(2, 3, 16, 24), _target().unsqueeze(1))


def test_inside_dejavu_text_loss_reaches_the_base_network(tokenizer) -> None:
    from dejavu import DejaVu

    torch.manual_seed(0)
    base = nn.Conv2d(3, len(NAMES), 3, padding=1)
    ts = _ts(tokenizer)
    model = DejaVu(
        base,
        lambda pred, batch: torch.nn.functional.cross_entropy(
            pred["seg"], batch["seg"], ignore_index=255
        ),
        cond_channels=len(NAMES),
        crm_kwargs={"width": 8, "depth": 2},
        text_supervision=ts,
        text_weight=0.5,
        seed=0,
    )
    batch = {"image": torch.randn(2, 3, 16, 24), "seg": _target()}
    out = model(batch)
    assert 0.0 <= float(out["text"]) <= 2.0
    torch.testing.assert_close(out["text"], ts(out["regenerated"], batch["seg"]))
    out["text"].backward()
    assert base.weight.grad is not None and base.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ts.clip_model.parameters())
    # CLIP is not part of the checkpoint; the base and CRM are.
    assert not any("clip" in k for k in model.state_dict())
