"""Masking in the 2-D DCT domain, ``idct2(dct2(x) * mask)``, with one rfft2 and one irfft2.

:func:`dct2_filter` never forms the DCT coefficients: an FFT bin of the
Makhoul-reordered input carries four DCT coefficients, and the filter only
does real work where the mask is not constant over those four (a box around
the low frequencies for radial masks); elsewhere it scales the bin. A mask
can be analysed once into a :class:`DCT2FilterPlan` (:func:`dct2_filter_plan`,
or :func:`dct2_filter_plan_radial` for masks that are a function of a radius,
as the spectral redactions' are).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from dejavu.redaction._util import compute_dtype, no_autocast
from dejavu.redaction.dct import _check_real, _reorder2

__all__ = ["DCT2FilterPlan", "dct2_filter", "dct2_filter_plan", "dct2_filter_plan_radial"]


@dataclass(frozen=True)
class DCT2FilterPlan:
    """A DCT-domain mask prepared for :func:`dct2_filter`.

    Build it with :func:`dct2_filter_plan` (any mask) or
    :func:`dct2_filter_plan_radial` (a mask that is a function of a radius);
    it holds the per-bin coefficients of the update (see :func:`dct2_filter`)
    so that a fixed mask is analysed once and reused on every batch.
    """

    size: tuple[int, int]
    lead: tuple[int, ...]  # leading dims of the mask (broadcast against those of x)
    scale: Tensor  # the mask outside the box, broadcastable to ``lead x H x (W // 2 + 1)``
    outside: str  # outside the box the spectrum is kept ("keep"), zeroed ("zero") or scaled
    rows: Tensor | None = None  # rows of the box (None: no bin needs the full update)
    neg_rows: Tensor | None = None  # position of row -k1 within ``rows``
    cols: int = 0  # the box is ``rows x [0, cols)``
    alpha: Tensor | None = None
    beta_c: Tensor | None = None
    gamma: Tensor | None = None
    delta_c: Tensor | None = None


def _box_rows(h: int, u: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Rows with folded index ``min(k1, h - k1) < u`` and, for each, the position of ``-k1``."""
    k1 = torch.arange(h, device=device)
    rows = k1[torch.minimum(k1, h - k1) < u]  # [0, u) and (h - u, h): closed under k1 -> -k1
    pos = torch.empty_like(k1)
    pos[rows] = torch.arange(rows.numel(), device=device)
    return rows, pos[(h - rows) % h]


def _outside(values: Tensor) -> str:
    if bool((values == 1).all()):
        return "keep"
    return "zero" if bool((values == 0).all()) else "scale"


def _plan(
    size: tuple[int, int],
    scale: Tensor,
    outside: str,
    rows: Tensor,
    neg_rows: Tensor,
    cols: int,
    masks: tuple[Tensor, Tensor, Tensor, Tensor],
) -> DCT2FilterPlan:
    """Coefficients of the box from the mask at its four coefficients per bin.

    ``masks`` are the mask at ``(k1, k2)``, ``(H-k1, k2)``, ``(k1, W-k2)`` and
    ``(H-k1, W-k2)`` over the box, zero where the index is ``H`` or ``W``.
    """
    H, W = size
    b00, b10, b01, b11 = masks
    dev = b00.device
    real = torch.float64
    a = torch.polar(
        torch.ones(rows.numel(), 1, dtype=real, device=dev),
        -math.pi * rows[:, None].to(real) / (2 * H),
    )
    k2 = torch.arange(cols, device=dev, dtype=real)
    b = torch.polar(torch.ones(1, cols, dtype=real, device=dev), -math.pi * k2[None] / (2 * W))
    cdtype = torch.complex128 if b00.dtype == torch.float64 else torch.complex64
    # q' = alpha q + beta conj(q) + gamma p + delta conj(p) (see dct2_filter). alpha is
    # real but stored complex so that applying it needs no per-call cast; conj(beta) and
    # conj(delta) are stored because the in-place update uses them. The twiddles are cast
    # first so that per-sample masks are combined in the compute dtype.
    ab2, a2, b2 = (t.to(cdtype) for t in ((a * b) ** 2, a.conj() ** 2, b**2))
    s, t, u, v = b00 + b11, b01 + b10, b00 - b11, b01 - b10
    alpha = ((s + t) / 4).to(cdtype)
    beta_c = (s - t) / 4 * ab2
    gamma = (u + v) / 4 * a2
    delta_c = (u - v) / 4 * b2
    lead = tuple(torch.broadcast_shapes(*(m.shape[:-2] for m in masks), scale.shape[:-2]))
    return DCT2FilterPlan(
        size, lead, scale, outside, rows, neg_rows, cols, alpha, beta_c, gamma, delta_c
    )


def dct2_filter_plan(mask: Tensor) -> DCT2FilterPlan:
    """Analyse a DCT-domain mask once for repeated use with :func:`dct2_filter`.

    Args:
        mask: real tensor ``... x H x W`` (computed in float64 if it is float64,
            float32 otherwise), on the device the filter will run on.

    Returns:
        The plan; ``dct2_filter(x, plan)`` equals ``dct2_filter(x, mask)``.

    Example:
        >>> mask = (torch.rand(16, 16) < 0.5).float()
        >>> plan = dct2_filter_plan(mask)
        >>> x = torch.randn(2, 3, 16, 16)
        >>> torch.allclose(dct2_filter(x, plan), dct2_filter(x, mask))
        True
    """
    _check_real(mask, "mask", 2)
    mask = mask.to(compute_dtype(mask.dtype))
    H, W = mask.shape[-2:]
    Wh = W // 2 + 1
    dev = mask.device
    k1 = torch.arange(H, device=dev)
    k2 = torch.arange(Wh, device=dev)
    # An FFT bin (k1, k2) carries the DCT coefficients (k1 | H-k1, k2 | W-k2); index H (W)
    # does not exist and reads the zero padding.
    padded = F.pad(mask, (0, 1, 0, 1))
    m00 = mask[..., :Wh]
    m10 = padded[..., H - k1, :Wh]
    m01 = padded[..., :H, W - k2]
    m11 = padded[..., H - k1, :][..., W - k2]
    has_row = (k1 > 0)[:, None]
    has_col = (k2 > 0)[None, :]
    mixed = ((m00 != m01) & has_col) | ((m00 != m10) & has_row) | ((m00 != m11) & has_row & has_col)
    mixed = mixed.reshape(-1, H, Wh).any(0)
    fold = torch.minimum(k1, H - k1)
    u_max, v_max = (
        torch.stack(
            [torch.where(mixed.any(1), fold, -1).max(), torch.where(mixed.any(0), k2, -1).max()]
        )
        .cpu()
        .tolist()
    )
    if u_max < 0:
        # The mask is constant on the four coefficients of every bin: a plain scaling.
        return DCT2FilterPlan((H, W), tuple(mask.shape[:-2]), m00, _outside(m00.detach()))
    rows, neg_rows = _box_rows(H, u_max + 1, dev)
    cols = v_max + 1
    with torch.no_grad():
        rest = m00.detach().clone()
        rest[..., rows, :cols] = 1.0
        outside = "keep" if bool((rest == 1).all()) else None
        if outside is None:
            rest[..., rows, :cols] = 0.0
            outside = "zero" if bool((rest == 0).all()) else "scale"
    masks = tuple(m[..., rows, :cols] for m in (m00, m10, m01, m11))
    return _plan((H, W), m00, outside, rows, neg_rows, cols, masks)  # type: ignore[arg-type]


def _check_radius(rho: object) -> Tensor:
    if not isinstance(rho, Tensor):
        raise ValueError(f"rho must be a torch.Tensor, got {type(rho)!r}")
    if rho.dtype == torch.bool or rho.is_complex():
        raise ValueError(
            f"rho must be a real floating-point or integer tensor, got dtype {rho.dtype}"
        )
    if rho.ndim != 2:
        raise ValueError(f"rho must be H x W, got shape {tuple(rho.shape)}")
    return rho


def _integer_limit(limit: float, dtype: torch.dtype) -> int:
    """``floor(limit)`` clamped to ``dtype``: ``s <= limit`` exactly for integers ``s``."""
    if isinstance(limit, bool) or not isinstance(limit, Real) or limit != limit:
        raise ValueError(f"limit must be a number (not NaN), got {limit!r}")
    info = torch.iinfo(dtype)
    if limit in (math.inf, -math.inf):
        return info.max if limit > 0 else info.min
    return min(max(math.floor(limit), info.min), info.max)


def dct2_filter_plan_radial(
    rho: Tensor,
    keep: Callable[[Tensor], Tensor],
    limit: float,
    dtype: torch.dtype = torch.float32,
) -> DCT2FilterPlan:
    """Plan a mask that is a function of a radius, without building the full mask.

    The mask is ``keep(rho)``, and ``keep`` must be constant (per leading
    index) for ``rho > limit``: then every FFT bin whose four DCT
    coefficients all have ``rho > limit`` is a plain scaling, and only the
    box around the others is evaluated. This is what makes per-sample
    cut-offs cheap.

    ``rho`` may be any increasing function of the radius, in particular the
    exact integer squared radius of
    :func:`dejavu.redaction.spectral_squared_radius` (what the spectral
    redactions use, so that no comparison is rounded); an integer ``rho``
    stays integer throughout and is compared with ``floor(limit)`` exactly.

    Args:
        rho: ``H x W`` radius of each DCT coefficient, floating point (e.g.
            :func:`dejavu.redaction.spectral_radius`) or integer (e.g. the
            squared radius ``s``), on the target device.
        keep: maps a radius tensor ``h x w`` to a mask ``... x h x w`` (bool or
            float); it is called on box-sized grids and on a ``1 x 1`` grid.
        limit: ``keep`` is constant for ``rho > limit`` (in the units of ``rho``).
        dtype: float32 or float64, the dtype the filter will run in.

    Returns:
        The plan; ``dct2_filter(x, plan)`` equals ``dct2_filter(x, keep(rho))``.

    Example:
        >>> from dejavu.redaction import spectral_edge_threshold, spectral_squared_radius
        >>> s, _ = spectral_squared_radius(16, 24)  # exact integers, rho^2 = s / D
        >>> t = [spectral_edge_threshold(c, 16, 24) for c in (0.1, 0.3)]  # rho < c: s < t
        >>> cut = torch.tensor(t).view(2, 1, 1, 1)
        >>> plan = dct2_filter_plan_radial(s, lambda r: r < cut, limit=max(t))
        >>> x = torch.randn(2, 3, 16, 24)
        >>> torch.allclose(dct2_filter(x, plan), dct2_filter(x, (s < cut).float()), atol=1e-6)
        True
    """
    _check_radius(rho)
    H, W = rho.shape
    Wh = W // 2 + 1
    dev = rho.device
    if rho.is_floating_point():
        absent: float | int = math.inf
        bound: float | int = limit
    else:
        # A sentinel above every value, of rho's own dtype: an int64 radius never turns float.
        absent = torch.iinfo(rho.dtype).max
        bound = _integer_limit(limit, rho.dtype)
    k1 = torch.arange(H, device=dev)
    k2 = torch.arange(Wh, device=dev)
    rows_all, cols_all = (H - k1) % H, (W - k2) % W
    # The smallest radius among the four coefficients of each bin (index H or W: absent).
    group = torch.stack(
        [
            rho[:, :Wh],
            torch.where((k1 > 0)[:, None], rho[rows_all, :Wh], absent),
            torch.where((k2 > 0)[None, :], rho[:, cols_all], absent),
            torch.where((k1 > 0)[:, None] & (k2 > 0)[None, :], rho[rows_all][:, cols_all], absent),
        ]
    ).amin(0)
    inside = group <= bound
    fold = torch.minimum(k1, H - k1)
    u_max, v_max, has_outside = (
        torch.stack(
            [
                torch.where(inside.any(1), fold, -1).max(),
                torch.where(inside.any(0), k2, -1).max(),
                (~inside).any().long(),
            ]
        )
        .cpu()
        .tolist()
    )
    cd = compute_dtype(dtype)
    if has_outside:
        beyond = keep(rho.amax().view(1, 1)).to(cd)
        outside = _outside(beyond)
    else:
        beyond, outside = torch.ones(1, 1, dtype=cd, device=dev), "keep"
    if u_max < 0:
        return DCT2FilterPlan((H, W), tuple(beyond.shape[:-2]), beyond, outside)
    rows, neg_rows = _box_rows(H, u_max + 1, dev)
    cols = v_max + 1
    has_row = (rows > 0)[:, None]
    has_col = (k2[:cols] > 0)[None, :]
    neg_r, neg_c = (H - rows) % H, (W - k2[:cols]) % W
    masks = (
        keep(rho[rows][:, :cols]).to(cd),
        (keep(rho[neg_r][:, :cols]) * has_row).to(cd),
        (keep(rho[rows][:, neg_c]) * has_col).to(cd),
        (keep(rho[neg_r][:, neg_c]) * (has_row & has_col)).to(cd),
    )
    return _plan((H, W), beyond, outside, rows, neg_rows, cols, masks)


def dct2_filter(x: Tensor, mask: Tensor | DCT2FilterPlan) -> Tensor:
    """Mask ``x`` in the 2-D DCT domain: ``idct2(dct2(x) * mask)``, fast.

    One ``rfft2`` and one ``irfft2`` of the Makhoul-reordered input do the
    work. With ``q = V[k1, k2]``, ``p = V[-k1, k2]`` (``V`` the rfft2) and
    twiddles ``a = exp(-i pi k1 / 2H)``, ``b = exp(-i pi k2 / 2W)``, the four
    DCT coefficients carried by bin ``(k1, k2)`` are ``Re S / 2, -Im S / 2``
    (columns ``k2, W-k2``) and ``-Im T / 2, -Re T / 2`` (row ``H-k1``), with
    ``S = ab q + conj(a) b p`` and ``T = ab q - conj(a) b p``. Masking them
    and inverting gives ``q' = alpha q + beta conj(q) + gamma p + delta conj(p)``.
    Where the mask has one value ``m`` over the four coefficients this is
    just ``q' = m q``; only the other bins (a box around the low frequencies
    for radial masks) get the full update.

    Args:
        x: real tensor ``... x H x W``.
        mask: real tensor ``... x H x W`` (any values, not only 0/1) whose
            leading dimensions broadcast to those of ``x``, or a plan from
            :func:`dct2_filter_plan` (to analyse a fixed mask only once).

    Returns:
        Tensor of the shape and dtype of ``x``. Differentiable in ``x`` (and
        in ``mask`` when it is a tensor that requires grad).

    Example:
        >>> from dejavu.redaction import dct2, idct2
        >>> x = torch.randn(2, 3, 8, 10)
        >>> mask = torch.zeros(8, 10)
        >>> mask[:3, :4] = 1.0
        >>> torch.allclose(dct2_filter(x, mask), idct2(dct2(x) * mask), atol=1e-5)
        True
    """
    _check_real(x, "x", 2)
    H, W = x.shape[-2:]
    if isinstance(mask, DCT2FilterPlan):
        plan, shape = mask, (*mask.lead, *mask.size)
    else:
        _check_real(mask, "mask", 2)
        plan, shape = None, tuple(mask.shape)
    if tuple(shape[-2:]) != (H, W):
        raise ValueError(
            f"mask must end in the spatial size of x ({H} x {W}), got shape {tuple(shape)}"
        )
    try:
        lead = torch.broadcast_shapes(shape[:-2], x.shape[:-2])
    except RuntimeError:
        lead = None
    if lead != x.shape[:-2]:
        raise ValueError(
            f"mask leading dims {tuple(shape[:-2])} must broadcast to those of x "
            f"{tuple(x.shape[:-2])}"
        )
    cd = compute_dtype(x.dtype)
    with no_autocast(x.device):
        if plan is None:
            plan = dct2_filter_plan(mask.to(device=x.device, dtype=cd))  # type: ignore[union-attr]
        flat, inv = _reorder2(H, W, x.device)
        rows = x.to(cd).reshape(-1, H * W)
        v = torch.gather(rows, 1, flat.expand(rows.shape[0], -1)).view(x.shape)
        spec = _apply_plan(torch.fft.rfft2(v), plan)
        y = torch.fft.irfft2(spec, s=(H, W)).reshape(-1, H * W)
        out = torch.gather(y, 1, inv.expand(y.shape[0], -1)).view(x.shape)
    return out.to(x.dtype)


def _apply_plan(spec: Tensor, plan: DCT2FilterPlan) -> Tensor:
    """Map the rfft2 of the reordered input to that of the filtered output."""
    dev, cdtype = spec.device, spec.dtype
    real = spec.real.dtype
    scale = plan.scale.to(device=dev, dtype=real)
    coefficients = (plan.scale, plan.alpha, plan.beta_c, plan.gamma, plan.delta_c)
    grad_mask = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in coefficients
    )
    box = None
    if plan.rows is not None:
        rows = plan.rows.to(dev)
        alpha, beta_c, gamma, delta_c = (
            t.to(device=dev, dtype=cdtype)  # type: ignore[union-attr]
            for t in (plan.alpha, plan.beta_c, plan.gamma, plan.delta_c)
        )
        q = spec[..., : plan.cols].index_select(-2, rows)
        p = q.index_select(-2, plan.neg_rows.to(dev))  # type: ignore[union-attr]
        if grad_mask:
            box = q * alpha + p * gamma + (q * beta_c + p * delta_c).conj()
        else:
            # The same sum updated in place, which saves four box-sized temporaries.
            box = q * alpha
            box.addcmul_(p, gamma)
            box.add_(q.mul_(beta_c).addcmul_(p, delta_c).conj_physical_())
    # spec is our own temporary, so it is updated in place unless the mask needs its grad.
    if grad_mask:
        out = spec * scale
    elif plan.outside == "keep":
        out = spec
    elif plan.outside == "zero":
        out = spec.zero_()
    else:
        out = spec.mul_(scale)
    if box is not None:
        out[..., rows, : plan.cols] = box
    return out
