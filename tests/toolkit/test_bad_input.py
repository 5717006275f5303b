"""Bad input gives a clear error, exit status 2, and nothing is lost (issue 10, section 3).

One test (or a few) per row of the table in docs/robustness.md ("Bad input"):
image files (empty, truncated, not images, odd modes, EXIF rotation, tiny,
huge), splits (empty, naming missing files), ``predict --input`` on a folder,
configs (YAML syntax, ``_base_``, a name that leaves the output directory)
and checkpoint files (not a checkpoint, truncated, another model's).
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFile, ImageOps

from dejavu.toolkit.cli import main
from dejavu.toolkit.config import load_config
from dejavu.toolkit.data import FolderDataset
from dejavu.toolkit.data.io import input_images, read_image
from dejavu.toolkit.data.limits import (
    DEFAULT_MAX_IMAGE_PIXELS,
    max_image_pixels,
    set_max_image_pixels,
)
from dejavu.toolkit.errors import ConfigError, UserPathError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _default_pixel_limit(monkeypatch):
    # The limit is process-wide (and exported to workers through the environment).
    monkeypatch.delenv("DEJAVU_MAX_IMAGE_PIXELS", raising=False)
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)
    yield
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)


def _one_line_error(capsys: pytest.CaptureFixture, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("dejavu: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes = b"") -> bytes:
    """A PNG written by hand: any header, optionally no pixel data at all."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(raw)) if raw else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + idat + _png_chunk(b"IEND", b"")


def _rgb(path: Path, h: int = 6, w: int = 8) -> np.ndarray:
    arr = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


# ----------------------------------------------------------------- image files
def test_empty_truncated_and_non_image_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    _rgb(good, 32, 32)
    cases = {
        "empty.png": (b"", "empty file (0 bytes)"),
        "truncated.png": (good.read_bytes()[:80], "corrupt or truncated image"),
        "notes.png": (b"these are my notes, not an image", "not a readable image file"),
        "random.jpg": (RNG.bytes(500), "not a readable image file"),
    }
    for name, (data, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=re.escape(phrase)) as info:
            read_image(path)
        assert str(path) in str(info.value)
    with pytest.raises(UserPathError, match="image file not found"):
        read_image(tmp_path / "ghost.png")


def test_image_modes_are_read_as_rgb(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    files = {
        "L": Image.fromarray(grey),
        "P": Image.fromarray(grey).convert("P"),
        "RGBA": Image.fromarray(rgba),
        "LA": Image.fromarray(rgba[..., :2]),
    }
    for mode, img in files.items():
        assert img.mode == mode
        img.save(tmp_path / f"{mode}.png")
        got = read_image(tmp_path / f"{mode}.png")
        assert got.shape == (5, 7, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, np.asarray(img.convert("RGB")))
    # alpha is dropped, not composited
    np.testing.assert_array_equal(read_image(tmp_path / "RGBA.png"), rgba[..., :3])

    # 16-bit grey: scaled to 8 bits (PIL's convert("RGB") would clip everything above 255)
    sixteen = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    got = read_image(tmp_path / "grey16.png")
    np.testing.assert_array_equal(got[..., 0], [[0, 1, 128, 255]])
    assert (got == got[..., :1]).all()
    # 16-bit RGB (48-bit PNG, written by hand): PIL keeps the high byte
    rgb16 = np.array([[[0, 65535, 32896], [2570, 51400, 65535]]], dtype=">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    (tmp_path / "rgb48.png").write_bytes(_png(2, 1, 16, 2, raw))
    np.testing.assert_array_equal(
        read_image(tmp_path / "rgb48.png"), [[[0, 255, 128], [10, 200, 255]]]
    )


def test_exif_orientation_is_applied_to_images_not_labels(tmp_path: Path) -> None:
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[:, :3] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    raw = Image.open(tmp_path / "photo.png")
    got = read_image(tmp_path / "photo.png")
    assert got.shape == (6, 4, 3)  # upright, as a viewer shows it
    np.testing.assert_array_equal(got, np.asarray(ImageOps.exif_transpose(raw).convert("RGB")))
    # a label map with the same tag is read as stored
    from dejavu.toolkit.data.io import read_label

    Image.fromarray(stored[..., 0]).save(tmp_path / "label.png", exif=exif)
    assert read_label(tmp_path / "label.png").shape == (4, 6)


def _folder(root: Path, sizes: dict[str, tuple[int, int]], splits: dict[str, list[str]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "splits").mkdir()
    (root / "classes.txt").write_text("background\nthing\n")
    for stem, (h, w) in sizes.items():
        _rgb(root / "images" / f"{stem}.png", h, w)
        Image.fromarray(RNG.integers(0, 2, (h, w), dtype=np.uint8)).save(
            root / "labels" / f"{stem}.png"
        )
    for split, stems in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def _folder_config(tmp_path: Path, root: Path, *extra: str):
    return load_config(
        None,
        [
            f"output_dir={tmp_path / 'runs'}",
            "name=folder",
            "data.name=folder",
            f"data.root={root}",
            "data.test_split=val",
            "data.batch_size=2",
            "data.num_workers=0",
            "model.name=fpn_test_resnet",
            "dejavu.crm={kind: forward, width: 8, depth: 2}",
            "trainer.max_steps=1",
            "trainer.accelerator=cpu",
            "trainer.image_log_every_n_steps=0",
            *extra,
        ],
    )


def test_one_pixel_and_smaller_than_crop_images_are_padded(tmp_path: Path) -> None:
    from dejavu.toolkit.training import DenseDataModule

    root = _folder(tmp_path / "data", {"dot": (1, 1), "small": (5, 7)}, {"train": ["dot", "small"]})
    cfg = _folder_config(tmp_path, root, "data.crop_size=[16, 24]", "data.val_split=train")
    dm = DenseDataModule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 24)
    assert batch["seg"].shape == (2, 16, 24)
    # each image covers at most 5 x 7 of the crop; the rest is padding (ignore)
    assert ((batch["seg"] != 255).sum(dim=(1, 2)) <= 35).all()
    assert (batch["seg"] == 255).any()


@pytest.fixture
def base_network(tmp_path: Path) -> Path:
    """An untrained base network written as the artefact (what predict reads)."""
    from dejavu.toolkit.artifact import write_base
    from dejavu.toolkit.models import create_model

    net = create_model("fpn_test_resnet", num_classes=3).eval()
    meta = {
        "model": "fpn_test_resnet",
        "heads": {"seg": 3},
        "num_classes": 3,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    return write_base(net, meta, tmp_path / "net")


def test_predict_on_a_one_pixel_image(tmp_path: Path, base_network: Path) -> None:
    from dejavu.toolkit.predict import run_predict

    dot = tmp_path / "dot.png"
    _rgb(dot, 1, 1)
    cfg = load_config(None, ["trainer.accelerator=cpu"])
    written = run_predict(cfg, base_network, [dot], tmp_path / "out")
    assert sorted(p.name for p in written) == ["dot_seg.npy", "dot_seg.png"]
    assert np.load(tmp_path / "out" / "dot_seg.npy").shape == (1, 1)


def test_a_huge_image_is_refused_from_its_header(tmp_path: Path, monkeypatch) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png(20000, 20000, 8, 2))  # 1.2 GB of pixels, 57 bytes on disk
    assert huge.stat().st_size < 100
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 100_000_000
    with pytest.raises(ConfigError, match=r"20000 x 20000 pixels .*data\.max_image_pixels") as e:
        read_image(huge)
    assert str(huge) in str(e.value) and "not decoded" in str(e.value)
    assert decoded == []
    monkeypatch.undo()
    # The limit is the config's: null switches it (and PIL's own bomb guard) off ...
    set_max_image_pixels(None)
    with pytest.raises(ConfigError, match="corrupt or truncated"):  # decoding was attempted
        read_image(huge)
    # ... and a small one refuses ordinary images.
    set_max_image_pixels(40)
    _rgb(tmp_path / "a.png", 6, 8)
    with pytest.raises(ConfigError, match=r"8 x 6 pixels"):
        read_image(tmp_path / "a.png")
    assert load_config(None).data.max_image_pixels == 100_000_000
    with pytest.raises(ConfigError, match=r"data\.max_image_pixels"):
        load_config(None, ["data.max_image_pixels=0"])


def test_data_max_image_pixels_reaches_the_dataset(tmp_path: Path) -> None:
    from dejavu.toolkit.training import DenseDataModule

    root = _folder(tmp_path / "data", {"a": (6, 8)}, {"train": ["a"]})
    dm = DenseDataModule(_folder_config(tmp_path, root, "data.max_image_pixels=47"))
    with pytest.raises(ConfigError, match=r"a\.png: the image is 8 x 6 pixels"):
        dm.dataset("train")[0]


# ----------------------------------------------------------------- splits
def test_empty_split_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "data", {"a": (6, 8)}, {"train": [], "val": ["a"]})
    with pytest.raises(UserPathError, match=r"train\.txt lists no images"):
        FolderDataset(root, "train")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "runs"),
                "data": {"name": "folder", "root": str(root), "num_workers": 0},
                "model": {"name": "fpn_test_resnet"},
            }
        )
    )
    _one_line_error(capsys, main(["fit", str(cfg), "--no-progress"]), "lists no images")
    assert not (tmp_path / "runs").exists()


def test_truncated_image_in_a_split_is_named_in_one_line(tmp_path: Path, capsys) -> None:
    # Found when the sample is read, in a data-loader worker: the worker's traceback
    # is not shown, the file is named.
    root = _folder(tmp_path / "data", {"a": (6, 8), "b": (6, 8)}, {"train": ["a", "b"]})
    bad = root / "images" / "b.png"
    bad.write_bytes(bad.read_bytes()[:70])
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "runs"),
                "data": {
                    "name": "folder",
                    "root": str(root),
                    "val_split": "train",
                    "num_workers": 1,
                    "batch_size": 2,
                    "crop_size": [8, 8],
                },
                "model": {"name": "fpn_test_resnet"},
                "dejavu": {"crm": {"kind": "forward", "width": 8, "depth": 2}},
                "trainer": {"max_steps": 1, "accelerator": "cpu", "image_log_every_n_steps": 0},
            }
        )
    )
    rc = main(["fit", str(config), "--no-progress"])
    _one_line_error(capsys, rc, str(bad), "corrupt or truncated image", "data-loader worker")
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


# ----------------------------------------------------------------- predict --input
def test_predict_input_folder_with_mixed_files(tmp_path: Path, base_network: Path, capsys):
    folder = tmp_path / "inputs"
    _rgb(folder / "a.png")
    _rgb(folder / "b.JPG")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "sub").mkdir()
    _rgb(folder / "sub" / "deeper.png")
    assert [p.name for p in input_images([folder])] == ["a.png", "b.JPG"]

    config = tmp_path / "c.yaml"
    config.write_text("trainer: {accelerator: cpu}\n")
    out = tmp_path / "out"
    args = ["predict", str(config), "--ckpt", str(base_network), "--out", str(out)]
    assert main([*args, "--input", str(folder)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.npy", "a_seg.png", "b_seg.npy", "b_seg.png",
    ]  # fmt: skip

    # One unreadable image among them: named, exit 2, nothing written.
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out2 = tmp_path / "out2"
    args = ["predict", str(config), "--ckpt", str(base_network), "--out", str(out2)]
    rc = main([*args, "--input", str(folder)])
    _one_line_error(capsys, rc, str(folder / "c.png"))
    assert not out2.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, main([*args, "--input", str(empty)]), "no image files")


# ----------------------------------------------------------------- configs
def test_yaml_syntax_error_names_the_line(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\noptim:\n  lr: 0.1\n   momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 4, column \d+: invalid YAML"):
        load_config(config)
    _one_line_error(capsys, main(["fit", str(config)]), "line 4", "invalid YAML")
    config.write_text("data: {name: scenes\n")
    _one_line_error(capsys, main(["fit", str(config)]), "invalid YAML", "line 2")


def test_base_missing_or_circular_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    _one_line_error(capsys, main(["fit", str(tmp_path / "a.yaml")]), "_base_ cycle", "a.yaml")
    (tmp_path / "c.yaml").write_text("_base_: nowhere.yaml\n")
    _one_line_error(capsys, main(["fit", str(tmp_path / "c.yaml")]), "nowhere.yaml")


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", "..\\x", ""])
def test_a_name_that_leaves_the_output_directory_is_refused(
    name: str, tmp_path: Path, capsys, write_config
) -> None:
    (tmp_path / "c").mkdir()
    config = write_config(tmp_path / "c")
    outside = tmp_path / "x"
    rc = main(["fit", str(config), "--set", f"name={name!r}", "--no-progress"])
    _one_line_error(capsys, rc, "name must be a non-empty folder name")
    assert not outside.exists() and not (tmp_path / "c" / "runs").exists()


# ----------------------------------------------------------------- checkpoints
def _module_checkpoint(config: Path, overrides: list[str], path: Path) -> Path:
    """An untrained module of ``config`` saved as a training checkpoint (state_dict + config)."""
    from dejavu.toolkit.config import config_to_dict
    from dejavu.toolkit.training import DejaVuModule

    cfg = load_config(config, overrides)
    module = DejaVuModule.from_config(cfg, num_classes=6)
    torch.save({"state_dict": module.state_dict(), "config": config_to_dict(cfg)}, path)
    return path


@pytest.fixture
def ckpt_dir(tmp_path: Path, write_config) -> dict[str, Path]:
    """A training-shaped checkpoint of the tiny config and one of another task's network."""
    config = write_config(tmp_path)
    return {
        "config": config,
        "good": _module_checkpoint(config, [], tmp_path / "good.ckpt"),
        "depth": _module_checkpoint(config, ["task.name=depth"], tmp_path / "depth.ckpt"),
    }


BAD_CHECKPOINTS = {
    "random-bytes": "is not a checkpoint: neither a torch.save archive nor a pickle",
    "empty": "is not a checkpoint: the file is empty",
    "truncated": "is truncated",
    "bare-state-dict": "is not a dejavu training checkpoint (no state_dict",
    "other-model": "was made for another model than fpn_test_resnet",
}


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_validate_refuses_a_bad_checkpoint_in_one_line(kind, ckpt_dir, capsys) -> None:
    phrase = BAD_CHECKPOINTS[kind]
    good = ckpt_dir["good"]
    path = good.with_name(f"{kind}.ckpt")
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "bare-state-dict":
        torch.save({"weight": torch.zeros(2)}, path)
    elif kind == "other-model":
        path = ckpt_dir["depth"]  # the same network with a depth head instead of seg
    before = path.read_bytes()
    rc = main(["validate", str(ckpt_dir["config"]), "--ckpt", str(path)])
    err = _one_line_error(capsys, rc, str(path), phrase)
    assert path.read_bytes() == before  # nothing written or overwritten
    if kind == "other-model":
        assert "8 missing keys (decoder.heads.seg." in err
        assert "8 unexpected keys (decoder.heads.depth." in err
        assert "checkpoint's config names" not in err  # same model name
        other = _module_checkpoint(ckpt_dir["config"], ["model.name=fpn_resnet18"], path)
        rc = main(["validate", str(ckpt_dir["config"]), "--ckpt", str(other)])
        _one_line_error(capsys, rc, "(the checkpoint's config names fpn_resnet18)", "other shape")
    if kind == "random-bytes":  # the fixture itself is fine
        assert main(["validate", str(ckpt_dir["config"]), "--ckpt", str(good)]) == 0


def test_export_and_predict_refuse_a_truncated_checkpoint(ckpt_dir, tmp_path, capsys) -> None:
    good = ckpt_dir["good"]
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:1000])
    out = tmp_path / "model.onnx"
    _one_line_error(capsys, main(["export", str(cut), "--format", "onnx", "--out", str(out)]),
                    "is truncated")  # fmt: skip
    assert not out.exists()
    img = tmp_path / "a.png"
    _rgb(img)
    args = ["predict", str(ckpt_dir["config"]), "--ckpt", str(cut), "--out", str(tmp_path / "p")]
    _one_line_error(capsys, main([*args, "--input", str(img)]), "is truncated")
    assert not (tmp_path / "p").exists()


def test_a_bad_base_safetensors_is_named(base_network: Path, tmp_path: Path, capsys) -> None:
    from dejavu.toolkit.training import load_eval_model

    data = base_network.read_bytes()
    base_network.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_eval_model(base_network)
    base_network.write_bytes(data)
    meta = base_network.with_suffix(".json")
    meta.write_text(meta.read_text()[:20])
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_eval_model(base_network)
