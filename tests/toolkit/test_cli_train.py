"""``dejavu fit`` -> ``validate`` / ``test`` -> ``predict`` -> ``export`` on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.toolkit.cli import main
from dejavu.toolkit.training import load_eval_model


@pytest.fixture(scope="module")
def run(tmp_path_factory, write_config) -> dict:
    """One 2-step training through ``dejavu fit`` (shared by the tests below)."""
    directory = tmp_path_factory.mktemp("cli_train")
    config = write_config(directory, trainer={"max_epochs": 5})
    metrics_json = directory / "fit_metrics.json"
    rc = main(["fit", str(config), "--no-progress", "--json", str(metrics_json)])
    assert rc == 0
    run_dir = directory / "runs" / "tiny"
    return {
        "dir": directory,
        "config": config,
        "run_dir": run_dir,
        "ckpt": run_dir / "last.ckpt",
        "metrics": json.loads(metrics_json.read_text()),
    }


def test_fit_writes_the_run(run: dict) -> None:
    run_dir = run["run_dir"]
    for name in ("config.yaml", "last.ckpt", "base.safetensors", "base.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert 0.0 <= run["metrics"]["seg/miou"] <= 1.0


def test_validate_and_test_reproduce_the_final_metrics(run: dict, tmp_path: Path) -> None:
    # last.ckpt holds the weights the final validation of `fit` saw, and `test`
    # reads the same split here (data.test_split=val), so all three must agree.
    for command in ("validate", "test"):
        out = tmp_path / f"{command}.json"
        rc = main([command, str(run["config"]), "--ckpt", str(run["ckpt"]), "--json", str(out)])
        assert rc == 0
        metrics = json.loads(out.read_text())
        for key in ("seg/miou", "seg/aacc", "loss"):
            assert metrics[key] == pytest.approx(run["metrics"][key], abs=1e-5), (command, key)


def test_validate_accepts_overrides(run: dict, tmp_path: Path) -> None:
    # One validation image instead of two: a different (but valid) mIoU.
    out = tmp_path / "one.json"
    args = ["validate", str(run["config"]), "--ckpt", str(run["ckpt"])]
    assert main([*args, "--set", "data.num_val=1", "--json", str(out)]) == 0
    assert 0.0 <= json.loads(out.read_text())["seg/miou"] <= 1.0


def test_predict_writes_files_for_each_input(run: dict, tmp_path: Path, capsys) -> None:
    images = []
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
        images.append(path)
    out = tmp_path / "pred"
    args = ["predict", str(run["config"]), "--ckpt", str(run["ckpt"]), "--out", str(out)]
    assert main([*args, "--input", *map(str, images)]) == 0
    assert "wrote 4 file(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_seg.npy",
        "a_seg.png",
        "b_seg.npy",
        "b_seg.png",
    ]
    labels = np.load(out / "a_seg.npy")
    assert labels.shape == (40, 56)
    assert labels.min() >= 0 and labels.max() < 6
    # Without --input: the test split (here the 2 validation scenes).
    out2 = tmp_path / "pred2"
    assert (
        main(["predict", str(run["config"]), "--ckpt", str(run["ckpt"]), "--out", str(out2)]) == 0
    )
    assert len(list(out2.glob("*_seg.png"))) == 2


def test_predict_missing_input_is_named(run: dict, tmp_path: Path, capsys) -> None:
    args = ["predict", str(run["config"]), "--ckpt", str(run["ckpt"]), "--out", str(tmp_path)]
    assert main([*args, "--input", str(tmp_path / "ghost.png")]) == 2
    assert "ghost.png" in capsys.readouterr().err


def _reference(run: dict, image: torch.Tensor) -> torch.Tensor:
    model, _ = load_eval_model(run["ckpt"])
    with torch.no_grad():
        return model(image)["seg"]


def test_export_onnx_runs_in_onnxruntime(run: dict, tmp_path: Path, capsys) -> None:
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    args = ["export", str(run["ckpt"]), "--format", "onnx", "--out", str(out)]
    assert main([*args, "--input-size", "40", "56"]) == 0
    stdout = capsys.readouterr().out
    assert "verified" in stdout and "max abs diff" in stdout
    # Check it again here, independently, on another input.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["seg"]
    assert session.get_inputs()[0].shape == [1, 3, 40, 56]
    image = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(7))
    (got,) = session.run(["seg"], {"image": image.numpy()})
    np.testing.assert_allclose(got, _reference(run, image).numpy(), atol=1e-4)


def test_export_torchscript_loads_without_dejavu(run: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.pt"
    assert main(["export", str(run["ckpt"]), "--format", "torchscript", "--out", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    loaded = torch.jit.load(str(out))
    image = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(loaded(image)["seg"], _reference(run, image), atol=1e-5, rtol=0)


def test_export_safetensors_holds_the_base_network_only(run: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "model.safetensors"
    assert main(["export", str(run["ckpt"]), "--format", "safetensors", "--out", str(out)]) == 0
    assert out.with_suffix(".json").is_file()
    weights = load_file(str(out))
    model, _ = load_eval_model(run["ckpt"])
    assert set(weights) == set(model.state_dict())  # no CRM weights
    assert not any(k.startswith(("crm.", "model.crm")) for k in weights)
    # The training code's own loader rebuilds the network from the export.
    rebuilt, meta = load_eval_model(out)
    assert meta["model"] == "fpn_test_resnet"
    image = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(image)["seg"], _reference(run, image))


def test_resume_continues_the_run(run: dict, tmp_path: Path) -> None:
    import shutil

    # A copy, so that the other tests keep their checkpoint.
    copy_dir = tmp_path / "runs"
    shutil.copytree(run["run_dir"], copy_dir / "tiny")
    args = ["fit", str(run["config"]), "--output-dir", str(copy_dir), "--no-progress"]
    assert main([*args, "--resume", "--set", "trainer.max_steps=4"]) == 0
    ckpt = torch.load(copy_dir / "tiny" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4


# ------------------------------------------------------------------ dejavu panel
def test_panel_columns_show_truth_predictions_and_regeneration(run: dict) -> None:
    from dejavu.toolkit.prediction_panel import prediction_columns
    from dejavu.toolkit.training import DenseDataModule, load_run
    from dejavu.toolkit.visualize import colorize_segmentation, denormalize

    runs = [("A", run["run_dir"]), ("B", run["ckpt"])]
    columns, rows = prediction_columns(runs, [1, 0], seed=3)
    titles = [t for t, _ in columns]
    assert titles == [
        "input",
        "seg truth",
        "A seg",
        "B seg",
        "A redacted",
        "A regenerated",
        "B redacted",
        "B regenerated",
    ]
    cols = dict(columns)
    assert all(len(images) == 2 for images in cols.values())

    # Independently: the base network's argmax on the validation image, coloured.
    cfg, _ = load_run(run["ckpt"])
    sample = DenseDataModule(cfg).dataset("val")[1]
    assert rows[0] == str(sample["name"])
    model, meta = load_eval_model(run["ckpt"])
    with torch.no_grad():
        out = model(sample["image"].unsqueeze(0))
    logits = out["seg"] if isinstance(out, dict) else out
    expected = colorize_segmentation(logits[0].argmax(0).numpy(), meta["num_classes"])
    np.testing.assert_array_equal(cols["A seg"][0], expected)
    np.testing.assert_array_equal(cols["B seg"][0], expected)
    np.testing.assert_array_equal(
        cols["input"][0], denormalize(sample["image"], meta["mean"], meta["std"])
    )

    # Same run, same seed: the same redaction; the regenerated image keeps the
    # input on kept pixels and fills the redacted ones with the CRM's output.
    np.testing.assert_array_equal(cols["A redacted"][0], cols["B redacted"][0])
    image, redacted, regen = cols["input"][0], cols["A redacted"][0], cols["A regenerated"][0]
    kept = np.all(redacted == image, axis=-1)
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(regen[kept], image[kept])
    assert np.any(regen[~kept] != redacted[~kept])

    again, _ = prediction_columns(runs[:1], [1, 0], seed=3)
    np.testing.assert_array_equal(dict(again)["A regenerated"][1], cols["A regenerated"][1])


def test_panel_cli_writes_png_and_rejects_bad_input(run: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "panel.png"
    rc = main(["panel", f"DejaVu={run['ckpt']}", "--out", str(out), "--index", "0", "1"])
    assert rc == 0
    assert Image.open(out).size[0] > 0

    rc = main(["panel", str(run["ckpt"]), "--out", str(out), "--index", "99"])
    assert rc == 2
    assert "index 99 is out of range for the val split of 2 images" in capsys.readouterr().err

    rc = main(["panel", f"x={tmp_path / 'missing'}", "--out", str(out)])
    assert rc == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_parse_run_specs_labels() -> None:
    from dejavu.toolkit.prediction_panel import parse_run_specs

    assert parse_run_specs(["a=b=runs/x/last.ckpt", "runs/y"]) == [
        ("a=b", Path("runs/x/last.ckpt")),
        ("y", Path("runs/y")),
    ]
    with pytest.raises(ValueError, match="LABEL=CHECKPOINT"):
        parse_run_specs(["=runs/x"])
    with pytest.raises(ValueError, match="at least one run"):
        parse_run_specs([])
