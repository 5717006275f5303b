"""Orthonormal DCT-II and its inverse (DCT-III) in PyTorch, via real FFTs.

The transforms follow Makhoul (1980): reorder the signal as
``v = [x0, x2, x4, ..., x5, x3, x1]``, take one real FFT of length ``N`` and
rotate each bin by ``exp(-i pi k / 2N)``. They work for any length (not only
powers of two), on any device, are differentiable, and equal
``scipy.fft.dct(x, type=2, norm="ortho")`` / ``idct`` up to float rounding.

Masking in the DCT domain without forming the coefficients is in
:mod:`dejavu.redaction.dct_filter`.

Half-precision inputs are computed in float32 (float64 stays float64) and
the result is cast back to the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dejavu.redaction._util import cached_constant, compute_dtype, no_autocast

__all__ = ["dct", "dct2", "idct", "idct2"]


def _check_real(x: object, name: str, min_ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x)!r}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a real floating-point tensor "
            f"(float16/bfloat16/float32/float64), got dtype {x.dtype}"
        )
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}"
        )
    return x


def _normalise_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-D tensor, got {dim}")
    return dim % ndim


@cached_constant
def _reorder(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Makhoul's permutation ``v = x[perm]`` and its inverse ``x = v[inv]``."""
    perm = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)]).to(device)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n, device=device)
    return perm, inv


@cached_constant
def _reorder2(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The 2-D permutation as flat indices into ``h * w`` (one gather instead of two)."""
    ph, _ = _reorder(h, torch.device("cpu"))
    pw, _ = _reorder(w, torch.device("cpu"))
    flat = (ph[:, None] * w + pw[None, :]).reshape(-1)
    inv = torch.empty_like(flat)
    inv[flat] = torch.arange(h * w)
    return flat.to(device), inv.to(device)


@cached_constant
def _twiddles(n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Forward and inverse bin factors for ``k = 0..n//2``, ortho scaling folded in."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    rot = torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    fwd = (rot * scale).to(device=device, dtype=cdtype)
    inv = (rot.conj() / scale).to(device=device, dtype=cdtype)
    return fwd, inv


def _along(t: Tensor, dim: int, ndim: int) -> Tensor:
    """View a 1-D tensor so that it broadcasts along ``dim`` of an ``ndim``-D tensor."""
    shape = [1] * ndim
    shape[dim] = t.shape[0]
    return t.view(shape)


def _permute(x: Tensor, d: int, perm: Tensor) -> Tensor:
    """``x.index_select(d, perm)``; along the last dim a gather is several times faster."""
    if d == x.ndim - 1 and x.ndim > 1:
        return torch.gather(x, d, perm.expand(x.shape))
    return x.index_select(d, perm)


def _dct(x: Tensor, d: int) -> Tensor:
    """DCT-II along dim ``d`` (non-negative) of a float32/float64 tensor."""
    n = x.shape[d]
    perm, _ = _reorder(n, x.device)
    fwd, _ = _twiddles(n, x.device, x.dtype)
    z = torch.fft.rfft(_permute(x, d, perm), dim=d) * _along(fwd, d, x.ndim)
    # Bins above n/2 are the mirror image: X[n - k] = -Im(z[k]).
    tail = z.imag.narrow(d, 1, (n - 1) // 2).flip(d).neg()
    return torch.cat([z.real, tail], dim=d)


def _idct(x: Tensor, d: int) -> Tensor:
    """DCT-III (inverse DCT-II) along dim ``d`` (non-negative) of a float32/float64 tensor."""
    n = x.shape[d]
    half = n // 2
    _, inv_perm = _reorder(n, x.device)
    _, inv = _twiddles(n, x.device, x.dtype)
    # FFT bin k holds X[k] - i X[n - k]; there is no X[n], so bin 0 is real.
    tail = x.narrow(d, n - half, half).flip(d)
    im = torch.cat([torch.zeros_like(x.narrow(d, 0, 1)), tail], d).neg()
    z = torch.complex(x.narrow(d, 0, half + 1), im) * _along(inv, d, x.ndim)
    return _permute(torch.fft.irfft(z, n=n, dim=d), d, inv_perm)


def dct(x: Tensor, dim: int = -1) -> Tensor:
    """Orthonormal DCT-II along one dimension.

    Args:
        x: real tensor of any shape (at least 1-D), any length along ``dim``.
        dim: the dimension to transform.

    Returns:
        Tensor of the shape and dtype of ``x``; equal to
        ``scipy.fft.dct(x, type=2, axis=dim, norm="ortho")``.

    Example:
        >>> x = torch.randn(2, 7)
        >>> torch.allclose(idct(dct(x)), x, atol=1e-6)
        True
    """
    _check_real(x, "x", 1)
    d = _normalise_dim(dim, x.ndim)
    with no_autocast(x.device):
        out = _dct(x.to(compute_dtype(x.dtype)), d)
    return out.to(x.dtype)


def idct(x: Tensor, dim: int = -1) -> Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III) along one dimension.

    Args:
        x: real tensor of DCT-II coefficients, any shape (at least 1-D).
        dim: the dimension to transform.

    Returns:
        Tensor of the shape and dtype of ``x``; equal to
        ``scipy.fft.idct(x, type=2, axis=dim, norm="ortho")``.

    Example:
        >>> c = dct(torch.arange(5.0))
        >>> idct(c).round()
        tensor([0., 1., 2., 3., 4.])
    """
    _check_real(x, "x", 1)
    d = _normalise_dim(dim, x.ndim)
    with no_autocast(x.device):
        out = _idct(x.to(compute_dtype(x.dtype)), d)
    return out.to(x.dtype)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions.

    Args:
        x: real tensor ``... x H x W``.

    Returns:
        ``... x H x W`` coefficients (index ``[u, v]``: ``u`` cycles over
        ``2H`` rows, ``v`` over ``2W`` columns); equal to
        ``scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")``.

    Example:
        >>> x = torch.randn(2, 3, 5, 6)
        >>> torch.allclose(idct2(dct2(x)), x, atol=1e-5)
        True
    """
    _check_real(x, "x", 2)
    with no_autocast(x.device):
        out = _dct(_dct(x.to(compute_dtype(x.dtype)), x.ndim - 1), x.ndim - 2)
    return out.to(x.dtype)


def idct2(x: Tensor) -> Tensor:
    """Inverse of :func:`dct2` over the last two dimensions.

    Args:
        x: real tensor ``... x H x W`` of DCT-II coefficients.

    Returns:
        ``... x H x W`` tensor; equal to
        ``scipy.fft.idctn(x, axes=(-2, -1), norm="ortho")``.

    Example:
        >>> c = torch.zeros(4, 4)
        >>> c[0, 0] = 4.0
        >>> idct2(c)  # the DC coefficient alone is a constant image
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.],
                [1., 1., 1., 1.],
                [1., 1., 1., 1.]])
    """
    _check_real(x, "x", 2)
    with no_autocast(x.device):
        out = _idct(_idct(x.to(compute_dtype(x.dtype)), x.ndim - 1), x.ndim - 2)
    return out.to(x.dtype)
