"""Suite-wide test settings and shared helpers (fixtures)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

# The extension examples of docs/extending.md register toy classes when imported; only
# tests/toolkit/test_extending.py imports them (and restores the registries after).
collect_ignore = ["toolkit/plugins"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # `make test` runs two pytest workers on a 2-core machine; torch's default
    # of one thread per core in each worker oversubscribes the CPU and slows
    # convolutions by an order of magnitude.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, Mapping) and value.get("_replace_"):  # as in config files
            out[key] = {k: copy.deepcopy(v) for k, v in value.items() if k != "_replace_"}
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_config(directory: Path, **sections: Any) -> dict[str, Any]:
    """A tiny segmentation config on the embedded scenes (seconds to train), as a mapping.

    ``sections`` are deep-merged on top (``data={"num_val": 4}`` changes one key; a
    mapping with ``_replace_: True`` replaces the default one, as in config files).
    """
    cfg: dict[str, Any] = {
        "name": "tiny",
        "output_dir": str(directory / "runs"),
        "task": {"name": "segmentation"},
        "data": {
            "root": str(directory / "cache"),
            "batch_size": 2,
            "num_workers": 0,
            "num_train": 4,
            "num_val": 2,
            "test_split": "val",  # the scenes have train and val only
            "kwargs": {"size": [32, 48]},
        },
        "model": {"name": "fpn_test_resnet"},
        "dejavu": {"enabled": True, "crm": {"kind": "forward", "width": 8, "depth": 2}},
        "trainer": {
            "max_steps": 2,
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "image_log_every_n_steps": 0,
        },
    }
    return _merge(cfg, sections)


def _write_config(directory: Path, filename: str = "tiny.yaml", **sections: Any) -> Path:
    path = Path(directory) / filename
    path.write_text(yaml.safe_dump(tiny_config(Path(directory), **sections)))
    return path


@pytest.fixture(scope="session")
def write_config() -> Callable[..., Path]:
    """``write_config(directory, filename="tiny.yaml", **sections) -> path`` of a YAML file
    holding :func:`tiny_config` (``sections`` deep-merged on top)."""
    return _write_config
