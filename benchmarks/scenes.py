"""Time the procedural scene generator (render, cache write, cache read).

Usage:
    python benchmarks/scenes.py [--train 1000] [--val 200] [--size 96 128] [--workers 0]

Renders into a fresh temporary cache directory, so the first pass always
renders; the second pass reads the cache written by the first.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from dejavu.toolkit.data.scenes import ProceduralScenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    size = (args.size[0], args.size[1])

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        render = 0.0
        for split, n in (("train", args.train), ("val", args.val)):
            ds = ProceduralScenes(root, split, n, size, num_workers=args.workers)
            render += ds.render_seconds or 0.0
        total = time.perf_counter() - start
        cache_mb = sum(p.stat().st_size for p in ds.root.glob("*.npz")) / 2**20

        start = time.perf_counter()
        for split, n in (("train", args.train), ("val", args.val)):
            ds = ProceduralScenes(root, split, n, size)
            assert ds.render_seconds is None, "expected a cache hit"
        reload = time.perf_counter() - start

        # One intra-op thread, as in DataLoader workers: on a shared CPU, torch's default
        # thread pool makes these tiny per-sample ops many times slower.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        per_sample_ms = (time.perf_counter() - start) / len(ds) * 1000
        torch.set_num_threads(threads)

    n_all = args.train + args.val
    print(f"images: {args.train} train + {args.val} val at {size[0]}x{size[1]}")
    print(f"render: {render:.1f} s ({render / n_all * 1000:.1f} ms/image, workers={args.workers})")
    print(f"render + compress + write cache: {total:.1f} s (cache {cache_mb:.1f} MiB)")
    print(f"load from cache: {reload:.1f} s")
    print(f"__getitem__ (normalise, no augmentation, 1 thread): {per_sample_ms:.2f} ms/sample")


if __name__ == "__main__":
    main()
