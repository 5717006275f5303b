"""Pruning finished runs: checkpoints go, the results stay collectable (``dejavu prune``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

import dejavu.toolkit.compare as compare_module
from dejavu.toolkit.cli import main
from dejavu.toolkit.compare import RUN_RECORD, find_run_dirs, prune_run
from dejavu.toolkit.compare.runs import prunable
from dejavu.toolkit.config import load_config

CHECKPOINT_FILES = ("last.ckpt", "best.ckpt", "base.safetensors")


@pytest.fixture(scope="module")
def compared(tmp_path_factory, write_config) -> tuple[dict, Path, Path]:
    """A finished one-seed comparison (two tiny runs): ``(report, config, out)``."""
    directory = tmp_path_factory.mktemp("prune")
    config = write_config(directory, "tiny_dejavu.yaml")
    out = directory / "cmp"
    report = compare_module.run_compare(config, [0], out_dir=out, log=lambda _: None)
    return report, config, out


def _retarget(run: Path, out: Path, copy: Path) -> None:
    """Point a copied run's config (which names its output_dir) at the copy, keeping the
    file's date, from which an unpruned run's training time is read."""
    config = run / "config.yaml"
    original = out / run.relative_to(copy)
    config.write_text(config.read_text().replace(str(out), str(copy)))
    shutil.copystat(original / "config.yaml", config)


def test_find_run_dirs(compared: tuple[dict, Path, Path]) -> None:
    _, _, out = compared
    found = find_run_dirs(out)
    assert [(p.parent.name, p.name) for p in found] == [("baseline", "seed0"), ("dejavu", "seed0")]
    assert find_run_dirs(found[0]) == [found[0]]
    assert find_run_dirs(out.parent / "nothing here") == []


def test_prune_keeps_what_a_comparison_reuses(
    compared: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    report, config, out = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    runs = find_run_dirs(copy)
    # The time existing_run reads off the checkpoint's date before pruning.
    before = {
        run: compare_module.existing_run(load_config(run / "config.yaml"))
        for run in find_run_dirs(out)
    }
    for run in runs:
        _retarget(run, out, copy)
        removed = prune_run(run)
        assert sorted(p.name for p in removed) == sorted(CHECKPOINT_FILES)
        assert not any((run / name).exists() for name in CHECKPOINT_FILES)
        record = json.loads((run / RUN_RECORD).read_text())
        assert record["removed"] == sorted(CHECKPOINT_FILES)
        original = out / run.relative_to(copy)
        state, result = before[original]
        assert state == "finished"
        assert record["train_time_s"] == pytest.approx(result.train_time_s)
    lines: list[str] = []
    again = compare_module.run_compare(config, [0], out_dir=copy, log=lines.append)
    assert sum("reusing the finished run" in line for line in lines) == 2
    for variant in ("baseline", "dejavu"):
        assert again[variant]["miou"] == report[variant]["miou"]
        # The time a reuse reports: the record's, which is what the checkpoint's date gave.
        kept = before[out / "runs" / variant / "seed0"][1].train_time_s
        assert again[variant]["train_time_s"] == pytest.approx([kept])
        assert again[variant]["checkpoints"] == [None]
        # The network rebuilt from base.json costs what the trained one does.
        for key in ("params", "gmacs"):
            assert again[variant][key] == pytest.approx(report[variant][key], rel=1e-9)


def test_prune_twice_changes_nothing(compared: tuple[dict, Path, Path], tmp_path: Path) -> None:
    _, _, out = compared
    run = tmp_path / "seed0"
    shutil.copytree(out / "runs" / "baseline" / "seed0", run)
    prune_run(run, keep_base=True)
    assert (run / "base.safetensors").is_file() and not (run / "last.ckpt").exists()
    record = (run / RUN_RECORD).read_text()
    assert prunable(run, keep_base=True) == ([], None)
    assert prune_run(run, keep_base=True) == []
    assert (run / RUN_RECORD).read_text() == record
    # Without keep_base a second pruning removes the network too, and says so.
    assert prune_run(run) == [run / "base.safetensors"]
    assert json.loads((run / RUN_RECORD).read_text())["removed"] == sorted(CHECKPOINT_FILES)


def _cut_short(run: Path) -> None:
    """Make a finished run look interrupted: its last validation before the end."""
    metrics = json.loads((run / "metrics.json").read_text())
    for entry in metrics["history"]:
        entry["step"], entry["epoch"] = -1, -1
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_prune_refuses_an_unfinished_run(compared: tuple[dict, Path, Path], tmp_path: Path) -> None:
    _, _, out = compared
    run = tmp_path / "seed0"
    shutil.copytree(out / "runs" / "dejavu" / "seed0", run)
    _cut_short(run)
    files, why = prunable(run)
    assert files == [] and "not finished" in why
    with pytest.raises(ValueError, match="not finished"):
        prune_run(run)
    assert (run / "last.ckpt").is_file() and not (run / RUN_RECORD).exists()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        prune_run(tmp_path)
    (run / "metrics.json").unlink()  # killed before its first validation
    assert "not finished" in prunable(run)[1]


def test_a_run_killed_before_its_first_validation_is_resumed(
    compared: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    # last.ckpt is written before metrics.json: a kill in between leaves a run that a
    # comparison or sweep resumes, rather than fails to read.
    _, _, out = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    run = copy / "runs" / "dejavu" / "seed0"
    _retarget(run, out, copy)
    (run / "metrics.json").unlink()
    assert compare_module.existing_run(load_config(run / "config.yaml")) == ("unfinished", None)


def test_cli_prune_dry_run_then_prune(
    compared: tuple[dict, Path, Path], tmp_path: Path, capsys
) -> None:
    _, _, out = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    _cut_short(copy / "runs" / "dejavu" / "seed0")
    sizes = sum((copy / "runs" / "baseline" / "seed0" / n).stat().st_size for n in CHECKPOINT_FILES)
    assert main(["prune", str(copy), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"would prune 1 run(s), {sizes / 2**20:.1f} MiB" in printed
    assert "left whole:" in printed and "dejavu/seed0: not finished" in printed
    assert (copy / "runs" / "baseline" / "seed0" / "last.ckpt").is_file()
    assert main(["prune", str(copy)]) == 0
    assert "pruned 1 run(s)" in capsys.readouterr().out
    assert not (copy / "runs" / "baseline" / "seed0" / "last.ckpt").exists()
    assert (copy / "runs" / "dejavu" / "seed0" / "last.ckpt").is_file()  # resumable
    assert main(["prune", str(tmp_path / "absent")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_pruned_run_with_a_bad_record_is_refused(
    compared: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    _, _, out = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    run = copy / "runs" / "baseline" / "seed0"
    _retarget(run, out, copy)
    prune_run(run)
    cfg = load_config(run / "config.yaml")
    assert compare_module.existing_run(cfg)[0] == "finished"
    (run / RUN_RECORD).write_text("{not json")
    with pytest.raises(ValueError, match="not a pruned run's record"):
        compare_module.existing_run(cfg)
    (run / RUN_RECORD).write_text(json.dumps({"train_time_s": 1.0}))
    _cut_short(run)
    with pytest.raises(FileExistsError, match="did not reach the end"):
        compare_module.existing_run(cfg)


def test_the_studies_archive_and_restore(compared: tuple[dict, Path, Path], tmp_path: Path) -> None:
    # benchmarks/run_studies.py keeps the studies' results across machines: the finished
    # runs' records go into the repository, and come back where the sweeps reuse them.
    _, _, out = compared
    studies = load_benchmark("run_studies")
    runs = tmp_path / "cmp"
    shutil.copytree(out, runs)
    for run in find_run_dirs(runs):
        _retarget(run, out, runs)
    _cut_short(runs / "runs" / "dejavu" / "seed0")  # a run killed mid-way: not archived
    kept = tmp_path / "archive"
    assert studies.archive(runs, kept) == 1
    record = kept / "runs" / "baseline" / "seed0"
    assert sorted(p.name for p in record.iterdir()) == sorted([*studies.KEPT, "csv"])
    logs = sorted(p.relative_to(record) for p in record.glob(studies.KEPT_LOGS))
    source = runs / "runs" / "baseline" / "seed0"
    assert logs and logs == sorted(p.relative_to(source) for p in source.glob("csv/*/*.csv"))
    assert (runs / "runs" / "dejavu" / "seed0" / "last.ckpt").is_file()
    # A fresh machine: nothing but the archive.
    shutil.rmtree(runs)
    assert studies.restore(kept, runs) == 1
    assert studies.restore(kept, runs) == 0  # what is there stays
    cfg = load_config(runs / "runs" / "baseline" / "seed0" / "config.yaml")
    state, result = compare_module.existing_run(cfg)
    assert state == "finished"
    assert result.metrics and result.last_checkpoint is None
