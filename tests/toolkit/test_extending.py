"""docs/extending.md: one file per extension, and it trains through the command line.

The five files under ``tests/toolkit/plugins/`` are the ones docs/extending.md
shows (checked verbatim below): a redaction, a CRM, a model, a dataset and a
task with a new head. Each is registered by importing it (``dejavu --plugin
FILE``), has its one test here, and all five together train for two steps
through ``dejavu fit``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import dejavu.crm.factory as crm_registry
import dejavu.redaction.factory as redaction_registry
import dejavu.toolkit.data.factory as dataset_registry
import dejavu.toolkit.models.factory as model_registry
import dejavu.toolkit.tasks.heads as head_registry
import dejavu.toolkit.tasks.task as task_registry
from dejavu.toolkit.cli import load_plugins, main

PLUGINS = Path(__file__).parent / "plugins"
FILES = [
    "stripes_redaction.py",
    "blend_crm.py",
    "tiny_model.py",
    "gradients_dataset.py",
    "edges_task.py",
]
DOCS = Path(__file__).parents[2] / "docs" / "extending.md"
_REGISTRIES = [
    (redaction_registry, "_CLASSES"),
    (crm_registry, "_REGISTRY"),
    (model_registry, "_MODELS"),
    (model_registry, "_FAMILIES"),
    (dataset_registry, "_REGISTRY"),
    (head_registry, "_HEADS"),
    (head_registry, "_TARGETS"),
    (task_registry, "_TASKS"),
]


@pytest.fixture(scope="module")
def plugins() -> Iterator[list[str]]:
    """The five plugins imported as ``dejavu --plugin`` does; the registries restored after."""
    saved = [(module, name, dict(getattr(module, name))) for module, name in _REGISTRIES]
    paths = [str(PLUGINS / f) for f in FILES]
    load_plugins(paths)
    yield paths
    for module, name, content in saved:
        registry = getattr(module, name)
        registry.clear()
        registry.update(content)
    for f in FILES:
        sys.modules.pop(f"dejavu_plugin_{Path(f).stem}", None)


def test_docs_show_each_file_as_it_is() -> None:
    docs = DOCS.read_text()
    for f in FILES:
        assert (PLUGINS / f).read_text().strip() in docs, f


def test_redaction(plugins) -> None:
    from dejavu.redaction import create_redaction, redaction_names

    assert "stripes" in redaction_names()
    out = create_redaction("stripes", height=2)(torch.ones(2, 3, 8, 6))
    assert out.keep.shape == (2, 1, 8, 6)
    assert torch.equal(out.image, out.keep.expand(2, 3, 8, 6))  # removed pixels are 0
    assert out.keep.mean().item() == 0.5  # every other stripe


def test_crm(plugins) -> None:
    from dejavu.crm import create_crm

    crm = create_crm("blend", cond_channels=2)
    keep = torch.ones(1, 1, 8, 8)
    out = crm(torch.randn(1, 3, 8, 8), torch.rand(1, 2, 8, 8), keep)
    assert out.shape == (1, 3, 4, 4)  # the working resolution (scale 0.5)


def test_model(plugins) -> None:
    from dejavu.toolkit.models import create_model

    net = create_model("tiny_convnet", heads={"seg": 2, "edges": 1})
    out = net(torch.zeros(1, 3, 15, 21))
    assert out["seg"].shape == (1, 2, 15, 21) and out["edges"].shape == (1, 1, 15, 21)


def test_dataset(plugins) -> None:
    from dejavu.toolkit.data import create_dataset

    sample = create_dataset("gradients", None, "val", num_images=2)[1]
    assert sample["image"].shape == (3, 32, 48) and sample["edges"].shape == (1, 32, 48)
    assert set(sample["seg"].unique().tolist()) == {0, 1}


def test_task(plugins) -> None:
    from dejavu.toolkit.tasks import create_task

    task = create_task("edges")
    assert task.heads == {"edges": 1} and task.conditioning == {"edges": "boundary"}
    pred, batch = {"edges": torch.zeros(1, 1, 4, 4)}, {"edges": torch.ones(1, 1, 4, 4)}
    assert task.loss(pred, batch)["edges"].item() == pytest.approx(0.6931, abs=1e-4)
    assert task.monitor_mode("edges/accuracy") == "max"


def test_all_five_train_two_steps_through_the_cli(plugins, tmp_path, write_config) -> None:
    config = write_config(
        tmp_path,
        task={"name": "edges"},
        data={"name": "gradients", "root": None, "num_train": 4, "num_val": 2, "kwargs": {}},
        model={"name": "tiny_convnet"},
        dejavu={
            "redaction": {"_replace_": True, "name": "stripes", "height": 4},
            "crm": {"_replace_": True, "kind": "blend", "scale": 0.5},
        },
    )
    plugin_args = [arg for p in plugins for arg in ("--plugin", p)]
    assert main([*plugin_args, "fit", str(config), "--no-progress"]) == 0
    run = tmp_path / "runs" / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())["final"]
    assert "edges/accuracy" in metrics and (run / "best.ckpt").is_file()
    # the exported base network is rebuilt through the registries, too
    from dejavu.toolkit.training import load_eval_model

    model, meta = load_eval_model(run)
    assert (
        meta["model"] == "tiny_convnet" and model(torch.zeros(1, 3, 32, 48))["edges"].shape[1] == 1
    )
