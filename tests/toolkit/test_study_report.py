"""benchmarks/study_report.py: the study tables and figures that span several sweeps.

The sweeps are real ``run_sweep`` reports whose training is replaced by fixed
per-seed values (tests/toolkit/fake_runs.py), so every expected number below is
worked out by hand from those values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark
from fake_runs import fake_training

from dejavu.toolkit.compare import RUN_RECORD
from dejavu.toolkit.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [0, 1, 2]
#: GMACs written into the fake sweeps (the fake training measures none).
GMACS = {"hrnet18": 0.064, "hrnet18_v2": 0.149, "sa_hrnet18": 0.082, "sa_hrnet18_v2": 0.168}
#: Final val mIoU per network and seed.
MIOU = {
    "hrnet18": [0.50, 0.52, 0.54],
    "hrnet18_v2": [0.55, 0.56, 0.60],
    "sa_hrnet18": [0.52, 0.55, 0.56],  # +2, +3, +2 points on hrnet18; -3, -1, -4 on v2
    "sa_hrnet18_v2": [0.55, 0.56, 0.60],  # the same as hrnet18_v2 on every seed
}


def _study_report():
    return load_benchmark("study_report")


def _sweep(tmp_path: Path, monkeypatch, write_config, models: list[str], enabled: bool) -> Path:
    def metrics(cell: str, seed: int) -> dict[str, float]:
        model = cell.split("model.name=")[1].split("+")[0]
        return {"seg/miou": MIOU[model][seed], "loss": 1.0}

    fake_training(monkeypatch, metrics)
    out = tmp_path / ("sa" if enabled else "base")
    grid = [f"model.name={','.join(models)}", f"dejavu.enabled={str(enabled).lower()}"]
    run_sweep(write_config(tmp_path, "tiny.yaml"), grid, SEEDS, out_dir=out)
    report = json.loads((out / "sweep.json").read_text())
    for cell in report["cells"].values():
        cell["gmacs"] = GMACS[cell["values"]["model.name"]]
    (out / "sweep.json").write_text(json.dumps(report))
    return out


@pytest.fixture()
def sweeps(tmp_path: Path, monkeypatch, write_config) -> tuple[Path, Path]:
    base = _sweep(tmp_path, monkeypatch, write_config, ["hrnet18", "hrnet18_v2"], False)
    sa = _sweep(tmp_path, monkeypatch, write_config, ["sa_hrnet18", "sa_hrnet18_v2"], True)
    return base, sa


def _row(table: str, network: str) -> list[str]:
    (line,) = [row for row in table.splitlines() if row.startswith(f"| {network} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_shared_attention_pairs_each_sa_network_with_its_width_and_the_next(
    sweeps: tuple[Path, Path], tmp_path: Path
) -> None:
    module = _study_report()
    base, sa = (module.load(p) for p in sweeps)
    out = tmp_path / "img" / "sa.png"
    table = module.shared_attention_figure(base, sa, out)
    assert out.stat().st_size > 0
    # sa_hrnet18 - hrnet18 = +2, +3, +2 points: mean 2.33, sd 0.577, t(0.975, 2) = 4.303
    half = 4.302652729911275 * 0.5773502691896258 / 3**0.5
    _, gmacs, mean, same, wider = _row(table, "sa_hrnet18")
    assert (gmacs, mean) == ("0.082", "54.33")
    # an interval that excludes 0 is marked " *"
    assert same == f"+2.33 [{2.3333333 - half:+.2f}, {2.3333333 + half:+.2f}] (n=3) *"
    # against the next wider plain network, hrnet18_v2: -3, -1, -4 points
    assert wider.startswith("-2.67 [") and wider.endswith("(n=3)")
    # equal to its plain width on every seed: zero difference, zero-width interval
    assert _row(table, "sa_hrnet18_v2")[3] == "+0.00 [+0.00, +0.00] (n=3)"
    assert _row(table, "sa_hrnet18_v2")[4] == "-"  # no wider plain network
    assert _row(table, "hrnet18")[2:] == ["52.00", "-", "-"]


def test_tables_are_written_with_md(sweeps: tuple[Path, Path], tmp_path: Path, monkeypatch,
                                     capsys) -> None:  # fmt: skip
    module = _study_report()
    md, png = tmp_path / "t.md", tmp_path / "f.png"
    argv = ["study_report.py", "shared_attention", *map(str, sweeps), "--out", str(png),
            "--md", str(md)]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    module.main()
    assert md.read_text().startswith("| network | GMACs | seg/miou (%) |")
    assert md.read_text().strip() in capsys.readouterr().out and png.is_file()


@pytest.fixture()
def redaction_sweep(tmp_path: Path, monkeypatch, write_config) -> Path:
    """A segmentation sweep of study 1 over two redactions, at fixed per-seed mIoU."""
    # cell names: dejavu.redaction=none, dejavu.redaction=random_p-0.25
    values = {"none": [0.50, 0.51, 0.52], "random_p-0.25": [0.53, 0.55, 0.56]}  # +3, +4, +4

    def metrics(cell: str, seed: int) -> dict[str, float]:
        return {"seg/miou": values[cell.split("=")[1]][seed], "loss": 1.0}

    fake_training(monkeypatch, metrics)
    out = tmp_path / "red"
    grid = ["dejavu.redaction={name: none},{name: random, p: 0.25}"]
    run_sweep(write_config(tmp_path, "tiny.yaml"), grid, SEEDS, out_dir=out)
    return out


def test_redaction_table_names_the_winner_per_task(redaction_sweep: Path) -> None:
    table = _study_report().redaction_table([_study_report().load(redaction_sweep)])
    assert "| none | 51.00 |" in table
    assert "| random_p-0.25 | 54.67 (+3.67 [" in table
    assert "the best mean is **random_p-0.25**'s, +3.67 [" in table


def test_redaction_figure_is_written_from_the_cli(redaction_sweep: Path, tmp_path: Path,
                                                  monkeypatch, capsys) -> None:  # fmt: skip
    out = redaction_sweep
    png, md = tmp_path / "img" / "red.png", tmp_path / "red.md"
    argv = ["study_report.py", "redaction", str(out), "--out", str(png), "--md", str(md)]
    monkeypatch.setattr("sys.argv", argv)
    _study_report().main()
    assert png.stat().st_size > 0 and f"wrote {png}" in capsys.readouterr().out
    assert md.read_text().startswith("| redaction | seg/miou (Δ vs none) |")


#: Study 3's fake mIoU per cell and seed (the CRM cells keyed by CRM and cyclic weight).
CRM_MIOU = {
    ("forward", "0.0"): [0.52, 0.53, 0.57],  # +2, +1, +3 on no DejaVu
    ("forward", "1.0"): [0.55, 0.57, 0.59],  # +3, +4, +2 on CRM-F without CL
    ("recursive_num_groups-4", "0.0"): [0.50, 0.52, 0.54],  # no DejaVu's, seed by seed
    ("recursive_num_groups-4", "1.0"): [0.49, 0.52, 0.53],
}
NO_DEJAVU = [0.50, 0.52, 0.54]
TS_MIOU = {"0.0": [0.52, 0.53, 0.57], "0.1": [0.53, 0.55, 0.58]}  # +1, +2, +1 on weight 0


@pytest.fixture()
def crm_sweeps(tmp_path: Path, monkeypatch, write_config) -> dict[str, Path]:
    def metrics(cell: str, seed: int) -> dict[str, float]:
        values = dict(part.split("=", 1) for part in cell.split("+"))
        if "dejavu.crm" in values:
            miou = CRM_MIOU[(values["dejavu.crm"], values["dejavu.cyclic_weight"])]
        elif "dejavu.text.weight" in values:
            miou = TS_MIOU[values["dejavu.text.weight"]]
        else:
            miou = NO_DEJAVU
        return {"seg/miou": miou[seed], "loss": 1.0}

    fake_training(monkeypatch, metrics)
    config = write_config(tmp_path, "tiny.yaml")
    grids = {
        "crm": [
            "dejavu.crm={kind: forward},{kind: recursive, num_groups: 4}",
            "dejavu.cyclic_weight=0.0,1.0",
        ],
        "crm_baseline": ["dejavu.enabled=false"],
        "crm_ts": ["dejavu.text.weight=0.0,0.1"],
    }
    for name, grid in grids.items():
        run_sweep(config, grid, SEEDS, out_dir=tmp_path / name)
    return {name: tmp_path / name for name in grids}


def test_crm_report_pairs_each_mode_with_no_dejavu_and_cl_with_its_mode(
    crm_sweeps: dict[str, Path], tmp_path: Path
) -> None:
    module = _study_report()
    crm, base, ts = (module.load(crm_sweeps[k]) for k in ("crm", "crm_baseline", "crm_ts"))
    cells = list(crm["cells"])
    step_time = {  # a benchmarks/step_time.py report of the same cells, baseline first
        "reference": "baseline (dejavu.enabled=false)",
        "cells": {"baseline (dejavu.enabled=false)": {"ratio": 1.0}}
        | {cell: {"ratio": 1.25 + i} for i, cell in enumerate(cells)},
    }
    out = tmp_path / "img" / "crm.png"
    table = module.crm_report(crm, base, ts, out, step_time=step_time)
    assert out.stat().st_size > 0
    assert _row(table, "no DejaVu") == ["no DejaVu", "52.00", "", "", "1.00"]
    # CRM-F - no DejaVu = +2, +1, +3 points: mean 2, sd 1, t(0.975, 2) = 4.303
    half = 4.302652729911275 / 3**0.5
    _, mean, vs_base, cl, ratio = _row(table, "CRM-F")
    assert (mean, cl, ratio) == ("54.00", "-", "1.25")
    assert vs_base == f"+2.00 [{2 - half:+.2f}, {2 + half:+.2f}] (n=3)"
    # + CL is paired with CRM-F (+3, +4, +2: the interval excludes 0), not with no DejaVu
    assert _row(table, "CRM-F + CL")[3] == f"+3.00 [{3 - half:+.2f}, {3 + half:+.2f}] (n=3) *"
    assert _row(table, "CRM-R (4 groups)")[2] == "+0.00 [+0.00, +0.00] (n=3)"
    assert _row(table, "CRM-R (4 groups) + CL")[3].startswith("-0.67 [")
    # DejaVu-TS against its weight-0 cell (+1, +2, +1) and against no DejaVu
    ts_row = _row(table, "0.1")
    assert ts_row[1] == "55.33" and ts_row[2].startswith("+1.33 [")
    assert _row(table, "0.0")[2] == "" and _row(table, "0.0")[4] == "-"  # no TS step times


def test_crm_report_from_the_cli(crm_sweeps: dict[str, Path], tmp_path: Path, monkeypatch,
                                 capsys) -> None:  # fmt: skip
    png, md = tmp_path / "crm.png", tmp_path / "crm.md"
    sweeps = [str(crm_sweeps[k]) for k in ("crm", "crm_baseline", "crm_ts")]
    argv = ["study_report.py", "crm", *sweeps, "--out", str(png), "--md", str(md)]
    monkeypatch.setattr("sys.argv", argv)
    _study_report().main()
    assert png.stat().st_size > 0
    assert md.read_text().startswith("| cell | seg/miou (%) | Δ vs no DejaVu |")
    assert "| CRM-F | 54.00 |" in capsys.readouterr().out


def _records(folder: Path, cell: str, values: dict[int, float | None]) -> None:
    """Run records of ``cell`` as run_studies.py archives them (config, metrics, record)."""
    for seed, miou in values.items():
        run = folder / "runs" / cell / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("name: seed{seed}\n")
        final = {"loss": 1.0} if miou is None else {"loss": 1.0, "seg/miou": miou}
        (run / "metrics.json").write_text(json.dumps({"final": final, "history": []}))
        (run / RUN_RECORD).write_text(json.dumps({"train_time_s": 1.0}))


def test_crm_report_pairs_earlier_runs_of_a_cell_with_the_sweep_s(
    crm_sweeps: dict[str, Path], tmp_path: Path, monkeypatch, write_config
) -> None:
    module = _study_report()
    crm = module.load(crm_sweeps["crm"])
    (cell,) = [c for c in crm["cells"] if "forward" in c and "cyclic_weight=1.0" in c]
    before = tmp_path / "before"
    # The sweep's CRM-F + CL runs are 0.55, 0.57, 0.59: now - before = +5, +6, +7 points;
    # seed 2's earlier run never validated, so the pairs are seeds 0 and 1 only.
    _records(before, cell, {0: 0.50, 1: 0.51, 2: None})
    # seed 3 is still training (a validation mid-way, last.ckpt): left out
    running = before / "runs" / cell / "seed3"
    running.mkdir()
    write_config(running, "config.yaml", trainer={"max_steps": 10})
    (running / "last.ckpt").write_bytes(b"")
    history = [{"epoch": 0, "step": 5, "seg/miou": 0.4}]
    (running / "metrics.json").write_text(json.dumps({"final": history[0], "history": history}))
    records = module.record_per_seed(before, "seg/miou")
    assert records == {cell: {0: 0.50, 1: 0.51}}
    base, ts = module.load(crm_sweeps["crm_baseline"]), module.load(crm_sweeps["crm_ts"])
    table = module.crm_report(crm, base, ts, tmp_path / "crm.png", before=records)
    # +5.5 mean, sd 0.7071, t(0.975, 1) = 12.706: half-width 12.706 * 0.7071 / sqrt(2) = 6.35
    assert table.splitlines()[-1] == "| CRM-F + CL | 50.50 | 57.00 | +5.50 [-0.85, +11.85] (n=2) |"
    # and from the command line
    md = tmp_path / "crm.md"
    sweeps = [str(crm_sweeps[k]) for k in ("crm", "crm_baseline", "crm_ts")]
    argv = ["study_report.py", "crm", *sweeps, "--out", str(tmp_path / "c.png"),
            "--md", str(md), "--before", str(before)]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    module.main()
    assert md.read_text().splitlines()[-1] == table.splitlines()[-1]
    # a record of a cell the sweep does not have, and a folder of no finished run
    _records(tmp_path / "other", "dejavu.crm={kind: zero}", {0: 0.5})
    other = module.record_per_seed(tmp_path / "other", "seg/miou")
    with pytest.raises(ValueError, match="not a cell of the sweep"):
        module.crm_report(crm, base, ts, tmp_path / "x.png", before=other)
    with pytest.raises(ValueError, match="no finished run"):
        module.record_per_seed(tmp_path / "empty", "seg/miou")


def test_crm_label_names_the_seed_s_modes() -> None:
    label = _study_report().crm_label
    assert label({"dejavu.crm": {"kind": "recursive", "num_groups": 1}}) == "CRM-R (1 group)"
    assert label({"dejavu.crm": {"kind": "zero", "tile": 4}, "dejavu.cyclic_weight": 1.0}) == (
        "CRM-0 (4 x 4 tiles) + CL"
    )
    with pytest.raises(ValueError, match=r"needs a dejavu\.crm axis"):
        label({"model.name": "hrnet18"})
