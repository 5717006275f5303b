"""configs/studies: every study config validates, and so does every cell of its documented grid.

Each study file names its ``dejavu sweep`` command(s) in comment lines that start with
``# $ `` (continued by a trailing backslash). Each command is run here with ``--dry-run``,
which loads and validates the config of every cell and seed and the main metric, and
trains nothing (the studies themselves take hours of CPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

from dejavu.toolkit.cli import main
from dejavu.toolkit.config import load_config
from dejavu.toolkit.sweep import documented_commands, grid_cells, parse_grid

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "configs" / "studies").glob("*.yaml"))
STUDY_NAMES = ["redaction", "band_sweep", "crm", "shared_attention", "multitask"]


def test_every_study_has_a_config() -> None:
    assert {p.stem for p in STUDIES} == {"base", *STUDY_NAMES}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.name == "scenes" and cfg.data.kwargs["size"] == [48, 64]
    assert cfg.trainer.max_steps == 2400 and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_documented_grids_are_valid(name: str, monkeypatch, capsys) -> None:
    commands = documented_commands(ROOT / "configs" / "studies" / f"{name}.yaml")
    assert commands, f"{name}.yaml documents no `dejavu sweep` command"
    monkeypatch.chdir(ROOT)  # the commands name configs/studies/... from the repository root
    for argv in commands:
        if argv[0] == "python":  # a preparation step: a script of the repository
            assert (ROOT / argv[1]).is_file() and argv[1].startswith("benchmarks/"), argv
            continue
        assert argv[:3] == ["dejavu", "sweep", f"configs/studies/{name}.yaml"], argv
        assert "--seeds" in argv and argv[argv.index("--seeds") + 1] == "5"
        grid = [argv[i + 1] for i, a in enumerate(argv) if a == "--grid"]
        assert grid_cells(parse_grid(grid))  # the grid parses into named cells
        assert main([*argv[1:], "--dry-run"]) == 0, capsys.readouterr().err
        assert "reference" in capsys.readouterr().out


def test_documented_commands_are_read_whole() -> None:
    commands = documented_commands(ROOT / "configs" / "studies" / "band_sweep.yaml")
    assert len(commands) == 4  # three sweeps, then the report that combines them
    assert commands[-1][:3] == ["python", "benchmarks/study_report.py", "band"]
    first = commands[0]
    assert first[first.index("--grid") + 1].startswith("dejavu.redaction.band=[0.0, 0.1],")
    assert first[-1].endswith("[0.5, 0.7]")


@pytest.mark.realdata
def test_multitask_study_trains_on_the_real_nyud_frames(tmp_path: Path) -> None:
    # Study 5's format check: its network and DejaVu design for 20 steps on the two real
    # NYUD-v2 frames (RefineNet layout; one has no normals, which count as invalid).
    import csv
    import os
    import shutil

    from dejavu.toolkit.training import run_fit

    data = Path(os.environ.get("DEJAVU_DATA", ROOT.parent / "shared" / "data"))
    root = data / "samples" / "nyud_refinenet"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DEJAVU_DATA to the shared data folder)")
    frames = tmp_path / "nyud"
    shutil.copytree(root, frames)
    ids = sorted(p.stem.removeprefix("segm_gt_") for p in frames.glob("segm_gt_*.png"))
    assert len(ids) == 2
    for split in ("train", "val"):  # both frames in both splits: a format check only
        (frames / f"{split}.txt").write_text("\n".join(ids) + "\n")
    cfg = load_config(
        ROOT / "configs" / "studies" / "multitask.yaml",
        [
            f"output_dir={tmp_path / 'runs'}",
            "data.name=nyudv2_refinenet",
            f"data.root={frames}",
            "data.kwargs={}",
            "data.batch_size=2",
            "data.crop_size=[96, 128]",
            "trainer.max_steps=20",
            "trainer.max_epochs=20",
        ],
    )
    fit = run_fit(cfg, enable_progress_bar=False)
    rows = list(csv.DictReader(next(fit.run_dir.rglob("metrics.csv")).open()))
    regen = [float(r["train/regen"]) for r in rows if r.get("train/regen")]
    assert max(int(r["step"]) for r in rows) >= 19 and regen and all(v > 0 for v in regen)
    for key in ("seg/miou", "depth/abs_err", "normals/mean"):
        assert key in fit.metrics or f"val/{key}" in fit.metrics, sorted(fit.metrics)


def test_run_studies_skips_a_collected_sweep(tmp_path: Path, monkeypatch) -> None:
    # --skip-collected: a sweep whose results are committed is not trained again, and its
    # report step finds the committed JSON in the sweep's --out folder.
    studies = load_benchmark("run_studies")
    monkeypatch.setattr(studies, "ROOT", tmp_path)
    argv = ["python", "-m", "dejavu.toolkit.cli", "sweep", "c.yaml", "--out", "runs/studies/x"]
    assert studies.collected(argv) == tmp_path / "benchmarks" / "results" / "study_x.json"
    assert studies.reuse_collected(argv) is False
    assert not (tmp_path / "runs").exists()
    studies.collected(argv).parent.mkdir(parents=True)
    studies.collected(argv).write_text('{"cells": {}}')
    assert studies.reuse_collected(argv) is True
    assert (tmp_path / "runs" / "studies" / "x" / "sweep.json").read_text() == '{"cells": {}}'
