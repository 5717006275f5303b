"""KITTI depth (kitti_depth): a tiny sample in the real layout, written here.

Two frames (3 x 16 x 48) of one drive under raw/, their 16-bit annotated depth under
data_depth_annotated/train/ and .../val/ (a drive's depth may be in either), a third
frame without depth, an Eigen split file and a BTS split file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dejavu.metrics import KittiDepthMetrics
from dejavu.toolkit.cli import main
from dejavu.toolkit.data import (
    KittiDepth,
    create_dataset,
    dataset_class,
    list_datasets,
    read_kitti_split,
)
from dejavu.toolkit.errors import ConfigError, UserPathError

DATE = "2011_09_26"
DRIVE = "2011_09_26_drive_0001_sync"
H, W = 16, 48


def _depth_png(seed: int) -> np.ndarray:
    """A uint16 depth map: metres * 256, about a third of the pixels 0 (no LiDAR point)."""
    g = np.random.default_rng(seed)
    raw = g.integers(256, 90 * 256, size=(H, W), dtype=np.uint16)  # 1 m .. 90 m
    raw[g.random((H, W)) < 0.35] = 0
    raw[0, :4] = [0, 256, 1, 65535]  # none, 1 m, 1/256 m, 255.996 m
    return raw


@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    g = np.random.default_rng(0)
    for camera in ("image_02", "image_03"):
        folder = root / "raw" / DATE / DRIVE / camera / "data"
        folder.mkdir(parents=True)
        for frame in (5, 6, 7):
            rgb = g.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(folder / f"{frame:010d}.png")
    # Frame 5 (both cameras) in the benchmark's train folder, frame 6 in val; 7 has none.
    for sub, frame, camera, seed in (
        ("train", 5, "image_02", 5),
        ("train", 5, "image_03", 50),
        ("val", 6, "image_02", 6),
    ):
        folder = root / "data_depth_annotated" / sub / DRIVE / "proj_depth" / "groundtruth" / camera
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_depth_png(seed)).save(folder / f"{frame:010d}.png")
    splits = root / "splits"
    splits.mkdir()
    (splits / "eigen_train.txt").write_text(f"{DATE}/{DRIVE} 0000000005 l\n{DATE}/{DRIVE} 6 l\n")
    bts = [
        f"{DATE}/{DRIVE}/image_02/data/{f:010d}.png "
        f"{DRIVE}/proj_depth/groundtruth/image_02/{f:010d}.png 721.5377"
        for f in (5, 6)
    ]
    bts.append(f"{DATE}/{DRIVE}/image_02/data/0000000007.png None 721.5377")
    (splits / "bts_train.txt").write_text("\n".join(bts) + "\n")
    return root


def _raw_depth(root: Path, sub: str, frame: int, camera: str = "image_02") -> np.ndarray:
    path = root / "data_depth_annotated" / sub / DRIVE / "proj_depth" / "groundtruth" / camera
    return np.array(Image.open(path / f"{frame:010d}.png"))


def test_registered_as_a_depth_dataset() -> None:
    assert "kitti_depth" in list_datasets()
    assert dataset_class("kitti_depth") is KittiDepth
    assert KittiDepth.tasks == ("depth",) and KittiDepth.class_names == []


def test_loads_the_eigen_split_in_the_real_layout(kitti: Path) -> None:
    ds = create_dataset("kitti_depth", kitti, "eigen_train")
    assert len(ds) == 2 and ds.skipped == []
    sample = ds.load(0)
    assert sample["image"].shape == (3, H, W) and sample["depth"].shape == (1, H, W)
    assert sample["image"].dtype == torch.float32 and sample["depth"].dtype == torch.float32
    rgb = np.array(Image.open(kitti / "raw" / DATE / DRIVE / "image_02/data/0000000005.png"))
    assert torch.equal(sample["image"], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert sample["name"] == f"{DRIVE}_image_02_0000000005"
    assert ds.load(1)["name"] == f"{DRIVE}_image_02_0000000006"  # its depth is under val/
    normalised = ds[0]  # __getitem__ normalises with the ImageNet statistics
    assert not torch.equal(normalised["image"], sample["image"])
    assert torch.equal(normalised["depth"], sample["depth"])


def test_depth_is_value_over_256_and_zero_is_invalid(kitti: Path) -> None:
    ds = create_dataset("kitti_depth", kitti, "eigen_train")
    for index, (sub, frame) in enumerate((("train", 5), ("val", 6))):
        raw = _raw_depth(kitti, sub, frame)
        depth = ds.load(index)["depth"][0].numpy()
        np.testing.assert_array_equal(depth, raw.astype(np.float32) / 256)  # exact
        np.testing.assert_array_equal(depth > 0, raw > 0)  # the valid mask
    first = ds.load(0)["depth"][0, 0, :4].tolist()
    assert first == [0.0, 1.0, 1 / 256, 65535 / 256]


def test_max_and_min_depth_make_pixels_invalid(kitti: Path) -> None:
    ds = create_dataset("kitti_depth", kitti, "eigen_train", max_depth=80.0, min_depth=1.0)
    raw = _raw_depth(kitti, "train", 5).astype(np.float32) / 256
    depth = ds.load(0)["depth"][0].numpy()
    keep = (raw > 1.0) & (raw < 80.0)
    np.testing.assert_array_equal(depth, np.where(keep, raw, 0.0))
    assert depth[0, :4].tolist() == [0.0, 0.0, 0.0, 0.0]  # 1 m is not > min_depth 1 m
    assert 0 < keep.sum() < (raw > 0).sum()
    with pytest.raises(ValueError, match="max_depth"):
        create_dataset("kitti_depth", kitti, "eigen_train", max_depth=0.5, min_depth=1.0)


def test_bts_lines_give_the_same_samples_and_none_is_left_out(kitti: Path) -> None:
    eigen = create_dataset("kitti_depth", kitti, "eigen_train")
    bts = create_dataset("kitti_depth", kitti, "bts_train")
    assert len(bts) == 2 and [f.frame for f in bts.skipped] == ["0000000007"]
    assert bts.focals == [721.5377, 721.5377] and eigen.focals == [None, None]
    for i in range(2):
        a, b = eigen.load(i), bts.load(i)
        assert a["name"] == b["name"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])


def test_the_right_camera_and_split_paths(kitti: Path, tmp_path: Path) -> None:
    split = tmp_path / "right.txt"
    split.write_text(f"# the right camera\n\n{DATE}/{DRIVE} 5 r\n")
    ds = create_dataset("kitti_depth", kitti, str(split))  # an absolute .txt path
    assert ds.frames[0].camera == "image_03" and ds.frames[0].line == 3
    raw = _raw_depth(kitti, "train", 5, "image_03")
    np.testing.assert_array_equal(ds.load(0)["depth"][0].numpy(), raw / np.float32(256))
    relative = create_dataset("kitti_depth", kitti, "splits/eigen_train.txt")
    assert len(relative) == 2


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (f"{DATE}/{DRIVE} five l", "the frame 'five' is not a number"),
        (f"{DATE}/{DRIVE} 5 left", "the side 'left' must be 'l' or 'r'"),
        (f"{DRIVE} 5 l", "is not '<date>/<date>_drive_<id>_sync'"),
        ("2011_09_27/2011_09_26_drive_0001_sync 5 l", "is not '<date>/<date>_drive_<id>_sync'"),
        (f"{DATE}/{DRIVE}", "1 fields"),
        (f"{DATE}/{DRIVE} 5 l extra", "4 fields"),
        (f"{DATE}/{DRIVE}/image_02/0000000005.png None", "the image path"),
        (f"{DATE}/{DRIVE}/image_02/data/0000000005.png depth.npy", "neither a .png file nor"),
        (f"{DATE}/{DRIVE}/image_02/data/0000000005.png None f=721", "focal length 'f=721'"),
    ],
)
def test_malformed_split_line_names_file_and_line(
    kitti: Path, tmp_path: Path, line: str, match: str
) -> None:
    split = tmp_path / "bad.txt"
    split.write_text(f"# a comment\n{DATE}/{DRIVE} 5 l\n{line}\n")
    with pytest.raises(ConfigError, match=match) as info:
        create_dataset("kitti_depth", kitti, str(split))
    message = str(info.value)
    assert message.startswith(f"{split}:3: ")
    assert "Eigen / Monodepth2" in message and "BTS" in message  # the accepted formats


def test_empty_split_and_missing_split_file(kitti: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="lists no frames"):
        read_kitti_split(tmp_path / "empty.txt")
    with pytest.raises(UserPathError, match=r"file not found: .*splits/eigen_val\.txt"):
        create_dataset("kitti_depth", kitti, "eigen_val")
    with pytest.raises(UserPathError, match="directory not found"):
        create_dataset("kitti_depth", tmp_path / "nowhere", "eigen_train")


def test_missing_image_names_the_file_and_the_line(kitti: Path, tmp_path: Path) -> None:
    split = tmp_path / "missing.txt"
    split.write_text(f"{DATE}/{DRIVE} 5 l\n{DATE}/{DRIVE} 8 l\n")
    expected = kitti / "raw" / DATE / DRIVE / "image_02" / "data" / "0000000008.png"
    with pytest.raises(UserPathError) as info:
        create_dataset("kitti_depth", kitti, str(split))
    assert f"image file not found: {expected}" in str(info.value)
    assert f"listed at {split}:2" in str(info.value)


def test_missing_depth_names_the_files_or_is_skipped(kitti: Path, tmp_path: Path) -> None:
    split = tmp_path / "nodepth.txt"
    split.write_text(f"{DATE}/{DRIVE} 5 l\n{DATE}/{DRIVE} 7 l\n")
    with pytest.raises(UserPathError) as info:
        create_dataset("kitti_depth", kitti, str(split))
    message = str(info.value)
    tail = f"{DRIVE}/proj_depth/groundtruth/image_02/0000000007.png"
    for folder in ("data_depth_annotated/train/", "data_depth_annotated/val/"):
        assert str(kitti / folder) + "/" + tail in message
    assert f"listed at {split}:2" in message and "missing_depth: skip" in message
    ds = create_dataset("kitti_depth", kitti, str(split), missing_depth="skip")
    assert len(ds) == 1 and [f.line for f in ds.skipped] == [2]


def test_the_kitti_metrics_on_the_sample(kitti: Path) -> None:
    # A constant 10 m prediction, scored with the Garg crop: on 16 x 48 it keeps rows
    # int(0.408 * 16) = 6 .. int(0.992 * 16) = 15 and columns int(0.036 * 48) = 1 ..
    # int(0.964 * 48) = 46 (exclusive); 1e-3 < depth < 80 m.
    ds = create_dataset("kitti_depth", kitti, "eigen_train")
    target = torch.stack([ds.load(i)["depth"] for i in range(2)])
    metric = KittiDepthMetrics(crop="garg", min_depth=1e-3, max_depth=80.0)
    metric.update(torch.full_like(target, 10.0), target)
    out = metric.compute()
    per_image = []
    for sub, frame in (("train", 5), ("val", 6)):
        g = _raw_depth(kitti, sub, frame)[6:15, 1:46].astype(np.float64) / 256
        g = g[(g > 1e-3) & (g < 80)]
        per_image.append((np.mean(np.abs(10 - g) / g), np.sqrt(np.mean((10 - g) ** 2))))
    assert out["abs_rel"].item() == pytest.approx(np.mean([a for a, _ in per_image]), rel=1e-6)
    assert out["rmse"].item() == pytest.approx(np.mean([r for _, r in per_image]), rel=1e-6)


def test_two_step_fit_of_a_tiny_depth_config(kitti: Path, tmp_path: Path, write_config) -> None:
    config = write_config(
        tmp_path,
        task={"name": "depth", "metrics": {"depth": {"name": "kitti", "crop": "garg"}}},
        data={
            "name": "kitti_depth",
            "root": str(kitti),
            "train_split": "eigen_train",
            "val_split": "bts_train",
            "test_split": "bts_train",
            "val_batch_size": 1,
            "crop_size": [16, 32],
            "kwargs": {"_replace_": True, "max_depth": 80.0},
        },
        dejavu={"redaction": {"_replace_": True, "name": "bandstop", "band": [0.05, 0.25]}},
    )
    assert main(["fit", str(config), "--no-progress"]) == 0
    run = tmp_path / "runs" / "tiny"
    final = json.loads((run / "metrics.json").read_text())["final"]
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"):
        assert np.isfinite(final[f"depth/{name}"]), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["task"]["metrics"] == {"depth": {"name": "kitti", "crop": "garg"}}
    # The run validated with the KITTI metric: the trained network, scored here frame by
    # frame with KittiDepthMetrics, gives the logged values.
    from dejavu.toolkit.training import load_eval_model, load_run

    _, module = load_run(run / "last.ckpt")
    assert isinstance(module.val_metrics.metrics["depth"], KittiDepthMetrics)
    model, _ = load_eval_model(run / "last.ckpt")
    val = create_dataset("kitti_depth", kitti, "bts_train", max_depth=80.0)
    metric = KittiDepthMetrics(crop="garg")
    with torch.no_grad():
        for i in range(len(val)):
            sample = val[i]
            metric.update(model(sample["image"][None])["depth"], sample["depth"][None])
    for name, value in metric.compute().items():
        assert final[f"depth/{name}"] == pytest.approx(value.item(), rel=1e-4), name


def test_config_refuses_a_bad_metric_option(tmp_path: Path, write_config) -> None:
    from dejavu.toolkit.config import load_config

    config = write_config(
        tmp_path, task={"name": "depth", "metrics": {"depth": {"name": "kitti", "crop": "top"}}}
    )
    with pytest.raises(ConfigError, match=r"task\.metrics\.depth: unknown crop 'top'"):
        load_config(config)
    config = write_config(tmp_path, task={"name": "depth", "metrics": {"seg": {"name": "kitti"}}})
    with pytest.raises(ConfigError, match="'seg' is not a head of task 'depth'"):
        load_config(config)
    config = write_config(tmp_path, task={"name": "depth", "metrics": {"depth": {"name": "nyu"}}})
    allowed = "unknown depth metric 'nyu'; allowed: 'default', 'kitti'"
    with pytest.raises(ConfigError, match=allowed):
        load_config(config)
