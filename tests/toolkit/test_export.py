"""Export helpers: ONNX / TorchScript / safetensors writers, their checks, SA stripping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu.shared_attention import SharedAttention
from dejavu.toolkit.export import (
    FlattenOutputs,
    export_checkpoint,
    export_onnx,
    export_safetensors,
    export_torchscript,
    max_abs_diff,
    strip_training_only,
    verify_onnx,
    verify_safetensors,
    verify_torchscript,
)


class TwoHeads(nn.Module):
    """A dict-output network with a seg and a depth head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.seg = nn.Conv2d(8, 4, 1)
        self.depth = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.relu(self.body(x))
        return {"seg": self.seg(h), "depth": F.softplus(self.depth(h))}


class WithSharedAttention(nn.Module):
    """A dict-output network holding a DejaVu-SA block (training-only regeneration branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.attention = SharedAttention(16, num_heads=2, regen_hidden=8)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.attention(self.stem(x)).features
        return {"seg": F.interpolate(self.head(feats), size=x.shape[-2:], mode="bilinear")}


@pytest.fixture
def example() -> torch.Tensor:
    return torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))


def test_flatten_outputs_follows_the_key_order(example: torch.Tensor) -> None:
    net = TwoHeads().eval()
    seg, depth = FlattenOutputs(net, ["seg", "depth"])(example)
    depth2, seg2 = FlattenOutputs(net, ["depth", "seg"])(example)
    assert seg.shape == (2, 4, 16, 24) and depth.shape == (2, 1, 16, 24)
    torch.testing.assert_close(seg, seg2)
    torch.testing.assert_close(depth, depth2)


def test_max_abs_diff_values_and_errors() -> None:
    ref = {"a": torch.tensor([1.0, 2.0]), "b": torch.zeros(1)}
    assert max_abs_diff(ref, {"a": torch.tensor([1.5, 1.0]), "b": torch.zeros(1)}) == {
        "a": 1.0,
        "b": 0.0,
    }
    with pytest.raises(ValueError, match="differ"):
        max_abs_diff(ref, {"a": ref["a"]})
    with pytest.raises(ValueError, match="shape"):
        max_abs_diff(ref, {"a": torch.zeros(3), "b": torch.zeros(1)})


@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_has_named_outputs_and_matches(
    dynamo: bool, example: torch.Tensor, tmp_path: Path
) -> None:
    import onnx

    net = TwoHeads().eval()
    path = tmp_path / "net.onnx"
    exporter = export_onnx(net, example, path, dynamo=dynamo)
    assert exporter == ("dynamo" if dynamo else "torchscript")
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["seg", "depth"]
    assert not list(tmp_path.glob("*.data"))  # weights inside the one file
    diffs = verify_onnx(net, path, example)
    assert set(diffs) == {"seg", "depth"}
    assert max(diffs.values()) < 1e-5


def test_verification_catches_a_wrong_export(example: torch.Tensor, tmp_path: Path) -> None:
    net = TwoHeads().eval()
    onnx_path = export_onnx(net, example, tmp_path / "net.onnx", dynamo=False)
    assert onnx_path == "torchscript"
    ts_path = export_torchscript(net, example, tmp_path / "net.pt")
    with torch.no_grad():
        net.seg.bias += 0.5  # the model changes after the export
    assert verify_onnx(net, tmp_path / "net.onnx", example)["seg"] == pytest.approx(0.5, abs=1e-4)
    assert verify_torchscript(net, ts_path, example)["seg"] == pytest.approx(0.5, abs=1e-4)
    assert verify_torchscript(net, ts_path, example)["depth"] < 1e-6


def test_torchscript_keeps_the_dict(example: torch.Tensor, tmp_path: Path) -> None:
    net = TwoHeads().eval()
    path = export_torchscript(net, example, tmp_path / "sub" / "net.pt")
    out = torch.jit.load(str(path))(example)
    assert isinstance(out, dict) and sorted(out) == ["depth", "seg"]
    assert max(verify_torchscript(net, path, example).values()) == 0.0


def test_safetensors_roundtrip_with_metadata(example: torch.Tensor, tmp_path: Path) -> None:
    net = TwoHeads().eval()
    path = export_safetensors(net, tmp_path / "net.safetensors", {"model": "x", "heads": {}})
    assert json.loads(path.with_suffix(".json").read_text()) == {"model": "x", "heads": {}}

    def load(p: Path) -> nn.Module:
        from safetensors.torch import load_model

        fresh = TwoHeads()
        load_model(fresh, str(p))
        return fresh

    assert max(verify_safetensors(net, path, example, load).values()) == 0.0
    # A fresh, untrained network (what a broken loader would give) does not pass.
    assert max(verify_safetensors(net, path, example, lambda p: TwoHeads()).values()) > 1e-3
    with pytest.raises(ValueError, match=r"\.safetensors"):
        export_safetensors(net, tmp_path / "net.bin")


def test_strip_training_only_drops_the_regeneration_branch(
    example: torch.Tensor, tmp_path: Path
) -> None:
    net = WithSharedAttention().eval()
    stripped = strip_training_only(net)
    assert net.attention.has_regeneration  # the original is untouched
    assert not stripped.attention.has_regeneration
    regen_keys = [k for k in net.state_dict() if ".regen_" in k]
    assert regen_keys and not any(".regen_" in k for k in stripped.state_dict())
    n_regen = sum(p.numel() for n, p in net.named_parameters() if ".regen_" in n)
    n_all = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in stripped.parameters()) == n_all - n_regen
    # Inference outputs do not change.
    with torch.no_grad():
        torch.testing.assert_close(stripped(example)["seg"], net(example)["seg"])
    # And the stripped network exports and verifies.
    export_torchscript(stripped, example, tmp_path / "sa.pt")
    assert max(verify_torchscript(net, tmp_path / "sa.pt", example).values()) < 1e-6
    export_onnx(stripped, example, tmp_path / "sa.onnx", dynamo=False)
    assert max(verify_onnx(net, tmp_path / "sa.onnx", example).values()) < 1e-5


def test_export_checkpoint_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowed: 'onnx', 'torchscript', 'safetensors'"):
        export_checkpoint(tmp_path / "x.ckpt", "tflite")
    with pytest.raises(FileNotFoundError, match=r"x\.ckpt"):
        export_checkpoint(tmp_path / "x.ckpt", "onnx")


def test_load_eval_model_reads_a_stripped_sa_export(tmp_path: Path) -> None:
    from dejavu.toolkit.models import create_model
    from dejavu.toolkit.training import load_eval_model

    torch.manual_seed(0)
    net = create_model("sa_hrnet18", num_classes=3).eval()
    meta = {"model": "sa_hrnet18", "heads": {"seg": 3}, "regeneration_removed": True}
    path = export_safetensors(strip_training_only(net), tmp_path / "sa.safetensors", meta)
    loaded, read_meta = load_eval_model(path)
    assert read_meta["regeneration_removed"] is True
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["seg"], net(x)["seg"])
