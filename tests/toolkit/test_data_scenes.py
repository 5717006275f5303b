"""Procedural scenes: determinism, geometric consistency of the labels, and the cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dejavu.toolkit.data import scenes as scenes_mod
from dejavu.toolkit.data.scenes import (
    CLASS_NAMES,
    VAL_SEED_OFFSET,
    ProceduralScenes,
    default_cache_dir,
    render_scene,
    scene_seed,
)
from dejavu.toolkit.data.transforms import RandomHorizontalFlip

SIZE = (36, 48)


@pytest.fixture(scope="module")
def data_views() -> list[scenes_mod.RenderedScene]:
    return [render_scene(seed, SIZE) for seed in range(12)]


def _rays(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """Camera-frame rays through pixel centres with z = 1 (so depth * ray is the 3-D point)."""
    u = (np.arange(w) + 0.5 - k[0, 2]) / k[0, 0]
    v = (np.arange(h) + 0.5 - k[1, 2]) / k[1, 1]
    return np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), axis=-1)


def _interior(labels: np.ndarray) -> np.ndarray:
    """Pixels (excluding the border) whose 3x3 neighbourhood has a single label."""
    h, w = labels.shape
    c = labels[1:-1, 1:-1]
    same = np.ones_like(c, dtype=bool)
    for a in (-1, 0, 1):
        for b in (-1, 0, 1):
            same &= labels[1 + a : h - 1 + a, 1 + b : w - 1 + b] == c
    return same


def test_render_is_deterministic_per_seed() -> None:
    a, b, c = render_scene(7, SIZE), render_scene(7, SIZE), render_scene(8, SIZE)
    for field in ("image", "seg", "instance", "depth", "normals", "intrinsics"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.depth, c.depth)


def test_dataset_determinism_and_seed_dependence(tmp_path: Path) -> None:
    a = ProceduralScenes(tmp_path / "a", "train", 3, SIZE, seed=4, cache=False)
    b = ProceduralScenes(tmp_path / "b", "train", 3, SIZE, seed=4, cache=False)
    c = ProceduralScenes(tmp_path / "c", "train", 3, SIZE, seed=5, cache=False)
    for i in range(3):
        sa, sb = a[i], b[i]
        for key in ("image", "seg", "depth", "normals", "instance"):
            assert torch.equal(sa[key], sb[key])
    # seed 5 image 0 is seed 4 image 1 (seed + index), and image 0 differs.
    assert torch.equal(c[0]["image"], a[1]["image"])
    assert not torch.equal(c[0]["image"], a[0]["image"])
    assert not (tmp_path / "a").exists()  # cache=False writes nothing


def test_depth_is_positive_and_finite(data_views) -> None:
    for s in data_views:
        assert np.isfinite(s.depth).all()
        assert s.depth.min() > 0.05
        assert s.depth.max() < 20  # the room is at most 8 x 8 x 3.5 m


def test_normals_are_unit_and_face_the_camera(data_views) -> None:
    for s in data_views:
        np.testing.assert_allclose(np.linalg.norm(s.normals, axis=-1), 1.0, atol=1e-5)
        rays = _rays(s.intrinsics.astype(np.float64), *SIZE)
        assert ((s.normals * rays).sum(-1) < 0).all()


def test_normals_agree_with_the_depth_map(data_views) -> None:
    """Back-project depth, take finite differences, compare their cross product with the normals."""
    for s in data_views:
        P = s.depth[..., None].astype(np.float64) * _rays(s.intrinsics.astype(np.float64), *SIZE)
        dx = P[1:-1, 2:] - P[1:-1, :-2]
        dy = P[2:, 1:-1] - P[:-2, 1:-1]
        est = np.cross(dx, dy)
        est /= np.linalg.norm(est, axis=-1, keepdims=True)
        # x right and y down make cross(dx, dy) point away from the camera: opposite the normal.
        cos = -(est * s.normals[1:-1, 1:-1]).sum(-1)
        inner = _interior(s.seg.astype(np.int64) * 256 + s.instance)
        # Where the 3x3 normals agree the surface is planar and finite differences are exact;
        # elsewhere (spheres, cylinders, wall corners) they are chords and only roughly agree.
        n = s.normals
        flat = np.ones_like(inner)
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                shifted = n[1 + a : SIZE[0] - 1 + a, 1 + b : SIZE[1] - 1 + b]
                flat &= np.abs(shifted - n[1:-1, 1:-1]).max(-1) < 1e-4
        planar = inner & flat
        assert planar.sum() > 100
        assert cos[planar].min() > 0.9999
        assert np.median(cos[inner]) > 0.999
        assert np.percentile(cos[inner & ~flat], 50) > 0.9


def test_floor_points_up_and_ceiling_down(data_views) -> None:
    floors = ceilings = 0
    for s in data_views:
        floor, ceiling = s.seg == 0, s.seg == 2
        if floor.any():
            floors += 1
            # camera y points down; pitch <= 25 deg and roll <= 5 deg keep |y| above cos(26 deg)
            assert (s.normals[floor][:, 1] < -0.89).all()
        if ceiling.any():
            ceilings += 1
            assert (s.normals[ceiling][:, 1] > 0.89).all()
    assert floors >= 6 and ceilings >= 2


def test_labels_in_range_and_every_class_appears(data_views) -> None:
    seen: set[int] = set()
    for s in data_views:
        assert s.seg.max() < len(CLASS_NAMES)
        seen |= set(np.unique(s.seg).tolist())
    assert seen == set(range(len(CLASS_NAMES)))


def test_instances_are_objects_and_room_is_zero(data_views) -> None:
    for s in data_views:
        assert (s.instance[s.seg <= 2] == 0).all()
        assert (s.instance[s.seg >= 3] > 0).all()
        for i in np.unique(s.instance[s.instance > 0]):
            assert len(np.unique(s.seg[s.instance == i])) == 1  # one class per object


def test_image_edges_lie_on_label_edges(data_views) -> None:
    for s in data_views:
        img = s.image.astype(np.float64).mean(-1)
        lab = s.seg.astype(np.int64) * 256 + s.instance
        gx, gy = np.abs(np.diff(img, axis=1)), np.abs(np.diff(img, axis=0))
        bx, by = lab[:, 1:] != lab[:, :-1], lab[1:] != lab[:-1]
        on = np.concatenate([gx[bx], gy[by]]).mean()
        off = np.concatenate([gx[~bx], gy[~by]]).mean()
        assert on > 3 * off


def test_sample_format(tmp_path: Path) -> None:
    ds = ProceduralScenes(tmp_path, "val", 2, SIZE)
    s = ds[1]
    assert set(s) == {"image", "seg", "depth", "normals", "instance", "name"}
    assert s["image"].shape == (3, *SIZE) and s["image"].dtype == torch.float32
    assert s["seg"].shape == SIZE and s["seg"].dtype == torch.int64
    assert s["depth"].shape == (1, *SIZE) and s["depth"].dtype == torch.float32
    assert s["normals"].shape == (3, *SIZE)
    assert s["instance"].dtype == torch.int64
    assert s["name"] == "val_000001"
    torch.testing.assert_close(s["normals"].norm(dim=0), torch.ones(SIZE))
    # Normalised with ImageNet statistics.
    raw = torch.from_numpy(ds._arrays["image"][1]).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(ds.mean).view(3, 1, 1), torch.tensor(ds.std).view(3, 1, 1)
    torch.testing.assert_close(s["image"], (raw - mean) / std)
    assert ds.num_classes == 6 and ds.ignore_index == 255
    assert ds.tasks == ("seg", "depth", "normals", "instance")
    assert ds.intrinsics(1).shape == (3, 3)
    assert ds[-1]["name"] == "val_000001"
    with pytest.raises(IndexError):
        ds[2]


def test_tasks_subset_and_transform(tmp_path: Path) -> None:
    ds = ProceduralScenes(
        tmp_path, "train", 1, SIZE, tasks=["depth"], transform=RandomHorizontalFlip(1.0)
    )
    s = ds[0]
    assert set(s) == {"image", "depth", "name"}
    raw = ds.load(0)
    assert torch.equal(s["depth"], raw["depth"].flip(-1))
    with pytest.raises(ValueError, match="unknown task"):
        ProceduralScenes(tmp_path, "train", 1, SIZE, tasks=["edges"])


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ProceduralScenes(tmp_path, "train", 3, SIZE, seed=2)
    assert first.render_seconds is not None
    assert first.cache_path is not None and first.cache_path.is_file()
    assert first.cache_path.parent == tmp_path
    assert list(tmp_path.glob("*.tmp")) == []  # the temporary file was renamed

    def no_render(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(scenes_mod.dataset, "render_scenes", no_render)
    second = ProceduralScenes(tmp_path, "train", 3, SIZE, seed=2)
    assert second.render_seconds is None
    for key, arr in first._arrays.items():
        np.testing.assert_array_equal(second._arrays[key], arr)
    for key in ("image", "normals", "depth"):
        assert torch.equal(first[2][key], second[2][key])


def test_corrupt_cache_is_regenerated_with_a_warning(tmp_path: Path) -> None:
    good = ProceduralScenes(tmp_path, "val", 2, SIZE)
    path = good.cache_path
    assert path is not None
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = ProceduralScenes(tmp_path, "val", 2, SIZE)
    assert again.render_seconds is not None
    np.testing.assert_array_equal(again._arrays["depth"], good._arrays["depth"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = ProceduralScenes(tmp_path, "val", 2, SIZE)  # the rewritten file is valid
    assert third.render_seconds is None


def test_cache_with_wrong_metadata_is_regenerated(tmp_path: Path) -> None:
    a = ProceduralScenes(tmp_path, "val", 2, SIZE, seed=0)
    b = ProceduralScenes(tmp_path / "other", "val", 2, SIZE, seed=1)
    assert a.cache_path is not None and b.cache_path is not None
    b.cache_path.replace(a.cache_path)  # a file holding seed 1 under seed 0's name
    with pytest.warns(RuntimeWarning, match="metadata"):
        c = ProceduralScenes(tmp_path, "val", 2, SIZE, seed=0)
    np.testing.assert_array_equal(c._arrays["image"], a._arrays["image"])


def test_train_and_val_use_disjoint_seeds(tmp_path: Path) -> None:
    train = ProceduralScenes(tmp_path, "train", 3, SIZE, cache=False)
    val = ProceduralScenes(tmp_path, "val", 3, SIZE, cache=False)
    assert train.seeds == [0, 1, 2]
    assert val.seeds == [VAL_SEED_OFFSET, VAL_SEED_OFFSET + 1, VAL_SEED_OFFSET + 2]
    assert not torch.equal(train[0]["image"], val[0]["image"])
    assert scene_seed("val", 5, 3) == VAL_SEED_OFFSET + 8
    with pytest.raises(ValueError, match="index must be in"):
        scene_seed("train", 0, VAL_SEED_OFFSET)
    with pytest.raises(ValueError, match="num_images"):
        ProceduralScenes(tmp_path, "train", VAL_SEED_OFFSET + 1, SIZE, cache=False)


def test_parallel_rendering_matches_serial() -> None:
    serial = scenes_mod.render_scenes([3, 4, 5], (16, 24), num_workers=0)
    parallel = scenes_mod.render_scenes([3, 4, 5], (16, 24), num_workers=2)
    for key, arr in serial.items():
        np.testing.assert_array_equal(parallel[key], arr)


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "scenes"
    monkeypatch.delenv("DEJAVU_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "dejavu" / "scenes"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        ProceduralScenes(tmp_path, "test", 1, SIZE)
    with pytest.raises(ValueError, match="size"):
        ProceduralScenes(tmp_path, "train", 1, (4, 4))
    with pytest.raises(ValueError, match="num_images"):
        ProceduralScenes(tmp_path, "train", 0, SIZE)
    with pytest.raises(ValueError, match="seed"):
        ProceduralScenes(tmp_path, "train", 1, SIZE, seed=-1)
    with pytest.raises(ValueError, match="transform"):
        ProceduralScenes(tmp_path, "train", 1, SIZE, transform=3)  # type: ignore[arg-type]


def test_dataloader_batches(tmp_path: Path) -> None:
    ds = ProceduralScenes(tmp_path, "train", 3, SIZE)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, *SIZE)
    assert batch["seg"].shape == (2, *SIZE) and batch["depth"].shape == (2, 1, *SIZE)
    assert batch["name"] == ["train_000000", "train_000001"]
