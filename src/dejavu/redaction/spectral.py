"""Spectral redaction: remove a set of spatial frequencies from every channel.

Definitions (this project's; the DejaVu paper gives no exact numbers):

* Basis ``"dct"`` (default): the orthonormal 2-D DCT-II of each channel.
  Coefficient ``(u, v)``, ``0 <= u < H``, ``0 <= v < W``, has normalised
  radius ``rho = sqrt((u / H)^2 + (v / W)^2) / sqrt(2)``; ``u / H`` is the
  frequency as a fraction of the Nyquist frequency, so ``rho`` lies in
  ``[0, 1)``.
* Basis ``"fft"``: the 2-D DFT. Bin ``(u, v)`` has the centred frequency
  ``u' = min(u, H - u)``, ``v' = min(v, W - v)`` and
  ``rho = sqrt((2u' / H)^2 + (2v' / W)^2) / sqrt(2)`` (again a fraction of
  Nyquist, in ``[0, 1]``; 1 only at the Nyquist corner of even sizes). The
  mask depends on ``|frequency|`` only, so it is symmetric and the output
  is real; it is applied with ``rfft2``/``irfft2``.
* A band ``[a, b)`` is the set ``a <= rho < b``; an upper edge ``b >= 1``
  means "no upper limit" (it also takes in ``rho == 1``), so a low-pass
  with cut-off 1 is exactly the identity.
* ``lowpass(c)`` keeps ``[0, c)``; ``highpass(c)`` keeps the rest;
  ``bandpass(a, b)`` keeps ``[a, b)``; ``bandstop(a, b)`` keeps the rest.
* DC (``rho = 0``): ``highpass`` and ``bandpass`` also keep the DC
  coefficient (the mean colour of each channel) when ``keep_dc=True``, the
  default; ``lowpass`` and ``bandstop`` keep DC exactly when it is outside
  what they remove (``c > 0``; ``a > 0`` or an empty band). Hence
  ``lowpass(c) + highpass(c, keep_dc=False) == image`` and
  ``bandpass(a, b, keep_dc=False) + bandstop(a, b) == image`` exactly, for
  every ``c`` and band; with the default ``keep_dc=True`` the sums count the
  DC term twice unless it lies in the removed set (``a == 0 < b``).

Membership is decided exactly, in integers, never by comparing a rounded
``rho`` with an edge (our rule; frequencies lying exactly on an edge are
common, e.g. ``rho = 1/4`` at DCT coefficient ``(4, 6)`` of a 16 x 24
image, and a float radius would put them on either side depending on the
CPU's vector rounding or on compilation):

* ``rho^2 = s / D`` with the integer squared radius
  ``s = (u W)^2 + (v H)^2`` (dct) or ``s = (2u' W)^2 + (2v' H)^2`` (fft)
  and ``D = 2 H^2 W^2`` (:func:`spectral_squared_radius`).
* An edge ``e`` is the exact decimal fraction Python prints for it,
  ``Fraction(repr(float(e)))`` (so ``0.05`` is exactly ``1/20``, not the
  nearest binary float), and ``rho >= e`` exactly when
  ``s >= ceil(e^2 D)`` (:func:`spectral_edge_threshold`); an upper edge
  ``>= 1`` has the threshold ``D + 1``, above every ``s``. The band
  ``[a, b)`` is ``t(a) <= s < t(b)`` and DC is ``s == 0``.
* The integers are int64, exact for ``H * W < 2**31`` (larger images are
  an error). The masks are therefore the same for every input dtype, on
  every device and CPU, eager or under ``torch.compile``.

Cut-offs and band edges accept a number or a ``(lo, hi)`` range drawn per
sample (the drawn float64 values are then taken as above). The transform
runs in float32 (float64 for float64 input) with autocast off, and the
result is cast back to the input dtype.

Example:
    >>> s, d = spectral_squared_radius(16, 24)
    >>> int(s[4, 6]), d, spectral_edge_threshold(0.25, 16, 24)  # s / d == (1/4)^2
    (18432, 294912, 18432)
    >>> bool(spectral_keep_mask(16, 24, "lowpass", cutoff=0.25)[4, 6])  # rho == 0.25: not < 0.25
    False
    >>> round(spectral_radius(16, 24)[4, 6].item(), 4)
    0.25
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor

from dejavu._validation import as_range, check_choice, check_image, check_in_range, is_pair_like
from dejavu.redaction._params import draw_device, sample_uniform
from dejavu.redaction._util import cached_constant, compute_dtype, no_autocast
from dejavu.redaction.dct_filter import DCT2FilterPlan, dct2_filter, dct2_filter_plan_radial
from dejavu.redaction.factory import register_redaction
from dejavu.redaction.types import Redacted, Redaction

__all__ = [
    "DEFAULT_BAND",
    "DEFAULT_CUTOFF",
    "MAX_SPECTRAL_AREA",
    "SPECTRAL_BASES",
    "SPECTRAL_MODES",
    "BandpassRedaction",
    "BandstopRedaction",
    "HighpassRedaction",
    "LowpassRedaction",
    "SpectralRedaction",
    "spectral_edge_threshold",
    "spectral_keep_mask",
    "spectral_radius",
    "spectral_redaction",
    "spectral_squared_radius",
]

SPECTRAL_MODES = ("lowpass", "highpass", "bandpass", "bandstop")
SPECTRAL_BASES = ("dct", "fft")
#: Default cut-offs (ours, not the paper's).
DEFAULT_CUTOFF = {"lowpass": 0.25, "highpass": 0.05}
#: Default band edges for bandpass/bandstop (ours, not the paper's).
DEFAULT_BAND = (0.05, 0.25)
#: ``H * W`` must be below this: then ``D = 2 (H W)^2`` and ``D + 1`` fit in int64.
MAX_SPECTRAL_AREA = 2**31

Range = float | Sequence[float]
Band = Sequence[Range]


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _denominator(h: int, w: int) -> int:
    """``D = 2 H^2 W^2`` (``rho^2 = s / D``), checked to fit in int64 with room for ``D + 1``."""
    if h * w >= MAX_SPECTRAL_AREA:
        raise ValueError(
            "spectral redaction decides band membership exactly in int64 and needs "
            f"H * W < 2**31, got {h} x {w}"
        )
    return 2 * h * h * w * w


@cached_constant
def _squared(h: int, w: int, basis: str, device: torch.device, half: bool) -> Tensor:
    """The integer squared radius ``s`` (int64) of every coefficient (``half``: rfft2 grid)."""
    u = torch.arange(h, dtype=torch.int64)
    v = torch.arange(w // 2 + 1 if half else w, dtype=torch.int64)
    if basis == "dct":
        a, b = u * w, v * h
    else:
        a = torch.minimum(u, h - u) * (2 * w)
        b = torch.minimum(v, w - v) * (2 * h)
    return ((a * a)[:, None] + (b * b)[None, :]).to(device)


def _threshold(edge: float, d: int, upper: bool) -> int:
    """``ceil(e^2 d)``, ``e`` the decimal fraction of ``edge``; ``d + 1`` for an upper edge >= 1."""
    e = Fraction(repr(float(edge)))
    if upper and e >= 1:
        return d + 1
    return math.ceil(e * e * d)


def spectral_squared_radius(
    h: int, w: int, basis: str = "dct", device: torch.device | str | None = None
) -> tuple[Tensor, int]:
    """The exact integer squared radius ``s`` of every frequency and its scale ``D``.

    ``rho^2 = s / D`` exactly, with ``s = (u W)^2 + (v H)^2`` (dct) or
    ``s = (2u' W)^2 + (2v' H)^2`` (fft, ``u' = min(u, H - u)``,
    ``v' = min(v, W - v)``) and ``D = 2 H^2 W^2``. Band membership is decided
    on ``s`` (see the module docstring and :func:`spectral_edge_threshold`).

    Args:
        h: image height.
        w: image width (``h * w < 2**31``).
        basis: ``"dct"`` or ``"fft"``.
        device: device of ``s`` (default CPU).

    Returns:
        ``(s, D)``: an int64 ``h x w`` tensor and a Python int.

    Example:
        >>> s, d = spectral_squared_radius(2, 2, basis="fft")
        >>> s.tolist(), d
        ([[0, 16], [16, 32]], 32)
    """
    _check_size(h, "h")
    _check_size(w, "w")
    check_choice(basis, "basis", SPECTRAL_BASES)
    d = _denominator(h, w)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _squared(h, w, basis, dev, False).clone(), d  # a copy: the cached one is shared


def spectral_edge_threshold(edge: float, h: int, w: int, upper: bool = False) -> int:
    """The integer ``t`` with ``rho >= edge`` exactly when ``s >= t`` on an ``h x w`` grid.

    ``t = ceil(e^2 D)`` where ``e = Fraction(repr(float(edge)))`` is the
    decimal the edge is written as and ``D = 2 h^2 w^2`` (the same for both
    bases). A frequency is in the band ``[a, b)`` exactly when
    ``spectral_edge_threshold(a, h, w) <= s < spectral_edge_threshold(b, h, w, upper=True)``.

    Args:
        edge: a cut-off or band edge in ``[0, 1]``.
        h: image height.
        w: image width.
        upper: ``edge`` is an upper band edge (a cut-off is the upper edge of
            ``[0, c)``): then an edge ``>= 1`` means no upper limit and gives
            ``D + 1``, which is above every ``s``.

    Returns:
        The threshold, a Python int.

    Example:
        >>> spectral_edge_threshold(0.25, 4, 4), spectral_edge_threshold(0.05, 4, 4)  # D = 512
        (32, 2)
        >>> spectral_edge_threshold(1.0, 4, 4), spectral_edge_threshold(1.0, 4, 4, upper=True)
        (512, 513)
    """
    _check_size(h, "h")
    _check_size(w, "w")
    check_in_range(edge, "edge", 0.0, 1.0)
    if not isinstance(upper, bool):
        raise ValueError(f"upper must be True or False, got {upper!r}")
    return _threshold(edge, _denominator(h, w), upper)


def spectral_radius(
    h: int,
    w: int,
    device: torch.device | str | None = None,
    basis: str = "dct",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Normalised radius ``rho`` of every 2-D frequency (see the module docstring).

    ``rho = sqrt(s / D)`` computed in float64 from the exact integers of
    :func:`spectral_squared_radius` (to within an ulp or so: torch's
    vectorised ``sqrt`` is not always correctly rounded). It is for plots and
    inspection: band membership is decided on ``s`` exactly, never on this
    rounded value.

    Args:
        h: image height.
        w: image width.
        device: device of the result (default CPU).
        basis: ``"dct"`` (coefficient ``[u, v]`` of :func:`dct2`) or ``"fft"``
            (bin ``[u, v]`` of ``torch.fft.fft2``).
        dtype: floating dtype of the result.

    Returns:
        ``h x w`` tensor with values in ``[0, 1]``.

    Example:
        >>> spectral_radius(2, 2)
        tensor([[0.0000, 0.3536],
                [0.3536, 0.5000]], dtype=torch.float64)
        >>> spectral_radius(2, 2, basis="fft")[1, 1].item()  # s == D: exactly 1
        1.0
    """
    s, d = spectral_squared_radius(h, w, basis, device)
    s64 = s.to(torch.float64)  # exact below 2**53
    # An element-wise divisor: CUDA divides by a Python scalar by multiplying with its
    # rounded reciprocal, which is not correctly rounded (s == D could give 0.9999999999999999).
    return (s64 / torch.full_like(s64, d)).sqrt().to(dtype)


def _parse_edges(
    mode: str, cutoff: Range | None, band: Band | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The ``(lo, hi)`` ranges of the band's lower and upper edges for ``mode``."""
    if mode in ("lowpass", "highpass"):
        if band is not None:
            raise ValueError(f"band is not used by mode {mode!r} (give cutoff), got band={band!r}")
        c = DEFAULT_CUTOFF[mode] if cutoff is None else cutoff
        return (0.0, 0.0), as_range(c, "cutoff", 0.0, 1.0)
    if cutoff is not None:
        raise ValueError(
            f"cutoff is not used by mode {mode!r} (give band=(low, high)), got cutoff={cutoff!r}"
        )
    band = DEFAULT_BAND if band is None else band
    if not is_pair_like(band) or len(band) != 2:
        raise ValueError(
            "band must be a (low, high) pair whose edges are numbers in [0, 1] or "
            f"(lo, hi) ranges, got {band!r}"
        )
    low = as_range(band[0], "band low edge", 0.0, 1.0)
    high = as_range(band[1], "band high edge", 0.0, 1.0)
    if low[1] > high[0]:
        raise ValueError(
            "band must have low edge <= high edge for every sample (the largest low edge "
            f"{low[1]} exceeds the smallest high edge {high[0]}), got band={band!r}"
        )
    return low, high


def _keep_mask(s: Tensor, mode: str, low: Tensor, high: Tensor, keep_dc: bool) -> Tensor:
    """Boolean mask ``N x 1 x *s.shape`` of the kept frequencies (``N``: 1 or the batch).

    ``s`` is the integer squared radius and ``low``/``high`` the int64
    thresholds of the edges: the band is ``low <= s < high``, DC is ``s == 0``.
    """
    lo = low.view(-1, 1, 1, 1)
    hi = high.view(-1, 1, 1, 1)
    in_band = (s >= lo) & (s < hi)
    keep = in_band if mode in ("lowpass", "bandpass") else ~in_band
    if keep_dc and mode in ("highpass", "bandpass"):
        keep = keep | (s == 0)  # s is 0 at DC only (in both bases)
    return keep


def _filter(
    h: int,
    w: int,
    mode: str,
    low: list[int],
    high: list[int],
    keep_dc: bool,
    basis: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | DCT2FilterPlan:
    """The DCT plan (dct basis) or the rfft2-grid mask (fft basis) for these thresholds."""
    s = _squared(h, w, basis, device, basis == "fft")
    lo = torch.tensor(low, dtype=torch.int64, device=device)
    hi = torch.tensor(high, dtype=torch.int64, device=device)
    if basis == "fft":
        return _keep_mask(s, mode, lo, hi, keep_dc).to(dtype)
    # The mask is constant once s reaches every finite threshold and is not DC (an
    # upper threshold D + 1 is no limit): constant for s > limit.
    d = _denominator(h, w)
    limit = max([t for t in (*low, *high) if t <= d], default=0) - 1
    return dct2_filter_plan_radial(
        s, lambda r: _keep_mask(r, mode, lo, hi, keep_dc), max(limit, 0), dtype
    )


@cached_constant(maxsize=16)
def _fixed_filter(
    h: int,
    w: int,
    mode: str,
    low: float,
    high: float,
    keep_dc: bool,
    basis: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | DCT2FilterPlan:
    """The filter of fixed edges, analysed once per size, device and dtype."""
    d = _denominator(h, w)
    thresholds = [_threshold(low, d, False)], [_threshold(high, d, True)]
    return _filter(h, w, mode, *thresholds, keep_dc, basis, device, dtype)


def spectral_keep_mask(
    h: int,
    w: int,
    mode: str,
    cutoff: float | None = None,
    band: Sequence[float] | None = None,
    basis: str = "dct",
    keep_dc: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """The frequencies :func:`spectral_redaction` keeps, for fixed edges.

    Args:
        h: image height.
        w: image width.
        mode: ``"lowpass"``, ``"highpass"``, ``"bandpass"`` or ``"bandstop"``.
        cutoff: low/high-pass cut-off, a number (default: the mode's).
        band: band-pass/stop ``(low, high)`` edges, numbers (default ``(0.05, 0.25)``).
        basis: ``"dct"`` (coefficient ``[u, v]`` of :func:`dct2`) or ``"fft"``
            (bin ``[u, v]`` of ``torch.fft.fft2``).
        keep_dc: as in :func:`spectral_redaction`.
        device: device of the result (default CPU).

    Returns:
        Boolean ``h x w`` tensor, True where the frequency is kept.

    Example:
        >>> spectral_keep_mask(4, 4, "lowpass", cutoff=0.25).int()  # rho[1, 1] == 0.25 exactly
        tensor([[1, 1, 0, 0],
                [1, 0, 0, 0],
                [0, 0, 0, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    _check_size(h, "h")
    _check_size(w, "w")
    check_choice(mode, "mode", SPECTRAL_MODES)
    check_choice(basis, "basis", SPECTRAL_BASES)
    if not isinstance(keep_dc, bool):
        raise ValueError(f"keep_dc must be True or False, got {keep_dc!r}")
    (a_lo, a_hi), (b_lo, b_hi) = _parse_edges(mode, cutoff, band)
    if a_lo != a_hi or b_lo != b_hi:
        raise ValueError(
            f"spectral_keep_mask needs fixed edges (numbers), got cutoff={cutoff!r}, band={band!r}"
        )
    d = _denominator(h, w)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    lo = torch.tensor([_threshold(a_lo, d, False)], dtype=torch.int64, device=dev)
    hi = torch.tensor([_threshold(b_lo, d, True)], dtype=torch.int64, device=dev)
    return _keep_mask(_squared(h, w, basis, dev, False), mode, lo, hi, keep_dc)[0, 0]


def spectral_redaction(
    image: Tensor,
    mode: str,
    cutoff: Range | None = None,
    band: Band | None = None,
    basis: str = "dct",
    keep_dc: bool = True,
    generator: torch.Generator | None = None,
) -> Redacted:
    """Remove a set of spatial frequencies from every channel of ``image``.

    Args:
        image: ``B x C x H x W`` floating-point batch (any size, any device).
        mode: ``"lowpass"``, ``"highpass"``, ``"bandpass"`` or ``"bandstop"``.
        cutoff: for low/high-pass, the cut-off in ``[0, 1]`` or a ``(lo, hi)``
            range drawn per sample (default: 0.25 low-pass, 0.05 high-pass;
            our choices).
        band: for band-pass/stop, ``(low, high)`` with ``low <= high``; each
            edge is a number in ``[0, 1]`` or a ``(lo, hi)`` range drawn per
            sample, and every low edge must be <= every high edge (default
            ``(0.05, 0.25)``; ours).
        basis: ``"dct"`` (orthonormal DCT-II) or ``"fft"``.
        keep_dc: high-pass and band-pass also keep the DC term (mean colour);
            ignored by low-pass and band-stop, which keep DC unless they remove it.
        generator: generator for the per-sample draws (``None``: global RNG).

    Returns:
        :class:`Redacted` with the filtered image (input dtype) and ``keep=None``.

    Example:
        >>> x = torch.randn(2, 3, 32, 48)
        >>> torch.allclose(spectral_redaction(x, "lowpass", cutoff=1.0).image, x, atol=1e-5)
        True
        >>> spectral_redaction(x, "bandstop", band=((0.05, 0.1), (0.2, 0.3))).keep is None
        True
    """
    check_image(image)
    check_choice(mode, "mode", SPECTRAL_MODES)
    check_choice(basis, "basis", SPECTRAL_BASES)
    if not isinstance(keep_dc, bool):
        raise ValueError(f"keep_dc must be True or False, got {keep_dc!r}")
    (a_lo, a_hi), (b_lo, b_hi) = _parse_edges(mode, cutoff, band)
    B, _, H, W = image.shape
    d = _denominator(H, W)
    cd = compute_dtype(image.dtype)
    filt: Tensor | DCT2FilterPlan
    if a_lo == a_hi and b_lo == b_hi:
        filt = _fixed_filter(H, W, mode, a_lo, b_lo, keep_dc, basis, image.device, cd)
    else:
        dev = draw_device(image, generator)
        low = sample_uniform(a_lo, a_hi, B if a_lo < a_hi else 1, generator, dev)
        high = sample_uniform(b_lo, b_hi, B if b_lo < b_hi else 1, generator, dev)
        # Each drawn float64 edge is taken exactly as the decimal it prints as.
        lo_t = [_threshold(e, d, False) for e in low.tolist()]
        hi_t = [_threshold(e, d, True) for e in high.tolist()]
        filt = _filter(H, W, mode, lo_t, hi_t, keep_dc, basis, image.device, cd)
    if basis == "dct":
        out = dct2_filter(image, filt)
    else:
        assert isinstance(filt, Tensor)
        with no_autocast(image.device):
            spec = torch.fft.rfft2(image.to(cd)) * filt
            out = torch.fft.irfft2(spec, s=(H, W)).to(image.dtype)
    return Redacted(out, None)


class SpectralRedaction(Redaction):
    """Module form of :func:`spectral_redaction` for any ``mode``.

    Args:
        mode: ``"lowpass"``, ``"highpass"``, ``"bandpass"`` or ``"bandstop"``.
        cutoff: low/high-pass cut-off or range (default: the mode's, ours).
        band: band-pass/stop ``(low, high)`` edges or ranges (default ``(0.05, 0.25)``, ours).
        basis: ``"dct"`` or ``"fft"``.
        keep_dc: high-pass and band-pass keep the DC term too.

    Example:
        >>> r = SpectralRedaction("highpass", cutoff=(0.02, 0.1))(torch.randn(2, 3, 16, 16))
        >>> r.image.shape, r.keep
        (torch.Size([2, 3, 16, 16]), None)
    """

    family = "spectral"

    def __init__(
        self,
        mode: str,
        cutoff: Range | None = None,
        band: Band | None = None,
        basis: str = "dct",
        keep_dc: bool = True,
    ) -> None:
        super().__init__()
        check_choice(mode, "mode", SPECTRAL_MODES)
        check_choice(basis, "basis", SPECTRAL_BASES)
        if not isinstance(keep_dc, bool):
            raise ValueError(f"keep_dc must be True or False, got {keep_dc!r}")
        _parse_edges(mode, cutoff, band)
        self.name = mode
        self.mode = mode
        self.cutoff = cutoff
        self.band = band
        self.basis = basis
        self.keep_dc = keep_dc

    def forward(self, image: Tensor, generator: torch.Generator | None = None) -> Redacted:
        """Redact ``image`` (``B x C x H x W``); see :func:`spectral_redaction`."""
        return spectral_redaction(
            image,
            self.mode,
            cutoff=self.cutoff,
            band=self.band,
            basis=self.basis,
            keep_dc=self.keep_dc,
            generator=generator,
        )

    def extra_repr(self) -> str:
        edges = f"cutoff={self.cutoff!r}" if self.band is None else f"band={self.band!r}"
        return f"mode={self.mode!r}, {edges}, basis={self.basis!r}, keep_dc={self.keep_dc}"


@register_redaction
class LowpassRedaction(SpectralRedaction):
    """Keep the frequencies with ``rho < cutoff`` (default 0.25, our choice).

    Example:
        >>> x = torch.randn(1, 3, 32, 32)
        >>> LowpassRedaction(cutoff=1.0)(x).image.sub(x).abs().max().item() < 1e-5
        True
    """

    name = "lowpass"

    def __init__(self, cutoff: Range = DEFAULT_CUTOFF["lowpass"], basis: str = "dct") -> None:
        super().__init__("lowpass", cutoff=cutoff, basis=basis)


@register_redaction
class HighpassRedaction(SpectralRedaction):
    """Keep the frequencies with ``rho >= cutoff`` and DC (default cut-off 0.05, ours).

    Example:
        >>> x = torch.randn(1, 3, 32, 32)
        >>> y = HighpassRedaction(cutoff=1.0)(x).image  # only DC left
        >>> torch.allclose(y, x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-5)
        True
    """

    name = "highpass"

    def __init__(
        self,
        cutoff: Range = DEFAULT_CUTOFF["highpass"],
        basis: str = "dct",
        keep_dc: bool = True,
    ) -> None:
        super().__init__("highpass", cutoff=cutoff, basis=basis, keep_dc=keep_dc)


@register_redaction
class BandpassRedaction(SpectralRedaction):
    """Keep the frequencies with ``low <= rho < high`` and DC (default ``(0.05, 0.25)``, ours).

    Example:
        >>> r = BandpassRedaction(band=(0.1, 0.3))(torch.randn(2, 3, 16, 16))
        >>> r.image.shape
        torch.Size([2, 3, 16, 16])
    """

    name = "bandpass"

    def __init__(self, band: Band = DEFAULT_BAND, basis: str = "dct", keep_dc: bool = True) -> None:
        super().__init__("bandpass", band=band, basis=basis, keep_dc=keep_dc)


@register_redaction
class BandstopRedaction(SpectralRedaction):
    """Remove the frequencies with ``low <= rho < high`` (default ``(0.05, 0.25)``, ours).

    Example:
        >>> x = torch.randn(2, 3, 16, 16)
        >>> torch.allclose(BandstopRedaction(band=(0.2, 0.2))(x).image, x, atol=1e-5)
        True
    """

    name = "bandstop"

    def __init__(self, band: Band = DEFAULT_BAND, basis: str = "dct") -> None:
        super().__init__("bandstop", band=band, basis=basis)
