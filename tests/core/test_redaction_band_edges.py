"""Spectral band membership at frequencies lying exactly on a band edge.

The reference here is exact rational arithmetic: ``rho^2 = s / D`` with the
integer ``s`` and ``D = 2 H^2 W^2`` of the module docstring, and an edge is
the decimal fraction it is written as (``Fraction(repr(float(e)))``). Every
frequency with ``rho`` exactly equal to an edge is enumerated and checked,
in the library's masks and in the redaction output itself, so a rounded
radius (which puts such ties on either side depending on the CPU's vector
rounding and on compilation) cannot pass.
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import dejavu.redaction.spectral as spectral_module
from dejavu.redaction import (
    dct2,
    idct2,
    spectral_edge_threshold,
    spectral_keep_mask,
    spectral_radius,
    spectral_redaction,
    spectral_squared_radius,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BASES = ["dct", "fft"]
MODES = ["lowpass", "highpass", "bandpass", "bandstop"]
# Even, odd, square and mixed sizes. 17 x 31 and 9 x 15 have no frequency on any decimal
# edge in (0, 1) (for 17 x 31: ``s q^2 = 2 p^2 H^2 W^2`` with ``q = 2^i 5^j`` coprime to
# H W forces q = 1), so there only DC lies on an edge (0); they still check the rule
# near edges.
GRIDS = [(16, 24), (17, 31), (64, 64), (10, 10), (9, 15), (12, 20), (4, 4), (8, 6)]
WITH_NONZERO_TIES = {(16, 24), (64, 64), (10, 10), (12, 20), (4, 4), (8, 6)}
# Edges always tried, whether or not a frequency lies on them.
FIXED_EDGES = [Fraction(0), Fraction(1, 20), Fraction(1, 10), Fraction(1, 4), Fraction(3, 10),
               Fraction(1, 2), Fraction(1)]  # fmt: skip


@functools.cache
def _squared(h: int, w: int, basis: str) -> tuple[tuple[int, ...], ...]:
    """``s`` of every frequency as Python ints, from the definition."""
    if basis == "dct":
        return tuple(tuple((u * w) ** 2 + (v * h) ** 2 for v in range(w)) for u in range(h))
    return tuple(
        tuple((2 * min(u, h - u) * w) ** 2 + (2 * min(v, w - v) * h) ** 2 for v in range(w))
        for u in range(h)
    )


def _is_decimal(q: int) -> bool:
    """``q`` is ``2^i 5^j``: ``p / q`` has a finite decimal expansion."""
    for f in (2, 5):
        while q % f == 0:
            q //= f
    return q == 1


def _lattice_edges(h: int, w: int, basis: str) -> list[Fraction]:
    """Every decimal edge in [0, 1] that some frequency lies exactly on."""
    d = 2 * h * h * w * w
    found = set()
    for s in {s for row in _squared(h, w, basis) for s in row}:
        r2 = Fraction(s, d)
        p, q = math.isqrt(r2.numerator), math.isqrt(r2.denominator)
        if p * p == r2.numerator and q * q == r2.denominator and _is_decimal(q):
            found.add(Fraction(p, q))
    return sorted(found)


def _edges(h: int, w: int, basis: str) -> list[Fraction]:
    edges = sorted(set(_lattice_edges(h, w, basis)) | set(FIXED_EDGES))
    for e in edges:  # the float of each edge prints as exactly this decimal
        assert Fraction(repr(float(e))) == e
    return edges


def _on_edge(h: int, w: int, basis: str, e: Fraction) -> list[tuple[int, int]]:
    """The frequencies with ``rho == e`` exactly: ``s q^2 == 2 p^2 H^2 W^2``."""
    p, q = e.numerator, e.denominator
    s = _squared(h, w, basis)
    return [
        (u, v) for u in range(h) for v in range(w) if s[u][v] * q * q == 2 * p * p * h * h * w * w
    ]


@functools.cache
def _exact_keep(
    h: int, w: int, basis: str, mode: str, a: Fraction, b: Fraction, keep_dc: bool
) -> torch.Tensor:
    """The documented rule with Fractions: band ``a <= rho < b`` (``b >= 1``: no limit).

    ``rho^2 = s / D >= e^2`` is compared as ``s q^2 >= p^2 D`` for ``e = p / q``, on
    numpy arrays of Python ints (dtype object), so nothing is rounded or overflows.
    """
    d = 2 * h * h * w * w
    s = np.array(_squared(h, w, basis), dtype=object)
    above_a = s * a.denominator**2 >= a.numerator**2 * d
    below_b = s * b.denominator**2 < b.numerator**2 * d if b < 1 else np.ones_like(above_a)
    in_band = (above_a & below_b).astype(bool)
    keep = in_band if mode in ("lowpass", "bandpass") else ~in_band
    if keep_dc and mode in ("highpass", "bandpass"):
        keep = keep | (s == 0).astype(bool)
    return torch.from_numpy(keep)


def _configs(mode: str, edges: list[Fraction]) -> list[tuple[Fraction, Fraction]]:
    """``(a, b)`` edge pairs to try: every edge as a cut-off, or bands around every edge."""
    if mode in ("lowpass", "highpass"):
        return [(Fraction(0), e) for e in edges]
    pairs = {(e, e) for e in edges} | {(Fraction(0), e) for e in edges}
    pairs |= {(e, Fraction(1)) for e in edges} | set(itertools.pairwise(edges))
    return sorted(pairs)


def _kwargs(mode: str, a: Fraction, b: Fraction) -> dict[str, object]:
    if mode in ("lowpass", "highpass"):
        return {"cutoff": float(b)}
    return {"band": (float(a), float(b))}


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_frequencies_on_edges_exist(grid: tuple[int, int], basis: str) -> None:
    h, w = grid
    ties = {e: _on_edge(h, w, basis, e) for e in _edges(h, w, basis)}
    assert ties[Fraction(0)] == [(0, 0)]  # DC is exactly on the edge 0
    nonzero = {e: f for e, f in ties.items() if e > 0 and f}
    assert bool(nonzero) == (grid in WITH_NONZERO_TIES)
    if grid in ((16, 24), (64, 64)):
        assert ties[Fraction(1, 4)] and ties[Fraction(1, 2)]
    if grid == (10, 10):
        assert ties[Fraction(1, 5)] and (basis == "fft" or ties[Fraction(1, 10)])
    # The library's integers reproduce the ties exactly, and its float radius is close.
    s, d = spectral_squared_radius(h, w, basis)
    assert d == 2 * h * h * w * w and s.dtype == torch.int64
    assert s.tolist() == [list(row) for row in _squared(h, w, basis)]
    rho = spectral_radius(h, w, basis=basis)
    for e, freqs in nonzero.items():
        t = spectral_edge_threshold(float(e), h, w)
        assert t == e * e * d  # an integer: the edge is on the lattice
        for u, v in freqs:
            assert s[u, v].item() == t
            assert rho[u, v].item() == pytest.approx(float(e), rel=1e-15)


def test_rounded_radius_misplaces_ties() -> None:
    # Why membership is not decided on floats: the old float64 radius
    # sqrt(fu^2 + fv^2) / sqrt(2), evaluated here in scalar IEEE arithmetic (deterministic),
    # already lands below the edge for some tied frequencies; vector code and compiled
    # graphs round differently again.
    wrong = 0
    for h, w in WITH_NONZERO_TIES:
        for basis in BASES:
            for e in _lattice_edges(h, w, basis):
                for u, v in _on_edge(h, w, basis, e):
                    if basis == "dct":
                        fu, fv = u / h, v / w
                    else:
                        fu, fv = min(u, h - u) * 2 / h, min(v, w - v) * 2 / w
                    wrong += not math.sqrt(fu**2 + fv**2) / math.sqrt(2) >= float(e)
    assert wrong > 0


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("mode", MODES)
def test_keep_mask_matches_fractions(mode: str, grid: tuple[int, int], basis: str) -> None:
    h, w = grid
    for a, b in _configs(mode, _edges(h, w, basis)):
        for keep_dc in (True, False):
            kw = _kwargs(mode, a, b)
            mask = spectral_keep_mask(h, w, mode, basis=basis, keep_dc=keep_dc, **kw)
            expected = _exact_keep(h, w, basis, mode, a, b, keep_dc)
            assert torch.equal(mask, expected), (mode, a, b, keep_dc)


def _probes(h: int, w: int, basis: str, edges: list[Fraction]) -> list[tuple[int, int]]:
    """DC and every frequency lying exactly on one of ``edges``."""
    found = {(0, 0)}
    for e in edges:
        found |= set(_on_edge(h, w, basis, e))
    return sorted(found)


def _probe_images(h: int, w: int, basis: str, probes: list[tuple[int, int]]) -> torch.Tensor:
    """``N x 1 x H x W`` float64 images, each made of the one frequency of its probe."""
    if basis == "dct":
        coeffs = torch.zeros(len(probes), 1, h, w, dtype=torch.float64)
        for i, (u, v) in enumerate(probes):
            coeffs[i, 0, u, v] = 1.0
        return idct2(coeffs)  # the DCT basis image of (u, v)
    m = torch.arange(h, dtype=torch.float64)[:, None]
    n = torch.arange(w, dtype=torch.float64)[None, :]
    # cos(2 pi (u m / H + v n / W)): the bins (u, v) and (-u, -v), which share |frequency|.
    return torch.stack([torch.cos(2 * math.pi * (u * m / h + v * n / w)) for u, v in probes])[
        :, None
    ]


def _coefficients(x: torch.Tensor, basis: str, probes: list[tuple[int, int]]) -> torch.Tensor:
    """Each image's coefficient at its own probe (complex for fft)."""
    c = dct2(x.double()) if basis == "dct" else torch.fft.fft2(x.double())
    u, v = torch.tensor(probes).T
    return c[torch.arange(len(probes)), 0, u, v]


def _few(edges: list[Fraction]) -> list[Fraction]:
    """A manageable set of edges for the output checks: all of them on small grids."""
    return edges if len(edges) <= 16 else [e for e in edges if e.denominator <= 10]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("grid", [(16, 24), (64, 64), (10, 10), (12, 20), (8, 6)], ids=str)
def test_redaction_output_on_tied_frequencies(
    grid: tuple[int, int], basis: str, dtype: torch.dtype, device: str
) -> None:
    # Redact single-frequency images and read off whether the frequency survived: the
    # result must follow the exact rule for every tied frequency, for every dtype.
    h, w = grid
    edges = _few(_edges(h, w, basis))
    probes = _probes(h, w, basis, edges)
    assert len(probes) > 1  # DC and at least one tie
    x = _probe_images(h, w, basis, probes)
    before = _coefficients(x, basis, probes)
    xd = x.to(device=device, dtype=dtype)
    for mode in MODES:
        for a, b in _configs(mode, edges):
            for keep_dc in (True, False):
                out = spectral_redaction(
                    xd, mode, basis=basis, keep_dc=keep_dc, **_kwargs(mode, a, b)
                ).image
                assert out.dtype == dtype and out.device.type == device
                # A kept frequency keeps its coefficient (ratio 1), a removed one is 0; half
                # precision perturbs the ratio by ~1e-2, far from the decision at 0.5.
                ratio = (_coefficients(out.cpu(), basis, probes) / before).abs()
                assert ((ratio - 1).abs() < 0.1).logical_or(ratio < 0.1).all()
                keep = _exact_keep(h, w, basis, mode, a, b, keep_dc)
                expected = keep[tuple(torch.tensor(probes).T)]
                assert torch.equal(ratio > 0.5, expected), (mode, a, b, keep_dc)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("mode", MODES)
def test_per_sample_edges_on_ties(mode: str, basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Drawn edges take the per-sample path (thresholds from .tolist()); make the draws land
    # exactly on tied edges, one per sample, and check each sample against the exact rule.
    h, w = 16, 24
    edges = [e for e in _lattice_edges(h, w, basis) if e < 1]
    assert len(edges) >= 3
    probes = _probes(h, w, basis, edges)
    x = _probe_images(h, w, basis, probes)
    before = _coefficients(x, basis, probes)
    cutoff_mode = mode in ("lowpass", "highpass")
    lows = [Fraction(0)] * (len(edges)) if cutoff_mode else [Fraction(0), *edges[:-1]]
    highs = [*edges[1:], Fraction(1)]
    n = len(highs)
    draws = iter(
        [
            torch.tensor([float(e) for e in lows], dtype=torch.float64),
            torch.tensor([float(e) for e in highs], dtype=torch.float64),
        ]
    )
    monkeypatch.setattr(spectral_module, "sample_uniform", lambda *args: next(draws))
    kw = {"cutoff": (0.0, 1.0)} if cutoff_mode else {"band": ((0.0, 0.5), (0.5, 1.0))}
    # Every probe image goes through every sample's band: batch = samples x probes.
    xb = x[None].expand(n, -1, -1, -1, -1).reshape(n, len(probes), h, w)
    out = spectral_redaction(xb, mode, basis=basis, **kw).image
    for i, (a, b) in enumerate(zip(lows, highs, strict=True)):
        c = out[i][:, None]
        ratio = (_coefficients(c, basis, probes) / before).abs()
        keep = _exact_keep(h, w, basis, mode, a, b, True)
        expected = keep[tuple(torch.tensor(probes).T)]
        assert torch.equal(ratio > 0.5, expected), (mode, a, b)


def test_too_large_for_int64_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"H \* W < 2\*\*31"):
        spectral_squared_radius(2**16, 2**15)
    with pytest.raises(ValueError, match=r"H \* W < 2\*\*31"):
        spectral_edge_threshold(0.25, 2**16, 2**15)
    # The largest allowed area still fits: D + 1 is an int64.
    h, w = 2**16, 2**15 - 1
    t = spectral_edge_threshold(1.0, h, w, upper=True)
    assert t == 2 * (h * w) ** 2 + 1 < 2**63
