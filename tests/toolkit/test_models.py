"""Base networks and the create_model factory: contract, shapes, sizes, errors."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from dejavu.toolkit.models import (
    HRNet,
    activate_outputs,
    check_heads,
    create_model,
    decode_outputs,
    heads_for_task,
    list_models,
    pad_to_multiple,
    split_channels,
)
from dejavu.toolkit.models.timm_fpn import select_fpn_levels

# Cheap to build and run on a CPU; the big variants are covered by parameter counts.
CHEAP = [
    "hrnet18",
    "hrnet18_v2",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "fcn_resnet50",
    "fpn_resnet18",
    "fpn_mobilenetv3_large_100",
    "fpn_convnext_atto",
    "segformer_b0",
    "smp_unet_resnet18",
    "smp_fpn_resnet34",
    "mtl_hrnet18",
]
ODD = (45, 61)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _check_contract(out: dict[str, torch.Tensor], heads: dict[str, int], size: tuple[int, int]):
    assert set(out) == set(heads)
    for name, channels in heads.items():
        assert out[name].shape == (1, channels, *size), name
        assert torch.isfinite(out[name]).all(), name
    if "depth" in out:
        assert (out["depth"] > 0).all()
    if "normals" in out:
        torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(1, *size))


# ---------------------------------------------------------------- factory / registry


def test_list_models_names_the_required_models() -> None:
    names = list_models()
    assert names == sorted(names)
    required = {
        "hrnet18",
        "hrnet48",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        "fcn_resnet50",
        "fpn_resnet18",
        "fpn_mobilenetv3_large_100",
        "fpn_convnext_atto",
        "smp_unet_resnet18",
        "smp_fpn_resnet34",
        "mtl_hrnet18",
        "sa_hrnet18",
        "sa_hrnet18_v2",
        "sa_hrnet18_full",
        *(f"segformer_b{i}" for i in range(6)),
    }
    assert required <= set(names)
    assert ("hrnet18_v2" in names) == timm.is_model("hrnet_w18_small_v2")
    assert list_models("segformer_*") == [f"segformer_b{i}" for i in range(6)]


@pytest.mark.parametrize("name", CHEAP)
def test_every_cheap_model_meets_the_multitask_contract_at_an_odd_size(name: str) -> None:
    heads = {"seg": 5, "depth": 1, "normals": 3}
    model = create_model(name, task="multitask", num_classes=5).eval()
    assert model.heads == heads
    with torch.no_grad():
        out = model(torch.randn(1, 3, *ODD))
    _check_contract(out, heads, ODD)


@pytest.mark.parametrize(
    ("task", "heads"),
    [
        ("segmentation", {"seg": 7}),
        ("depth", {"depth": 1}),
        ("normals", {"normals": 3}),
        ("multitask", {"seg": 7, "depth": 1, "normals": 3}),
    ],
)
def test_task_chooses_the_heads(task: str, heads: dict[str, int]) -> None:
    assert heads_for_task(task, 7) == heads
    model = create_model("hrnet18", task=task, num_classes=7).eval()
    assert model.heads == heads
    with torch.no_grad():
        _check_contract(model(torch.randn(1, 3, 33, 40)), heads, (33, 40))


def test_explicit_heads_override_the_task() -> None:
    heads = {"seg": 4, "depth": 1}
    model = create_model("fpn_resnet18", heads=heads).eval()
    with torch.no_grad():
        _check_contract(model(torch.randn(1, 3, *ODD)), heads, ODD)
    # A head needs a spec (dejavu.toolkit.tasks.register_head): no silent default.
    with pytest.raises(ValueError, match="unknown head 'edge'"):
        create_model("fpn_resnet18", heads={"seg": 4, "edge": 2})


def test_mtl_defaults_to_the_three_nyud_tasks() -> None:
    mtl = create_model("mtl_hrnet18", num_classes=40)
    single = create_model("hrnet18", task="multitask", num_classes=40)
    assert mtl.heads == {"seg": 40, "depth": 1, "normals": 3}
    # the MTL baseline is hrnet18 with one head per task: same architecture
    assert [(k, v.shape) for k, v in mtl.state_dict().items()] == [
        (k, v.shape) for k, v in single.state_dict().items()
    ]
    assert set(mtl.decoder.heads) == {"seg", "depth", "normals"}


def test_unknown_name_lists_the_models() -> None:
    with pytest.raises(ValueError, match=r"unknown model name 'hrnet17'.*hrnet18.*segformer_b0"):
        create_model("hrnet17", num_classes=3)
    with pytest.raises(ValueError, match="not a timm model"):
        create_model("fpn_not_a_backbone", num_classes=3)
    with pytest.raises(ValueError, match="smp_<arch>_<encoder>"):
        create_model("smp_unet", num_classes=3)
    with pytest.raises(ValueError, match=r"unknown arch 'nonet'.*'unet'"):
        create_model("smp_nonet_resnet18", num_classes=3)


def test_unknown_task_lists_the_tasks() -> None:
    with pytest.raises(ValueError, match=r"task 'instances'.*'segmentation'.*'multitask'"):
        create_model("hrnet18", task="instances", num_classes=3)


@pytest.mark.parametrize("num_classes", [None, 0, -3, 2.5, True])
def test_segmentation_needs_a_positive_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match=r"num_classes must be a positive int.*'segmentation'"):
        create_model("hrnet18", num_classes=num_classes)


def test_depth_and_normals_need_no_num_classes() -> None:
    assert create_model("hrnet18", task="depth").heads == {"depth": 1}


def test_bad_heads_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"heads\['depth'\] must be 1"):
        create_model("hrnet18", heads={"depth": 2})
    with pytest.raises(ValueError, match="non-empty mapping"):
        create_model("hrnet18", heads={})
    with pytest.raises(ValueError, match="contradicts"):
        create_model("hrnet18", heads={"seg": 4}, num_classes=5)
    with pytest.raises(ValueError, match="two or more tasks"):
        create_model("mtl_hrnet18", task="segmentation", num_classes=5)
    with pytest.raises(ValueError, match="never downloads"):
        create_model("hrnet18", num_classes=3, pretrained=True)
    with pytest.raises(ValueError, match=r"depth_activation.*'softplus', 'exp'"):
        create_model("hrnet18", task="depth", depth_activation="relu")


def test_fpn_refuses_a_single_stride_backbone() -> None:
    with pytest.raises(ValueError, match=r"two or more of the strides.*\[16, 16, 16\]"):
        select_fpn_levels([16, 16, 16])
    assert select_fpn_levels([2, 4, 8, 8, 16, 32]) == [1, 3, 4, 5]


# ---------------------------------------------------------------- HRNet specifics


@pytest.mark.parametrize(
    ("name", "branches"),
    [("hrnet18", [16, 32, 64, 128]), ("hrnet18_v2", [18, 36, 72, 144])],
)
def test_hrnet_head_concatenates_the_four_branches(name: str, branches: list[int]) -> None:
    model = create_model(name, num_classes=19)
    info = model.backbone.feature_info
    assert info.reduction() == [4, 8, 16, 32]
    assert info.channels() == branches
    first = model.decoder.heads["seg"][0]
    assert first.in_channels == sum(branches) == model.feature_channels
    assert first.kernel_size == (1, 1)
    feats = model.forward_features(torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, sum(branches), 16, 24)  # stride 4


@pytest.mark.parametrize(
    ("name", "millions"),
    # HRNet-Semantic-Segmentation model zoo (Cityscapes, 19 classes):
    # HRNetV2-W18-Small-v1 1.5M, -v2 3.9M, HRNetV2-W48 65.9M
    [("hrnet18", 1.5), ("hrnet18_v2", 3.9), ("hrnet48", 65.9)],
)
def test_hrnet_parameter_counts_match_the_hrnet_model_zoo(name: str, millions: float) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=19)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - millions) < 0.05 + 1e-9, n


@pytest.mark.parametrize(
    ("variant", "millions"),
    # SegFormer paper, Table 1 (ADE20K, 150 classes): encoder + decoder parameters
    [("b0", 3.8), ("b1", 13.7), ("b2", 27.5), ("b3", 47.3), ("b4", 64.1), ("b5", 84.7)],
)
def test_segformer_parameter_counts_match_the_paper(variant: str, millions: float) -> None:
    with torch.device("meta"):
        model = create_model(f"segformer_{variant}", num_classes=150)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - millions) < 0.051, n


def test_padding_is_cropped_back_in_place() -> None:
    # an odd input must give exactly the top-left crop of the output for the same
    # input padded with zeros by hand: padding is bottom/right and outputs stay aligned
    model = create_model("hrnet18", task="multitask", num_classes=3).eval()
    x = torch.randn(1, 3, *ODD)
    padded = F.pad(x, (0, 64 - ODD[1], 0, 64 - ODD[0]))
    with torch.no_grad():
        out, ref = model(x), model(padded)
    for k in out:
        torch.testing.assert_close(out[k], ref[k][..., : ODD[0], : ODD[1]])


def test_every_parameter_gets_a_gradient() -> None:
    # DDP without find_unused_parameters needs this
    for name in ("mtl_hrnet18", "fpn_resnet18"):
        model = create_model(name, num_classes=3).train()
        out = model(torch.randn(2, 3, 32, 40))
        sum(v.mean() for v in out.values()).backward()
        assert [n for n, p in model.named_parameters() if p.grad is None] == [], name


def test_hrnet_compiles_without_graph_breaks() -> None:
    # aot_eager traces with dynamo + AOT autograd like inductor does, without the
    # C++ codegen that takes ~40 s on a CPU; fullgraph=True fails on any graph break
    model = HRNet({"seg": 3}).eval()
    x = torch.randn(1, 3, *ODD)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    try:
        with torch.no_grad():
            torch.testing.assert_close(compiled(x)["seg"], model(x)["seg"], rtol=1e-4, atol=1e-4)
    finally:
        torch._dynamo.reset()


def test_the_input_is_checked() -> None:
    model = create_model("hrnet18", num_classes=3)
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.zeros(3, 32, 32))


# ---------------------------------------------------------------- building blocks


def test_pad_to_multiple_pads_bottom_right_with_zeros() -> None:
    x = torch.randn(2, 3, 45, 61)
    p = pad_to_multiple(x, 32)
    assert p.shape == (2, 3, 64, 64)
    torch.testing.assert_close(p[..., :45, :61], x)
    assert p[..., 45:, :].abs().sum() == 0 and p[..., :, 61:].abs().sum() == 0
    assert pad_to_multiple(x, 1) is x
    with pytest.raises(ValueError, match="multiple must be a positive int"):
        pad_to_multiple(x, 0)


def test_activations() -> None:
    raw = {
        "seg": torch.tensor([[[[-2.0]], [[3.0]]]]),
        "depth": torch.tensor([[[[0.0, -200.0, 2.0]]]]),
        "normals": torch.tensor([[[[3.0]], [[0.0]], [[4.0]]]]),
    }
    soft = activate_outputs(raw)
    torch.testing.assert_close(soft["seg"], raw["seg"])
    expected = torch.tensor([math.log(2.0), 0.0, math.log1p(math.exp(2.0))]) + 1e-6
    torch.testing.assert_close(soft["depth"].flatten(), expected)
    assert (soft["depth"] > 0).all()  # softplus(-200) underflows; the offset keeps it > 0
    torch.testing.assert_close(soft["normals"].flatten(), torch.tensor([0.6, 0.0, 0.8]))
    exp = activate_outputs(raw, depth_activation="exp")
    torch.testing.assert_close(exp["depth"][..., 2], torch.exp(torch.tensor(2.0)).view(1, 1, 1))


def test_decode_outputs_upsamples_to_the_padded_size_then_crops() -> None:
    low = torch.randn(1, 2, 4, 4)
    out = decode_outputs({"seg": low}, (16, 16), (13, 11))
    full = F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["seg"], full[..., :13, :11])


def test_check_heads_and_split_channels() -> None:
    assert check_heads({"seg": 2, "normals": 3}) == {"seg": 2, "normals": 3}
    for bad in ({"seg": 0}, {"seg": 2.0}, {"normals": 1}, {"": 2}, [("seg", 2)]):
        with pytest.raises(ValueError, match="heads"):
            check_heads(bad)
    x = torch.arange(6.0).view(1, 6, 1, 1)
    parts = split_channels(x, {"seg": 2, "depth": 1, "normals": 3})
    assert parts["depth"].flatten().tolist() == [2.0]
    assert parts["normals"].flatten().tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match=r"sum\(heads.values\(\)\) = 3"):
        split_channels(x, {"seg": 3})
