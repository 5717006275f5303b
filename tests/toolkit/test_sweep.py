"""``dejavu sweep``: grid syntax, cell names, a real 2 x 2 sweep, reuse, parallel and submitit."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_runs import fake_training
from PIL import Image

import dejavu.toolkit.sweep as sweep_module
from dejavu.toolkit.cli import main
from dejavu.toolkit.compare import (
    effect_label,
    find_run_dirs,
    format_difference,
    paired_difference,
)
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.sweep import (
    axis_positions,
    cell_name,
    compute_axes,
    grid_cells,
    make_executor,
    parse_grid,
    parse_grid_axis,
    run_sweep,
    split_values,
    sweep_plots,
    value_name,
)

GRID = ["dejavu.regen_weight=0.5,2.0"]
CELLS = ["dejavu.regen_weight=0.5", "dejavu.regen_weight=2.0"]


# ------------------------------------------------------------------ grid and names
def test_values_split_at_top_level_commas_only() -> None:
    assert split_values("false,true") == ["false", "true"]
    assert split_values("[0,0.1],[0.1,0.2]") == ["[0,0.1]", "[0.1,0.2]"]
    assert split_values("{name: random, p: 0.25}, {name: blocks}") == [
        "{name: random, p: 0.25}",
        " {name: blocks}",
    ]
    assert split_values("'a, b',\"c,\\\"d\",it's") == ["'a, b'", '"c,\\"d"', "it's"]
    assert split_values("[[1, 2], {a: [3, 4]}],5") == ["[[1, 2], {a: [3, 4]}]", "5"]


def test_axis_values_are_yaml_and_keep_their_text() -> None:
    axis = parse_grid_axis(
        "dejavu.redaction={name: bandstop, band: [0, 0.1]},{name: lowpass, cutoff: 1e-1}"
    )
    assert axis.key == "dejavu.redaction"
    assert axis.values == (
        {"name": "bandstop", "band": [0, 0.1]},
        {"name": "lowpass", "cutoff": 0.1},
    )
    assert axis.texts == ("{name: bandstop, band: [0, 0.1]}", "{name: lowpass, cutoff: 1e-1}")
    axis = parse_grid_axis("dejavu.enabled=false, true")
    assert axis.values == (False, True) and axis.texts == ("false", "true")


def test_cell_names() -> None:
    assert value_name(None) == "null"
    assert value_name("a/b c:d") == "a_b_c_d"  # no path separator, space or colon
    assert value_name({"kind": "recursive", "num_groups": 4}) == "recursive_num_groups-4"
    assert value_name([]) == "empty"
    assert cell_name([("dejavu.enabled", False)]) == "dejavu.enabled=false"
    assert (
        cell_name([("dejavu.redaction.band", [0.1, 0.2]), ("optim.lr", 1e-3)])
        == "dejavu.redaction.band=0.1_0.2+optim.lr=0.001"
    )
    long = [(f"model.kwargs.option_number_{i}", "x" * 20) for i in range(6)]
    name = cell_name(long)
    assert len(name) == 120 and name == cell_name(long)  # cut, and deterministic
    assert name != cell_name([*long[:-1], ("model.kwargs.option_number_5", "y" * 20)])
    for n in (name, cell_name([("a", {"name": "x", "band": [0, 1]})])):
        assert re.fullmatch(r"[A-Za-z0-9._=+-]+", n)


def test_grid_cells_are_every_combination_first_axis_slowest() -> None:
    cells = grid_cells(parse_grid(["dejavu.enabled=false,true", "optim.lr=0.1,0.2,0.3"]))
    assert len(cells) == 6
    assert [c.name for c in cells[:4]] == [
        "dejavu.enabled=false+optim.lr=0.1",
        "dejavu.enabled=false+optim.lr=0.2",
        "dejavu.enabled=false+optim.lr=0.3",
        "dejavu.enabled=true+optim.lr=0.1",
    ]
    assert cells[5].overrides == ("dejavu.enabled=true", "optim.lr=0.3")
    assert cells[5].values == {"dejavu.enabled": True, "optim.lr": 0.3}


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["no_equals_sign"], "KEY=V1,V2"),
        (["=1,2"], "KEY=V1,V2"),
        (["optim.lr="], "value 1 is empty"),
        (["optim.lr=0.1,"], "value 2 is empty"),
        (["optim.lr=0.1,,0.2"], "value 2 is empty"),
        (["dejavu.redaction.band=[0,0.1],[0.1,0.2"], "unclosed"),
        (["dejavu.redaction.band=0,0.1]"], "unbalanced"),
        (["dejavu.redaction={name: blocks]"], "unbalanced"),
        (["task.name='depth"], "unclosed quote"),
        (["optim.lr=0.1,0.1"], "give each value once"),
        (["dejavu.redaction.band=[0.1,0.2],[0.1, 0.2]"], "give each value once"),
        (["seed=0,1"], "--seeds"),
        (["output_dir=a,b"], "--out"),
        (["optim.lr=0.1", "optim.lr=0.2"], "given twice"),
        ([], "at least one --grid"),
    ],
)
def test_bad_grid_input(grid: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        grid_cells(parse_grid(grid))


def test_axis_positions_of_numbers_and_intervals() -> None:
    assert axis_positions([1, 0.5]) == ([1.0, 0.5], None)
    xs, ticks = axis_positions([[0, 0.1], [0.5, 0.7]])  # type: ignore[misc]
    assert xs == pytest.approx([0.05, 0.6]) and ticks == ["0-0.1", "0.5-0.7"]
    for values in ([True, False], ["a", "b"], [{"name": "x"}], [[0, 1, 2]], [1, "a"]):
        assert axis_positions(values) is None


# ------------------------------------------------------------------ bad input: exit 2
@pytest.fixture()
def no_training(monkeypatch) -> list:
    """Fail the test if anything trains; the list records attempts."""
    import dejavu.toolkit.training as training

    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("nothing may train")

    monkeypatch.setattr(training, "run_fit", refuse)
    return calls


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "optim.lrr=0.1,0.2"], "unknown config key 'optim.lrr'"),
        (["--grid", "dejavu.redaction={name: blocks},{name: nonsense}"], "'nonsense'"),
        (["--grid", "dejavu.redaction={name: blocks, cutoff: 0.2}"], "'cutoff'"),
        (["--grid", "optim.lr=0.1,0.2", "--reference", "optim.lr=0.3"], "not a cell"),
        (["--grid", "optim.lr=0.1", "--metric", "seg/nope"], "--metric"),
        (["--grid", "optim.lr=0.1", "--set", "optim.lr=0.2"], "both a --set"),
        (["--grid", "optim.lr=0.1", "--jobs", "0"], "jobs must be a positive"),
        (["--grid", "optim.lr=0.1", "--partition", "gpu"], "need --launcher"),
        (["--grid", "optim.lr=0.1", "--launcher", "submitit-local", "--partition", "x"], "only"),
        (["--grid", "optim.lr=[0.1"], "unclosed"),
        ([], "at least one --grid"),
    ],
)
def test_bad_input_is_refused_before_any_training(
    tmp_path: Path, capsys, write_config, no_training: list, extra: list[str], message: str
) -> None:
    config = write_config(tmp_path, "tiny.yaml")
    out = tmp_path / "sw"
    assert main(["sweep", str(config), "--seeds", "2", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dejavu: error:") and message in err
    assert no_training == [] and not (out / "runs").exists()


def test_sweep_needs_seeds(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path, "tiny.yaml")
    assert main(["sweep", str(config), "--grid", "optim.lr=0.1"]) == 2
    assert "seed" in capsys.readouterr().err


def test_dry_run_lists_the_cells_and_trains_nothing(
    tmp_path: Path, capsys, write_config, no_training: list
) -> None:
    config = write_config(tmp_path, "tiny.yaml")
    args = ["sweep", str(config), "--seeds", "3", "--out", str(tmp_path / "sw"), "--dry-run"]
    assert main([*args, "--grid", "dejavu.enabled=false,true", "--grid", "optim.lr=0.1,0.2"]) == 0
    out = capsys.readouterr().out
    assert "4 cell(s) x 3 seed(s)" in out
    assert re.search(r"dejavu\.enabled=false\+optim\.lr=0\.1 .* reference", out)
    assert "dejavu.enabled=true+optim.lr=0.2" in out
    assert "main metric: seg/miou (max)" in out
    assert no_training == [] and not (tmp_path / "sw").exists()


# ------------------------------------------------------------------ submitit launchers
def test_slurm_options_reach_submitit(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("submitit")
    if shutil.which("srun") is None:  # not a SLURM machine: refused, saying why
        with pytest.raises(ConfigError, match="srun"):
            make_executor("slurm", tmp_path / "a", timeout_min=10)
    srun = tmp_path / "bin" / "srun"  # what submitit looks for to tell a SLURM machine
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{srun.parent}:{Path('/usr/bin')}:{Path('/bin')}")
    executor = make_executor(
        "slurm",
        tmp_path / "b",
        partition="gpu",
        gpus_per_node=2,
        timeout_min=90,
        array_parallelism=4,
        options=["qos=high", "cpus_per_task=8", "additional_parameters={reservation: r1}"],
    )
    params = executor.parameters
    assert params["partition"] == "gpu" and params["gpus_per_node"] == 2
    assert params["time"] == 90 and params["array_parallelism"] == 4
    assert params["qos"] == "high" and params["cpus_per_task"] == 8
    assert params["additional_parameters"] == {"reservation": "r1"}
    with pytest.raises(ConfigError, match="bogus"):
        make_executor("slurm", tmp_path / "c", timeout_min=10, options=["bogus=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        make_executor("slurm", tmp_path / "c", timeout_min=10, options=["qos"])
    with pytest.raises(ConfigError, match="--timeout-min"):
        make_executor("slurm", tmp_path / "c")


def test_a_stopped_job_is_requeued_with_the_same_run() -> None:
    pytest.importorskip("submitit")
    job = sweep_module.TrainJob()
    again = job.checkpoint("c.yaml", ["seed=1"], [], None)
    assert again.function is job and again.args == ("c.yaml", ["seed=1"], [], None)


def test_missing_submitit_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails
    with pytest.raises(ConfigError, match=re.escape("dejavu-dense[slurm]")):
        make_executor("submitit-local", tmp_path)


# ------------------------------------------------------------------ a real 2 x 2 sweep
@pytest.fixture(scope="module")
def swept(tmp_path_factory, write_config) -> tuple[dict, Path, str, str]:
    directory = tmp_path_factory.mktemp("sweep")
    config = write_config(directory, "tiny.yaml")
    out = directory / "sw"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        args = ["sweep", str(config), "--grid", *GRID, "--seeds", "2", "--out", str(out)]
        rc = main(args)
    assert rc == 0, stderr.getvalue()
    return json.loads((out / "sweep.json").read_text()), out, stdout.getvalue(), stderr.getvalue()


def test_sweep_json_has_every_run(swept: tuple[dict, Path, str, str]) -> None:
    report, out, _, _ = swept
    assert report["grid"] == {"dejavu.regen_weight": [0.5, 2.0]}
    assert list(report["cells"]) == CELLS and report["reference"] == CELLS[0]
    assert report["seeds"] == [0, 1] and report["main_metric"] == "seg/miou"
    assert report["metric_direction"] == "max"
    assert [(r["cell"], r["seed"]) for r in report["runs"]] == [
        (c, s) for c in CELLS for s in (0, 1)
    ]
    for run in report["runs"]:
        assert run["overrides"] == [run["cell"]]  # dejavu.regen_weight=0.5: name == override
        assert run["status"] == "trained"
        assert isinstance(run["params"], int) and run["params"] > 0
        assert isinstance(run["gmacs"], float) and run["gmacs"] > 0
        assert run["train_time_s"] > 0
        run_dir = out / "runs" / run["cell"] / f"seed{run['seed']}"
        assert Path(run["run_dir"]) == run_dir
        # The recorded metrics are the run's own final validation metrics.
        final = json.loads((run_dir / "metrics.json").read_text())["final"]
        for key, value in final.items():
            if value is not None:
                assert run["metrics"][key.removeprefix("val/")] == pytest.approx(value)
        saved = (run_dir / "config.yaml").read_text()
        assert f"regen_weight: {run['cell'].split('=')[1]}" in saved
        assert f"seed: {run['seed']}" in saved
    for key in ("machine", "date", "config", "launcher", "jobs"):
        assert report[key]
    assert report["machine"]["cpu_count"] >= 1
    assert report["files"]["plots"] == [str(out / "sweep_dejavu.regen_weight.png")]


def test_cell_summaries_are_those_of_the_runs(swept: tuple[dict, Path, str, str]) -> None:
    report, _, _, _ = swept
    for name, cell in report["cells"].items():
        runs = [r for r in report["runs"] if r["cell"] == name]
        assert cell["values"] == {"dejavu.regen_weight": float(name.split("=")[1])}
        for metric, stats in cell["metrics"].items():
            values = [r["metrics"][metric] for r in runs]
            assert stats["values"] == pytest.approx(values)
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
        assert cell["params"] == runs[0]["params"] == runs[1]["params"]


def test_paired_statistics_match_paired_difference(swept: tuple[dict, Path, str, str]) -> None:
    report, out, stdout, _ = swept
    ref, other = CELLS
    assert set(report["paired"]) == {other}
    paired = report["paired"][other]
    by = {(r["cell"], r["seed"]): r["metrics"] for r in report["runs"]}
    assert "seg/miou" in paired and "loss" in paired
    md = (out / "sweep.md").read_text()
    for metric, st in paired.items():
        a = [by[(ref, s)][metric] for s in (0, 1)]
        b = [by[(other, s)][metric] for s in (0, 1)]
        expected = paired_difference(a, b)
        assert st["diffs"] == pytest.approx(expected["diffs"])
        for key in ("mean", "std", "t_crit", "ci", "p_value"):
            assert st[key] == pytest.approx(expected[key])
        assert st["verdict"] == effect_label(expected) and st["seeds"] == [0, 1]
    miou = paired["seg/miou"]
    row = next(line for line in md.splitlines() if line.startswith(f"| {other} |"))
    assert format_difference(miou, "seg/miou") in row and effect_label(miou) in row
    assert f"| {ref} |" in md and "(reference)" in md
    assert "## Every final metric" in md and "seg/aacc (%)" in md
    assert f"Paired differences vs {ref}" in md
    assert f"{report['cells'][ref]['params']:,}" in md
    assert "sweep_dejavu.regen_weight.png" in md
    # The table goes to stdout; progress lines to stderr.
    assert format_difference(miou, "seg/miou") in stdout
    assert "wrote " in stdout and "sweep.json" in stdout


def test_progress_goes_to_stderr(swept: tuple[dict, Path, str, str]) -> None:
    _, _, stdout, stderr = swept
    assert f"[{CELLS[0]}] seed 0: training ..." in stderr
    assert f"[{CELLS[1]}] seed 1: done in" in stderr
    assert "sweep: 2 cell(s) x 2 seed(s); 0 finished already, 4 to train" in stderr
    assert "training ..." not in stdout


def test_plot_of_the_numeric_axis(swept: tuple[dict, Path, str, str]) -> None:
    _, out, _, _ = swept
    with Image.open(out / "sweep_dejavu.regen_weight.png") as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_accuracy_against_compute_plot(tmp_path: Path) -> None:
    """Cells over two models (two costs) x DejaVu off/on: the model changes the GMACs,
    DejaVu does not, so the plot has one line per DejaVu setting."""
    values = {"s": 1.0, "l": 3.0}
    cells = {
        f"model={m}+dejavu={d}": {
            "values": {"model.name": m, "dejavu.enabled": d},
            "gmacs": g,
            "metrics": {"seg/miou": {"mean": 0.5, "values": [0.49, 0.51]}},
        }
        for m, g in values.items()
        for d in (False, True)
    }
    report = {
        "grid": {"model.name": ["s", "l"], "dejavu.enabled": [False, True]},
        "cells": cells,
        "main_metric": "seg/miou",
        "metric_direction": "max",
        "seeds": [0, 1],
    }
    assert compute_axes(report) == ["model.name"]
    written = sweep_plots(report, tmp_path)
    assert [p.name for p in written] == ["sweep_gmacs.png"]  # no numeric axis here
    with Image.open(written[0]) as image:
        assert image.format == "PNG" and image.width > 300
    for entry in cells.values():
        entry["gmacs"] = 2.0  # the same cost everywhere: nothing to plot
    assert compute_axes(report) == [] and sweep_plots(report, tmp_path / "none") == []


def test_running_again_reuses_every_run(swept: tuple[dict, Path, str, str]) -> None:
    report, out, _, _ = swept
    config = out.parent / "tiny.yaml"
    ckpts = [Path(r["run_dir"]) / "last.ckpt" for r in report["runs"]]
    stamps = [c.stat().st_mtime_ns for c in ckpts]
    lines: list[str] = []
    again = run_sweep(config, GRID, [0, 1], out_dir=out, log=lines.append)
    assert [c.stat().st_mtime_ns for c in ckpts] == stamps  # nothing retrained
    assert sum("reusing the finished run" in line for line in lines) == 4
    assert [r["status"] for r in again["runs"]] == ["reused"] * 4
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in report["runs"]]
    assert again["paired"] == report["paired"]


def test_a_run_dir_of_another_config_is_refused(
    swept: tuple[dict, Path, str, str], no_training: list
) -> None:
    _, out, _, _ = swept
    with pytest.raises(FileExistsError, match="different config"):
        run_sweep(out.parent / "tiny.yaml", GRID, [0], out_dir=out, overrides=["optim.lr=0.5"])
    assert no_training == []


def _metrics_of(report: dict) -> dict[tuple[str, int], dict[str, float]]:
    return {(r["cell"], r["seed"]): r["metrics"] for r in report["runs"]}


# A fresh `dejavu fit` process and this test process may run different CPU kernels
# (oneDNN picks them per process), so the same run agrees to float rounding, not bit for
# bit: 1.5e-4 relative in the training loss was seen in the full suite. A wrong seed or
# wrong overrides move the loss far more (the two cells differ by over 10 x RUN_TO_RUN).
RUN_TO_RUN = 1e-3


def test_the_cells_differ_by_far_more_than_run_to_run_noise(
    swept: tuple[dict, Path, str, str],
) -> None:
    serial = _metrics_of(swept[0])
    for seed in (0, 1):
        a, b = (serial[(cell, seed)]["loss"] for cell in CELLS)
        assert abs(a - b) > 10 * RUN_TO_RUN * max(abs(a), abs(b))


def test_parallel_runs_give_the_same_metrics(
    swept: tuple[dict, Path, str, str], tmp_path: Path, monkeypatch
) -> None:
    report, out, _, _ = swept
    # Two cores for two jobs: one thread per run, as in this process (the suite's setting),
    # so the arithmetic is the same.
    monkeypatch.setattr(sweep_module, "_cores", lambda: 2)
    lines: list[str] = []
    parallel = run_sweep(
        out.parent / "tiny.yaml", GRID, [0], out_dir=tmp_path / "par", jobs=2, log=lines.append
    )
    assert "training 2 run(s), 2 at a time, 1 thread(s) each" in lines
    serial = _metrics_of(report)
    for key, metrics in _metrics_of(parallel).items():
        assert key[1] == 0
        assert metrics == pytest.approx(serial[key], rel=RUN_TO_RUN)
    for cell in CELLS:
        log = (tmp_path / "par" / "logs" / cell / "seed0.log").read_text()
        assert log.startswith("$ OMP_NUM_THREADS=1 ") and " fit " in log
        assert f"output_dir={tmp_path / 'par' / 'runs' / cell}" in log


def test_submitit_local_launcher(
    swept: tuple[dict, Path, str, str], tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("submitit")
    report, out, _, _ = swept
    monkeypatch.setattr(sweep_module, "_cores", lambda: 1)  # one torch thread, as here
    lines: list[str] = []
    done = run_sweep(
        out.parent / "tiny.yaml",
        [f"{GRID[0].split(',')[0]}"],  # dejavu.regen_weight=0.5
        [1],
        out_dir=tmp_path / "sub",
        launcher="submitit-local",
        slurm={"timeout_min": 10},
        log=lines.append,
    )
    assert any(re.search(r"seed 1: job \d+", line) for line in lines)
    assert list((tmp_path / "sub" / "submitit").glob("*_result.pkl"))
    assert done["launcher"] == "submitit-local"
    metrics = _metrics_of(done)[(CELLS[0], 1)]
    assert metrics == pytest.approx(_metrics_of(report)[(CELLS[0], 1)], rel=RUN_TO_RUN)


# ------------------------------------------------------------------ statistics, fake runs
def _fake_training(monkeypatch, miou: dict[tuple[str, int], float]) -> None:
    """Training replaced by ``miou[cell, seed]``; class 0 is absent from val (NaN)."""
    fake_training(
        monkeypatch,
        lambda cell, seed: {
            "seg/miou": miou[cell, seed],
            "seg/iou_per_class/0": float("nan"),
            "loss": 1.0 - miou[cell, seed],
        },
    )


def test_two_axes_lines_reference_and_null_for_nan(
    tmp_path: Path, monkeypatch, write_config
) -> None:
    grid = ["dejavu.enabled=false,true", "optim.lr=0.001,0.01,0.1"]
    cells = [c.name for c in grid_cells(parse_grid(grid))]
    seeds = [0, 1, 2]
    base = {s: 0.5 + 0.01 * s for s in seeds}
    # DejaVu adds 0.02, 0.025, 0.015 on the three seeds at every learning rate.
    gain = {0: 0.02, 1: 0.025, 2: 0.015}
    miou = {
        (c, s): base[s] + (gain[s] if "enabled=true" in c else 0.0) + 0.001 * i
        for i, c in enumerate(cells)
        for s in seeds
    }
    _fake_training(monkeypatch, miou)
    ref = "dejavu.enabled=false+optim.lr=0.01"
    out = tmp_path / "sw"
    report = run_sweep(write_config(tmp_path, "tiny.yaml"), grid, seeds, reference=ref, out_dir=out)
    assert report["reference"] == ref and set(report["paired"]) == set(cells) - {ref}
    st = report["paired"]["dejavu.enabled=true+optim.lr=0.01"]["seg/miou"]
    # vs the reference: the gain plus 0.003 (the cells' offsets differ by 3 x 0.001)
    assert st["diffs"] == pytest.approx([gain[s] + 0.003 for s in seeds])
    # mean 0.023, sd 0.005: 0.023 +- 4.303 * 0.005 / sqrt(3) = [0.0106, 0.0354] excludes 0
    assert st["ci"] == pytest.approx([0.023 - 0.012421, 0.023 + 0.012421], abs=1e-5)
    assert st["verdict"] == "effect"
    same = report["paired"]["dejavu.enabled=false+optim.lr=0.1"]["seg/miou"]
    assert same["diffs"] == pytest.approx([0.001] * 3) and same["ci"] == pytest.approx([0.001] * 2)
    # Only the numeric axis gets a plot; NaN is written as null (strict JSON).
    assert report["files"]["plots"] == [str(out / "sweep_optim.lr.png")]
    text = (out / "sweep.json").read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in sweep.json"))
    assert saved["runs"][0]["metrics"]["seg/iou_per_class/0"] is None
    md = (out / "sweep.md").read_text()
    assert f"Reference cell: **{ref}**" in md
    # 0.52, 0.535, 0.535 + 0.004: mean 53.40 %, sd 0.87 points
    assert "| dejavu.enabled=true+optim.lr=0.01 | 53.40 ± 0.87 |" in md


def test_mean_interval_is_the_t_interval_of_the_mean() -> None:
    from scipy import stats

    values = [0.52, 0.55, 0.51, 0.56]
    lo, hi = sweep_module.mean_interval(values)  # type: ignore[misc]
    ref = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (lo, hi) == pytest.approx(ref)
    assert sweep_module.mean_interval([0.5]) is None


def test_a_pruned_sweep_is_collected_again(
    swept: tuple[dict, Path, str, str], tmp_path: Path, no_training: list
) -> None:
    # `dejavu prune` leaves the results: the sweep reuses every run, costs included.
    report, out, _, _ = swept
    copy = tmp_path / "sw"
    shutil.copytree(out, copy)
    for run in find_run_dirs(copy):
        config = run / "config.yaml"  # it names the original output_dir: point it at the copy
        config.write_text(config.read_text().replace(str(out), str(copy)))
    assert main(["prune", str(copy)]) == 0
    assert not list(copy.rglob("*.ckpt")) and not list(copy.rglob("*.safetensors"))
    again = run_sweep(out.parent / "tiny.yaml", GRID, [0, 1], out_dir=copy, log=lambda _: None)
    assert no_training == []
    assert [r["status"] for r in again["runs"]] == ["reused"] * 4
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in report["runs"]]
    assert again["paired"] == report["paired"]
    for name, cell in again["cells"].items():
        assert cell["checkpoints"] == [None, None]
        assert (cell["params"], cell["gmacs"]) == pytest.approx(
            (report["cells"][name]["params"], report["cells"][name]["gmacs"]), rel=1e-9
        )
