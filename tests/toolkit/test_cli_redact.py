"""``dejavu redact``: the redaction figure, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.toolkit.cli import main
from dejavu.toolkit.data.io import IMAGENET_MEAN
from dejavu.toolkit.redact_figure import DEFAULT_MODES, parse_params, redaction_tiles

H, W = 96, 128


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    # Smooth-ish content plus noise, so that low-pass filtering visibly changes it.
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx / W, yy / H, (xx + yy) / (H + W)], axis=-1)
    pixels = np.clip(base * 200 + rng.normal(0, 30, (H, W, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def _panel_size(n_tiles: int) -> tuple[int, int]:
    # save_redaction_figure draws each tile max(H, 160) px high at 100 dpi,
    # width following the aspect ratio, plus 0.4 inch for the titles.
    cell = max(H, 160) / 100
    return round(cell * W / H * n_tiles * 100), round((cell + 0.4) * 100)


def test_redact_writes_one_tile_per_mode(image_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fig.png"
    assert main(["redact", str(image_file), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as fig:
        width, height = fig.size
        assert fig.mode == "RGB"
    exp_w, exp_h = _panel_size(len(DEFAULT_MODES) + 1)
    assert abs(width - exp_w) <= 1 and abs(height - exp_h) <= 1

    out2 = tmp_path / "fig2.png"
    assert main(["redact", str(image_file), "--out", str(out2), "--mode", "random", "blocks"]) == 0
    with Image.open(out2) as fig:
        exp_w, exp_h = _panel_size(3)
        assert abs(fig.size[0] - exp_w) <= 1 and abs(fig.size[1] - exp_h) <= 1


def test_default_output_path_next_to_image(image_file: Path) -> None:
    assert main(["redact", str(image_file), "--mode", "lowpass"]) == 0
    assert (image_file.parent / "scene_redact.png").is_file()


def test_tiles_show_what_each_redaction_removes(image_file: Path) -> None:
    pixels = np.array(Image.open(image_file))
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    tiles = dict(redaction_tiles(image, ["random", "lowpass", "checkerboard"], seed=0))
    # Normalising and denormalising gives the input back exactly.
    np.testing.assert_array_equal(tiles["input"], pixels)
    # random keeps each pixel with p = 0.25; removed pixels show the mean colour.
    mean_rgb = np.floor(np.asarray(IMAGENET_MEAN) * 255 + 0.5).astype(np.uint8)
    removed = np.all(tiles["random"] == mean_rgb, axis=-1).mean()
    assert 0.70 < removed < 0.80
    # the checkerboard removes half the cells.
    removed = np.all(tiles["checkerboard"] == mean_rgb, axis=-1).mean()
    assert 0.4 < removed < 0.6

    # low-pass keeps the smooth gradient and drops the pixel noise.
    def roughness(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x.astype(np.float64), axis=1)).mean())

    assert roughness(tiles["lowpass"]) < 0.5 * roughness(pixels)


def test_set_param_reaches_the_redaction(image_file: Path) -> None:
    pixels = np.array(Image.open(image_file))
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    tiles = redaction_tiles(image, ["random", "blocks"], params=parse_params(["random.p=1.0"]))
    titles = [t for t, _ in tiles]
    assert titles == ["input", "random (p=1.0)", "blocks"]
    # p = 1 keeps every pixel.
    np.testing.assert_array_equal(tiles[1][1], pixels)


def test_unknown_mode_lists_allowed(image_file: Path, capsys) -> None:
    assert main(["redact", str(image_file), "--mode", "blur"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dejavu: error:")
    assert "'blur'" in err
    for name in ("lowpass", "bandstop", "random", "checkerboard", "blocks"):
        assert name in err
    assert "Traceback" not in err


def test_unknown_param_is_an_error(image_file: Path, capsys) -> None:
    assert main(["redact", str(image_file), "--mode", "random", "--set-param", "cutof=0.2"]) == 2
    err = capsys.readouterr().err
    assert "cutof" in err and "'p'" in err


def test_missing_and_corrupt_images_are_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.png"
    assert main(["redact", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err

    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["redact", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "Traceback" not in err


def test_debug_shows_traceback(tmp_path: Path, capsys) -> None:
    assert main(["--debug", "redact", str(tmp_path / "nope.png")]) == 2
    assert "Traceback" in capsys.readouterr().err
