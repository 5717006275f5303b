"""``dejavu compare``: statistics, variants, and a 2-seed run end to end."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import dejavu.toolkit.compare as compare_module
from dejavu.toolkit.cli import main
from dejavu.toolkit.compare import (
    compare_markdown,
    parse_variant,
    parse_variants,
    resolve_seeds,
    summarize,
)


def _write_config(directory: Path) -> Path:
    cfg = {
        "name": "tiny",
        "output_dir": str(directory / "runs"),
        "task": {"name": "segmentation"},
        "data": {
            "root": str(directory / "cache"),
            "batch_size": 2,
            "num_workers": 0,
            "num_train": 4,
            "num_val": 2,
            "kwargs": {"size": [32, 48]},
        },
        "model": {"name": "fpn_test_resnet"},
        # The DejaVu config: compare must switch it off itself for the baseline.
        "dejavu": {"enabled": True, "crm": {"kind": "forward", "width": 8, "depth": 2}},
        "trainer": {
            "max_steps": 2,
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "image_log_every_n_steps": 0,
        },
    }
    path = directory / "tiny_dejavu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


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
    assert "+10.00 |" in md  # dejavu - baseline, in percentage points
    assert "| depth/rmse | 0.3000 ± 0.0707 | 0.2500, 0.3500 |" in md
    assert "-0.0500 |" in md
    assert "iou_per_class" not in md  # per-class values stay in the JSON
    assert "identical parameters and GMACs" in md


def test_module_examples_run() -> None:
    result = doctest.testmod(compare_module, extraglobs={"torch": torch})
    assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[dict, Path, str]:
    directory = tmp_path_factory.mktemp("compare")
    config = _write_config(directory)
    out = directory / "cmp"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["compare", str(config), "--seeds", "2", "--out", str(out)])
    assert rc == 0
    return json.loads((out / "compare.json").read_text()), out, buf.getvalue()


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


def test_compare_named_variant_and_seed_list(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    out = tmp_path / "cmp"
    args = ["compare", str(config), "--seed-list", "3", "--out", str(out)]
    assert main([*args, "--variants", "plain:dejavu.enabled=false"]) == 0
    report = json.loads((out / "compare.json").read_text())
    assert report["variants"] == ["plain"] and report["seeds"] == [3]
    saved = yaml.safe_load((out / "runs" / "plain" / "seed3" / "config.yaml").read_text())
    assert saved["dejavu"]["enabled"] is False and saved["seed"] == 3


def test_compare_needs_seeds(tmp_path: Path, capsys) -> None:
    config = _write_config(tmp_path)
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
