"""The statistics of ``dejavu compare``: paired differences, intervals, wording, tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_benchmark
from scipy import stats

from dejavu.toolkit.compare import (
    EFFECT_LEGEND,
    class_names,
    code_text,
    compare_markdown,
    effect_label,
    format_difference,
    interval_excludes_zero,
    main_metric,
    paired_difference,
    paired_markdown,
    paired_section,
    per_class_markdown,
    per_seed_markdown,
    reference_variant,
    summarize,
)

ROOT = Path(__file__).resolve().parents[2]
CAMVID = ROOT / "benchmarks" / "results" / "camvid_compare_crmf.json"


# ------------------------------------------------------------ paired_difference
def test_hand_computed_interval() -> None:
    # diffs 1, 2, 3: mean 2, sd 1, t_{0.975, 2} = 4.302652729749464.
    d = paired_difference([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert d["diffs"] == [1.0, 2.0, 3.0]
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(2.0)
    assert d["std"] == pytest.approx(1.0)
    assert d["t_crit"] == pytest.approx(4.302652729749464, rel=1e-12)
    half = 4.302652729749464 / math.sqrt(3)
    assert d["ci"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-12)
    assert d["confidence"] == 0.95
    assert d["reason"] is None
    # The interval contains 0: no measurable effect although the mean is +2.
    assert d["effect"] is False and d["verdict"] == "no measurable effect"


def test_differences_are_b_minus_a_per_pair() -> None:
    d = paired_difference([10.0, 20.0], [11.0, 19.0])
    assert d["diffs"] == [1.0, -1.0]
    assert d["mean"] == 0.0


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_p_value_and_interval_match_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(50.0, 1.0, n)
    b = a + rng.normal(0.5, 0.7, n)
    d = paired_difference(a, b)
    ref = stats.ttest_rel(b, a)
    assert d["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert d["ci"] == pytest.approx([float(ci.low), float(ci.high)], rel=1e-9)
    assert d["t_crit"] == pytest.approx(float(stats.t.ppf(0.975, n - 1)))


def test_other_confidence_level() -> None:
    a, b = [1.0, 2.0, 4.0, 3.0], [2.0, 2.5, 5.5, 3.0]
    d = paired_difference(a, b, confidence=0.9)
    ci = stats.ttest_rel(b, a).confidence_interval(0.9)
    assert d["confidence"] == 0.9
    assert d["ci"] == pytest.approx([ci.low, ci.high])


def test_clear_effect_is_called_an_effect() -> None:
    d = paired_difference([50.0, 51.0, 49.0, 50.5, 52.0], [52.0, 53.1, 50.9, 52.4, 54.1])
    assert d["ci"][0] > 0
    assert d["effect"] is True and d["verdict"] == "effect"
    assert d["p_value"] < 0.05


def test_one_pair_has_no_interval_and_no_nan() -> None:
    d = paired_difference([0.5], [0.6])
    assert d["n"] == 1
    assert d["mean"] == pytest.approx(0.1)
    for key in ("std", "t_crit", "ci", "p_value"):
        assert d[key] is None
    assert "one paired seed" in d["reason"]
    assert d["effect"] is False and d["verdict"] == "no interval (n=1)"
    json.dumps(d, allow_nan=False)  # nothing NaN hides in it


def test_equal_differences_give_a_point_interval() -> None:
    d = paired_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert d["std"] == 0.0 and d["ci"] == [1.0, 1.0]
    assert d["p_value"] == 0.0 and d["effect"] is True
    assert "sd 0" in d["reason"]
    same = paired_difference([1.0, 2.0], [1.0, 2.0])
    assert same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    assert same["verdict"] == "no measurable effect"
    json.dumps([d, same], allow_nan=False)


@pytest.mark.parametrize(
    ("a", "b", "kw", "match"),
    [
        ([1.0, 2.0], [1.0], {}, "equal lengths"),
        ([], [], {}, "at least one"),
        ([1.0, float("nan")], [1.0, 2.0], {}, "finite"),
        ([1.0, 2.0], [1.0, 2.0], {"confidence": 1.0}, "confidence"),
    ],
)
def test_paired_difference_rejects_bad_input(a, b, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b, **kw)


# ------------------------------------------------------------- wording and text
def test_interval_excludes_zero() -> None:
    assert interval_excludes_zero([0.1, 2.0])
    assert interval_excludes_zero([-2.0, -0.1])
    assert not interval_excludes_zero([-0.1, 2.0])
    assert not interval_excludes_zero([0.0, 2.0])  # touching 0 is containing it
    assert not interval_excludes_zero(None)


@pytest.mark.parametrize("ci", [[-0.5, 3.0], [-3.0, 0.5]])
def test_interval_with_zero_is_no_measurable_effect_whichever_way(ci) -> None:
    assert effect_label({"ci": ci, "mean": sum(ci) / 2, "n": 5}) == "no measurable effect"


def test_effect_labels() -> None:
    assert effect_label({"ci": [0.2, 1.0], "n": 5}) == "effect"
    assert effect_label({"ci": [-1.0, -0.2], "n": 5}) == "effect"
    assert effect_label({"ci": None, "n": 1}) == "no interval (n=1)"


def test_format_difference() -> None:
    d = paired_difference([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert format_difference(d, "depth/rmse") == "+2.0000 [-0.4841, +4.4841] (n=3)"
    frac = paired_difference([0.0, 0.0, 0.0], [0.01, 0.02, 0.03])
    # Fractions in percentage points, 2 decimals.
    assert format_difference(frac, "seg/miou") == "+2.00 [-0.48, +4.48] (n=3)"
    effect = paired_difference([0.50, 0.51, 0.49], [0.52, 0.53, 0.50])
    text = format_difference(effect, "seg/miou")
    assert text.endswith(" *") and text.startswith("+1.67 [")
    assert not format_difference(effect, "seg/miou", mark=False).endswith("*")
    one = paired_difference([0.5], [0.6])
    assert format_difference(one, "seg/miou") == "+10.00 (n=1, no interval)"
    assert format_difference({"n": 0, "mean": None}) == "-"


# ------------------------------------------------------------------ the report
def _report(**extra) -> dict:
    """A 3-variant report shaped like compare.json (without the paired section)."""
    seeds = [0, 1, 2, 3, 4]
    base = [0.50, 0.52, 0.51, 0.49, 0.50]

    def entry(miou, iou0, iou1, **kw):
        return {
            "metrics": {
                "seg/miou": summarize(miou),
                "loss": summarize([0.3] * len(miou)),
                "seg/iou_per_class/0": summarize(iou0),
                "seg/iou_per_class/1": summarize(iou1),
            },
            "params": 10,
            "gmacs": 0.5,
            "overrides": [],
            "train_time_s": [1.0] * len(miou),
            "checkpoints": [],
            **kw,
        }

    report = {
        "variants": ["baseline", "dejavu", "short"],
        "seeds": seeds,
        "baseline": entry(base, [0.9] * 5, [0.2, 0.3, 0.25, 0.2, 0.3]),
        "dejavu": entry(
            [b + d for b, d in zip(base, [0.02, 0.03, 0.01, 0.02, 0.02], strict=True)],
            [0.91] * 5,
            [0.25, float("nan"), 0.2, 0.3, 0.3],  # seed 1: class 1 absent, NaN IoU
        ),
        # Trained on seeds 0, 2, 4 only.
        "short": entry([0.40, 0.41, 0.40], [0.8] * 3, [0.1] * 3, seeds=[0, 2, 4]),
        "inference_cost_equal": True,
        "overrides": [],
        "config": {"task": {"name": "segmentation"}, "trainer": {}},
        "machine": {"processor": "cpu", "cpu_count": 2, "cuda": None, "torch": "x"},
        "date": "today",
    }
    report.update(extra)
    return report


def test_paired_section_pairs_by_seed() -> None:
    section = paired_section(_report())
    assert set(section) == {"dejavu", "short"}
    miou = section["dejavu"]["seg/miou"]
    assert miou["n"] == 5 and miou["seeds"] == [0, 1, 2, 3, 4] and miou["unpaired_seeds"] == []
    assert miou["diffs"] == pytest.approx([0.02, 0.03, 0.01, 0.02, 0.02])
    expected = paired_difference(
        _report()["baseline"]["metrics"]["seg/miou"]["values"],
        _report()["dejavu"]["metrics"]["seg/miou"]["values"],
    )
    assert miou["ci"] == pytest.approx(expected["ci"])
    assert miou["verdict"] == "effect"
    # Per-class IoU is paired too.
    assert "seg/iou_per_class/0" in section["dejavu"]


def test_paired_section_pairs_only_seeds_both_have() -> None:
    section = paired_section(_report())
    short = section["short"]["seg/miou"]
    assert short["seeds"] == [0, 2, 4] and short["n"] == 3
    assert short["unpaired_seeds"] == [1, 3]
    assert short["diffs"] == pytest.approx([0.40 - 0.50, 0.41 - 0.51, 0.40 - 0.50])
    # A NaN per-class IoU (class absent for a seed) leaves that seed unpaired.
    cls = section["dejavu"]["seg/iou_per_class/1"]
    assert cls["seeds"] == [0, 2, 3, 4] and cls["unpaired_seeds"] == [1]
    json.dumps(section, allow_nan=False)


def test_paired_section_with_no_common_seed() -> None:
    report = _report()
    report["short"]["seeds"] = [5, 6, 7]
    st = paired_section(report)["short"]["seg/miou"]
    assert st["n"] == 0 and st["ci"] is None and st["mean"] is None
    assert st["unpaired_seeds"] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert "no seed" in st["reason"]
    assert format_difference(st, "seg/miou") == "-"


def test_paired_section_with_another_reference() -> None:
    section = paired_section(_report(), reference="dejavu")
    assert set(section) == {"baseline", "short"}
    assert section["baseline"]["seg/miou"]["diffs"] == pytest.approx(
        [-0.02, -0.03, -0.01, -0.02, -0.02]
    )
    with pytest.raises(ValueError, match="not one of the variants"):
        paired_section(_report(), reference="nope")


def test_reference_variant() -> None:
    assert reference_variant(_report()) == "baseline"
    assert reference_variant(_report(reference="short")) == "short"
    assert reference_variant(_report(reference="short"), "dejavu") == "dejavu"


def test_main_metric() -> None:
    assert main_metric(_report()) == "seg/miou"
    assert main_metric(_report(main_metric="loss")) == "loss"
    # Unknown task: the first summary metric other than loss.
    assert main_metric(_report(config={})) == "seg/miou"
    report = _report(config={"task": {"name": "depth"}})
    for v in report["variants"]:
        report[v]["metrics"] = {"loss": summarize([1.0]), "depth/abs_err": summarize([1.0])}
    assert main_metric(report) == "depth/abs_err"


def test_markdown_has_intervals_legend_per_seed_and_per_class() -> None:
    report = _report(class_names=["sky", "road"])
    md = compare_markdown(report)
    st = paired_section(report)["dejavu"]["seg/miou"]
    interval = format_difference(st, "seg/miou")
    assert interval.endswith(" *")  # an effect, marked
    assert interval in md
    assert "difference vs baseline [95 % CI]" in md
    assert EFFECT_LEGEND in md
    # The paired table words the verdict.
    assert (
        "| seg/miou (%) | dejavu − baseline | " + format_difference(st, "seg/miou", mark=False)
        in md
    )
    assert "| effect | - |" in md
    # Per seed, main metric: seed, reference, variant, difference.
    assert "Per seed: seg/miou (%)" in md
    assert "| 1 | 52.00 | 55.00 | +3.00 | - | - |" in md  # "short" has no seed 1
    # Per class, with names.
    assert "Per-class IoU (%), seg/iou_per_class" in md
    assert "| sky | 90.00 ± 0.00 |" in md and "| road |" in md


def test_markdown_of_a_report_without_the_paired_key_computes_it() -> None:
    report = _report()
    assert "paired" not in report
    md = compare_markdown(report)
    st = paired_section(report)["short"]["seg/miou"]
    assert format_difference(st, "seg/miou") in md
    assert "| seg/miou (%) | short − baseline |" in md
    assert "| 1, 3 |" in md  # short's unpaired seeds


def test_paired_markdown_single_variant_is_empty() -> None:
    report = _report(variants=["baseline"])
    assert paired_markdown(report) == ""
    assert "difference vs" not in compare_markdown(report)


def test_per_seed_and_per_class_helpers() -> None:
    report = _report()
    table = per_seed_markdown(report, "loss")
    assert table.startswith("Per seed: loss")
    assert "| seed | baseline | dejavu | dejavu − baseline | short | short − baseline |" in table
    assert per_class_markdown(report).count("\n| 0 |") == 1  # no names: indices
    no_class = _report()
    for v in no_class["variants"]:
        no_class[v]["metrics"] = {"seg/miou": no_class[v]["metrics"]["seg/miou"]}
    assert per_class_markdown(no_class) == ""


def test_class_names_from_base_json(tmp_path: Path) -> None:
    run = tmp_path / "seed0"
    run.mkdir()
    (run / "base.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    report = _report()
    assert class_names(report) is None
    report["dejavu"]["checkpoints"] = [str(run / "last.ckpt")]
    assert class_names(report) == ["a", "b"]
    assert class_names(_report(class_names=["x"])) == ["x"]


# -------------------------------------------------- benchmarks/compare_report.py
def _compare_report_module():
    return load_benchmark("compare_report")


def test_compare_report_on_an_older_json_computes_paired_statistics() -> None:
    report = json.loads(CAMVID.read_text())
    assert "paired" not in report  # written before the paired section existed
    text = _compare_report_module().tables(report)
    st = paired_section(report)["dejavu"]["seg/miou"]
    assert format_difference(st, "seg/miou", mark=False) in text
    assert "| seg/miou (%) | dejavu − baseline |" in text
    assert "no measurable effect" in text
    assert "Per seed: seg/miou (%)" in text
    assert "| baseline, seed 0 | 55.8 |" in text  # the per-run table is unchanged


def test_compare_report_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    module = _compare_report_module()
    curves = tmp_path / "curves.png"
    monkeypatch.setattr(
        "sys.argv",
        ["compare_report.py", str(CAMVID), "--curves", str(curves), "--reference", "dejavu"],
    )
    module.main()
    out = capsys.readouterr().out
    assert "| seg/miou (%) | baseline − dejavu |" in out
    assert curves.is_file()


# -------------------------------------------------- the code a report ran on
def test_code_version_names_the_commit_and_whether_it_was_clean(monkeypatch) -> None:
    import dejavu.toolkit.compare.machine as machine

    answers = {
        "ls-files": "machine.py",
        "rev-parse": "0123456789abcdef" * 2 + "01234567",
        "status": " M src/x.py",
    }
    monkeypatch.setattr(machine, "_git", lambda *args, cwd: answers[args[0]])
    code = machine.code_version()
    assert code["commit"] == answers["rev-parse"] and code["dirty"] is True
    assert code_text({"code": code}) == (
        f"; code dejavu {code['dejavu']} at 0123456 (with uncommitted changes)"
    )
    answers["status"] = ""
    assert machine.code_version()["dirty"] is False
    answers["ls-files"] = None  # a checkout that does not track dejavu: another project's
    assert machine.code_version()["commit"] is None
    monkeypatch.setattr(machine, "_git", lambda *args, cwd: None)  # not a checkout: a wheel
    assert machine.code_version() == {"dejavu": code["dejavu"], "commit": None, "dirty": None}
    assert code_text({"code": machine.code_version()}) == f"; code dejavu {code['dejavu']}"


def test_code_version_ignores_changed_results_but_not_changed_code(tmp_path: Path) -> None:
    import subprocess

    import dejavu.toolkit.compare.machine as machine

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    files = ["src/pkg/machine.py", "docs/results.md", "benchmarks/results/a.json", "configs/a.yaml"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git("init", "-q")
    git("add", *files)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "v1")
    source = tmp_path / "src" / "pkg"
    assert machine.code_version(source)["dirty"] is False
    for result in files[1:3]:  # what sweeps and comparisons write
        (tmp_path / result).write_text("v2\n")
    assert machine.code_version(source)["dirty"] is False
    (tmp_path / "configs/a.yaml").write_text("v2\n")  # a config is code: it sets the run
    assert machine.code_version(source)["dirty"] is True
