"""Spatial redaction: random, checkerboard, blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dejavu.redaction import (
    BlocksRedaction,
    CheckerboardRedaction,
    RandomRedaction,
    Redacted,
    blocks_redaction,
    checkerboard_redaction,
    random_redaction,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
CALLS = {
    "random": lambda x, g: random_redaction(x, p=0.3, generator=g),
    "checkerboard": lambda x, g: checkerboard_redaction(x, cell=3, generator=g),
    "blocks": lambda x, g: blocks_redaction(x, block=4, ratio=0.5, generator=g),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _checker(h: int, w: int, cell: int, phase: int) -> np.ndarray:
    """The checkerboard built independently: kept where the cell parity equals phase."""
    rows = np.arange(h)[:, None] // cell
    cols = np.arange(w)[None, :] // cell
    return ((rows + cols) % 2 == phase).astype(np.float64)


def _cells(keep: np.ndarray, block: int) -> np.ndarray | None:
    """Per-cell value of a mask made of whole aligned cells, or None if a cell is mixed."""
    h, w = keep.shape
    nh, nw = math.ceil(h / block), math.ceil(w / block)
    out = np.zeros((nh, nw))
    for a in range(nh):
        for b in range(nw):
            cell = keep[a * block : (a + 1) * block, b * block : (b + 1) * block]
            if cell.min() != cell.max():
                return None
            out[a, b] = cell[0, 0]
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(CALLS))
def test_contract(kind: str, dtype: torch.dtype, device: str) -> None:
    x = (torch.rand(2, 3, 16, 24, generator=_gen(0)) + 1.0).to(device=device, dtype=dtype)  # no 0s
    out = CALLS[kind](x, _gen(0))
    assert isinstance(out, Redacted)
    assert out.image.shape == x.shape and out.image.dtype == dtype
    assert out.image.device == x.device
    assert out.keep is not None
    assert out.keep.shape == (2, 1, 16, 24) and out.keep.dtype == dtype
    keep = out.keep.float()
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    assert 0 < keep.mean() < 1
    # Kept pixels are untouched in every channel, removed pixels are 0 (the mean).
    torch.testing.assert_close(out.image, x * out.keep, rtol=0, atol=0)
    assert ((out.image == 0) == (out.keep == 0).expand_as(x)).all()


@pytest.mark.parametrize("kind", list(CALLS))
def test_same_seed_same_output_different_seed_differs(kind: str) -> None:
    x = torch.randn(4, 3, 16, 24)
    a = CALLS[kind](x, _gen(7))
    b = CALLS[kind](x, _gen(7))
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    torch.testing.assert_close(a.keep, b.keep, rtol=0, atol=0)
    c = CALLS[kind](x, _gen(8))
    assert not torch.equal(a.keep, c.keep)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", list(CALLS))
def test_cpu_generator_gives_same_mask_on_cuda(kind: str) -> None:
    x = torch.randn(2, 3, 16, 24)
    cpu = CALLS[kind](x, _gen(3))
    gpu = CALLS[kind](x.cuda(), _gen(3))
    torch.testing.assert_close(gpu.keep.cpu(), cpu.keep, rtol=0, atol=0)


@pytest.mark.parametrize("kind", list(CALLS))
def test_gradient_is_the_mask(kind: str) -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    out = CALLS[kind](x, _gen(1))
    out.image.sum().backward()
    assert out.keep is not None
    torch.testing.assert_close(x.grad, out.keep.expand_as(x))


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5, 1.0])
def test_random_kept_fraction_matches_p(p: float) -> None:
    x = torch.ones(32, 1, 64, 64)
    keep = random_redaction(x, p=p, generator=_gen(11)).keep
    n = keep.numel()
    sigma = math.sqrt(p * (1 - p) / n)  # binomial std of the kept fraction
    assert abs(keep.mean().item() - p) <= 5 * sigma + 1e-12


def test_random_per_sample_p_range() -> None:
    x = torch.ones(64, 1, 48, 48)
    frac = random_redaction(x, p=(0.1, 0.9), generator=_gen(2)).keep.mean(dim=(1, 2, 3))
    five_sigma = 5 * math.sqrt(0.25 / (48 * 48))
    assert frac.min() >= 0.1 - five_sigma and frac.max() <= 0.9 + five_sigma
    # Uniform p over [0.1, 0.9]: the samples spread out (std 0.23) rather than sharing one p.
    assert frac.std() > 0.15


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    cell=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_checkerboard_is_exactly_the_pattern(h: int, w: int, cell: int, seed: int) -> None:
    cell = min(cell, max(h, w))
    keep = checkerboard_redaction(torch.ones(3, 2, h, w), cell=cell, generator=_gen(seed)).keep
    for k in keep[:, 0].numpy():
        assert np.array_equal(k, _checker(h, w, cell, 0)) or np.array_equal(
            k, _checker(h, w, cell, 1)
        )


def test_checkerboard_phase_varies_and_cell_range() -> None:
    keep = checkerboard_redaction(torch.ones(32, 1, 24, 24), cell=4, generator=_gen(0)).keep
    phases = {int(k[0, 0, 0].item() == 0) for k in keep}
    assert phases == {0, 1}
    keep = checkerboard_redaction(torch.ones(32, 1, 24, 24), cell=(2, 5), generator=_gen(0)).keep
    seen = set()
    for k in keep[:, 0].numpy():
        found = [
            (c, ph)
            for c in range(2, 6)
            for ph in (0, 1)
            if np.array_equal(k, _checker(24, 24, c, ph))
        ]
        assert found, "every sample is an exact checkerboard with a cell in the range"
        seen.add(found[0][0])
    assert len(seen) >= 3  # sizes are drawn per sample


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    block=st.integers(1, 12),
    ratio=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_blocks_drops_whole_aligned_cells(
    h: int, w: int, block: int, ratio: float, seed: int
) -> None:
    block = min(block, max(h, w))
    keep = blocks_redaction(
        torch.ones(3, 1, h, w), block=block, ratio=ratio, generator=_gen(seed)
    ).keep
    n_cells = math.ceil(h / block) * math.ceil(w / block)
    for k in keep[:, 0].numpy():
        cells = _cells(k, block)
        assert cells is not None, "the mask is made of whole aligned cells"
        assert int((cells == 0).sum()) == round(ratio * n_cells)


def test_blocks_known_counts_and_partial_edges() -> None:
    # 10 x 7 image, block 4: a 3 x 2 grid whose last row/column are partial.
    keep = blocks_redaction(torch.ones(1, 1, 10, 7), block=4, ratio=0.5, generator=_gen(0)).keep
    cells = _cells(keep[0, 0].numpy(), 4)
    assert cells is not None and cells.shape == (3, 2) and (cells == 0).sum() == 3
    # ratio 0 keeps everything, ratio 1 removes everything.
    x = torch.ones(2, 3, 10, 7)
    assert blocks_redaction(x, block=4, ratio=0.0).keep.min() == 1
    assert blocks_redaction(x, block=4, ratio=1.0).image.abs().max() == 0


def test_blocks_every_cell_is_equally_likely() -> None:
    # 16 cells, 4 dropped per sample: each cell is dropped in about 1/4 of the samples.
    keep = blocks_redaction(torch.ones(400, 1, 16, 16), block=4, ratio=0.25, generator=_gen(5))
    dropped = 1 - keep.keep[:, 0, ::4, ::4].mean(dim=0)
    sigma = math.sqrt(0.25 * 0.75 / 400)
    assert (dropped - 0.25).abs().max() <= 5 * sigma


def test_blocks_per_sample_ranges() -> None:
    keep = blocks_redaction(
        torch.ones(24, 1, 24, 24), block=(3, 8), ratio=(0.2, 0.6), generator=_gen(4)
    ).keep
    sizes = set()
    for k in keep[:, 0].numpy():
        fits = [b for b in range(3, 9) if _cells(k, b) is not None]
        assert fits
        b = max(fits)  # a mask of 6-blocks is also one of 3-blocks; the largest is the size
        n = math.ceil(24 / b) ** 2
        dropped = int((_cells(k, b) == 0).sum())
        assert round(0.2 * n) <= dropped <= round(0.6 * n)
        sizes.add(b)
    assert len(sizes) >= 3


def test_one_pixel_rows_and_columns() -> None:
    x = torch.randn(2, 3, 1, 9) + 5
    keep = checkerboard_redaction(x, cell=1, generator=_gen(0)).keep
    for row in keep[:, 0, 0].tolist():
        assert row in ([1, 0, 1, 0, 1, 0, 1, 0, 1], [0, 1, 0, 1, 0, 1, 0, 1, 0])
    assert random_redaction(x.transpose(2, 3), p=0.5).keep.shape == (2, 1, 9, 1)
    out = blocks_redaction(x, block=3, ratio=1 / 3, generator=_gen(0))
    assert (out.keep == 0).sum().item() == 2 * 3  # one 1 x 3 cell per sample


def test_modules_match_functions() -> None:
    x = torch.randn(2, 3, 16, 16)
    pairs = [
        (RandomRedaction(p=(0.2, 0.4)), lambda g: random_redaction(x, (0.2, 0.4), g)),
        (CheckerboardRedaction(cell=(2, 4)), lambda g: checkerboard_redaction(x, (2, 4), g)),
        (BlocksRedaction(block=4, ratio=0.25), lambda g: blocks_redaction(x, 4, 0.25, g)),
    ]
    for module, fn in pairs:
        torch.testing.assert_close(module(x, generator=_gen(9)).keep, fn(_gen(9)).keep)
    assert [m.name for m, _ in pairs] == ["random", "checkerboard", "blocks"]
    assert "block=4" in repr(pairs[2][0])
    assert RandomRedaction().p == 0.25 and CheckerboardRedaction().cell == 16
    assert (BlocksRedaction().block, BlocksRedaction().ratio) == (32, 0.5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: random_redaction(x, p=0.0), r"p must be in \(0.0, 1.0\]"),
        (lambda x: random_redaction(x, p=1.5), "p must be in"),
        (lambda x: random_redaction(x, p=(0.5, 0.2)), "low <= high"),
        (lambda x: random_redaction(x, p=(0.1, 0.2, 0.3)), "pair"),
        (lambda x: checkerboard_redaction(x, cell=0), "cell must be in"),
        (lambda x: checkerboard_redaction(x, cell=2.5), "cell must be an integer"),
        (lambda x: checkerboard_redaction(x, cell=True), "cell must be an integer"),
        (lambda x: checkerboard_redaction(x, cell=40), "cell must be at most"),
        (lambda x: blocks_redaction(x, block=33), r"block must be at most max\(H, W\) = 24"),
        (lambda x: blocks_redaction(x, block=(4, 30)), "block must be at most"),
        (lambda x: blocks_redaction(x, ratio=1.5), "ratio must be in"),
        (lambda x: blocks_redaction(x, ratio=-0.1), "ratio must be in"),
        (lambda x: random_redaction(x[0]), "4-D"),
        (lambda x: random_redaction(x.long()), "floating-point"),
        (lambda x: checkerboard_redaction(x.numpy()), "torch.Tensor"),
        (lambda x: RandomRedaction(p=0), "p must be in"),
        (lambda x: CheckerboardRedaction(cell=-1), "cell must be in"),
        (lambda x: BlocksRedaction(ratio=2), "ratio must be in"),
    ],
)
def test_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call(torch.randn(2, 3, 16, 24))
