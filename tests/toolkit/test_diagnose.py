"""``dejavu diagnose``: regeneration error by conditioning, informativeness and headroom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from dejavu.conditioning import Conditioning
from dejavu.toolkit.cli import main
from dejavu.toolkit.config import load_config
from dejavu.toolkit.diagnose import headroom_figures, run_diagnose
from dejavu.truth_conditioning import truth_conditioning


def _config(directory: Path, crm: dict, dejavu: bool = True) -> Path:
    cfg = {
        "name": "tiny",
        "output_dir": str(directory / "runs"),
        "data": {
            "root": str(directory / "cache"),
            "batch_size": 2,
            "num_workers": 0,
            "num_train": 4,
            "num_val": 4,
            "kwargs": {"size": [32, 48]},
        },
        "model": {"name": "fpn_test_resnet"},
        "dejavu": {
            "enabled": dejavu,
            "crm": {"_replace_": True, **crm},
            "redaction": {"name": "blocks", "block": 8, "ratio": 0.5},
            "conditioning": {"hard": True},
            "regen_loss": {"kind": "l1", "kept_weight": 0.0},
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "image_log_every_n_steps": 0},
    }
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_headroom_figures_hand_computed() -> None:
    figures = headroom_figures({"truth": 0.8, "own": 1.0, "uniform": 2.0, "other": 1.9})
    assert figures == {"informativeness": pytest.approx(0.6), "headroom": pytest.approx(0.2)}


def test_truth_conditioning_one_hot_with_ignored_pixels() -> None:
    phi = Conditioning({"seg": "segmentation"})
    label = torch.tensor([[[0, 1, 255, 2]]])
    out = truth_conditioning(phi, {"seg": label}, {"seg": 3}, size=(1, 4))
    expected = torch.tensor([[1, 0, 1 / 3, 0], [0, 1, 1 / 3, 0], [0, 0, 1 / 3, 1]]).float()
    torch.testing.assert_close(out[0, :, 0], expected)
    own = torch.full((1, 3, 1, 4), 0.5)
    filled = truth_conditioning(phi, {"seg": label}, {"seg": 3}, size=(1, 4), fill=own)
    torch.testing.assert_close(filled[0, :, 0, 2], torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="outside"):
        truth_conditioning(phi, {"seg": torch.tensor([[[7]]])}, {"seg": 3}, size=(1, 1))
    with pytest.raises(ValueError, match="no 'seg' entry"):
        truth_conditioning(phi, {}, {"seg": 3}, size=(1, 1))


def test_crm_zero_headroom_on_a_short_run(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, {"kind": "zero"}), [])
    report = run_diagnose(
        cfg, steps=2, work_dir=tmp_path / "diag", out=tmp_path / "d.json", log=lambda s: None
    )
    assert set(report["errors"]) == {"truth", "own", "other", "uniform"}
    assert report["crm_parameters"] == 0 and report["num_images"] == 4
    # CRM-0 given the true layout regenerates better than given no layout at all.
    assert report["errors"]["truth"] < report["errors"]["uniform"]
    assert report["informativeness"] > 0
    expected = headroom_figures(report["errors"])
    assert report["headroom"] == pytest.approx(expected["headroom"])
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["headroom"] == pytest.approx(report["headroom"])
    # A second call reuses the finished short run instead of training again.
    lines: list[str] = []
    run_diagnose(cfg, steps=2, work_dir=tmp_path / "diag", log=lines.append)
    assert any(line.startswith("reusing") for line in lines)


def test_learned_crm_is_fitted_when_the_checkpoint_has_none(tmp_path: Path) -> None:
    baseline = load_config(
        _config(tmp_path, {"kind": "zero"}, dejavu=False), ["trainer.max_steps=2"]
    )
    from dejavu.toolkit.training import run_fit

    fit = run_fit(baseline, enable_progress_bar=False)
    design = load_config(_config(tmp_path, {"kind": "forward", "width": 4, "depth": 1}), [])
    lines: list[str] = []
    report = run_diagnose(design, fit.last_checkpoint, crm_steps=3, log=lines.append)
    assert report["crm_source"].startswith("fitted for 3 steps")
    assert report["crm_parameters"] > 0
    assert all(v > 0 for v in report["errors"].values())


def test_cli_prints_the_figures_and_rejects_a_baseline(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {"kind": "zero"})
    out = tmp_path / "report.json"
    rc = main(["diagnose", str(config), "--steps", "2", "--work-dir", str(tmp_path / "w"),
               "--json", str(out)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "headroom:" in printed and "informativeness:" in printed
    assert json.loads(out.read_text())["split"] == "val"
    rc = main(["diagnose", str(config), "--set", "dejavu.enabled=false"])
    assert rc == 2
    assert "needs a DejaVu config" in capsys.readouterr().err


def test_panoptic_design_is_diagnosed(tmp_path: Path) -> None:
    # A panoptic config needs the dataset's categories to build its task; the
    # truth conditioning is the semantic map plus the true instance boundaries.
    path = _config(tmp_path, {"kind": "zero", "tile": 8})
    cfg = yaml.safe_load(path.read_text())
    cfg["task"] = {"name": "panoptic", "mask_loss": {"num_points": 64}}
    cfg["model"] = {"name": "mask2former_tiny"}
    path.write_text(yaml.safe_dump(cfg))
    report = run_diagnose(
        load_config(path, []), steps=2, work_dir=tmp_path / "d", log=lambda s: None
    )
    assert set(report["errors"]) == {"truth", "own", "other", "uniform"}
    assert report["errors"]["truth"] < report["errors"]["uniform"]
