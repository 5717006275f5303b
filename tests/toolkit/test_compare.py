"""``dejavu compare``: statistics, variants, and a 2-seed run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_runs import fake_training

import dejavu.toolkit.compare as compare_module
from dejavu.toolkit.cli import main
from dejavu.toolkit.compare import (
    compare_markdown,
    parse_variant,
    parse_variants,
    resolve_seeds,
    summarize,
)


# ------------------------------------------------------------------ pure parts
@pytest.mark.parametrize("values", [[1.0, 2.0], [70.1, 72.4, 69.8], [0.5] * 4])
def test_summarize_matches_numpy(values: list[float]) -> None:
    s = summarize(values)
    assert s["values"] == values
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))


def test_summarize_single_and_empty() -> None:
    assert summarize([3.0]) == {"mean": 3.0, "std": 0.0, "values": [3.0]}
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_parse_variant() -> None:
    assert parse_variant("base:dejavu.enabled=false") == ("base", ["dejavu.enabled=false"])
    name, overrides = parse_variant(
        "bs:dejavu.redaction={name: bandstop, band: [0.1, 0.3]},optim.lr=0.01"
    )
    assert name == "bs"
    assert overrides == ["dejavu.redaction={name: bandstop, band: [0.1, 0.3]}", "optim.lr=0.01"]
    for bad in ("no-colon", "bad name:a=1", "x:novalue"):
        with pytest.raises(ValueError):
            parse_variant(bad)


def test_parse_variants_rejects_duplicate_names() -> None:
    assert list(parse_variants(["b:seed=1", "a:seed=2"])) == ["b", "a"]
    with pytest.raises(ValueError, match="twice"):
        parse_variants(["a:seed=1", "a:seed=2"])


def test_resolve_seeds() -> None:
    assert resolve_seeds(3, None) == [0, 1, 2]
    assert resolve_seeds(None, [5, 2]) == [5, 2]
    for n, lst in ((None, None), (2, [1]), (0, None), (None, [1, 1])):
        with pytest.raises(ValueError):
            resolve_seeds(n, lst)


def test_markdown_scales_fractions_to_percent() -> None:
    report = {
        "variants": ["baseline", "dejavu"],
        "seeds": [0, 1],
        "baseline": {
            "metrics": {
                "seg/miou": summarize([0.5, 0.6]),
                "depth/rmse": summarize([0.25, 0.35]),
                "seg/iou_per_class/0": summarize([0.1, 0.2]),
            },
            "params": 10,
            "gmacs": 0.5,
            "overrides": ["dejavu.enabled=false"],
            "train_time_s": [1.0, 1.0],
        },
        "dejavu": {
            "metrics": {
                "seg/miou": summarize([0.6, 0.7]),
                "depth/rmse": summarize([0.2, 0.3]),
                "seg/iou_per_class/0": summarize([0.1, 0.2]),
            },
            "params": 10,
            "gmacs": 0.5,
            "overrides": ["dejavu.enabled=true"],
            "train_time_s": [1.0, 1.0],
        },
        "inference_cost_equal": True,
        "overrides": [],
        "machine": {"processor": "cpu", "cpu_count": 2, "cuda": None, "torch": "x"},
        "date": "today",
    }
    md = compare_markdown(report)
    std = 100 * np.std([0.5, 0.6], ddof=1)
    assert f"| seg/miou (%) | 55.00 ± {std:.2f} | 50.00, 60.00 | 65.00 ± {std:.2f} |" in md
    # dejavu - baseline paired by seed, in percentage points; both seeds gain 10 points,
    # so the interval is that point and excludes 0: an effect (*).
    assert "| +10.00 [+10.00, +10.00] (n=2) * |" in md
    assert "| depth/rmse | 0.3000 ± 0.0707 | 0.2500, 0.3500 |" in md
    assert "| -0.0500 [-0.0500, -0.0500] (n=2) * |" in md
    assert "difference vs baseline [95 % CI]" in md
    # Per-class values are not rows of the main table; they get their own table.
    assert "| seg/iou_per_class" not in md
    assert "| 0 | 15.00 ± 7.07 | 15.00 ± 7.07 | +0.00 [+0.00, +0.00] (n=2) |" in md
    assert "identical parameters and GMACs" in md


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def compared_streams(tmp_path_factory, write_config) -> tuple[dict, Path, str, str]:
    directory = tmp_path_factory.mktemp("compare")
    config = write_config(directory, "tiny_dejavu.yaml")
    out = directory / "cmp"
    import contextlib
    import io

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["compare", str(config), "--seeds", "2", "--out", str(out)])
    assert rc == 0
    return json.loads((out / "compare.json").read_text()), out, buf.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compared(compared_streams: tuple[dict, Path, str, str]) -> tuple[dict, Path, str]:
    return compared_streams[:3]


def test_compare_json_shape(compared: tuple[dict, Path, str]) -> None:
    report, _, _ = compared
    assert report["seeds"] == [0, 1]
    assert report["variants"] == ["baseline", "dejavu"]
    for key in ("config", "machine", "date"):
        assert report[key]
    for variant in ("baseline", "dejavu"):
        entry = report[variant]
        assert isinstance(entry["params"], int) and entry["params"] > 0
        assert isinstance(entry["gmacs"], float) and entry["gmacs"] > 0
        assert len(entry["miou"]) == 2
        assert len(entry["history"]) == 2 and all(entry["history"])
        for stats in entry["metrics"].values():
            assert set(stats) == {"mean", "std", "values"}
            assert len(stats["values"]) == 2


def test_compare_statistics_are_those_of_the_per_seed_values(
    compared: tuple[dict, Path, str],
) -> None:
    report, _, _ = compared
    for variant in ("baseline", "dejavu"):
        entry = report[variant]
        for stats in entry["metrics"].values():
            assert stats["mean"] == pytest.approx(np.mean(stats["values"]))
            assert stats["std"] == pytest.approx(np.std(stats["values"], ddof=1))
        # miou in percent = 100 x the fraction the metrics report.
        np.testing.assert_allclose(
            entry["miou"], 100 * np.asarray(entry["metrics"]["seg/miou"]["values"])
        )
        # The per-seed values are the runs' own final metrics.
        for seed, ckpt in zip(report["seeds"], entry["checkpoints"], strict=True):
            run_metrics = json.loads((Path(ckpt).parent / "metrics.json").read_text())
            final = run_metrics.get("final", run_metrics)
            value = final.get("val/seg/miou", final.get("seg/miou"))
            assert value == pytest.approx(entry["metrics"]["seg/miou"]["values"][seed])


def test_compare_variants_differ_only_in_dejavu(compared: tuple[dict, Path, str]) -> None:
    report, out, _ = compared
    assert report["baseline"]["params"] == report["dejavu"]["params"]
    assert report["baseline"]["gmacs"] == report["dejavu"]["gmacs"]
    assert report["inference_cost_equal"] is True
    for variant, enabled in (("baseline", False), ("dejavu", True)):
        for seed in (0, 1):
            saved = yaml.safe_load(
                (out / "runs" / variant / f"seed{seed}" / "config.yaml").read_text()
            )
            assert saved["dejavu"]["enabled"] is enabled
            assert saved["seed"] == seed
            assert saved["trainer"]["max_steps"] == 2
    # Different seeds give different runs.
    values = report["baseline"]["metrics"]["loss"]["values"]
    assert values[0] != values[1]


def test_compare_prints_and_writes_the_table(compared: tuple[dict, Path, str]) -> None:
    report, out, stdout = compared
    md = (out / "compare.md").read_text()
    assert "seg/miou (%)" in md and "seg/miou (%)" in stdout
    assert "identical parameters and GMACs" in md
    assert "equal" in stdout
    assert f"{report['baseline']['params']:,}" in stdout


def test_compare_progress_to_stderr_results_to_stdout(
    compared_streams: tuple[dict, Path, str, str],
) -> None:
    report, _, stdout, stderr = compared_streams
    assert "[baseline] seed 0: training ..." in stderr
    assert "[dejavu] seed 1: done in" in stderr
    assert "training ..." not in stdout and "done in" not in stdout
    assert "difference vs baseline [95 % CI]" in stdout
    assert f"wrote {report['files']['markdown']}" in stdout


def test_compare_json_paired_section(compared: tuple[dict, Path, str]) -> None:
    report, out, _ = compared
    # The keys and shape the report had before stay.
    for key in ("variants", "inference_cost_equal", "config", "overrides", "seeds", "files"):
        assert key in report
    assert report["reference"] == "baseline"
    assert report["main_metric"] == "seg/miou"
    assert set(report["paired"]) == {"dejavu"}
    paired = report["paired"]["dejavu"]
    # Every metric both variants have, per-class IoU included.
    assert set(paired) == set(report["baseline"]["metrics"]) & set(report["dejavu"]["metrics"])
    assert any(k.startswith("seg/iou_per_class/") for k in paired)
    miou = paired["seg/miou"]
    base = report["baseline"]["metrics"]["seg/miou"]["values"]
    dv = report["dejavu"]["metrics"]["seg/miou"]["values"]
    assert miou["seeds"] == [0, 1] and miou["n"] == 2 and miou["unpaired_seeds"] == []
    assert miou["diffs"] == pytest.approx([b - a for a, b in zip(base, dv, strict=True)])
    expected = compare_module.paired_difference(base, dv)
    for key in ("mean", "std", "t_crit", "ci", "p_value"):
        assert miou[key] == pytest.approx(expected[key])
    assert miou["verdict"] == expected["verdict"]
    md = (out / "compare.md").read_text()
    assert compare_module.format_difference(miou, "seg/miou") in md
    assert "Per seed: seg/miou (%)" in md


def _fake_training(monkeypatch, miou: dict[str, dict[int, float]], calls: list | None = None):
    """Training replaced by ``miou[variant][seed]``; seed 1 has no value for class 1."""

    def metrics(variant: str, seed: int) -> dict[str, float]:
        value = miou[variant][seed]
        return {
            "seg/miou": value,
            "seg/iou_per_class/0": value + 0.1,
            "seg/iou_per_class/1": float("nan") if seed == 1 else value - 0.1,
            "loss": 1.0 - value,
        }

    fake_training(monkeypatch, metrics, calls=calls, class_names=["sky", "road"])


def test_compare_pairs_fake_runs_by_seed(tmp_path: Path, monkeypatch, write_config) -> None:
    seeds = [0, 1, 2, 3, 4]
    base = {s: 0.50 + 0.01 * s for s in seeds}
    gain = dict(zip(seeds, [0.02, 0.03, 0.01, 0.02, 0.02], strict=True))
    miou = {"baseline": base, "dejavu": {s: base[s] + gain[s] for s in seeds}}
    _fake_training(monkeypatch, miou)
    out = tmp_path / "cmp"
    report = compare_module.run_compare(
        write_config(tmp_path, "tiny_dejavu.yaml"), seeds, out_dir=out
    )
    saved = json.loads((out / "compare.json").read_text())
    assert saved["paired"] == json.loads(json.dumps(report["paired"]))
    st = saved["paired"]["dejavu"]["seg/miou"]
    assert st["n"] == 5 and st["seeds"] == seeds
    assert st["diffs"] == pytest.approx([gain[s] for s in seeds])
    mean, sd = float(np.mean(list(gain.values()))), float(np.std(list(gain.values()), ddof=1))
    half = 2.7764451051977987 * sd / np.sqrt(5)  # t_{0.975, 4}
    assert st["mean"] == pytest.approx(mean) and st["std"] == pytest.approx(sd)
    assert st["ci"] == pytest.approx([mean - half, mean + half])
    assert st["verdict"] == "effect"
    # Per-class IoU: seed 1 has no value (NaN) for class 1, so 4 seeds pair there.
    cls = saved["paired"]["dejavu"]["seg/iou_per_class/1"]
    assert cls["n"] == 4 and cls["unpaired_seeds"] == [1]
    assert saved["class_names"] == ["sky", "road"]
    md = (out / "compare.md").read_text()
    assert compare_module.format_difference(st, "seg/miou") in md
    assert "| sky |" in md and "| road |" in md
    assert "| 2 | 52.00 | 53.00 | +1.00 |" in md  # seed, reference, variant, difference


def test_compare_one_seed_has_no_interval(tmp_path: Path, monkeypatch, write_config) -> None:
    _fake_training(monkeypatch, {"baseline": {7: 0.5}, "dejavu": {7: 0.6}})
    report = compare_module.run_compare(
        write_config(tmp_path, "tiny_dejavu.yaml"), [7], out_dir=tmp_path / "cmp"
    )
    st = report["paired"]["dejavu"]["seg/miou"]
    assert st["n"] == 1 and st["ci"] is None and st["p_value"] is None and st["reason"]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "+10.00 (n=1, no interval)" in md
    assert "no interval (n=1)" in md
    json.loads((tmp_path / "cmp" / "compare.json").read_text())  # valid JSON, no NaN there


def test_compare_reference_option(tmp_path: Path, monkeypatch, capsys, write_config) -> None:
    miou = {"baseline": {0: 0.5, 1: 0.6}, "dejavu": {0: 0.55, 1: 0.62}}
    calls: list = []
    _fake_training(monkeypatch, miou, calls)
    config = write_config(tmp_path, "tiny_dejavu.yaml")
    with pytest.raises(ValueError, match="not one of the variants"):
        compare_module.run_compare(config, [0, 1], out_dir=tmp_path / "x", reference="nope")
    assert calls == []  # refused before any training
    out = tmp_path / "cmp"
    args = ["compare", str(config), "--seeds", "2", "--out", str(out), "--reference", "dejavu"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "difference vs dejavu [95 % CI]" in captured.out
    assert "training ..." in captured.err and "training ..." not in captured.out
    report = json.loads((out / "compare.json").read_text())
    assert report["reference"] == "dejavu" and set(report["paired"]) == {"baseline"}
    assert report["paired"]["baseline"]["seg/miou"]["diffs"] == pytest.approx([-0.05, -0.02])


def test_compare_named_variant_and_seed_list(tmp_path: Path, write_config) -> None:
    config = write_config(tmp_path, "tiny_dejavu.yaml")
    out = tmp_path / "cmp"
    args = ["compare", str(config), "--seed-list", "3", "--out", str(out)]
    assert main([*args, "--variants", "plain:dejavu.enabled=false"]) == 0
    report = json.loads((out / "compare.json").read_text())
    assert report["variants"] == ["plain"] and report["seeds"] == [3]
    assert report["paired"] == {}  # nothing to compare with
    saved = yaml.safe_load((out / "runs" / "plain" / "seed3" / "config.yaml").read_text())
    assert saved["dejavu"]["enabled"] is False and saved["seed"] == 3


def test_compare_needs_seeds(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path, "tiny_dejavu.yaml")
    assert main(["compare", str(config)]) == 2
    assert "seed" in capsys.readouterr().err


def test_compare_again_reuses_finished_runs(compared: tuple[dict, Path, str]) -> None:
    report, out, _ = compared
    config = out.parent / "tiny_dejavu.yaml"
    ckpts = [Path(c) for v in ("baseline", "dejavu") for c in report[v]["checkpoints"]]
    stamps = [c.stat().st_mtime_ns for c in ckpts]
    lines: list[str] = []
    again = compare_module.run_compare(config, [0, 1], out_dir=out, log=lines.append)
    # Nothing retrained: same checkpoints untouched, same per-seed results.
    assert [c.stat().st_mtime_ns for c in ckpts] == stamps
    assert sum("reusing the finished run" in line for line in lines) == 4
    for variant in ("baseline", "dejavu"):
        assert again[variant]["miou"] == report[variant]["miou"]


def test_compare_refuses_a_run_dir_with_another_config(compared: tuple[dict, Path, str]) -> None:
    _, out, _ = compared
    config = out.parent / "tiny_dejavu.yaml"
    with pytest.raises(FileExistsError, match="different config"):
        compare_module.run_compare(config, [0], out_dir=out, overrides=["optim.lr=0.5"])


def test_finished_baselines_survive_a_new_dejavu_design(compared: tuple[dict, Path, str]) -> None:
    _, out, _ = compared
    config = out.parent / "tiny_dejavu.yaml"
    lines: list[str] = []
    again = compare_module.run_compare(
        config,
        [0, 1],
        out_dir=out,
        overrides=["dejavu.regen_weight=0.37"],
        variants={"baseline": ["dejavu.enabled=false"]},
        log=lines.append,
    )
    # The baseline does not depend on the DejaVu settings: reused, not retrained.
    assert sum("reusing the finished run" in line for line in lines) == 2
    assert again["baseline"]["miou"]
    # DejaVu runs do depend on them.
    with pytest.raises(FileExistsError, match="different config"):
        compare_module.run_compare(config, [0], out_dir=out, overrides=["dejavu.regen_weight=0.37"])
