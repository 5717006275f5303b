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
