"""The panoptic task from the command line: fit, cost, predict, export, panel, compare."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.toolkit.cli import main
from dejavu.toolkit.complexity import model_complexity
from dejavu.toolkit.config import load_config
from dejavu.toolkit.data.coco_panoptic import rgb_to_segment_ids
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.export import export_checkpoint
from dejavu.toolkit.tasks import head_spec
from dejavu.toolkit.training import load_eval_model, run_fit

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("DEJAVU_DATA", REPO.parent / "shared" / "data"))
# Keep every query and every segment: an untrained network then still predicts segments.
POSTPROCESS = {"panoptic": {"threshold": 0.0, "overlap_threshold": 0.0}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_config) -> dict[bool, Path]:
    """``dejavu fit`` for 2 steps on the scenes with mask2former_tiny, baseline and DejaVu."""
    directory = tmp_path_factory.mktemp("panoptic_fit")
    out: dict[bool, Path] = {}
    for enabled in (False, True):
        name = f"panoptic_{'dejavu' if enabled else 'baseline'}"
        config = write_config(
            directory,
            f"{name}.yaml",
            name=name,
            task={"name": "panoptic", "postprocess": POSTPROCESS},
            model={"name": "mask2former_tiny"},
            dejavu={"enabled": enabled},
            trainer={"image_log_every_n_steps": 1},
        )
        assert main(["fit", str(config), "--no-progress"]) == 0, name
        out[enabled] = directory / "runs" / name
    return out


def test_models_and_tasks_are_listed(capsys) -> None:
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.split()
    for name in ("mask2former_tiny", "mask2former_swin_t", "mask2former_swin_l"):
        assert name in listed


def test_two_step_fit_logs_panoptic_quality(runs: dict[bool, Path]) -> None:
    for enabled, run in runs.items():
        final = json.loads((run / "metrics.json").read_text())["final"]
        for name in ("pq", "sq", "rq", "pq_things", "pq_stuff", "rq_things", "sq_stuff"):
            assert 0.0 <= final[f"panoptic/{name}"] <= 1.0, name
        rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
        logged = [r for r in rows if r.get("train/task/panoptic")]
        assert len(logged) == 2
        for r in logged:
            assert np.isfinite(float(r["train/task/panoptic"]))
            assert (float(r["train/regen"]) > 0) == enabled
        assert len(list((run / "images").glob("train_step*.png"))) == 2  # panoptic panels
        meta = json.loads((run / "base.json").read_text())
        assert [c["isthing"] for c in meta["categories"]] == [False] * 3 + [True] * 3
        assert meta["postprocess"] == POSTPROCESS


def test_inference_cost_is_the_same_with_and_without_dejavu(runs: dict[bool, Path]) -> None:
    loaded = [load_eval_model(runs[enabled]) for enabled in (False, True)]
    (base_b, meta_b), (base_d, meta_d) = loaded
    assert meta_b["model"] == meta_d["model"] == "mask2former_tiny"
    assert meta_b["dejavu"] is False and meta_d["dejavu"] is True
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m, _ in loaded]
    assert shapes[0] == shapes[1]
    cost_b = model_complexity(base_b, (1, 3, 32, 48))
    cost_d = model_complexity(base_d, (1, 3, 32, 48))
    assert cost_b == cost_d and cost_b["gmacs"] > 0
    assert cost_b["params"] == sum(p.numel() for p in base_b.parameters())


def test_predict_writes_coco_panoptic_files(runs: dict[bool, Path], tmp_path: Path, capsys) -> None:
    from dejavu.toolkit.artifact import write_base

    # After 2 steps every query may still say "no object"; turn that class off so that
    # the base network predicts segments, and predict from that base artefact.
    model, meta = load_eval_model(runs[True] / "last.ckpt")
    with torch.no_grad():
        model.model.class_predictor.bias[-1] = -30.0
    # and let every mask that wins a pixel be a segment, whatever its probability there
    meta["postprocess"] = {"panoptic": {**POSTPROCESS["panoptic"], "mask_threshold": 1e-6}}
    weights = write_base(model, meta, tmp_path / "base")
    rng = np.random.default_rng(0)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "pred"
    args = ["predict", str(runs[True] / "config.yaml"), "--ckpt", str(weights)]
    assert main([*args, "--out", str(out), "--input", str(path)]) == 0
    assert "wrote 3 file(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_panoptic.json",
        "a_panoptic.png",
        "a_panoptic_color.png",
    ]
    ids = rgb_to_segment_ids(np.asarray(Image.open(out / "a_panoptic.png").convert("RGB")))
    info = json.loads((out / "a_panoptic.json").read_text())["segments_info"]
    assert ids.shape == (40, 56) and len(info) >= 2
    # the same segments as the base network's own panoptic inference on that image
    mean, std = torch.tensor(meta["mean"]).view(3, 1, 1), torch.tensor(meta["std"]).view(3, 1, 1)
    image = (torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1) / 255 - mean) / std
    with torch.no_grad():
        pred = model(image[None].float())
    decoded = head_spec("panoptic").prediction(
        pred, meta["categories"], 255, meta["postprocess"]["panoptic"]
    )[0]
    assert {s["id"] for s in info} == set(np.unique(ids)) - {0}
    for seg in info:
        region = ids == seg["id"]
        assert region.sum() == seg["area"]
        assert set(decoded[0].numpy()[region]) == {seg["category_id"]}
        assert seg["isthing"] == meta["categories"][seg["category_id"]]["isthing"]
        if seg["isthing"]:  # one predicted instance per thing segment
            assert len(set(decoded[1].numpy()[region])) == 1
    assert ((ids == 0) == (decoded[0].numpy() == 255)).all()


def test_export_is_verified_or_refused_with_the_reason(runs: dict[bool, Path], tmp_path) -> None:
    ckpt = runs[True] / "last.ckpt"
    result = export_checkpoint(ckpt, "safetensors", tmp_path / "base.safetensors")
    assert result.ok and sorted(result.diffs) == [
        "panoptic",
        "panoptic_query_class",
        "panoptic_query_mask",
    ]
    result = export_checkpoint(ckpt, "torchscript", tmp_path / "m.pt", input_size=(32, 48))
    assert result.ok, result.diffs
    with pytest.raises(ConfigError, match=r"cannot be exported as onnx: .*GridSample"):
        export_checkpoint(ckpt, "onnx", tmp_path / "m.onnx", input_size=(32, 48))


def test_panel_shows_panoptic_columns(runs: dict[bool, Path]) -> None:
    from dejavu.toolkit.prediction_panel import prediction_columns

    columns, rows = prediction_columns([("B", runs[False]), ("D", runs[True])], [0, 1])
    titles = [t for t, _ in columns]
    assert titles == [
        "input",
        "panoptic truth",
        "B panoptic",
        "D panoptic",
        "D redacted",
        "D regenerated",
    ]
    assert len(rows) == 2
    truth = dict(columns)["panoptic truth"][0]
    assert truth.shape == (32, 48, 3) and (truth == 255).all(axis=-1).any()  # outlines


def test_compare_reports_pq_things_and_stuff(tmp_path: Path, write_config) -> None:
    from dejavu.toolkit.compare import run_compare

    config = write_config(
        tmp_path,
        "panoptic.yaml",
        task={"name": "panoptic", "postprocess": POSTPROCESS},
        model={"name": "mask2former_tiny"},
        data={"num_train": 2, "num_val": 1},
        trainer={"max_steps": 1},
    )
    report = run_compare(config, [0], out_dir=tmp_path / "cmp")
    assert report["main_metric"] == "panoptic/pq"
    for variant in ("baseline", "dejavu"):
        metrics = report[variant]["metrics"]
        for name in ("panoptic/pq", "panoptic/pq_things", "panoptic/pq_stuff"):
            assert 0.0 <= metrics[name]["mean"] <= 1.0
    assert report["inference_cost_equal"] is True
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "panoptic/pq_things" in md and "panoptic/pq_stuff" in md


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("config", "sample", "overrides"),
    [
        ("coco/panoptic_mask2former_tiny_dejavu.yaml", "coco_panoptic", []),  # 20 steps
        (
            "cityscapes/panoptic_mask2former_swin_t_dejavu.yaml",
            "cityscapes",
            [
                "trainer.max_steps=2",
                "data.train_split=val",  # the sample holds one val image (128 x 256)
                "data.batch_size=1",
                "data.num_workers=0",
                "data.crop_size=[64, 128]",
                "model.name=mask2former_tiny",  # the GPU config's network at CPU size
                "trainer.accelerator=cpu",
                "trainer.precision=32-true",
                "trainer.devices=1",
                "trainer.image_log_every_n_steps=0",
            ],
        ),
        ("ade20k/mask2former_tiny_dejavu.yaml", "ade20k", []),  # 20 steps
    ],
)
def test_configs_train_on_the_real_samples(
    tmp_path: Path, config: str, sample: str, overrides: list[str]
) -> None:
    root = SHARED_DATA / "samples" / sample
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DEJAVU_DATA to the shared data folder)")
    cfg = load_config(
        REPO / "configs" / config,
        [f"output_dir={tmp_path}", f"data.root={root}", *overrides],
    )
    result = run_fit(cfg, enable_progress_bar=False)
    key = "panoptic/pq" if cfg.task.name == "panoptic" else "seg/miou"
    assert 0.0 <= result.metrics[key] <= 1.0
    net, meta = load_eval_model(result.run_dir)
    assert meta["model"] == "mask2former_tiny" and net.heads == dict(meta["heads"])
