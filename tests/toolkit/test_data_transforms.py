"""Joint transforms: every target follows the image, with its own resampling and padding."""

from __future__ import annotations

import pytest
import torch

from dejavu.toolkit.data.collate import pad_collate
from dejavu.toolkit.data.transforms import (
    ColorJitter,
    Compose,
    Normalize,
    PadToMultiple,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    crop_sample,
    default_eval_transform,
    default_train_transform,
    hflip_sample,
    pad_sample,
    resize_sample,
    sample_size,
)


def _coded_sample(h: int = 6, w: int = 8, seed: int = 0) -> dict:
    """A sample whose every target is a function of the label, so alignment is checkable.

    seg in 0..4; image channels = seg / 10 + c / 100; depth = seg + 1; instance = 2 seg;
    normals = a unit vector chosen by seg.
    """
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, 5, (h, w), generator=g)
    image = torch.stack([seg / 10 + c / 100 for c in range(3)]).float()
    dirs = torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=1)
    normals = dirs[seg].permute(2, 0, 1).contiguous()
    return {
        "image": image,
        "seg": seg,
        "depth": (seg + 1).float().unsqueeze(0),
        "normals": normals,
        "instance": seg * 2,
        "name": "x",
        "_dirs": dirs,
    }


def _strip(sample: dict) -> tuple[dict, torch.Tensor]:
    s = dict(sample)
    return s, s.pop("_dirs")


def _assert_consistent(out: dict, dirs: torch.Tensor) -> None:
    """Every valid pixel's targets and image must encode the same label."""
    seg = out["seg"]
    valid = seg != 255
    lab = seg[valid]
    for c in range(3):
        torch.testing.assert_close(out["image"][c][valid], lab / 10 + c / 100)
    torch.testing.assert_close(out["depth"][0][valid], (lab + 1).float())
    torch.testing.assert_close(out["instance"][valid], lab * 2)
    torch.testing.assert_close(out["normals"].permute(1, 2, 0)[valid], dirs[lab])


def test_hflip_mirrors_everything_and_negates_normal_x() -> None:
    s, _ = _strip(_coded_sample())
    out = hflip_sample(s)
    for key in ("image", "depth"):
        torch.testing.assert_close(out[key], s[key].flip(-1))
    assert torch.equal(out["seg"], s["seg"].flip(-1))
    assert torch.equal(out["instance"], s["instance"].flip(-1))
    n = s["normals"].flip(-1)
    torch.testing.assert_close(out["normals"][0], -n[0])
    torch.testing.assert_close(out["normals"][1:], n[1:])
    assert out["name"] == "x"
    # The input is not modified in place.
    assert torch.equal(s["normals"], _strip(_coded_sample())[0]["normals"])


def test_random_hflip_probability_extremes() -> None:
    s, _ = _strip(_coded_sample())
    flipped = RandomHorizontalFlip(p=1.0)(s)
    assert torch.equal(flipped["seg"], s["seg"].flip(-1))
    assert RandomHorizontalFlip(p=0.0)(s) is s


def test_random_hflip_flips_about_half_the_time() -> None:
    g = torch.Generator().manual_seed(0)
    t = RandomHorizontalFlip(0.5, generator=g)
    s = {"seg": torch.arange(4).view(1, 4)}
    flips = sum(int(t(s)["seg"][0, 0]) == 3 for _ in range(400))
    assert 160 < flips < 240


def test_random_crop_keeps_alignment_and_pads_with_each_targets_value() -> None:
    s, dirs = _strip(_coded_sample(6, 8))
    g = torch.Generator().manual_seed(1)
    t = RandomCrop((9, 5), generator=g)
    for _ in range(20):
        out = t(s)
        assert sample_size(out) == (9, 5)
        _assert_consistent(out, dirs)
        pad = out["seg"] == 255
        # 6 rows of data, so 3 padded rows in every 9 x 5 crop.
        assert int(pad.sum()) == 3 * 5
        assert (out["image"][:, pad] == 0).all()
        assert (out["depth"][0][pad] == 0).all()
        assert (out["normals"][:, pad] == 0).all()
        assert (out["instance"][pad] == 0).all()


def test_crop_sample_takes_the_exact_window() -> None:
    s, _ = _strip(_coded_sample(6, 8))
    out = crop_sample(s, 1, 2, 3, 4)
    assert torch.equal(out["seg"], s["seg"][1:4, 2:6])
    torch.testing.assert_close(out["normals"], s["normals"][:, 1:4, 2:6])
    with pytest.raises(ValueError, match="does not fit"):
        crop_sample(s, 4, 0, 3, 4)


def test_random_crop_covers_all_offsets() -> None:
    g = torch.Generator().manual_seed(0)
    s = {"seg": torch.arange(5).view(1, 5).expand(3, 5).contiguous()}
    lefts = {int(RandomCrop((3, 2), generator=g)(s)["seg"][0, 0]) for _ in range(100)}
    assert lefts == {0, 1, 2, 3}


def test_scale_uses_nearest_for_targets() -> None:
    s, dirs = _strip(_coded_sample(7, 9))
    g = torch.Generator().manual_seed(2)
    t = RandomScale((0.37, 1.9), generator=g)
    for _ in range(10):
        out = t(s)
        assert set(out["seg"].unique().tolist()) <= set(s["seg"].unique().tolist())
        assert set(out["depth"].unique().tolist()) <= set(s["depth"].unique().tolist())
        assert set(out["instance"].unique().tolist()) <= set(s["instance"].unique().tolist())
        # Targets stay consistent with each other (the image is bilinear, checked below).
        lab = out["seg"]
        torch.testing.assert_close(out["normals"].permute(1, 2, 0), dirs[lab])
        torch.testing.assert_close(out["depth"][0], (lab + 1).float())


def test_scale_by_two_repeats_labels_and_keeps_image_aligned() -> None:
    s, _ = _strip(_coded_sample(4, 5))
    out = RandomScale((2.0, 2.0))(s)
    expected = s["seg"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out["seg"], expected)
    # Bilinear upsampling by 2 of a pixel whose 3x3 neighbourhood has one label keeps that value.
    img = out["image"][0]
    seg = s["seg"]
    for i in range(1, 3):
        for j in range(1, 4):
            if (seg[i - 1 : i + 2, j - 1 : j + 2] == seg[i, j]).all():
                block = img[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                torch.testing.assert_close(block, torch.full_like(block, seg[i, j] / 10))


def test_resize_int_sets_shorter_side_and_tuple_is_exact() -> None:
    s = {"image": torch.rand(3, 10, 20), "seg": torch.zeros(10, 20, dtype=torch.long)}
    assert sample_size(Resize(5)(s)) == (5, 10)
    assert sample_size(Resize((7, 3))(s)) == (7, 3)
    out = resize_sample(s, (4, 4))
    assert out["seg"].dtype == torch.long and out["image"].dtype == torch.float32


def test_color_jitter_changes_only_the_image() -> None:
    s, _ = _strip(_coded_sample())
    s["image"] = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(0))
    out = ColorJitter(0.5, 0.5, 0.5, 0.1, generator=torch.Generator().manual_seed(3))(s)
    for key in ("seg", "depth", "normals", "instance"):
        assert out[key] is s[key]
    assert not torch.allclose(out["image"], s["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    again = ColorJitter(0.5, 0.5, 0.5, 0.1, generator=torch.Generator().manual_seed(3))(s)
    torch.testing.assert_close(again["image"], out["image"])


def test_brightness_only_jitter_scales_the_image() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.full((3, 2, 2), 0.4)
    out = ColorJitter(0.5, 0.0, 0.0, 0.0, generator=g)({"image": image})["image"]
    factor = out[0, 0, 0] / 0.4
    assert 0.5 <= factor <= 1.5
    torch.testing.assert_close(out, image * factor)


def test_pad_to_multiple_values() -> None:
    s, _ = _strip(_coded_sample(6, 9))
    out = PadToMultiple(4)(s)
    assert sample_size(out) == (8, 12)
    assert torch.equal(out["seg"][:6, :9], s["seg"])
    assert (out["seg"][6:] == 255).all() and (out["seg"][:, 9:] == 255).all()
    for key, fill in (("image", 0.0), ("depth", 0.0), ("normals", 0.0)):
        assert (out[key][:, 6:] == fill).all() and (out[key][:, :, 9:] == fill).all()
    assert (out["instance"][6:] == 0).all()
    assert PadToMultiple(3)(s) is s  # already a multiple


def test_pad_sample_per_channel_image_fill() -> None:
    out = pad_sample({"image": torch.zeros(3, 1, 1)}, (1, 0, 0, 0), image_fill=(0.1, 0.2, 0.3))
    torch.testing.assert_close(out["image"][:, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(out["image"][:, 0, 1], torch.zeros(3))


def test_normalize_matches_formula() -> None:
    image = torch.rand(3, 2, 3)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = Normalize(mean, std)({"image": image, "seg": torch.zeros(2, 3).long()})
    expected = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(out["image"], expected)


def test_default_train_transform_output() -> None:
    s, _ = _strip(_coded_sample(20, 30))
    s["image"] = torch.rand(3, 20, 30)
    t = default_train_transform((16, 12), generator=torch.Generator().manual_seed(0))
    out = t(s)
    assert sample_size(out) == (16, 12)
    assert set(out) == set(s)
    assert set(out["seg"].unique().tolist()) <= set(range(5)) | {255}
    # Normalised with ImageNet statistics: values leave [0, 1].
    assert out["image"].min() < 0
    lengths = out["normals"].norm(dim=0)
    assert torch.allclose(lengths[lengths > 0], torch.ones(()))
    t2 = default_train_transform((16, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t2(s)["image"], out["image"])


def test_default_eval_transform_pads_with_mean_and_ignore() -> None:
    mean = (0.5, 0.5, 0.5)
    s = {"image": torch.full((3, 5, 6), 0.5), "seg": torch.zeros(5, 6, dtype=torch.long)}
    out = default_eval_transform(mean, (0.2, 0.2, 0.2), pad_to_multiple=4)(s)
    assert sample_size(out) == (8, 8)
    assert (out["image"] == 0).all()  # the mean, and the padding
    assert (out["seg"][5:] == 255).all()


def test_compose_applies_in_order() -> None:
    s = {"image": torch.rand(3, 8, 8)}
    out = Compose([Resize((4, 4)), PadToMultiple(3)])(s)
    assert sample_size(out) == (6, 6)
    with pytest.raises(ValueError, match="callables"):
        Compose([1])  # type: ignore[list-item]


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="'keep'"):
        hflip_sample({"image": torch.zeros(3, 2, 2), "keep": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="differ in size"):
        sample_size({"image": torch.zeros(3, 2, 2), "seg": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="must be 2-D"):
        sample_size({"seg": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="size"):
        RandomCrop((0, 4))
    with pytest.raises(ValueError, match="k must be a positive int"):
        PadToMultiple(0)
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((2.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(std=(1.0, 0.0, 1.0))


def test_pad_collate_pads_to_common_multiple() -> None:
    a, _ = _strip(_coded_sample(5, 7, seed=1))
    b, _ = _strip(_coded_sample(6, 4, seed=2))
    out = pad_collate([a, b], multiple=4)
    assert out["image"].shape == (2, 3, 8, 8) and out["seg"].shape == (2, 8, 8)
    assert out["depth"].shape == (2, 1, 8, 8) and out["normals"].shape == (2, 3, 8, 8)
    assert out["name"] == ["x", "x"]
    assert torch.equal(out["seg"][0, :5, :7], a["seg"])
    assert (out["seg"][0, 5:] == 255).all() and (out["seg"][1, :, 4:] == 255).all()
    assert (out["depth"][1, :, :, 4:] == 0).all() and (out["instance"][0, :, 7:] == 0).all()
    with pytest.raises(ValueError, match="multiple"):
        pad_collate([a], multiple=0)
