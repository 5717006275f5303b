"""DDP: every metric's ``compute()`` after the all-reduce equals one process on all the data.

Two CPU processes (gloo, rendezvous through a FileStore) each see their own
shard, of different sizes; torchmetrics syncs the sum-reduced states inside
``compute()``. The parent computes the same metrics in one process on the
union of the shards and compares.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dejavu.metrics import (
    DepthMetrics,
    KittiDepthMetrics,
    NormalsMetrics,
    PanopticQuality,
    SegmentationMetrics,
)

WORLD = 2
CATEGORIES = [
    {"id": 1, "isthing": True},
    {"id": 2, "isthing": True},
    {"id": 3, "isthing": False},
]


def _batch(seed: int, b: int) -> dict[str, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    h, w = 8, 12
    seg_t = torch.randint(0, 4, (b, h, w), generator=g)
    seg_t[torch.rand(seg_t.shape, generator=g) < 0.1] = 255
    depth_t = torch.rand(b, 1, h, w, generator=g) * 5 * (torch.rand(b, 1, h, w, generator=g) > 0.2)
    normals_t = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    pan_t = torch.stack(
        [torch.randint(1, 4, (b, h, w), generator=g), torch.randint(0, 3, (b, h, w), generator=g)],
        dim=1,
    )
    # Coarse 2 x 3 blocks so that segments are big enough to match sometimes.
    pan_t = pan_t[..., ::2, ::3].repeat_interleave(2, -2).repeat_interleave(3, -1)
    pan_p = pan_t.clone()
    pan_p[:, :, :4, :6] = torch.tensor([1, 5]).view(1, 2, 1, 1)
    return {
        "seg": (torch.randn(b, 4, h, w, generator=g), seg_t),
        "depth": (depth_t + 0.3 * torch.rand(b, 1, h, w, generator=g), depth_t),
        "kitti": (depth_t + 0.3 * torch.rand(b, 1, h, w, generator=g), depth_t),
        "normals": (normals_t + 0.5 * torch.randn(b, 3, h, w, generator=g), normals_t),
        "panoptic": (pan_p, pan_t),
    }


# Uneven shards: rank 0 sees two batches (1 and 2 images), rank 1 one batch of 3.
SHARDS = {0: [(10, 1), (11, 2)], 1: [(12, 3)]}


def _metrics() -> dict[str, torch.nn.Module]:
    return {
        "seg": SegmentationMetrics(num_classes=4),
        "depth": DepthMetrics(),
        "kitti": KittiDepthMetrics(crop="garg"),  # per image, then averaged
        "normals": NormalsMetrics(),
        "panoptic": PanopticQuality(CATEGORIES),
    }


def _run(batches: list[tuple[int, int]]) -> dict[str, dict[str, torch.Tensor]]:
    metrics = _metrics()
    for seed, b in batches:
        data = _batch(seed, b)
        for name, m in metrics.items():
            m.update(*data[name])
    return {name: m.compute() for name, m in metrics.items()}


def _worker(rank: int, store_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, WORLD)
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
    )
    try:
        torch.save(_run(SHARDS[rank]), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _assert_same(a: torch.Tensor, b: torch.Tensor, where: str) -> None:
    torch.testing.assert_close(a, b, rtol=1e-9, atol=0, equal_nan=True, msg=where)


def test_compute_after_sync_equals_single_process_on_the_union(tmp_path: Path) -> None:
    # fork: the children inherit the imported torch/torchmetrics (a fresh interpreter
    # needs ~4 s just to import them).
    mp.start_processes(
        _worker,
        args=(str(tmp_path / "store"), str(tmp_path)),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    single = _run(SHARDS[0] + SHARDS[1])
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, expected in single.items():
        for key, value in expected.items():
            for r in range(WORLD):
                _assert_same(per_rank[r][name][key], value, f"rank {r}: {name}/{key}")
    # The comparison is meaningful: the shards alone give different numbers.
    alone = _run(SHARDS[1])
    assert not math.isclose(alone["seg"]["miou"].item(), single["seg"]["miou"].item())
    assert not math.isclose(alone["depth"]["rmse"].item(), single["depth"]["rmse"].item())
    assert not math.isclose(alone["kitti"]["rmse"].item(), single["kitti"]["rmse"].item())
    assert single["panoptic"]["pq"].item() > 0
