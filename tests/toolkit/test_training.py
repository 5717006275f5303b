"""Training layer: fits with and without DejaVu, run directory, exports, exact resume,
crash-safe checkpoints, schedule and optimiser groups, data order."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tiny_runs import tiny_config
from torch import nn

from dejavu.toolkit.complexity import model_complexity
from dejavu.toolkit.config import ExperimentConfig, load_config
from dejavu.toolkit.predict import run_predict
from dejavu.toolkit.training import (
    AtomicCheckpointIO,
    DejaVuModule,
    DenseDataModule,
    EpochSampler,
    SeededSamples,
    default_monitor,
    load_eval_model,
    load_run,
    poly_factor,
    poly_scheduler,
    run_fit,
    run_test,
    run_validate,
    split_state_dict,
)
from dejavu.toolkit.training import checkpoint as checkpoint_mod


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes_cache")


def tiny_cfg(out: Path, cache: Path, name: str, *extra: str) -> ExperimentConfig:
    """The shared tiny run (tiny_runs.py) with 4 val scenes, a half-resolution CRM and
    image logging every 2 steps."""
    return tiny_config(
        out,
        cache,
        name,
        "data.num_val=4",
        "dejavu.crm={kind: forward, width: 8, depth: 2, scale: 0.5}",
        "trainer.image_log_every_n_steps=2",
        *extra,
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cache):
    """One 3-step fit with DejaVu and one without (same data, model, schedule)."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    # Module fixtures run before conftest's per-test one-thread setting; on a shared
    # 2-core machine torch's thread pool would oversubscribe it badly.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for enabled in (True, False):
            cfg = tiny_cfg(out, cache, f"dejavu_{enabled}", f"dejavu.enabled={enabled}")
            runs[enabled] = (cfg, run_fit(cfg, enable_progress_bar=False))
    finally:
        torch.set_num_threads(threads)
    return runs


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    (path,) = run_dir.glob("csv/version_*/metrics.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("enabled", [True, False], ids=["dejavu", "baseline"])
def test_fit_writes_the_run_directory(fitted, enabled):
    cfg, result = fitted[enabled]
    run = result.run_dir
    assert run == Path(cfg.output_dir) / cfg.name
    for name in ("config.yaml", "last.ckpt", "best.ckpt", "base.safetensors", "base.json"):
        assert (run / name).is_file(), name
    assert result.last_checkpoint == run / "last.ckpt"
    assert result.best_checkpoint == run / "best.ckpt"
    assert load_config(run / "config.yaml") == cfg
    assert list(run.glob("tensorboard/version_0/events.out.tfevents.*"))
    assert not list(run.glob(".*.tmp"))
    # panels at steps 0 and 2 (every 2 steps, 3 steps in all)
    assert sorted(p.name for p in (run / "images").glob("*.png")) == [
        "train_step0000000.png",
        "train_step0000002.png",
    ]

    data = json.loads((run / "metrics.json").read_text())
    last = {k: v for k, v in data["history"][-1].items() if k not in ("epoch", "step")}
    assert data["final"] == last
    assert len(result.history) == 1
    entry = result.history[0]
    assert (entry["epoch"], entry["step"]) == (0, 3)
    assert 0.0 <= result.metrics["seg/miou"] <= 1.0
    assert math.isfinite(result.metrics["loss"])
    assert {k: v for k, v in entry.items() if k not in ("epoch", "step")} == result.metrics
    assert result.train_time_s > 0


def test_logged_losses_are_finite_and_regen_only_with_dejavu(fitted):
    for enabled, (_, result) in fitted.items():
        rows = [r for r in _csv_rows(result.run_dir) if r.get("train/loss")]
        assert len(rows) == 3
        for r in rows:
            loss, task, regen = (float(r[f"train/{k}"]) for k in ("loss", "task", "regen"))
            assert all(math.isfinite(v) for v in (loss, task, regen))
            if enabled:
                assert regen > 0
                assert loss == pytest.approx(task + float(r["train/regen_weight"]) * regen)
            else:
                assert regen == 0 and loss == pytest.approx(task)
            assert float(r["train/lr"]) > 0


def test_checkpoint_keys_keep_base_apart_from_regeneration(fitted):
    for enabled, (_, result) in fitted.items():
        state = torch.load(result.last_checkpoint, weights_only=True)["state_dict"]
        base, rest = split_state_dict(state)
        assert base and all(not k.startswith("model.base.") for k in rest)
        has_crm = any(k.startswith("model.crm.") for k in state)
        assert has_crm == enabled


def test_baseline_and_dejavu_eval_models_cost_the_same(fitted):
    res_d, res_b = fitted[True][1], fitted[False][1]
    model_d, meta_d = load_eval_model(res_d.run_dir / "base.safetensors")
    model_b, meta_b = load_eval_model(res_b.last_checkpoint)
    assert not model_d.training and not model_b.training
    shapes_d = {k: v.shape for k, v in model_d.state_dict().items()}
    shapes_b = {k: v.shape for k, v in model_b.state_dict().items()}
    assert shapes_d == shapes_b
    cost_d = model_complexity(model_d, (1, 3, 32, 48))
    cost_b = model_complexity(model_b, (1, 3, 32, 48))
    assert cost_d == cost_b
    assert cost_d["params"] == sum(p.numel() for p in model_b.parameters()) > 0
    assert cost_d["gmacs"] > 0
    for meta in (meta_d, meta_b):
        assert meta["model"] == "fpn_test_resnet"
        assert meta["heads"] == {"seg": 6}
        assert meta["class_names"][0] == "floor" and meta["num_classes"] == 6
        assert meta["input_size"] == [32, 48]
        assert len(meta["mean"]) == len(meta["std"]) == 3
    # the weights differ (different objectives), the architecture does not
    assert meta_d["dejavu"] is True and meta_b["dejavu"] is False


def test_exports_agree_with_the_checkpoint(fitted):
    _, result = fitted[True]
    from_ckpt, _ = load_eval_model(result.last_checkpoint)
    from_st, _ = load_eval_model(result.run_dir)  # a run directory means its base.safetensors
    _, module = load_run(result.last_checkpoint)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        a, b, c = from_ckpt(x)["seg"], from_st(x)["seg"], module.eval_model()(x)["seg"]
    assert torch.equal(a, b) and torch.equal(a, c)
    # the full module carries the regeneration parts and the redaction generator
    assert module.model.crm is not None
    state = torch.load(result.last_checkpoint, weights_only=True)["state_dict"]
    assert torch.equal(module.model.generator.get_state(), state["model._extra_state"]["generator"])


def test_the_module_takes_config_sections_and_the_runs_length(fitted):
    cfg, result = fitted[True]
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert {"task", "model", "dejavu", "optim", "total_steps"} <= set(hp)
    assert "config" not in hp and "data" not in hp and "trainer" not in hp
    # computed by the runner from the data: 6 images, batches of 2, one epoch
    assert cfg.trainer.max_steps == -1 and hp["total_steps"] == 3
    assert ckpt["config"]["data"]["num_train"] == cfg.data.num_train  # the run's full config
    _, module = load_run(result.last_checkpoint)
    assert module.total_steps() == 3


def test_checkpoints_of_the_earlier_layout_still_load(fitted, tmp_path):
    # Before the module took config sections, the full config lived in its hyper-parameters.
    cfg, result = fitted[True]
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    hp = ckpt["hyper_parameters"]
    full = ckpt.pop("config")
    ckpt["hyper_parameters"] = {
        "config": full,
        **{k: hp[k] for k in ("num_classes", "class_names", "mean", "std", "input_size")},
    }
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    loaded_cfg, module = load_run(old)
    assert loaded_cfg == cfg
    model, _ = load_eval_model(old)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x)["seg"], module.eval_model()(x)["seg"])
    assert sorted(module.state_dict()) == sorted(ckpt["state_dict"])


def test_the_trainer_section_passes_through_to_lightning():
    import inspect

    import lightning.pytorch as pl

    from dejavu.toolkit.config import TrainerConfig
    from dejavu.toolkit.training.runner import TOOLKIT_TRAINER_KEYS, trainer_kwargs

    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    kwargs = trainer_kwargs(TrainerConfig())
    assert set(kwargs) <= accepted
    fields = {f.name for f in dataclasses.fields(TrainerConfig)}
    assert fields - TOOLKIT_TRAINER_KEYS <= set(kwargs)


def test_validate_and_test_reproduce_the_logged_metrics(fitted):
    cfg, result = fitted[True]
    val = run_validate(cfg, result.last_checkpoint)
    assert val["seg/miou"] == pytest.approx(result.metrics["seg/miou"], abs=1e-6)
    assert val["loss"] == pytest.approx(result.metrics["loss"], rel=1e-5)
    test = run_test(cfg, result.run_dir / "base.safetensors")  # test_split = val here
    assert test["seg/miou"] == pytest.approx(val["seg/miou"], abs=1e-6)


def test_predict_writes_pictures_and_raw_arrays(fitted, tmp_path):
    from PIL import Image

    cfg, result = fitted[False]
    src = tmp_path / "frame.png"
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(src)
    written = run_predict(cfg, result.last_checkpoint, [src], tmp_path / "out")
    assert sorted(p.name for p in written) == ["frame_seg.npy", "frame_seg.png"]
    labels = np.load(tmp_path / "out" / "frame_seg.npy")
    assert labels.shape == (20, 30) and labels.max() < 6
    assert np.asarray(Image.open(tmp_path / "out" / "frame_seg.png")).shape == (20, 30, 3)
    from_split = run_predict(cfg, result.run_dir, None, tmp_path / "split")
    assert len(from_split) == 2 * 4  # 4 validation scenes, png + npy each


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(fitted, tmp_path, cache):
    cfg, _ = fitted[True]
    with pytest.raises(FileExistsError, match="resume=True"):
        run_fit(cfg, enable_progress_bar=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_fit(tiny_cfg(tmp_path, cache, "new"), resume=True, enable_progress_bar=False)


def _states_equal(a: dict, b: dict) -> list[str]:
    diff = []
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            x, y = x["generator"], y["generator"]
        if not torch.equal(x, y):
            diff.append(k)
    return diff


class _CrashOnSecondSave(pl.Callback):
    """From epoch 1 on, checkpoint writes die half-way (a full disk, a killed process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:

            def broken_save(obj, f, *args, **kwargs):
                f.write(b"PK\x03\x04 half a checkpoint")
                raise OSError("No space left on device")

            self.monkeypatch.setattr(checkpoint_mod.torch, "save", broken_save)


def test_crash_during_save_keeps_last_checkpoint_and_resume_is_exact(tmp_path, cache, monkeypatch):
    extra = (
        "trainer.max_epochs=2",
        "data.num_workers=1",
        # augmentation on, so that resuming must replay the same random crops and flips
        "data.crop_size=[24, 40]",
        "data.scale_range=[0.8, 1.25]",
        "data.color_jitter=0.2",
        "optim.warmup_steps=2",
        "trainer.image_log_every_n_steps=0",
    )
    straight = run_fit(tiny_cfg(tmp_path, cache, "straight", *extra), enable_progress_bar=False)

    cfg = tiny_cfg(tmp_path, cache, "crashed", *extra)
    with pytest.raises(OSError, match="No space left"):
        run_fit(cfg, enable_progress_bar=False, callbacks=[_CrashOnSecondSave(monkeypatch)])
    monkeypatch.undo()
    last = cfg.run_dir / "last.ckpt"
    survived = torch.load(last, weights_only=True)  # whole and loadable
    assert survived["global_step"] == 3 and survived["epoch"] == 0
    assert not list(cfg.run_dir.glob(".*.tmp"))

    resumed = run_fit(cfg, resume=True, enable_progress_bar=False)
    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert _states_equal(a["state_dict"], b["state_dict"]) == []
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    for i, s in opt_a["state"].items():
        assert torch.equal(s["exp_avg"], opt_b["state"][i]["exp_avg"])
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 6
    # the metrics history continues across the resume
    assert [h["step"] for h in resumed.history] == [3, 6]
    assert resumed.history == straight.history


@pytest.mark.parametrize(
    ("task", "redaction", "keys"),
    [
        ("depth", "{name: bandstop}", {"depth/rmse", "depth/abs_err", "depth/delta1"}),
        ("normals", "{name: bandstop}", {"normals/mean", "normals/within_30"}),
        (
            "multitask",
            "{name: choice, redactions: [random, bandstop]}",
            {"seg/miou", "depth/rmse", "normals/mean"},
        ),
    ],
)
def test_geometry_and_multitask_runs(tmp_path, cache, task, redaction, keys):
    cfg = tiny_cfg(
        tmp_path, cache, task, f"task.name={task}", f"dejavu.redaction={redaction}",
        "trainer.max_steps=2", "trainer.image_log_every_n_steps=1",
    )  # fmt: skip
    result = run_fit(cfg, enable_progress_bar=False)
    assert keys <= set(result.metrics)
    assert all(math.isfinite(result.metrics[k]) for k in keys)
    assert result.best_checkpoint is not None  # ranked by the task's main metric
    _, meta = load_eval_model(result.run_dir)
    assert set(meta["heads"]) == {"multitask": {"seg", "depth", "normals"}}.get(task, {task})
    assert len(list((result.run_dir / "images").glob("*.png"))) == 2


def test_max_steps_in_mid_epoch_still_validates_and_saves(tmp_path, cache):
    # 3 batches per epoch: step 4 is the first batch of the second epoch
    cfg = tiny_cfg(tmp_path, cache, "steps", "trainer.max_steps=4")
    result = run_fit(cfg, enable_progress_bar=False)
    assert [(h["epoch"], h["step"]) for h in result.history] == [(0, 3), (1, 4)]
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    assert ckpt["global_step"] == 4
    assert json.loads((result.run_dir / "base.json").read_text())["global_step"] == 4
    # the poly schedule spans exactly max_steps: the rate has reached 0
    assert ckpt["lr_schedulers"][0]["_last_lr"] == [0.0] * len(
        ckpt["optimizer_states"][0]["param_groups"]
    )


def test_atomic_checkpoint_io_keeps_the_previous_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.arange(4.0), "step": 1}, path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])
        raise RuntimeError("killed mid-save")

    monkeypatch.setattr(checkpoint_mod.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="killed mid-save"):
        io.save_checkpoint({"weights": torch.zeros(4), "step": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["weights"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    io.save_checkpoint({"step": 3}, path)  # a later save replaces it
    assert io.load_checkpoint(path)["step"] == 3


SHARED_DATA = Path(
    os.environ.get("DEJAVU_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


@pytest.mark.realdata
@pytest.mark.skipif(
    not (SHARED_DATA / "camvid").is_dir(), reason=f"CamVid not found under {SHARED_DATA}"
)
def test_camvid_config_trains_on_real_frames(tmp_path):
    config = Path(__file__).resolve().parents[2] / "configs" / "camvid" / "hrnet18_dejavu.yaml"
    cfg = load_config(
        config,
        [
            f"output_dir={tmp_path}",
            f"data.root={SHARED_DATA / 'camvid'}",
            "data.num_train=4",
            "data.num_val=2",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.crop_size=[96, 128]",
            "model.name=fpn_test_resnet",
            "trainer.max_steps=2",
            "trainer.accelerator=cpu",
            "trainer.image_log_every_n_steps=1",
        ],
    )
    result = run_fit(cfg, enable_progress_bar=False)
    assert 0.0 <= result.metrics["seg/miou"] <= 1.0
    assert len(list((result.run_dir / "images").glob("*.png"))) == 2
    _, meta = load_eval_model(result.run_dir)
    assert meta["num_classes"] == 11 and meta["class_names"][0] == "Sky"
    assert meta["input_size"] == [96, 128]


# ----------------------------------------------------------------------------- units
def test_poly_schedule_values():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, power=0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100) == 0.0
    assert poly_factor(150, 100) == 0.0
    # warm-up: linear from 0.01, then poly over the remaining steps
    assert poly_factor(0, 100, warmup_steps=10) == pytest.approx(0.01)
    assert poly_factor(5, 100, warmup_steps=10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert poly_factor(10, 100, warmup_steps=10) == 1.0
    assert poly_factor(55, 100, power=1.0, warmup_steps=10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="total_steps"):
        poly_factor(0, 0)

    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = poly_scheduler(opt, total_steps=4, power=2.0)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.2 * 0.75**2, 0.2 * 0.5**2, 0.2 * 0.25**2])


def test_parameter_groups(cache):
    cfg = tiny_cfg(
        Path("unused"), cache, "groups", "optim.crm_lr_mult=10", "optim.weight_decay=0.3"
    )
    module = DejaVuModule.from_config(cfg, num_classes=6)
    groups = {g["name"]: g for g in module.parameter_groups()}
    assert set(groups) == {"base", "base_no_decay", "regeneration", "regeneration_no_decay"}
    assert groups["base"]["lr"] == cfg.optim.lr
    assert groups["regeneration"]["lr"] == pytest.approx(10 * cfg.optim.lr)
    assert groups["base"]["weight_decay"] == 0.3 and groups["base_no_decay"]["weight_decay"] == 0
    assert all(p.ndim <= 1 for p in groups["base_no_decay"]["params"])
    assert all(p.ndim > 1 for p in groups["base"]["params"])
    # every trainable parameter exactly once, base ones in the base groups
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in module.parameters() if p.requires_grad)
    base_ids = {id(p) for p in module.eval_model().parameters()}
    assert {id(p) for p in groups["regeneration"]["params"]}.isdisjoint(base_ids)


def test_default_monitor():
    cfg = load_config(None, ["task.name=depth"])
    assert default_monitor(cfg) == ("depth/rmse", "min")
    assert default_monitor(load_config(None, ["task.name=normals"])) == ("normals/mean", "min")
    depth = load_config(None, ["task.name=depth", "trainer.monitor=depth/delta1"])
    assert default_monitor(depth)[1] == "max"
    assert default_monitor(load_config(None, ["trainer.monitor=loss"]))[1] == "min"
    # Exactly the logged names: per-class IoU is seg/iou_per_class/<k> (what is logged) ...
    per_class = load_config(None, ["trainer.monitor=seg/iou_per_class/3"])
    assert default_monitor(per_class) == ("seg/iou_per_class/3", "max")
    with pytest.raises(ValueError, match="not a logged metric"):
        default_monitor(per_class, num_classes=3)  # classes 0..2 only
    # ... and names that are never logged are refused when the config is read.
    for bad in ("seg/sharpness", "seg/iou/3", "depth/rmse", "val/seg/miou"):
        with pytest.raises(ValueError, match=r"trainer.monitor.*not a logged metric"):
            load_config(None, [f"trainer.monitor={bad}"])


def test_seeded_samples_depend_only_on_seed_epoch_and_index(cache, tmp_path):
    cfg = tiny_cfg(
        tmp_path, cache, "data", "data.crop_size=[16, 24]", "data.scale_range=[0.5, 1.5]"
    )
    dm = DenseDataModule(cfg)
    samples = SeededSamples(dm.dataset("train"), seed=0)
    a = samples[(1, 2)]["image"]
    torch.rand(10)  # the global RNG state does not matter ...
    assert torch.equal(a, samples[(1, 2)]["image"])
    assert not torch.equal(a, samples[(2, 2)]["image"])  # ... the epoch does
    before = torch.get_rng_state()
    samples[(3, 1)]
    assert torch.equal(before, torch.get_rng_state())  # and it is left untouched
    other_seed = SeededSamples(dm.dataset("train"), seed=1)
    assert not torch.equal(a, other_seed[(1, 2)]["image"])


def test_epoch_sampler_shards_and_reshuffles():
    shards = [list(EpochSampler(range(10), num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    indices = sorted(i for shard in shards for _, i in shard)
    assert indices == list(range(10))
    s = EpochSampler(range(10), num_replicas=1, rank=0, seed=3)
    s.set_epoch(1)
    first = list(s)
    s.set_epoch(2)
    assert [i for _, i in first] != [i for _, i in s]
    assert {e for e, _ in first} == {1}
    s.set_epoch(1)
    assert list(s) == first


def test_datamodule_metadata_and_limits(cache, tmp_path):
    dm = DenseDataModule(tiny_cfg(tmp_path, cache, "dm"))
    dm.setup("fit")
    assert dm.num_classes == 6 and dm.class_names[1] == "wall"
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 4
    assert dm.input_size == (32, 48)
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"image", "seg", "name"}  # only the targets the task needs
    assert batch["image"].shape == (2, 3, 32, 48)


def test_model_complexity_counts_macs():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    # 4 output channels x 3 inputs x 9 taps x 5 x 5 positions
    assert model_complexity(conv, (5, 5)) == {"params": 108, "gmacs": 2700 / 1e9}
    assert model_complexity(conv, (2, 3, 5, 5))["gmacs"] == pytest.approx(5400 / 1e9)
    assert conv.training  # restored
    with pytest.raises(ValueError, match="input_size"):
        model_complexity(conv, (3, 5, 5))
