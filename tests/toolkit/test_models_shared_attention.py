"""sa_hrnet18: HRNet with a DejaVu-SA block in its head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu.shared_attention import SharedAttention
from dejavu.toolkit.models import create_model

SIZE = (45, 61)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _bn_stats(model: nn.Module) -> list[torch.Tensor]:
    return [
        t.clone()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
        for t in (m.running_mean, m.running_var, m.num_batches_tracked)
    ]


def test_sa_hrnet18_outputs_and_flag() -> None:
    model = create_model("sa_hrnet18", task="multitask", num_classes=5)
    assert model.supports_shared_attention is True
    assert isinstance(model.attention, SharedAttention)
    x = torch.randn(2, 3, *SIZE)
    out = model.train()(x, redacted=torch.zeros_like(x))
    assert sorted(out) == ["depth", "normals", "regenerated", "seg"]
    assert out["regenerated"].shape == (2, 3, *SIZE)
    assert out["seg"].shape == (2, 5, *SIZE) and (out["depth"] > 0).all()
    torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(2, *SIZE))
    # no regeneration without a redacted image, or in eval mode
    assert "regenerated" not in model(x)
    with torch.no_grad():
        assert sorted(model.eval()(x, redacted=x)) == ["depth", "normals", "seg"]


def test_regeneration_loss_trains_the_shared_attention_and_the_encoder() -> None:
    model = create_model("sa_hrnet18", num_classes=3).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x, redacted=x * (torch.rand_like(x[:, :1]) > 0.5))
    out["regenerated"].abs().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["attention.q.weight"].abs().sum() > 0  # the shared query projection
    assert grads["attention.regen_v.weight"].abs().sum() > 0
    assert grads["backbone.conv1.weight"].abs().sum() > 0
    assert all(g is None for n, g in grads.items() if n.startswith("decoder."))


def test_redacted_pass_leaves_bn_running_stats_to_the_clean_images() -> None:
    a = create_model("sa_hrnet18", num_classes=3).train()
    b = create_model("sa_hrnet18", num_classes=3).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    a(x, redacted=torch.randn_like(x) * 5 + 3)
    b(x)
    for sa, sb in zip(_bn_stats(a), _bn_stats(b), strict=True):
        torch.testing.assert_close(sa, sb)


def test_eval_output_ignores_the_redacted_image_and_matches_forward_heads() -> None:
    model = create_model("sa_hrnet18", num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model(x)["seg"]
        b = model(x, redacted=torch.randn_like(x))["seg"]
        c = F.interpolate(model.forward_heads(x)["seg"], size=(64, 64), mode="bilinear")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_bad_options_and_inputs() -> None:
    with pytest.raises(ValueError, match=r"sa_stride must be one of \[4, 8, 16, 32\], got 12"):
        create_model("sa_hrnet18", num_classes=3, sa_stride=12)
    model = create_model("sa_hrnet18", num_classes=3).train()
    with pytest.raises(ValueError, match="redacted must have the shape of image"):
        model(torch.randn(1, 3, 32, 32), redacted=torch.randn(1, 3, 32, 16))


def test_dejavu_trains_sa_hrnet18_with_the_sa_loss() -> None:
    try:
        from dejavu import DejaVu
    except ImportError as err:  # the core's redaction package may not be there yet
        pytest.skip(f"dejavu.DejaVu is not importable: {err}")
    base = create_model("sa_hrnet18", num_classes=4)

    def task_loss(pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)

    model = DejaVu(base, task_loss, crm=None, redaction="checkerboard", seed=0).train()
    batch = {"image": torch.randn(2, 3, 32, 48), "seg": torch.randint(0, 4, (2, 32, 48))}
    out = model(batch)
    assert out["sa"] > 0
    out["loss"].backward()
    assert base.attention.regen_v.weight.grad is not None


@pytest.mark.parametrize("plain", ["hrnet18", "hrnet18_v2", "hrnet18_full"])
def test_each_hrnet_width_has_its_sa_network(plain: str) -> None:
    # Study 4 sets SA against widening the base: sa_<plain> must be <plain> plus the block.
    sa = create_model(f"sa_{plain}", num_classes=3, sa_stride=4).train()
    base = create_model(plain, num_classes=3)
    backbone = {k: v.shape for k, v in base.state_dict().items() if k.startswith("backbone.")}
    assert backbone and backbone == {
        k: v.shape for k, v in sa.state_dict().items() if k.startswith("backbone.")
    }
    assert sa.feature_channels == base.feature_channels
    x = torch.randn(2, 3, *SIZE)
    out = sa(x, redacted=torch.zeros_like(x))
    assert out["seg"].shape == (2, 3, *SIZE) and out["regenerated"].shape == (2, 3, *SIZE)
