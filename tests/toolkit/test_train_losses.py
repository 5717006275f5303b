"""benchmarks/train_losses.py: the training-loss terms each run ended at, per sweep cell."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

from dejavu.toolkit.compare import RUN_RECORD

COLUMNS = ["epoch", "step", "train/task", "train/regen", "val/seg/miou"]


@pytest.fixture(scope="module")
def losses():
    return load_benchmark("train_losses")


def _run(root: Path, write_config, cell: str, seed: int, launches: list[list[tuple]],
         last_step: int = 10) -> Path:  # fmt: skip
    """A run folder as dejavu fit leaves it (max_steps 10), one csv version per launch."""
    run = root / "runs" / cell / f"seed{seed}"
    run.mkdir(parents=True)
    write_config(run, "config.yaml", trainer={"max_steps": 10})
    (run / "last.ckpt").write_bytes(b"")
    history = [{"epoch": 0, "step": last_step, "seg/miou": 0.5}]
    (run / "metrics.json").write_text(json.dumps({"final": {"seg/miou": 0.5}, "history": history}))
    for version, rows in enumerate(launches):
        path = run / "csv" / f"version_{version}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    return run


def test_each_term_is_averaged_over_the_last_steps_and_a_resumed_launch_wins(
    losses, tmp_path: Path, write_config
) -> None:
    root = tmp_path / "sweep"
    # seed 0: launch 0 logged steps 2-8, was killed, and launch 1 redid 6-8 and went on
    # to 10; a validation row (no train/ values) is ignored.
    _run(root, write_config, "cell_a", 0, [
        [(0, 2, 9.0, 9.0, ""), (0, 4, 9.0, 9.0, ""), (0, 6, 5.0, 5.0, ""), (0, 8, 5.0, 5.0, "")],
        [(0, 6, 0.6, 0.2, ""), (0, 8, 0.4, 0.4, ""), (0, 10, 0.2, "", ""), (0, 10, "", "", 0.5)],
    ])  # fmt: skip
    _run(root, write_config, "cell_a", 1, [[(0, 8, 1.0, 1.0, ""), (0, 10, 2.0, 3.0, "")]])
    report = losses.collect([root], ["task", "regen", "cyclic"], last=5)
    # last=5 from step 10: steps 6, 8, 10. Seed 0: task (0.6 + 0.4 + 0.2) / 3, regen
    # (0.2 + 0.4) / 2 (step 10 logged none); seed 1: steps 8 and 10.
    runs = report["cells"]["sweep/cell_a"]["runs"]
    assert runs["seed0"] == pytest.approx({"task": 0.4, "regen": 0.3})
    assert runs["seed1"] == pytest.approx({"task": 1.5, "regen": 2.0})
    assert report["cells"]["sweep/cell_a"]["mean"] == pytest.approx({"task": 0.95, "regen": 1.15})
    assert losses.table(report).splitlines()[2] == "| sweep/cell_a | 2 | 0.9500 | 1.1500 | - |"


def test_records_and_unfinished_runs_are_skipped_and_folders_kept_apart(
    losses, tmp_path: Path, write_config, capsys
) -> None:
    rows = [[(0, 10, 1.0, 1.0, "")]]
    _run(tmp_path / "now", write_config, "cell", 0, rows)
    _run(tmp_path / "now", write_config, "cell", 1, rows, last_step=6)  # still training
    record = _run(tmp_path / "now", write_config, "cell", 2, rows)
    (record / RUN_RECORD).write_text("{}")
    shutil.rmtree(record / "csv")  # what pruning leaves: no checkpoint, no log
    (record / "last.ckpt").unlink()
    _run(tmp_path / "before", write_config, "cell", 0, [[(0, 10, 3.0, 3.0, "")]])
    out = tmp_path / "losses.json"
    argv = [str(tmp_path / "now"), str(tmp_path / "before"), "--terms", "task", "--out", str(out)]
    assert losses.main(argv) == 0
    cells = json.loads(out.read_text())["cells"]
    assert {k: list(v["runs"]) for k, v in cells.items()} == {
        "now/cell": ["seed0"], "before/cell": ["seed0"]
    }  # fmt: skip
    assert cells["before/cell"]["mean"] == {"task": 3.0}
    assert "| now/cell | 1 | 1.0000 |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no run with a training log"):
        losses.collect([tmp_path / "empty"], ["task"], last=5)
