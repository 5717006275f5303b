"""DCT-II / DCT-III via FFT: agreement with scipy, inverse, orthonormality, gradients."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.fft
import torch

from dejavu.redaction import (
    dct,
    dct2,
    dct2_filter,
    dct2_filter_plan,
    dct2_filter_plan_radial,
    idct,
    idct2,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES_2D = [(1, 1), (1, 7), (6, 1), (2, 2), (5, 7), (8, 6), (9, 16), (17, 12)]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _close(actual: torch.Tensor, expected: np.ndarray, dtype: torch.dtype) -> None:
    np.testing.assert_allclose(
        actual.detach().cpu().double().numpy(), expected, rtol=TOL[dtype], atol=TOL[dtype]
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 15, 64])
def test_dct_1d_matches_scipy_along_every_dim(n: int, dtype: torch.dtype, device: str) -> None:
    x = torch.randn(3, n, 4, dtype=torch.float64)
    xd = x.to(device=device, dtype=dtype)
    ref = x.numpy()
    _close(dct(xd, dim=1), scipy.fft.dct(ref, type=2, axis=1, norm="ortho"), dtype)
    _close(idct(xd, dim=1), scipy.fft.idct(ref, type=2, axis=1, norm="ortho"), dtype)
    _close(dct(xd, dim=-1), scipy.fft.dct(ref, type=2, axis=-1, norm="ortho"), dtype)
    _close(idct(xd, dim=0), scipy.fft.idct(ref, type=2, axis=0, norm="ortho"), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES_2D)
def test_dct2_matches_scipy_dctn(shape: tuple[int, int], dtype: torch.dtype, device: str) -> None:
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    xd = x.to(device=device, dtype=dtype)
    c = dct2(xd)
    assert c.dtype == dtype and c.shape == x.shape and c.device.type == device
    _close(c, scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho"), dtype)
    _close(idct2(xd), scipy.fft.idctn(x.numpy(), axes=(-2, -1), norm="ortho"), dtype)
    _close(idct2(c), x.numpy(), dtype)


def test_dct_known_values() -> None:
    # A constant signal has only a DC coefficient, sqrt(N) * value for the ortho DCT.
    c = dct(torch.full((5,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(c, torch.tensor([2.0 * 5**0.5, 0, 0, 0, 0], dtype=torch.float64))
    # The k-th basis vector is sqrt(2/N) cos(pi k (2n + 1) / 2N); its DCT is e_k.
    n, k = 6, 4
    t = torch.arange(n, dtype=torch.float64)
    basis = (2 / n) ** 0.5 * torch.cos(torch.pi * k * (2 * t + 1) / (2 * n))
    torch.testing.assert_close(dct(basis), torch.eye(n, dtype=torch.float64)[k])


@pytest.mark.parametrize("shape", [(4, 6), (7, 5), (1, 9)])
def test_dct2_is_orthonormal(shape: tuple[int, int]) -> None:
    x = torch.randn(3, *shape, dtype=torch.float64)
    c = dct2(x)
    # Parseval: energy is preserved, and the transform matrix is orthogonal.
    torch.testing.assert_close(c.pow(2).sum(), x.pow(2).sum())
    n = shape[0] * shape[1]
    eye = torch.eye(n, dtype=torch.float64).view(n, *shape)
    mat = dct2(eye).reshape(n, n)
    torch.testing.assert_close(mat @ mat.T, torch.eye(n, dtype=torch.float64))


@pytest.mark.parametrize("fn", [dct, idct, dct2, idct2])
def test_gradcheck(fn) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 8), (7, 1), (5, 7), (8, 6), (13, 10), (24, 31)])
def test_dct2_filter_equals_masked_dct2(shape: tuple[int, int], device: str) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(2, 3, *shape, dtype=torch.float64, generator=gen)
    masks = [
        torch.ones(shape, dtype=torch.float64),
        torch.zeros(shape, dtype=torch.float64),
        (torch.rand(2, 1, *shape, generator=gen) < 0.5).double(),  # per sample, no structure
        torch.rand(shape, dtype=torch.float64, generator=gen),  # soft weights
    ]
    u = torch.arange(shape[0], dtype=torch.float64)[:, None] / shape[0]
    v = torch.arange(shape[1], dtype=torch.float64)[None, :] / shape[1]
    rho = ((u**2 + v**2) / 2).sqrt()
    masks += [(rho < 0.2).double(), (rho >= 0.1).double(), ((rho >= 0.05) & (rho < 0.3)).double()]
    for mask in masks:
        expected = idct2(dct2(x) * mask)
        out = dct2_filter(x.to(device), mask.to(device))
        torch.testing.assert_close(out.cpu(), expected, rtol=1e-10, atol=1e-10)


def test_dct2_filter_float32_and_gradcheck() -> None:
    x = torch.randn(2, 3, 9, 12)
    mask = (torch.rand(9, 12) < 0.3).float()
    expected = scipy.fft.idctn(
        scipy.fft.dctn(x.double().numpy(), axes=(-2, -1), norm="ortho") * mask.double().numpy(),
        axes=(-2, -1),
        norm="ortho",
    )
    out = dct2_filter(x, mask)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5)
    x64 = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    m64 = (torch.rand(5, 6) < 0.5).double()
    assert torch.autograd.gradcheck(lambda t: dct2_filter(t, m64), (x64,))


def test_dct2_filter_plan_reuse_and_mask_gradient() -> None:
    x = torch.randn(2, 3, 10, 14, dtype=torch.float64)
    u = torch.arange(10, dtype=torch.float64)[:, None] / 10
    v = torch.arange(14, dtype=torch.float64)[None, :] / 14
    rho = ((u**2 + v**2) / 2).sqrt()
    # Zero outside the box (low-pass), one outside (high-pass), arbitrary (random).
    for mask in [(rho < 0.2).double(), (rho >= 0.1).double(), torch.rand(10, 14).double()]:
        plan = dct2_filter_plan(mask)
        torch.testing.assert_close(dct2_filter(x, plan), idct2(dct2(x) * mask))
        torch.testing.assert_close(dct2_filter(x, plan), dct2_filter(x, plan))  # reusable
    assert dct2_filter_plan((rho < 0.2).double()).outside == "zero"
    assert dct2_filter_plan((rho >= 0.1).double()).outside == "keep"
    # A soft mask that requires grad gets its gradient (the out-of-place path).
    soft = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dct2_filter, (xs, soft))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (8, 1), (7, 5), (16, 24), (33, 20)])
def test_radial_plan_equals_the_full_mask(shape: tuple[int, int]) -> None:
    h, w = shape
    u = torch.arange(h, dtype=torch.float64)[:, None] / h
    v = torch.arange(w, dtype=torch.float64)[None, :] / w
    rho = ((u**2 + v**2) / 2).sqrt()
    x = torch.randn(3, 2, h, w, dtype=torch.float64)
    cut = torch.tensor([0.05, 0.2, 0.3], dtype=torch.float64).view(3, 1, 1, 1)
    cases = [
        (lambda r: r < cut, 0.3),  # per-sample low-pass: zero beyond the limit
        (lambda r: r >= cut, 0.3),  # per-sample high-pass: kept beyond the limit
        (lambda r: (r < 0.1) | (r >= 0.25), 0.25),
        (lambda r: torch.exp(-r.clamp(max=0.2)), 0.2),  # soft, constant beyond 0.2
        (lambda r: r < 2.0, 0.0),  # keep all: no box beyond DC
    ]
    for keep, limit in cases:
        plan = dct2_filter_plan_radial(rho, keep, limit, dtype=torch.float64)
        expected = idct2(dct2(x) * keep(rho).double())
        torch.testing.assert_close(dct2_filter(x, plan), expected, rtol=1e-10, atol=1e-10)
    small = dct2_filter_plan_radial(rho, lambda r: r < 0.05, 0.05)
    if h * w > 100:  # the box only covers the low frequencies
        assert small.rows is not None and small.rows.numel() * small.cols < h * (w // 2 + 1) / 4
        assert small.outside == "zero"


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (8, 1), (7, 5), (16, 24), (33, 20)])
def test_radial_plan_with_an_integer_radius(shape: tuple[int, int]) -> None:
    # An integer radius (the spectral redactions' exact squared radius) stays integer: no
    # float sentinel or float limit may round it. Offsetting it by 2**60 makes neighbouring
    # values equal in float64 (ulp 256 there), so any float conversion would merge them.
    h, w = shape
    u = torch.arange(h, dtype=torch.int64)[:, None] * w
    v = torch.arange(w, dtype=torch.int64)[None, :] * h
    s = u * u + v * v
    x = torch.randn(3, 2, h, w, dtype=torch.float64)
    for offset in (0, 2**60):
        r = s + offset
        cut = (offset + torch.tensor([1, h * h + 1, 2 * (h * w) ** 2 // 9])).view(3, 1, 1, 1)
        lo, hi = offset + 2, offset + w * w
        cases = [
            (lambda t, cut=cut: t < cut, int(cut.max())),
            (lambda t, cut=cut: t >= cut, int(cut.max()) + Fraction(1, 2)),  # floored exactly
            (lambda t, lo=lo, hi=hi: (t < lo) | (t >= hi), hi),
        ]
        for keep, limit in cases:
            plan = dct2_filter_plan_radial(r, keep, limit, dtype=torch.float64)
            expected = idct2(dct2(x) * keep(r).double())
            torch.testing.assert_close(dct2_filter(x, plan), expected, rtol=1e-10, atol=1e-10)
    plan = dct2_filter_plan_radial(s, lambda t: t < 3, 2.5)  # a float limit is floored too
    torch.testing.assert_close(dct2_filter(x, plan), idct2(dct2(x) * (s < 3).double()))
    with pytest.raises(ValueError, match="limit must be a number"):
        dct2_filter_plan_radial(s, lambda t: t < 1, math.nan)
    with pytest.raises(ValueError, match="rho must be a real floating-point or integer"):
        dct2_filter_plan_radial(s > 0, lambda t: t, 0)


def test_half_precision_is_computed_in_float32() -> None:
    x = torch.randn(2, 6, 10).bfloat16()
    c = dct2(x)
    assert c.dtype == torch.bfloat16
    torch.testing.assert_close(c, dct2(x.float()).bfloat16(), rtol=0, atol=0)


def test_inverse_of_inference_mode_constants_still_trains() -> None:
    # Twiddles are cached; one first built under inference_mode must not break autograd later.
    with torch.inference_mode():
        dct2(torch.randn(1, 13, 11))
    x = torch.randn(1, 13, 11, requires_grad=True)
    dct2(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dct(torch.arange(4)), "floating-point"),
        (lambda: dct([1.0, 2.0]), "torch.Tensor"),  # type: ignore[arg-type]
        (lambda: dct(torch.randn(3, 4), dim=2), "dim must be in"),
        (lambda: dct2(torch.randn(4)), "at least 2"),
        (lambda: idct(torch.randn(3, dtype=torch.complex64)), "floating-point"),
        (lambda: dct2_filter(torch.randn(2, 4, 5), torch.ones(4, 4)), "spatial size"),
        (lambda: dct2_filter(torch.randn(2, 4, 5), torch.ones(3, 4, 5)), "broadcast"),
    ],
)
def test_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
