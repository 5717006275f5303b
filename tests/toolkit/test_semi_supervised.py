"""Semi-supervised training: a seeded labelled subset, an unlabelled pool (the rest of the
split plus a folder), batches of labelled + unlabelled rows, the task loss on labelled rows
only, the baseline on the labelled subset alone, exact resume, the CLI and the configs."""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_runs import tiny_config
from torch.utils.data import DataLoader

from dejavu.toolkit.config import ExperimentConfig, config_to_dict, load_config
from dejavu.toolkit.data import pad_collate
from dejavu.toolkit.training import run_fit
from dejavu.toolkit.training.datamodule import (
    DenseDataModule,
    EpochSampler,
    SeededSamples,
    SemiSupervisedSampler,
    labeled_subset,
    steps_per_epoch,
)

ROOT = Path(__file__).resolve().parents[2]
NUM_TRAIN, BATCH = 8, 2


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes_cache")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Three unlabelled frames of different sizes and formats, one in a sub-folder."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    (root / "clip").mkdir()
    for path, (h, w) in (
        (root / "a.png", (30, 40)),
        (root / "clip" / "b.JPG", (50, 36)),
        (root / "c.webp", (20, 64)),
    ):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    (root / "notes.txt").write_text("not an image")
    return root


def tiny_cfg(out: Path, cache: Path, name: str, *extra: str) -> ExperimentConfig:
    """The shared tiny run (tiny_runs.py) with this module's scenes and batch, and a
    half-resolution CRM."""
    return tiny_config(
        out,
        cache,
        name,
        f"data.num_train={NUM_TRAIN}",
        f"data.batch_size={BATCH}",
        "dejavu.crm={kind: forward, width: 8, depth: 2, scale: 0.5}",
        *extra,
    )


AUGMENT = ("data.crop_size=[24, 40]", "data.scale_range=[0.8, 1.25]", "data.color_jitter=0.2")


def _datamodule(cfg: ExperimentConfig) -> DenseDataModule:
    dm = DenseDataModule(cfg)
    dm.setup("fit")
    return dm


def _batches(loader: DataLoader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


# ----------------------------------------------------------------------------- config
def test_labeled_subset_is_seeded_and_has_round_fraction_n_images(cache, tmp_path):
    for n, fraction in ((367, 0.125), (8, 0.5), (10, 0.01), (7, 1 / 3), (5, 1.0)):
        subset = labeled_subset(n, fraction, seed=0)
        assert len(subset) == max(1, round(fraction * n))
        assert subset == sorted(set(subset)) and subset[0] >= 0 and subset[-1] < n
    assert len(labeled_subset(367, 0.125, seed=0)) == 46  # CamVid: 46 labelled, 321 not
    assert labeled_subset(367, 0.125, seed=0) == labeled_subset(367, 0.125, seed=0)
    assert labeled_subset(367, 0.125, seed=0) != labeled_subset(367, 0.125, seed=1)

    dms = [
        _datamodule(tiny_cfg(tmp_path, cache, "s", f"seed={s}", "data.labeled_fraction=0.5"))
        for s in (0, 0, 1)
    ]
    subsets = [dm.labeled_indices for dm in dms]
    assert len(subsets[0]) == 4
    assert subsets[0] == subsets[1] == labeled_subset(NUM_TRAIN, 0.5, seed=0)
    assert subsets[0] != subsets[2]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.labeled_fraction=0", r"data.labeled_fraction must be in \(0.0, 1.0\]"),
        ("data.labeled_fraction=1.5", "data.labeled_fraction"),
        ("data.labeled_fraction=-0.1", "data.labeled_fraction"),
        ("data.unlabeled_batch_size=0", "data.unlabeled_batch_size must be a positive"),
        ("data.unlabeled_root=''", "data.unlabeled_root"),
        ("data.unlabeled_root=3", "data.unlabeled_root' must be str or null"),
    ],
)
def test_config_rejects_bad_values(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_missing_or_empty_unlabeled_folder_is_a_clear_error(cache, tmp_path):
    missing = tmp_path / "no_such_folder"
    cfg = tiny_cfg(tmp_path, cache, "m", f"data.unlabeled_root={missing}")
    with pytest.raises(
        ValueError, match=rf"data.unlabeled_root: folder not found: {missing}.*\.png"
    ):
        DenseDataModule(cfg).setup("fit")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    cfg = tiny_cfg(tmp_path, cache, "e", f"data.unlabeled_root={empty}")
    with pytest.raises(ValueError, match=rf"no image files in {empty}.*\.jpg.*\.webp"):
        DenseDataModule(cfg).setup("fit")


def test_corrupt_unlabeled_image_names_the_file(cache, tmp_path, frames):
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    Image.open(frames / "a.png").save(folder / "good.png")
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    cfg = tiny_cfg(tmp_path, cache, "c", f"data.unlabeled_root={folder}", *AUGMENT)
    loader = _datamodule(cfg).train_dataloader()
    with pytest.raises(ValueError, match=r"sub/broken\.png: (not a readable|corrupt)"):
        for _ in loader:
            pass


# ----------------------------------------------------------------------------- batches
def test_batches_hold_labelled_then_unlabelled_rows_and_keep_the_epoch_length(
    cache, tmp_path, frames
):
    cfg = tiny_cfg(
        tmp_path, cache, "b", "data.labeled_fraction=0.5", "data.unlabeled_batch_size=3",
        f"data.unlabeled_root={frames}", *AUGMENT,
    )  # fmt: skip
    dm = _datamodule(cfg)
    assert dm.semi_supervised
    names = [s["name"] for s in (dm.dataset("train").load(i) for i in range(NUM_TRAIN))]
    labelled = {names[i] for i in dm.labeled_indices}
    pool = (set(names) - labelled) | {"a", "clip/b", "c"}
    assert len(dm.unlabeled) == len(pool) == 4 + 3

    loader = dm.train_dataloader()
    full = _datamodule(tiny_cfg(tmp_path, cache, "f")).train_dataloader()
    assert len(loader) == len(full) == steps_per_epoch(NUM_TRAIN, BATCH) == NUM_TRAIN // BATCH
    for epoch in (0, 1):
        batches = _batches(loader, epoch)
        assert len(batches) == NUM_TRAIN // BATCH
        drawn_l, drawn_u = [], []
        for b in batches:
            assert b["labeled"].tolist() == [True] * BATCH + [False] * 3
            assert b["image"].shape == (BATCH + 3, 3, 24, 40)
            assert (b["seg"][BATCH:] == 255).all()  # unlabelled rows: ignore everywhere
            assert (b["seg"][:BATCH] != 255).any()
            drawn_l += b["name"][:BATCH]
            drawn_u += b["name"][BATCH:]
        # each stream is cycled: every pass is a permutation of its items (4 labelled
        # images, 8 draws per epoch; 7 unlabelled ones, 12 draws per epoch)
        assert sorted(drawn_l[:4]) == sorted(drawn_l[4:]) == sorted(labelled)
        assert set(drawn_u) <= pool
        if epoch == 0:
            assert sorted(drawn_u[:7]) == sorted(pool)
    # reshuffled: another epoch, another order and other augmentations
    e0, e1 = _batches(loader, 0), _batches(loader, 1)
    assert [b["name"] for b in e0] != [b["name"] for b in e1]
    assert all(
        torch.equal(a["image"], b["image"]) for a, b in zip(e0, _batches(loader, 0), strict=True)
    )


def test_unlabelled_depth_and_normals_are_invalid(cache, tmp_path):
    cfg = tiny_cfg(
        tmp_path, cache, "mt", "task.name=multitask", "data.labeled_fraction=0.25",
        "data.unlabeled_batch_size=1",
    )  # fmt: skip
    b = next(iter(_datamodule(cfg).train_dataloader()))
    assert b["labeled"].tolist() == [True, True, False]
    assert b["depth"].shape == (3, 1, 32, 48) and b["normals"].shape == (3, 3, 32, 48)
    assert (b["depth"][2] == 0).all() and (b["normals"][2] == 0).all()
    assert (b["seg"][2] == 255).all() and (b["depth"][:2] > 0).all()


def test_ddp_ranks_get_their_own_draws():
    kwargs = dict(num_unlabeled=5, steps_per_epoch=3, batch_size=2, unlabeled_batch_size=1)
    single = list(SemiSupervisedSampler([1, 4, 6], **kwargs, num_replicas=1, rank=0, seed=0))
    ranks = [
        list(SemiSupervisedSampler([1, 4, 6], **kwargs, num_replicas=2, rank=r, seed=0))
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 3 * 3
    for kind in (0, 1):
        positions = [[p for k, p, _ in keys if k == kind] for keys in ranks]
        assert not set(positions[0]) & set(positions[1])
        # together the ranks take consecutive draws of the same streams
        both = sorted(positions[0] + positions[1])
        assert both == list(range(len(both)))
    assert [k for k in single if k[1] < 2 and k[0] == 0] == [k for k in ranks[0] if k[0] == 0][:2]


def _plain_loader(dm: DenseDataModule) -> DataLoader:
    """The training loader as it was before semi-supervised training existed."""
    ds, cfg = dm.dataset("train"), dm.cfg
    return DataLoader(
        SeededSamples(ds, cfg.seed),
        batch_size=cfg.data.batch_size,
        sampler=EpochSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed),
        collate_fn=functools.partial(pad_collate, multiple=1),
        drop_last=True,
    )


@pytest.mark.parametrize(
    "extra",
    [
        ("data.labeled_fraction=1.0", "data.unlabeled_batch_size=3"),
        # the baseline never loads unlabelled images, so a folder changes nothing
        ("dejavu.enabled=false", "data.unlabeled_root=/no/such/folder"),
    ],
    ids=["fraction1", "baseline_with_folder"],
)
def test_all_labels_and_no_unlabelled_pool_keep_todays_batches(cache, tmp_path, extra):
    dm = _datamodule(tiny_cfg(tmp_path, cache, "p", *AUGMENT, *extra))
    assert not dm.semi_supervised and dm.unlabeled is None
    loader, reference = dm.train_dataloader(), _plain_loader(dm)
    for epoch in (0, 1):
        got, want = _batches(loader, epoch), _batches(reference, epoch)
        assert len(got) == len(want) == NUM_TRAIN // BATCH
        for a, b in zip(got, want, strict=True):
            assert set(a) == set(b) == {"image", "seg", "name"}
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["seg"], b["seg"])
            assert a["name"] == b["name"]


def test_baseline_trains_on_the_labelled_subset_and_loads_no_unlabelled_image(
    cache, tmp_path, monkeypatch
):
    from dejavu.toolkit.data import unlabeled

    def refuse(*args, **kwargs):
        raise AssertionError("the baseline touched an unlabelled image")

    monkeypatch.setattr(unlabeled.UnlabeledSplit, "__getitem__", refuse)
    monkeypatch.setattr(unlabeled, "find_images", refuse)
    cfg = tiny_cfg(
        tmp_path, cache, "bl", "dejavu.enabled=false", "data.labeled_fraction=0.25",
        f"data.unlabeled_root={tmp_path / 'missing'}", *AUGMENT,
    )  # fmt: skip
    dm = _datamodule(cfg)
    assert dm.semi_supervised and dm.unlabeled is None
    names = [dm.dataset("train").load(i)["name"] for i in range(NUM_TRAIN)]
    labelled = sorted(names[i] for i in dm.labeled_indices)
    batches = _batches(dm.train_dataloader(), 0)
    assert len(batches) == NUM_TRAIN // BATCH  # the full split's number of steps
    for b in batches:
        assert b["labeled"].tolist() == [True] * BATCH
        assert sorted(b["name"]) == labelled  # 2 labelled images, cycled


# ----------------------------------------------------------------------------- training
def test_task_objective_computes_the_task_loss_on_labelled_rows_only():
    from dejavu.dejavu import TaskOnly

    seen = []

    def loss(pred, batch):
        assert bool(batch["labeled"].all())
        seen.append(int(pred["seg"].shape[0]))
        return torch.nn.functional.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)

    torch.manual_seed(0)
    objective = TaskOnly(torch.nn.Conv2d(3, 4, 3, padding=1), loss)
    seg = torch.randint(0, 4, (3, 8, 12))
    batch = {"image": torch.randn(3, 3, 8, 12), "seg": seg, "name": ["a", "b", "c"]}
    out = objective({**batch, "labeled": torch.tensor([True, False, True])})
    assert seen == [2]
    with torch.no_grad():
        rows = objective.base(batch["image"][[0, 2]])
    expected = torch.nn.functional.cross_entropy(rows, seg[[0, 2]], ignore_index=255)
    assert out["task"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    none = objective({**batch, "labeled": torch.zeros(3, dtype=torch.bool)})
    assert seen == [2] and none["task"].item() == 0.0 and none["loss"].requires_grad


class _Watch(pl.Callback):
    """Wrap the objective's task loss (every row must be labelled) and watch the regen loss."""

    def __init__(self) -> None:
        self.task_rows: list[int] = []
        self.regen_rows: list[int] = []

    def on_fit_start(self, trainer, pl_module):
        model = pl_module.model
        task_loss = model.task_loss

        def checked(pred, batch):
            assert bool(batch["labeled"].all()), "task loss computed on an unlabelled image"
            assert all(v.shape[0] == batch["labeled"].shape[0] for v in pred.values())
            self.task_rows.append(int(batch["labeled"].shape[0]))
            return task_loss(pred, batch)

        model.task_loss = checked
        if getattr(model, "regen_loss", None) is not None:
            model.regen_loss.register_forward_hook(
                lambda m, args, out: self.regen_rows.append(int(args[0].shape[0]))
            )


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    (path,) = run_dir.glob("csv/version_*/metrics.csv")
    with path.open() as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.parametrize("enabled", [True, False], ids=["dejavu", "baseline"])
def test_no_task_loss_on_unlabelled_images_during_training(cache, tmp_path, frames, enabled):
    cfg = tiny_cfg(
        tmp_path, cache, f"watch_{enabled}", f"dejavu.enabled={enabled}",
        "data.labeled_fraction=0.5", "data.unlabeled_batch_size=3",
        f"data.unlabeled_root={frames}", "dejavu.cyclic_weight=0.5", *AUGMENT,
    )  # fmt: skip
    watch = _Watch()
    result = run_fit(cfg, enable_progress_bar=False, callbacks=[watch])
    steps = NUM_TRAIN // BATCH
    assert result.history[-1]["step"] == steps  # as many steps as with every label
    calls_per_step = 2 if enabled else 1  # the task loss, and DejaVu-CL's
    assert watch.task_rows == [BATCH] * (steps * calls_per_step)
    assert watch.regen_rows == ([BATCH + 3] * steps if enabled else [])
    rows = _csv_rows(result.run_dir)
    assert len(rows) == steps
    unlabelled = 3 if enabled else 0
    for r in rows:
        assert float(r["train/labeled_in_batch"]) == BATCH
        assert float(r["train/labeled_fraction_in_batch"]) == pytest.approx(
            BATCH / (BATCH + unlabelled)
        )
        assert (float(r["train/regen"]) > 0) == enabled


class _StopAtEpoch(pl.Callback):
    """Kill the run when epoch ``epoch`` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def test_interrupted_and_resumed_semi_supervised_run_ends_with_the_same_weights(
    cache, tmp_path, frames
):
    extra = (
        "trainer.max_epochs=2", "data.num_workers=1", "data.labeled_fraction=0.25",
        "data.unlabeled_batch_size=2", f"data.unlabeled_root={frames}", "optim.warmup_steps=2",
        *AUGMENT,
    )  # fmt: skip
    straight = run_fit(tiny_cfg(tmp_path, cache, "straight", *extra), enable_progress_bar=False)

    cfg = tiny_cfg(tmp_path, cache, "resumed", *extra)
    with pytest.raises(RuntimeError, match="killed"):
        run_fit(cfg, enable_progress_bar=False, callbacks=[_StopAtEpoch(1)])
    assert torch.load(cfg.run_dir / "last.ckpt", weights_only=True)["global_step"] == 4
    resumed = run_fit(cfg, resume=True, enable_progress_bar=False)

    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * NUM_TRAIN // BATCH
    for key, x in a["state_dict"].items():
        y = b["state_dict"][key]
        if isinstance(x, dict):
            x, y = x["generator"], y["generator"]
        assert torch.equal(x, y), key
    for i, s in a["optimizer_states"][0]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer_states"][0]["state"][i]["exp_avg"])
    assert resumed.history == straight.history


def test_cli_fit_with_a_labeled_fraction(cache, tmp_path):
    from dejavu.toolkit.cli import main

    cfg = tiny_cfg(tmp_path / "runs", cache, "cli", "trainer.max_steps=2")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    rc = main(
        ["fit", str(path), "--no-progress", "--set", "data.labeled_fraction=0.125",
         "--set", "data.unlabeled_batch_size=1"]
    )  # fmt: skip
    assert rc == 0
    saved = load_config(cfg.run_dir / "config.yaml")
    assert saved.data.labeled_fraction == 0.125 and saved.data.unlabeled_batch_size == 1
    rows = _csv_rows(cfg.run_dir)
    assert [float(r["train/labeled_in_batch"]) for r in rows] == [BATCH, BATCH]
    assert [float(r["train/labeled_fraction_in_batch"]) for r in rows] == pytest.approx([2 / 3] * 2)


# ----------------------------------------------------------------------------- configs
def test_camvid_semi8_configs_inherit_the_dejavu_settings():
    base = load_config(ROOT / "configs" / "camvid" / "hrnet18_dejavu.yaml")
    semi = load_config(ROOT / "configs" / "camvid" / "hrnet18_semi8_dejavu.yaml")
    baseline = load_config(ROOT / "configs" / "camvid" / "hrnet18_semi8_baseline.yaml")
    first = load_config(ROOT / "configs" / "camvid" / "hrnet18_semi8_dejavu_w1.yaml")
    assert semi.name == "camvid_hrnet18_semi8_dejavu"
    assert baseline.name == "camvid_hrnet18_semi8_baseline"
    for cfg in (semi, baseline, first):
        assert cfg.data.labeled_fraction == 0.125 and cfg.data.unlabeled_batch_size == 8
    # Only the regeneration weight differs from the all-label design (chosen by the pilots).
    assert semi.dejavu.regen_weight == 0.25 and first.dejavu.regen_weight == 1.0
    assert {**vars(semi.dejavu), "regen_weight": 1.0} == vars(base.dejavu) == vars(first.dejavu)
    assert semi.optim == base.optim
    assert semi.trainer == base.trainer and baseline.dejavu.enabled is False
    assert {**vars(baseline.dejavu), "enabled": True} == vars(semi.dejavu)
    assert vars(semi.data) == {**vars(base.data), "labeled_fraction": 0.125,
                               "unlabeled_batch_size": 8}  # fmt: skip


SHARED_DATA = Path(os.environ.get("DEJAVU_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.realdata
@pytest.mark.skipif(
    not (SHARED_DATA / "camvid").is_dir(), reason=f"CamVid not found under {SHARED_DATA}"
)
def test_camvid_semi8_splits_367_images_into_46_labelled_and_321_unlabelled():
    over = [f"data.root={SHARED_DATA / 'camvid'}", "data.num_workers=0"]
    semi = _datamodule(load_config(ROOT / "configs/camvid/hrnet18_semi8_dejavu.yaml", over))
    base = _datamodule(load_config(ROOT / "configs/camvid/hrnet18_semi8_baseline.yaml", over))
    full = _datamodule(load_config(ROOT / "configs/camvid/hrnet18_dejavu.yaml", over))
    assert len(semi.dataset("train")) == 367
    assert len(semi.labeled_indices) == 46 and len(semi.unlabeled) == 321
    assert base.labeled_indices == semi.labeled_indices and base.unlabeled is None
    loaders = [dm.train_dataloader() for dm in (semi, base, full)]
    assert [len(x) for x in loaders] == [45, 45, 45]
    assert loaders[0].batch_size == 16 and loaders[1].batch_size == 8


# ----------------------------------------------------------------------------- DDP
class _DDPReport(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.keys: list[list] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.keys.append([batch["name"], batch["labeled"].tolist()])

    def on_fit_end(self, trainer, pl_module):
        import hashlib
        import json

        digest = hashlib.sha256()
        for name, value in sorted(pl_module.eval_model().state_dict().items()):
            digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
        report = {"step": trainer.global_step, "hash": digest.hexdigest(), "batches": self.keys}
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def _ddp_worker(rank: int, port: int, cfg: ExperimentConfig, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
        LOCAL_RANK=str(rank), NODE_RANK="0",
    )  # fmt: skip
    run_fit(cfg, enable_progress_bar=False, callbacks=[_DDPReport(out_dir)])


@pytest.mark.slow
def test_two_process_ddp_semi_supervised_run(cache, tmp_path, frames):
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_cfg(
        tmp_path, cache, "ddp", "trainer.devices=2", "trainer.strategy=ddp",
        "data.labeled_fraction=0.5", "data.unlabeled_batch_size=1",
        f"data.unlabeled_root={frames}", *AUGMENT,
    )  # fmt: skip
    mp.spawn(_ddp_worker, args=(port, cfg, str(tmp_path)), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    steps = steps_per_epoch(NUM_TRAIN, BATCH, world_size=2)
    assert [r["step"] for r in reports] == [steps, steps] == [2, 2]
    assert reports[0]["hash"] == reports[1]["hash"]
    for step in range(steps):
        (n0, l0), (n1, l1) = (r["batches"][step] for r in reports)
        assert l0 == l1 == [True, True, False]
        # at each step the ranks draw different labelled images (the 4 of the subset
        # are split between them) and different unlabelled ones
        assert not set(n0[:2]) & set(n1[:2]) and n0[2] != n1[2]
