"""Experiment config: YAML with ``_base_``, overrides, errors, round trips, shipped configs."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from dejavu.toolkit.config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    load_yaml,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == ExperimentConfig()
    assert cfg.dejavu.enabled is True
    assert cfg.run_dir == Path("runs") / "experiment"


def test_base_chain_is_deep_merged(tmp_path):
    _write(
        tmp_path / "common" / "root.yaml",
        "seed: 3\noptim: {lr: 0.5, weight_decay: 0.1}\ndejavu: {crm: {width: 8}}\n",
    )
    _write(
        tmp_path / "base.yaml",
        "_base_: common/root.yaml\noptim: {lr: 0.25}\ndata: {batch_size: 4}\n",
    )
    child = _write(
        tmp_path / "exp" / "run.yaml",
        "_base_: ../base.yaml\ndejavu: {enabled: false, crm: {depth: 2}}\n",
    )
    cfg = load_config(child)
    assert cfg.seed == 3
    assert cfg.optim.lr == 0.25  # the nearer file wins
    assert cfg.optim.weight_decay == 0.1  # siblings of an overridden key survive
    assert cfg.data.batch_size == 4
    assert cfg.dejavu.enabled is False
    # free-form mappings merge across files and onto their defaults
    assert cfg.dejavu.crm == {"kind": "forward", "width": 8, "depth": 2}  # scale: the class default
    assert cfg.name == "run"  # the file stem when no file sets it


def test_replace_marker_drops_inherited_options(tmp_path):
    _write(tmp_path / "base.yaml", "dejavu: {redaction: {name: random, p: 0.5}}\n")
    child = _write(
        tmp_path / "child.yaml",
        "_base_: base.yaml\ndejavu: {redaction: {_replace_: true, name: bandstop}}\n",
    )
    assert load_config(child).dejavu.redaction == {"name": "bandstop"}


def test_list_of_bases_merges_in_order(tmp_path):
    _write(tmp_path / "a.yaml", "seed: 1\noptim: {lr: 0.1}\n")
    _write(tmp_path / "b.yaml", "seed: 2\n")
    child = _write(tmp_path / "c.yaml", "_base_: [a.yaml, b.yaml]\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.optim.lr) == (2, 0.1)


def test_base_cycle_is_reported(tmp_path):
    _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ValueError, match="_base_ cycle"):
        load_config(tmp_path / "a.yaml")


def test_missing_base_file(tmp_path):
    child = _write(tmp_path / "c.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        load_config(child)


def test_overrides_parse_values_as_yaml():
    cfg = load_config(
        None,
        [
            "dejavu.enabled=false",
            "optim.lr=1e-3",  # PyYAML alone would read this as a string
            "data.crop_size=[96,128]",
            "trainer.devices=auto",
            "trainer.limit_train_batches=3",
            "trainer.gradient_clip_val=1",
            "model.pretrained=null",
        ],
    )
    assert cfg.dejavu.enabled is False
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.data.crop_size == [96, 128]
    assert cfg.trainer.devices == "auto"
    assert cfg.trainer.limit_train_batches == 3 and isinstance(cfg.trainer.limit_train_batches, int)
    assert cfg.trainer.gradient_clip_val == 1.0 and isinstance(cfg.trainer.gradient_clip_val, float)
    assert cfg.model.pretrained is None


def test_override_mapping_replaces_free_form_and_merges_sections(tmp_path):
    base = _write(tmp_path / "r.yaml", "dejavu: {redaction: {name: random, p: 0.5}}\n")
    cfg = load_config(base, ["dejavu.redaction={name: blocks, block: 8}", "optim={lr: 0.5}"])
    assert cfg.dejavu.redaction == {"name": "blocks", "block": 8}
    assert cfg.optim.lr == 0.5 and cfg.optim.name == "adamw"
    cfg = load_config(base, ["dejavu.redaction.p=0.75"])
    assert cfg.dejavu.redaction == {"name": "random", "p": 0.75}


@pytest.mark.parametrize(
    ("override", "path", "valid"),
    [
        ("optim.lrr=1", "optim.lrr", "weight_decay"),
        ("foo=1", "foo", "trainer"),
        ("trainer.max_epoch=3", "trainer.max_epoch", "max_epochs"),
        ("data.crop.size=3", "data.crop", "crop_size"),
    ],
)
def test_unknown_override_key_lists_valid_keys(override, path, valid):
    with pytest.raises(ValueError, match="unknown config key") as err:
        load_config(None, [override])
    assert repr(path) in str(err.value)
    assert valid in str(err.value)


def test_unknown_yaml_key_names_its_path(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "dejavu: {enabled: true, regen_wieght: 2}\n")
    with pytest.raises(ValueError, match=r"'dejavu\.regen_wieght'") as err:
        load_config(bad)
    assert "regen_weight" in str(err.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr=fast", "float"),
        ("data.batch_size=2.5", "int"),
        ("dejavu.enabled=yes please", "bool"),
        ("data.crop_size=[96, x]", "list of int"),
        ("dejavu.redaction=[1, 2]", "mapping"),
        ("trainer.max_epochs=true", "int"),  # a bool is not an int
    ],
)
def test_wrong_types_name_key_expected_and_got(override, expected):
    key = override.split("=")[0]
    with pytest.raises(ValueError, match=re.escape(f"'{key}' must be {expected}")) as err:
        load_config(None, [override])
    assert "got" in str(err.value)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.name=adam", "optim.name"),
        ("optim.lr=0", "optim.lr"),
        ("task.name=instances", "task.name"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.crop_size=[96]", "data.crop_size"),
        ("data.scale_range=[2.0, 1.0]", "data.scale_range"),
        ("dejavu.crm.kind=sideways", "dejavu.crm.kind"),
        ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches"),
        ("name=a/b", "name"),
    ],
)
def test_invalid_values(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_scale_range_needs_a_crop():
    with pytest.raises(ValueError, match=r"needs data\.crop_size"):
        load_config(None, ["data.scale_range=[0.5, 2.0]"])


def test_malformed_override():
    with pytest.raises(ValueError, match=r"a\.b\.c=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ValueError, match="sequence"):
        load_config(None, "optim.lr=1")  # type: ignore[arg-type]


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        CONFIGS / "scenes" / "multitask_dejavu.yaml", ["seed=7", "data.crop_size=[64, 96]"]
    )
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind


def test_every_shipped_config_resolves():
    from dejavu.dejavu import TaskOnly
    from dejavu.text_supervision import TextSupervision
    from dejavu.toolkit.data import dataset_class
    from dejavu.toolkit.models import create_model
    from dejavu.toolkit.tasks import create_task
    from dejavu.toolkit.training import build_objective

    files = sorted(CONFIGS.rglob("*.yaml"))
    assert len(files) >= 21
    names = set()
    for path in files:
        cfg = load_config(path)
        raw = load_yaml(path)
        assert "_base_" not in raw
        if path.stem != "base":
            names.add(cfg.name)
        # the objective (redaction/CRM/loss options) must build, not just parse
        data = dataset_class(cfg.data.name)
        num_classes = len(data.class_names)
        things = data.thing_classes  # the panoptic categories, read before loading
        categories = (
            None
            if things is None
            else [
                {"id": i, "name": n, "isthing": n in things} for i, n in enumerate(data.class_names)
            ]
        )
        task = create_task(
            cfg.task.name,
            num_classes=num_classes,
            categories=categories,
            postprocess=cfg.task.postprocess,
        )
        # a mask-classification head (panoptic) needs a mask-classification network
        small = (
            "mask2former_tiny" if cfg.model.name.startswith("mask2former") else "fpn_test_resnet"
        )
        base = create_model(small, heads=task.heads)
        dejavu = cfg.dejavu
        if dejavu.text.get("weight", 0.0) > 0:
            # DejaVu-TS reads the user's CLIP weights (never shipped): its options must be
            # TextSupervision's and name a file; the rest of the objective builds without it
            options = set(inspect.signature(TextSupervision).parameters)
            assert set(dejavu.text) - {"weight"} <= options and dejavu.text["pretrained"], path
            dejavu = dataclasses.replace(dejavu, text={**dejavu.text, "weight": 0.0})
        obj = build_objective(dejavu, task, base, seed=cfg.seed)
        assert isinstance(obj, TaskOnly) == (not cfg.dejavu.enabled), path
    assert len(names) == len([f for f in files if f.stem != "base"])  # run names are unique


@pytest.mark.parametrize(
    "folder", ["scenes", "camvid", "cityscapes", "ade20k", "nyudv2", "kitti"], ids=lambda f: f
)
def test_baseline_and_dejavu_differ_only_by_the_switch(folder):
    pairs = [
        (p, p.with_name(p.name.replace("_baseline", "_dejavu")))
        for p in (CONFIGS / folder).glob("*_baseline.yaml")
    ]
    assert pairs
    for baseline, dejavu in pairs:
        a, b = config_to_dict(load_config(baseline)), config_to_dict(load_config(dejavu))
        assert a["dejavu"]["enabled"] is False and b["dejavu"]["enabled"] is True
        for d in (a, b):
            d.pop("name")
            d["dejavu"].pop("enabled")
        assert a == b


def test_paper_redaction_choices_in_shipped_configs():
    seg = load_config(CONFIGS / "scenes" / "segmentation_dejavu.yaml")
    assert seg.dejavu.redaction == {"name": "random", "p": 0.25}
    assert seg.dejavu.conditioning["hard"] is False
    for task in ("depth", "normals"):
        cfg = load_config(CONFIGS / "scenes" / f"{task}_dejavu.yaml")
        assert cfg.dejavu.redaction["name"] == "bandstop"
    camvid = load_config(CONFIGS / "camvid" / "hrnet18_dejavu.yaml")
    assert camvid.data.root == "../shared/data/camvid"
    assert camvid.data.pad_to_multiple == 32
    assert all(v % 32 == 0 for v in camvid.data.crop_size)
