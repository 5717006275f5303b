"""Every metric gives the same numbers on an accelerator as on the CPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from dejavu.metrics import DepthMetrics, NormalsMetrics, PanopticQuality, SegmentationMetrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _inputs() -> dict[str, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    seg_t = torch.randint(0, 5, (2, 16, 24), generator=g)
    seg_t[:, :2] = 255
    depth_t = (
        torch.rand(2, 1, 16, 24, generator=g) * 4 * (torch.rand(2, 1, 16, 24, generator=g) > 0.2)
    )
    normals_t = torch.nn.functional.normalize(torch.randn(2, 3, 16, 24, generator=g), dim=1)
    pan_t = (
        torch.stack(
            [
                torch.randint(1, 4, (2, 4, 6), generator=g),
                torch.randint(0, 3, (2, 4, 6), generator=g),
            ],
            1,
        )
        .repeat_interleave(4, -2)
        .repeat_interleave(4, -1)
    )
    pan_p = pan_t.clone()
    pan_p[:, :, :8, :8] = torch.tensor([2, 7]).view(1, 2, 1, 1)
    return {
        "seg": (torch.randn(2, 5, 16, 24, generator=g), seg_t),
        "depth": (depth_t + 0.2 * torch.rand(2, 1, 16, 24, generator=g), depth_t),
        "normals": (normals_t + 0.3 * torch.randn(2, 3, 16, 24, generator=g), normals_t),
        "panoptic": (pan_p, pan_t),
    }


def _metrics() -> dict[str, torch.nn.Module]:
    cats = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 1}, {"id": 3, "isthing": 0}]
    return {
        "seg": SegmentationMetrics(5),
        "depth": DepthMetrics(),
        "normals": NormalsMetrics(),
        "panoptic": PanopticQuality(cats),
    }


@pytest.mark.parametrize("name", ["seg", "depth", "normals", "panoptic"])
def test_cuda_matches_cpu(name: str) -> None:
    data = _inputs()[name]
    cpu = _metrics()[name]
    cuda = _metrics()[name].to("cuda")
    cpu.update(*data)
    cuda.update(*(x.cuda() for x in data))
    expected, actual = cpu.compute(), cuda.compute()
    for key, value in expected.items():
        assert actual[key].device.type == "cuda", key
        torch.testing.assert_close(
            actual[key].cpu(), value, rtol=1e-5, atol=1e-5, equal_nan=True, msg=key
        )
