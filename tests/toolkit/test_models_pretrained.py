"""Loading local weights: whole network, backbone only, wrapped checkpoints, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from dejavu.toolkit.models import create_model, load_pretrained, read_state_dict

X = torch.randn(1, 3, 37, 50, generator=torch.Generator().manual_seed(0))


def _outputs(model: nn.Module) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(X)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_whole_network_round_trip_gives_identical_outputs(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    src = create_model("mtl_hrnet18", num_classes=4).eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    torch.manual_seed(2)  # a different random init, overwritten by the file
    dst = create_model("mtl_hrnet18", num_classes=4, pretrained=path)
    assert dst.pretrained_report.complete
    assert dst.pretrained_report.target == "whole network"
    ref, out = _outputs(src), _outputs(dst)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0)


def test_lightning_style_checkpoint_is_unwrapped(tmp_path: Path) -> None:
    src = create_model("fpn_mobilenetv3_large_100", num_classes=3)
    path = tmp_path / "last.ckpt"
    state = {f"model.base.{k}": v for k, v in src.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, path)
    dst = create_model("fpn_mobilenetv3_large_100", num_classes=3, pretrained=path)
    report = dst.pretrained_report
    assert report.complete and report.prefix == "model.base."
    torch.testing.assert_close(_outputs(dst)["seg"], _outputs(src)["seg"], rtol=0, atol=0)


def test_timm_classification_checkpoint_loads_into_the_hrnet_backbone(tmp_path: Path) -> None:
    classifier = timm.create_model("hrnet_w18_small", pretrained=False)
    path = tmp_path / "hrnet_w18_small.pth"
    torch.save(classifier.state_dict(), path)
    with pytest.warns(UserWarning, match=r"into the backbone[\s\S]*unused from the file"):
        model = create_model("hrnet18", num_classes=3, pretrained=str(path))
    report = model.pretrained_report
    assert report.target == "backbone" and report.missing == ()
    # the classification head's layers are not part of the segmentation backbone
    assert any(k.startswith("classifier.") for k in report.unexpected)
    assert any(k.startswith("incre_modules.") for k in report.unexpected)
    backbone = model.backbone.state_dict()
    for k, v in backbone.items():
        torch.testing.assert_close(v, classifier.state_dict()[k], rtol=0, atol=0)


def test_timm_checkpoint_loads_into_a_flattened_features_only_backbone(tmp_path: Path) -> None:
    # timm's features_only wrapper renames stages.0 -> stages_0 for ConvNeXt
    classifier = timm.create_model("convnext_atto", pretrained=False)
    path = tmp_path / "convnext_atto.safetensors"
    save_file(classifier.state_dict(), str(path))
    with pytest.warns(UserWarning, match="head"):
        model = create_model("fpn_convnext_atto", num_classes=3, pretrained=path)
    report = model.pretrained_report
    assert report.target == "backbone" and report.missing == ()
    src = classifier.state_dict()
    torch.testing.assert_close(
        model.backbone.state_dict()["stages_1.blocks.0.conv_dw.weight"],
        src["stages.1.blocks.0.conv_dw.weight"],
    )


def test_other_class_count_keeps_the_backbone_and_reports_the_head(tmp_path: Path) -> None:
    src = create_model("hrnet18", num_classes=19)
    path = tmp_path / "cityscapes.pth"
    torch.save(src.state_dict(), path)
    with pytest.warns(UserWarning, match=r"shape mismatch \(left as initialised\) \(2\)"):
        dst = create_model("hrnet18", num_classes=5, pretrained=path)
    mismatched = dst.pretrained_report.mismatched
    assert [m.split(":")[0] for m in mismatched] == [
        "decoder.heads.seg.3.weight",
        "decoder.heads.seg.3.bias",
    ]
    assert "(19, 240, 1, 1) vs model (5, 240, 1, 1)" in mismatched[0]
    for k, v in src.backbone.state_dict().items():
        torch.testing.assert_close(dst.backbone.state_dict()[k], v, rtol=0, atol=0)


def test_torchvision_backbone_from_a_classification_checkpoint(tmp_path: Path) -> None:
    import torchvision

    classifier = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(classifier.state_dict(), path)
    with pytest.warns(UserWarning, match=r"features\."):
        model = create_model("lraspp_mobilenet_v3_large", num_classes=3, pretrained=path)
    report = model.pretrained_report
    assert report.target == "backbone" and report.prefix == "features." and not report.missing


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        create_model("hrnet18", num_classes=3, pretrained=path)


def test_incompatible_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "linear.pth"
    torch.save(nn.Linear(4, 2).state_dict(), path)
    with pytest.raises(ValueError, match=r"linear.pth does not fit HRNet: at best 0 of its 2"):
        create_model("hrnet18", num_classes=3, pretrained=path)
    # another architecture's weights: some names may coincide, far too few fit
    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18").state_dict(), other)
    with pytest.raises(ValueError, match=r"below min_fraction=0.5"):
        create_model("hrnet18", num_classes=3, pretrained=other)


def test_files_without_a_state_dict_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"could not read .*notes\.pth"):
        read_state_dict(text)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match=r"does not hold a state_dict.*list"):
        read_state_dict(listing)


def test_load_pretrained_on_a_plain_module(tmp_path: Path) -> None:
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    path = tmp_path / "w.pt"
    torch.save({"module.weight": src.weight, "module.bias": src.bias}, path)
    report = load_pretrained(dst, path)
    assert report.complete and report.target == "whole network"
    torch.testing.assert_close(dst.weight, src.weight)
