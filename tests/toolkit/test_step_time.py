"""benchmarks/step_time.py: training-step time per cell of a sweep grid, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

from dejavu.toolkit.config import ConfigError, load_config
from dejavu.toolkit.models import create_model
from dejavu.toolkit.tasks import create_task


@pytest.fixture(scope="module")
def step_time():
    return load_benchmark("step_time")


def test_every_cell_and_the_baseline_are_timed(step_time, tmp_path: Path, write_config, capsys):
    config = write_config(tmp_path)
    out, md = tmp_path / "st.json", tmp_path / "st.md"
    argv = [str(config), "--baseline", "--steps", "2", "--warmup", "0",
            "--grid", "dejavu.cyclic_weight=0.0,1.0",
            "--out", str(out), "--md", str(md)]  # fmt: skip
    assert step_time.main(argv) == 0
    report = json.loads(out.read_text())
    names = list(report["cells"])
    assert names == [step_time.BASELINE, "dejavu.cyclic_weight=0.0", "dejavu.cyclic_weight=1.0"]
    assert report["reference"] == step_time.BASELINE
    assert report["cells"][step_time.BASELINE]["ratio"] == 1.0
    for cell in report["cells"].values():
        assert len(cell["times_s"]) == 2 and cell["q1_s"] <= cell["median_s"] <= cell["q3_s"]
        ratio = cell["median_s"] / report["cells"][step_time.BASELINE]["median_s"]
        assert cell["ratio"] == pytest.approx(ratio)
    # The baseline trains the base network alone; DejaVu adds its CRM's parameters.
    cfg = load_config(config)
    heads = create_task(cfg.task.name, num_classes=6).heads
    base = create_model(cfg.model.name, heads=heads, **cfg.model.kwargs)
    assert report["cells"][step_time.BASELINE]["params"] == sum(
        p.numel() for p in base.parameters()
    )
    assert report["cells"]["dejavu.cyclic_weight=0.0"]["params"] > sum(
        p.numel() for p in base.parameters()
    )
    assert report["cells"]["dejavu.cyclic_weight=1.0"]["overrides"] == ["dejavu.cyclic_weight=1.0"]
    assert report["command"].startswith("python benchmarks/step_time.py ")
    assert md.read_text().strip() in capsys.readouterr().out


def test_bad_input_is_named(step_time, tmp_path: Path, write_config, capsys):
    config = write_config(tmp_path)
    assert step_time.main([str(config)]) == 2
    assert "nothing to time" in capsys.readouterr().err
    argv = [str(config), "--grid", "dejavu.cyclic_weight=0.0", "--reference", "nope"]
    assert step_time.main(argv) == 2
    assert "reference 'nope' is not a cell" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no_such_key"):
        step_time.measure(config, ["dejavu.no_such_key=1"])
