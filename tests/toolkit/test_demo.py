"""``dejavu demo --quick``: end to end, with its panels and its notice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dejavu.toolkit.cli import main
from dejavu.toolkit.demo import (
    DEMO_TASKS,
    FULL,
    HEADLINE_METRICS,
    QUICK,
    demo_config,
    demo_threads,
)


def test_demo_configs_differ_only_in_dejavu() -> None:
    from dejavu.toolkit.config import config_to_dict

    for task in DEMO_TASKS:
        base = config_to_dict(demo_config(task, False, FULL))
        dv = config_to_dict(demo_config(task, True, FULL))
        assert base["dejavu"]["enabled"] is False and dv["dejavu"]["enabled"] is True
        base.pop("name"), dv.pop("name")
        base["dejavu"].pop("enabled"), dv["dejavu"].pop("enabled")
        assert base == dv
    # The paper's pairing: spatial redaction for segmentation, spectral for geometry.
    assert demo_config("segmentation", True).dejavu.redaction["name"] == "random"
    assert demo_config("depth", True).dejavu.redaction["name"] == "bandstop"
    assert demo_config("normals", True).dejavu.redaction["name"] == "bandstop"
    with pytest.raises(ValueError, match="allowed"):
        demo_config("panoptic", True)


def test_demo_threads_leaves_busy_cores_alone(monkeypatch) -> None:
    import os

    assert 1 <= demo_threads() <= torch.get_num_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (100.0, 100.0, 100.0))
    assert demo_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    cores = len(os.sched_getaffinity(0))
    assert demo_threads() == min(torch.get_num_threads(), cores)


def test_quick_demo_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    start = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    elapsed = time.perf_counter() - start
    assert torch.get_num_threads() == threads  # restored
    assert elapsed < 60  # ~10 s alone; generous for 2 shared cores
    stdout = capsys.readouterr().out
    assert "NOT evidence" in " ".join(stdout.split())
    for task in DEMO_TASKS:
        assert task in stdout
        with Image.open(out / f"{task}_panel.png") as panel:
            width, height = panel.size
        # six columns (input, truth, baseline, DejaVu, redacted, regenerated), QUICK rows
        assert width > 3 * height / QUICK.panel_images
    results = json.loads((out / "demo.json").read_text())
    for task in DEMO_TASKS:
        for variant in ("baseline", "dejavu"):
            metrics = results["metrics"][task][variant]
            for name in HEADLINE_METRICS[task]:
                assert name in metrics
            # the number printed in the table is the run's own final metric
            run_final = json.loads(
                (out / "runs" / f"{task}_{variant}" / "metrics.json").read_text()
            )["final"]
            assert metrics == pytest.approx(run_final)
    assert "NOT evidence" in (out / "demo.md").read_text()
    # A second demo into the same folder replaces the runs instead of failing.
    assert main(["demo", "--quick", "--out", str(out)]) == 0


def test_demo_trains_the_scenes_configs_scaled_down() -> None:
    from dejavu.toolkit.config import load_config
    from dejavu.toolkit.demo import default_config_dir

    for task in DEMO_TASKS:
        yaml_cfg = load_config(default_config_dir() / f"{task}_dejavu.yaml")
        demo = demo_config(task, True, QUICK)
        # what the method does comes from the YAML; only the size of the run changes
        assert demo.task == yaml_cfg.task
        for key in ("redaction", "conditioning", "regen_loss", "regen_weight"):
            assert getattr(demo.dejavu, key) == getattr(yaml_cfg.dejavu, key), (task, key)
        assert demo.dejavu.crm == {**yaml_cfg.dejavu.crm, "width": QUICK.crm_width}
        assert demo.model.name == QUICK.model and demo.trainer.max_steps == QUICK.max_steps
