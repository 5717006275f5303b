"""HRNet-OCR and HMS from the command line: listed, trained (2 steps), costed, exported."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from dejavu.toolkit.cli import main
from dejavu.toolkit.complexity import model_complexity
from dejavu.toolkit.config import load_config
from dejavu.toolkit.export import export_checkpoint
from dejavu.toolkit.training import load_eval_model, run_fit

MODELS = ("hrnet18_ocr", "hrnet18_ocr_hms")
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("DEJAVU_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_config) -> dict[tuple[str, bool], Path]:
    """``dejavu fit`` for 2 steps on the embedded scenes: each model, baseline and DejaVu."""
    directory = tmp_path_factory.mktemp("ocr_hms_fit")
    out: dict[tuple[str, bool], Path] = {}
    for model in MODELS:
        for enabled in (False, True):
            name = f"{model}_{'dejavu' if enabled else 'baseline'}"
            config = write_config(
                directory,
                f"{name}.yaml",
                name=name,
                model={"name": model},
                dejavu={"enabled": enabled},
            )
            assert main(["fit", str(config), "--no-progress"]) == 0, name
            out[model, enabled] = directory / "runs" / name
    return out


def test_dejavu_models_lists_them(capsys) -> None:
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.split()
    for name in ("hrnet18_ocr", "hrnet48_ocr", "hrnet18_ocr_hms", "hrnet48_ocr_hms", "hms_<model>"):
        assert name in listed, name


@pytest.mark.parametrize("model", MODELS)
def test_two_step_fit_trains_with_the_aux_loss(runs, model: str) -> None:
    for enabled in (False, True):
        run = runs[model, enabled]
        final = json.loads((run / "metrics.json").read_text())["final"]
        assert 0.0 <= final["seg/miou"] <= 1.0
        rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
        logged = [r for r in rows if r.get("train/task/seg_aux")]
        assert logged, "the auxiliary loss is logged in training"
        for r in logged:
            total = float(r["train/task/seg"]) + 0.4 * float(r["train/task/seg_aux"])
            assert float(r["train/task"]) == pytest.approx(total, rel=1e-5)
            regen = float(r["train/regen"])
            assert (regen > 0) == enabled


@pytest.mark.parametrize("model", MODELS)
def test_inference_cost_is_the_same_with_and_without_dejavu(runs, model: str) -> None:
    loaded = [load_eval_model(runs[model, enabled]) for enabled in (False, True)]
    (base_b, meta_b), (base_d, meta_d) = loaded
    assert meta_b["model"] == meta_d["model"] == model
    assert meta_b["dejavu"] is False and meta_d["dejavu"] is True
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m, _ in loaded]
    assert shapes[0] == shapes[1]
    cost_b = model_complexity(base_b, (1, 3, 32, 48))
    cost_d = model_complexity(base_d, (1, 3, 32, 48))
    assert cost_b == cost_d and cost_b["gmacs"] > 0
    assert cost_b["params"] == sum(p.numel() for p in base_b.parameters())
    with torch.no_grad():
        assert list(base_d(torch.zeros(1, 3, 32, 48))) == ["seg"]  # no aux output at inference


@pytest.mark.parametrize("model", MODELS)
def test_export_to_onnx_and_torchscript_is_verified(runs, model: str, tmp_path: Path) -> None:
    import onnx

    ckpt = runs[model, True] / "last.ckpt"
    # `dejavu export`'s default tries the dynamo exporter first; on HMS's three scales that
    # takes 30 s here, so HMS checks the TorchScript-based ONNX exporter only.
    dynamo = None if model == "hrnet18_ocr" else False
    result = export_checkpoint(
        ckpt, "onnx", tmp_path / "model.onnx", input_size=(40, 56), dynamo=dynamo
    )
    assert result.ok, result.diffs
    assert list(result.diffs) == ["seg"]
    assert [o.name for o in onnx.load(str(result.path)).graph.output] == ["seg"]
    result = export_checkpoint(ckpt, "torchscript", tmp_path / "model.pt", input_size=(40, 56))
    assert result.ok and list(result.diffs) == ["seg"], result.diffs


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("config", "model"),
    [
        ("hrnet18_ocr_dejavu.yaml", "hrnet18_ocr"),
        ("hrnet48_ocr_hms_dejavu.yaml", "hrnet18_ocr_hms"),
    ],
)
def test_cityscapes_configs_train_on_the_sample(tmp_path: Path, config: str, model: str) -> None:
    root = SHARED_DATA / "samples" / "cityscapes"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set DEJAVU_DATA to the shared data folder)")
    cfg = load_config(
        REPO / "configs" / "cityscapes" / config,
        [
            f"output_dir={tmp_path}",
            f"data.root={root}",
            "data.train_split=val",  # the sample holds one val image (128 x 256)
            "data.batch_size=1",
            "data.num_workers=0",
            "data.crop_size=[128, 256]",
            f"model.name={model}",  # the GPU config's HRNet-48 HMS at HRNet-18 size
            "trainer.max_steps=2",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "trainer.devices=1",
            "trainer.image_log_every_n_steps=0",
            "trainer.log_every_n_steps=1",
        ],
    )
    result = run_fit(cfg, enable_progress_bar=False)
    assert 0.0 <= result.metrics["seg/miou"] <= 1.0
    net, meta = load_eval_model(result.run_dir)
    assert meta["model"] == model and meta["num_classes"] == 19
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 128, 256))["seg"].shape == (1, 19, 128, 256)
