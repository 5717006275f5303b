"""Visualisation: colours worked out by hand, palettes, panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.toolkit.tasks import create_task
from dejavu.toolkit.visualize import (
    CAMVID_PALETTE,
    CITYSCAPES_PALETTE,
    colorize_depth,
    colorize_normals,
    colorize_prediction,
    colorize_segmentation,
    default_palette,
    denormalize,
    make_panel,
    save_panel,
    training_panel,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def test_denormalize_inverts_normalisation():
    rgb = torch.tensor([[0.0, 1.0], [0.5, 0.25]]).expand(3, 2, 2).clone()
    rgb[1] = 1.0 - rgb[1]
    norm = (rgb - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    out = denormalize(norm, MEAN, STD)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    expected = np.floor(rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    # values beyond [0, 1] clip instead of wrapping around
    assert denormalize(torch.full((3, 1, 1), 100.0), MEAN, STD).tolist() == [[[255, 255, 255]]]
    assert denormalize(torch.full((3, 1, 1), -100.0), MEAN, STD).tolist() == [[[0, 0, 0]]]


def test_denormalize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3 x H x W"):
        denormalize(torch.zeros(1, 3, 2, 2), MEAN, STD)
    with pytest.raises(ValueError, match="3 values"):
        denormalize(torch.zeros(3, 2, 2), (0.5,), STD)


def test_segmentation_palette_and_ignore():
    labels = torch.tensor([[0, 1, 255], [18, 19, -1]])
    out = colorize_segmentation(labels, 19)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [128, 64, 128]  # Cityscapes road
    assert out[0, 1].tolist() == [244, 35, 232]  # sidewalk
    assert out[1, 0].tolist() == [119, 11, 32]  # bicycle
    for ignored in (out[0, 2], out[1, 1], out[1, 2]):  # 255 and out-of-range labels
        assert ignored.tolist() == [0, 0, 0]


def test_known_palettes_by_class_count():
    assert np.array_equal(default_palette(19), CITYSCAPES_PALETTE)
    assert np.array_equal(default_palette(11), CAMVID_PALETTE)
    assert default_palette(11)[0].tolist() == [128, 128, 128]  # CamVid sky


def test_generic_palette_is_deterministic_distinct_and_never_black():
    a, b = default_palette(150), default_palette(150)
    assert np.array_equal(a, b)
    assert len({tuple(c) for c in a.tolist()}) == 150
    assert not (a == 0).all(axis=1).any()
    # VOC's bit-interleaved colours 1, 2, 3: (128,0,0), (0,128,0), (128,128,0)
    assert default_palette(6)[:3].tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]


def test_custom_palette_and_errors():
    out = colorize_segmentation(np.array([[1, 0]]), 2, palette=[(1, 2, 3), (4, 5, 6)])
    assert out.tolist() == [[[4, 5, 6], [1, 2, 3]]]
    with pytest.raises(ValueError, match="palette"):
        colorize_segmentation(np.array([[0]]), 3, palette=[(1, 2, 3)])
    with pytest.raises(ValueError, match="integers"):
        colorize_segmentation(np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match="H x W"):
        colorize_segmentation(np.zeros((1, 2, 2), np.int64), 3)


def test_depth_colours_follow_the_colormap_and_invalid_is_black():
    import matplotlib

    depth = torch.tensor([[[0.0, 1.0, 2.0, 3.0, float("nan")]]])
    out = colorize_depth(depth)
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    cmap = matplotlib.colormaps["magma_r"]
    assert out[0, 1].tolist() == list(cmap(0.0, bytes=True)[:3])  # nearest valid = low end
    assert out[0, 3].tolist() == list(cmap(1.0, bytes=True)[:3])
    assert out[0, 2].tolist() == list(cmap(0.5, bytes=True)[:3])
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 4].tolist() == [0, 0, 0]
    # a fixed range makes equal depths equal colours across images
    fixed = colorize_depth(np.array([[2.0]]), vmin=1.0, vmax=3.0)
    assert fixed[0, 0].tolist() == out[0, 2].tolist()
    assert colorize_depth(np.zeros((2, 2))).max() == 0


def test_normals_colours():
    n = torch.zeros(3, 1, 4)
    n[:, 0, 0] = torch.tensor([0.0, 0.0, 1.0])
    n[:, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    n[:, 0, 2] = torch.tensor([0.0, -1.0, 0.0])
    out = colorize_normals(n)  # pixel 3 stays all-zero: invalid
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [128, 128, 255]
    assert out[0, 1].tolist() == [255, 128, 128]
    assert out[0, 2].tolist() == [128, 0, 128]
    assert out[0, 3].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="3 x H x W"):
        colorize_normals(torch.zeros(2, 4, 4))


def test_colorize_prediction_dispatch():
    logits = torch.zeros(3, 2, 2)
    logits[2] = 1.0
    assert (colorize_prediction("seg", logits, 3) == default_palette(3)[2]).all()
    assert colorize_prediction("depth", torch.ones(1, 2, 2)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="unknown head 'edges'"):
        colorize_prediction("edges", torch.zeros(1, 2, 2))


def test_make_panel_layout_and_errors(tmp_path):
    img = np.full((12, 16, 3), 200, np.uint8)
    one = make_panel([("a", img)], dpi=40)
    wide = make_panel([("a", img), ("b", img), ("c", img)], dpi=40)
    tall = make_panel([("a", [img, img, img])], rows=["x", "y", "z"], dpi=40)
    for p in (one, wide, tall):
        assert p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8
    assert wide.shape[1] > 2 * one.shape[1] and wide.shape[0] == one.shape[0]
    assert tall.shape[0] > 2 * one.shape[0]
    # grey (H x W) images and images of different sizes in one row are fine
    make_panel([("a", [img]), ("b", [img[:6, :8, 0]])], dpi=20)
    with pytest.raises(ValueError, match="same, non-zero number"):
        make_panel([("a", [img, img]), ("b", [img])])
    with pytest.raises(ValueError, match="rows"):
        make_panel([("a", [img])], rows=["x", "y"])
    with pytest.raises(ValueError, match="at least one"):
        make_panel([])
    path = save_panel([("a", img)], tmp_path / "sub" / "p.png", dpi=20)
    from PIL import Image

    assert Image.open(path).size[::-1] == make_panel([("a", img)], dpi=20).shape[:2]


def _batch(b=3, h=8, w=12):
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(b, 3, h, w, generator=g),
        "seg": torch.randint(0, 4, (b, h, w), generator=g),
        "depth": torch.rand(b, 1, h, w, generator=g) + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1),
    }


def test_training_panel_columns_follow_what_is_present():
    batch = _batch()
    task = create_task("multitask", num_classes=4)
    pred = {
        "seg": torch.randn(3, 4, 8, 12),
        "depth": torch.rand(3, 1, 8, 12),
        "normals": batch["normals"],
    }
    baseline = training_panel(batch, {"pred": pred}, task, MEAN, STD, max_images=2)
    dejavu = training_panel(
        batch,
        {"pred": pred, "redacted": batch["image"] * 0, "regenerated": torch.randn(3, 3, 4, 6)},
        task,
        MEAN,
        STD,
        max_images=2,
    )
    # 1 input + 3 heads x (truth, prediction) columns, + redacted and regenerated with DejaVu
    assert dejavu.shape[0] == baseline.shape[0]
    assert dejavu.shape[1] / baseline.shape[1] == pytest.approx(9 / 7, rel=0.05)
    three = training_panel(batch, {"pred": pred}, task, MEAN, STD, max_images=3)
    assert three.shape[0] > baseline.shape[0]
    with pytest.raises(ValueError, match="max_images"):
        training_panel(batch, {"pred": pred}, task, MEAN, STD, max_images=0)
