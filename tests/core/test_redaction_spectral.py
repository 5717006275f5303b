"""Spectral redaction: radius, masks against scipy/numpy references, properties, dtypes."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dejavu.redaction import (
    BandpassRedaction,
    BandstopRedaction,
    HighpassRedaction,
    LowpassRedaction,
    SpectralRedaction,
    dct2,
    spectral_edge_threshold,
    spectral_keep_mask,
    spectral_radius,
    spectral_redaction,
    spectral_squared_radius,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BASES = ["dct", "fft"]
SHAPES = [(1, 1), (1, 9), (8, 1), (7, 5), (16, 24), (17, 12)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rho_np(h: int, w: int, basis: str) -> np.ndarray:
    """The documented radius, built with numpy (float64: for inspection only)."""
    u = np.arange(h)[:, None].astype(float)
    v = np.arange(w)[None, :].astype(float)
    if basis == "dct":
        fu, fv = u / h, v / w
    else:
        fu, fv = np.minimum(u, h - u) / (h / 2), np.minimum(v, w - v) / (w / 2)
    return np.sqrt(fu**2 + fv**2) / np.sqrt(2)


def _squared_np(h: int, w: int, basis: str) -> tuple[np.ndarray, int]:
    """The documented integer squared radius ``s`` and ``D = 2 H^2 W^2`` (rho^2 = s / D)."""
    u = np.arange(h, dtype=np.int64)[:, None]
    v = np.arange(w, dtype=np.int64)[None, :]
    if basis == "dct":
        s = (u * w) ** 2 + (v * h) ** 2
    else:
        s = (2 * np.minimum(u, h - u) * w) ** 2 + (2 * np.minimum(v, w - v) * h) ** 2
    return s, 2 * h * h * w * w


def _threshold_np(edge: float, d: int, upper: bool) -> int:
    """``rho >= edge`` iff ``s >= ceil(e^2 D)``, ``e`` the decimal the edge prints as."""
    e = Fraction(repr(float(edge)))
    return d + 1 if upper and e >= 1 else math.ceil(e * e * d)


def _keep_s(s: np.ndarray, mode: str, lo: int, hi: int, keep_dc: bool) -> np.ndarray:
    """The documented keep rule on integers: band ``lo <= s < hi``, DC is ``s == 0``."""
    band = (s >= lo) & (s < hi)
    keep = band if mode in ("lowpass", "bandpass") else ~band
    if keep_dc and mode in ("highpass", "bandpass"):
        keep = keep | (s == 0)
    return keep.astype(float)


def _keep_np(h: int, w: int, basis: str, mode: str, a: float, b: float, keep_dc: bool):
    """The documented keep rule for edges ``[a, b)`` (an upper edge >= 1 has no limit)."""
    s, d = _squared_np(h, w, basis)
    return _keep_s(s, mode, _threshold_np(a, d, False), _threshold_np(b, d, True), keep_dc)


def _filter_np(x: np.ndarray, keep: np.ndarray, basis: str) -> np.ndarray:
    if basis == "dct":
        c = scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")
        return scipy.fft.idctn(c * keep, axes=(-2, -1), norm="ortho")
    y = np.fft.ifft2(np.fft.fft2(x, axes=(-2, -1)) * keep, axes=(-2, -1))
    assert np.abs(y.imag).max() < 1e-9  # the symmetric mask keeps the result real
    return y.real


def _reference(x: np.ndarray, mode: str, a: float, b: float, basis: str, keep_dc: bool = True):
    h, w = x.shape[-2:]
    return _filter_np(x, _keep_np(h, w, basis, mode, a, b, keep_dc), basis)


def _run(x: torch.Tensor, mode: str, a: float, b: float, **kw) -> torch.Tensor:  # type: ignore[no-untyped-def]
    edges = {"cutoff": b} if mode in ("lowpass", "highpass") else {"band": (a, b)}
    return spectral_redaction(x, mode, **edges, **kw).image


def test_radius_definitions() -> None:
    rho = spectral_radius(4, 8)
    assert rho.shape == (4, 8) and rho.dtype == torch.float64
    assert rho[0, 0] == 0
    assert rho[2, 0].item() == pytest.approx(0.5 / math.sqrt(2))  # u/H = 1/2
    assert rho[3, 7].item() == pytest.approx(math.sqrt((3 / 4) ** 2 + (7 / 8) ** 2) / math.sqrt(2))
    assert rho.max() < 1  # the DCT never reaches Nyquist
    fft = spectral_radius(4, 8, basis="fft", dtype=torch.float32)
    assert fft.dtype == torch.float32
    assert fft[2, 4].item() == pytest.approx(1.0)  # Nyquist corner
    assert torch.equal(fft[1], fft[3]) and torch.equal(fft[:, 1], fft[:, 7])  # |frequency|
    assert spectral_radius(4, 8, basis="fft")[2, 4].item() == 1.0  # s == D: exactly 1
    np.testing.assert_allclose(spectral_radius(5, 7, basis="fft").numpy(), _rho_np(5, 7, "fft"))
    assert spectral_radius(3, 3, device="cpu").device.type == "cpu"


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_squared_radius_is_exact(shape: tuple[int, int], basis: str) -> None:
    h, w = shape
    s, d = spectral_squared_radius(h, w, basis)
    expected_s, expected_d = _squared_np(h, w, basis)
    assert s.dtype == torch.int64 and d == expected_d
    np.testing.assert_array_equal(s.numpy(), expected_s)
    # rho^2 = s / D: the float radius is sqrt(s / D) from the exact integers, to an ulp or
    # two (torch's vectorised float64 sqrt is not always correctly rounded; 2 ulp = 4.4e-16).
    rho = spectral_radius(h, w, basis=basis)
    np.testing.assert_allclose(rho.numpy(), np.sqrt(expected_s / d), rtol=4.5e-16, atol=0)
    np.testing.assert_allclose(rho.numpy(), _rho_np(h, w, basis), rtol=1e-15, atol=1e-15)


def test_edge_thresholds() -> None:
    d = 2 * 16**2 * 24**2
    assert spectral_edge_threshold(0.25, 16, 24) == d // 16
    assert spectral_edge_threshold(0.0, 16, 24) == 0
    assert spectral_edge_threshold(1.0, 16, 24) == d
    assert spectral_edge_threshold(1.0, 16, 24, upper=True) == d + 1
    # The edge is the decimal it is written as: 0.05 is 1/20, not the binary float above it.
    assert spectral_edge_threshold(0.05, 16, 24) == math.ceil(Fraction(1, 400) * d)
    assert Fraction(0.05) > Fraction(1, 20)
    s, _ = spectral_squared_radius(16, 24)
    assert s[4, 6].item() == d // 16  # rho == 1/4 exactly: a tie decided by s >= t
    keep = spectral_keep_mask(16, 24, "lowpass", cutoff=0.25)
    assert keep.dtype == torch.bool and not keep[4, 6] and keep[4, 5]
    assert spectral_keep_mask(16, 24, "highpass", cutoff=0.25)[4, 6]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("mode", "a", "b"),
    [
        ("lowpass", 0.0, 0.25),
        ("lowpass", 0.0, 0.0),
        ("highpass", 0.0, 0.05),
        ("highpass", 0.0, 1.0),
        ("bandpass", 0.05, 0.25),
        ("bandpass", 0.0, 0.4),
        ("bandstop", 0.05, 0.25),
        ("bandstop", 0.3, 1.0),
    ],
)
def test_matches_numpy_reference(
    mode: str, a: float, b: float, shape: tuple[int, int], basis: str, device: str
) -> None:
    x = torch.randn(2, 3, *shape, dtype=torch.float64, generator=_gen(0))
    out = _run(x.to(device), mode, a, b, basis=basis)
    assert out.device.type == device and out.dtype == torch.float64
    expected = _reference(x.numpy(), mode, a, b, basis)
    np.testing.assert_allclose(out.cpu().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("basis", BASES)
def test_float32_matches_reference(basis: str) -> None:
    x = torch.randn(2, 3, 16, 24, generator=_gen(1))
    out = _run(x, "bandstop", 0.05, 0.25, basis=basis)
    assert out.dtype == torch.float32
    expected = _reference(x.double().numpy(), "bandstop", 0.05, 0.25, basis)
    # The mask is the same exact one in float32 and float64, so only the transform's
    # rounding differs: float32 FFTs of 16 x 24 unit-variance data err by a few ulp of the
    # largest values (eps = 1.2e-7, |x| < 5, log2(384) ~ 9 butterfly stages: ~1e-6).
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    a=st.floats(0.0, 1.0),
    b=st.floats(0.0, 1.0),
    basis=st.sampled_from(BASES),
)
def test_identities(h: int, w: int, a: float, b: float, basis: str) -> None:
    a, b = min(a, b), max(a, b)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    close = dict(rtol=0, atol=1e-10)
    # Low-pass with cut-off 1 and band-stop with an empty band change nothing.
    torch.testing.assert_close(_run(x, "lowpass", 0, 1.0, basis=basis), x, **close)
    torch.testing.assert_close(_run(x, "bandstop", a, a, basis=basis), x, **close)
    # Complementary pairs add up to the image exactly (DC counted once).
    stop = _run(x, "bandstop", a, b, basis=basis)
    torch.testing.assert_close(
        _run(x, "bandpass", a, b, basis=basis, keep_dc=False) + stop, x, **close
    )
    low = _run(x, "lowpass", 0, b, basis=basis)
    torch.testing.assert_close(
        _run(x, "highpass", 0, b, basis=basis, keep_dc=False) + low, x, **close
    )
    # With the default keep_dc the DC term is in both unless the band removes it.
    dc = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    both = _run(x, "bandpass", a, b, basis=basis) + stop
    torch.testing.assert_close(both, x + dc if not (a == 0 < b) else x, **close)


@pytest.mark.parametrize("basis", BASES)
def test_dc_rules(basis: str) -> None:
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64) + 2.0
    mean = x.mean(dim=(2, 3))
    for mode, edges in [("highpass", 0.1), ("bandpass", (0.1, 0.3)), ("bandstop", (0.1, 0.3))]:
        kw = {"cutoff": edges} if mode == "highpass" else {"band": edges}
        out = spectral_redaction(x, mode, basis=basis, **kw).image
        torch.testing.assert_close(out.mean(dim=(2, 3)), mean)  # DC (the mean) kept
    for mode, kw in [("highpass", {"cutoff": 0.1}), ("bandpass", {"band": (0.1, 0.3)})]:
        out = spectral_redaction(x, mode, basis=basis, keep_dc=False, **kw).image
        torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros_like(mean))
    out = spectral_redaction(x, "bandstop", band=(0.0, 0.3), basis=basis).image
    torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros_like(mean))  # DC in the band
    out = spectral_redaction(x, "highpass", cutoff=1.0, basis=basis).image
    torch.testing.assert_close(out, mean[..., None, None].expand_as(x))  # only the mean left


@pytest.mark.parametrize("cutoff", [0.1, 0.25, 0.5])
def test_lowpass_removes_high_frequency_energy(cutoff: float) -> None:
    x = torch.randn(2, 3, 32, 48, generator=_gen(2))
    y = spectral_redaction(x, "lowpass", cutoff=cutoff).image
    cx, cy = dct2(x), dct2(y)
    s, _ = spectral_squared_radius(32, 48)
    high = s >= spectral_edge_threshold(cutoff, 32, 48)  # rho >= cutoff, decided exactly
    assert cy[..., high].abs().max() < 1e-4
    torch.testing.assert_close(cy[..., ~high], cx[..., ~high], rtol=1e-4, atol=1e-4)
    # White noise has flat spectrum: the kept energy fraction is the kept coefficient fraction.
    kept = y.pow(2).sum() / x.pow(2).sum()
    assert kept.item() == pytest.approx((~high).float().mean().item(), abs=0.03)


def test_per_sample_cutoffs_are_drawn_in_range() -> None:
    x = torch.randn(16, 1, 24, 24, dtype=torch.float64, generator=_gen(3))
    y = spectral_redaction(x, "lowpass", cutoff=(0.1, 0.4), generator=_gen(4)).image
    s, _ = spectral_squared_radius(24, 24)
    t_lo, t_hi = (spectral_edge_threshold(c, 24, 24) for c in (0.1, 0.4))
    cuts = []
    for cx, cy in zip(dct2(x)[:, 0], dct2(y)[:, 0], strict=True):
        kept = (cy - cx).abs() < 1e-9
        removed = cy.abs() < 1e-9
        assert (kept | removed).all()
        # A single squared radius separates kept from removed coefficients ...
        first_removed = s[removed & ~kept].min().item()
        assert s[kept].max().item() < first_removed
        # ... and some cut-off c in [0.1, 0.4] (threshold t(c)) lies between them.
        assert s[kept].max().item() < t_hi and first_removed >= t_lo
        cuts.append(first_removed)
    assert len(set(cuts)) >= 6  # the cut-off varies across samples
    again = spectral_redaction(x, "lowpass", cutoff=(0.1, 0.4), generator=_gen(4)).image
    torch.testing.assert_close(again, y, rtol=0, atol=0)
    other = spectral_redaction(x, "lowpass", cutoff=(0.1, 0.4), generator=_gen(5)).image
    assert not torch.equal(other, y)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("mode", ["bandstop", "bandpass"])
def test_per_sample_band_edges(mode: str, basis: str) -> None:
    h, w = 20, 26
    x = torch.randn(8, 2, h, w, dtype=torch.float64, generator=_gen(0))
    band = ((0.0, 0.1), (0.2, 0.3))
    y = spectral_redaction(x, mode, band=band, basis=basis, generator=_gen(1)).image
    z = spectral_redaction(x, mode, band=[[0.0, 0.1], [0.2, 0.3]], basis=basis, generator=_gen(1))
    torch.testing.assert_close(y, z.image, rtol=0, atol=0)  # lists (from YAML) work too
    # Read each sample's band off its output as thresholds on the integer squared radius,
    # check that edges in the ranges give it, and that the sample equals the reference
    # redaction with those thresholds.
    s, d = _squared_np(h, w, basis)
    t = {e: _threshold_np(e, d, False) for e in (0.1, 0.2, 0.3)}
    if basis == "dct":
        cx, cy = dct2(x).numpy(), dct2(y).numpy()
    else:
        cx, cy = np.fft.fft2(x.numpy()), np.fft.fft2(y.numpy())
    lows, highs = [], []
    for i in range(8):
        removed = (np.abs(cy[i, 0]) < 1e-8) & (np.abs(cx[i, 0]) > 1e-8)
        in_band = removed if mode == "bandstop" else ~removed
        in_band[0, 0] = False  # a > 0 almost surely: DC is outside the band (bandpass keeps it)
        lo = s[in_band].min()  # the low edge's threshold is in (the s below lo, lo]
        hi = s[s > s[in_band].max()].min()  # the high edge's is in (max s in band, hi]
        assert s[s < lo].max(initial=-1) < t[0.1]  # some low edge in [0, 0.1] gives lo
        assert s[in_band].max() < t[0.3] and hi >= t[0.2]  # some high edge in [0.2, 0.3]
        keep = _keep_s(s, mode, int(lo), int(hi), True)
        expected = _filter_np(x[i : i + 1].numpy(), keep, basis)
        np.testing.assert_allclose(y[i : i + 1].numpy(), expected, atol=1e-10)
        lows.append(lo)
        highs.append(hi)
    assert len(set(lows)) > 2 and len(set(highs)) > 2  # drawn per sample


@pytest.mark.parametrize("basis", BASES)
def test_computed_in_float32_under_autocast(basis: str) -> None:
    x = torch.randn(2, 3, 16, 24, generator=_gen(6))
    ref = spectral_redaction(x, "bandpass", basis=basis).image
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = spectral_redaction(x, "bandpass", basis=basis).image
        half = spectral_redaction(x.bfloat16(), "bandpass", basis=basis).image
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    # bfloat16 input: computed in float32 from the same values, then cast once.
    assert half.dtype == torch.bfloat16
    expected = spectral_redaction(x.bfloat16().float(), "bandpass", basis=basis).image
    torch.testing.assert_close(half, expected.bfloat16(), rtol=0, atol=0)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("mode", ["lowpass", "bandstop"])
def test_gradcheck(mode: str, basis: str) -> None:
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spectral_redaction(t, mode, basis=basis).image, (x,))


def test_modules() -> None:
    x = torch.randn(2, 3, 16, 16)
    assert LowpassRedaction().cutoff == 0.25 and HighpassRedaction().cutoff == 0.05
    assert BandpassRedaction().band == (0.05, 0.25) and BandstopRedaction().band == (0.05, 0.25)
    modules = [
        LowpassRedaction(0.3),
        HighpassRedaction(0.1),
        BandpassRedaction(),
        BandstopRedaction(),
    ]
    assert [m.name for m in modules] == ["lowpass", "highpass", "bandpass", "bandstop"]
    for m in modules:
        out = m(x)
        assert out.keep is None
        generic = SpectralRedaction(m.name, cutoff=m.cutoff, band=m.band)(x)
        torch.testing.assert_close(out.image, generic.image, rtol=0, atol=0)
    fft = LowpassRedaction(0.3, basis="fft")(x).image
    torch.testing.assert_close(fft, _run(x, "lowpass", 0, 0.3, basis="fft"))
    assert "cutoff=0.3" in repr(modules[0]) and "band=(0.05, 0.25)" in repr(modules[2])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda x: spectral_redaction(x, "lowpass", cutoff=-0.1),
            r"cutoff must be in \[0.0, 1.0\]",
        ),
        (lambda x: spectral_redaction(x, "highpass", cutoff=1.5), "cutoff must be in"),
        (lambda x: spectral_redaction(x, "lowpass", cutoff=(0.3, 0.1)), "low <= high"),
        (lambda x: spectral_redaction(x, "bandpass", band=(0.3, 0.1)), "low edge <= high edge"),
        (
            lambda x: spectral_redaction(x, "bandstop", band=((0.1, 0.3), (0.2, 0.4))),
            "low edge <= high edge",
        ),
        (lambda x: spectral_redaction(x, "bandstop", band=(0.1, 1.2)), "band high edge must be in"),
        (lambda x: spectral_redaction(x, "bandstop", band=0.1), r"band must be a \(low, high\)"),
        (lambda x: spectral_redaction(x, "bandstop", band=(0.1, 0.2, 0.3)), "band must be a"),
        (lambda x: spectral_redaction(x, "bandpass", cutoff=0.2), "cutoff is not used"),
        (lambda x: spectral_redaction(x, "lowpass", band=(0.1, 0.2)), "band is not used"),
        (lambda x: spectral_redaction(x, "notch"), "unknown mode 'notch'; allowed: 'lowpass'"),
        (lambda x: spectral_redaction(x, "lowpass", basis="wavelet"), "unknown basis"),
        (lambda x: spectral_redaction(x, "highpass", keep_dc=1), "keep_dc must be True or False"),
        (lambda x: spectral_redaction(x[0], "lowpass"), "4-D"),
        (lambda x: spectral_redaction(x.int(), "lowpass"), "floating-point"),
        (lambda x: LowpassRedaction(cutoff=2), "cutoff must be in"),
        (lambda x: BandstopRedaction(band=(0.5, 0.1)), "low edge <= high edge"),
        (lambda x: SpectralRedaction("bandpass", cutoff=0.1), "cutoff is not used"),
        (lambda x: spectral_radius(0, 4), "h must be a positive integer"),
        (lambda x: spectral_radius(4, 4, basis="dft"), "unknown basis"),
        (lambda x: spectral_squared_radius(4, 0), "w must be a positive integer"),
        (lambda x: spectral_edge_threshold(1.5, 4, 4), r"edge must be in \[0.0, 1.0\]"),
        (lambda x: spectral_edge_threshold(0.5, 4, 4, upper=1), "upper must be True or False"),
        (lambda x: spectral_keep_mask(4, 4, "lowpass", cutoff=(0.1, 0.2)), "fixed edges"),
        (lambda x: spectral_keep_mask(4, 4, "bandpass", band=(0.3, 0.1)), "low edge <= high"),
    ],
)
def test_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call(torch.randn(2, 3, 8, 8))
