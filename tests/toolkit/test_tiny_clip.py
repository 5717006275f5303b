"""benchmarks/tiny_clip.py: the tests' tiny CLIP as an open_clip local-dir: folder (study 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmark_scripts import load_benchmark

from dejavu.text_supervision import TextSupervision
from dejavu.toolkit.models.denseclip import DENSECLIP_TINY_CLIP

open_clip = pytest.importorskip("open_clip")


def test_the_folder_loads_as_dejavu_ts_clip_by_its_name_alone(tmp_path: Path) -> None:
    tiny_clip = load_benchmark("tiny_clip")
    weights = tiny_clip.write_tiny_clip(tmp_path / "clip", seed=5)
    assert weights == tmp_path / "clip" / "open_clip_pytorch_model.bin"
    torch.manual_seed(5)
    expected = open_clip.CLIP(**DENSECLIP_TINY_CLIP).state_dict()
    ts = TextSupervision(["road", "sky"], model_name=f"local-dir:{tmp_path / 'clip'}")
    loaded = ts.clip_model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    # Another seed gives another CLIP: the seed is what makes the study's CLIP reproducible.
    other = tiny_clip.write_tiny_clip(tmp_path / "other", seed=6)
    assert not torch.equal(torch.load(other)["text_projection"], expected["text_projection"])
