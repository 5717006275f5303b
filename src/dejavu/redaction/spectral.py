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

Cut-offs and band edges accept a number or a ``(lo, hi)`` range drawn per
sample. The transform runs in float32 (float64 for float64 input) with
autocast off, and the result is cast back to the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dejavu._validation import as_range, check_choice, check_image
from dejavu.redaction._params import draw_device, sample_uniform
from dejavu.redaction._util import cached_constant, compute_dtype, no_autocast
from dejavu.redaction.dct_filter import DCT2FilterPlan, dct2_filter, dct2_filter_plan_radial
from dejavu.redaction.types import Redacted, Redaction

__all__ = [
    "DEFAULT_BAND",
    "DEFAULT_CUTOFF",
    "SPECTRAL_BASES",
    "SPECTRAL_MODES",
    "BandpassRedaction",
    "BandstopRedaction",
    "HighpassRedaction",
    "LowpassRedaction",
    "SpectralRedaction",
    "spectral_radius",
    "spectral_redaction",
]

SPECTRAL_MODES = ("lowpass", "highpass", "bandpass", "bandstop")
SPECTRAL_BASES = ("dct", "fft")
#: Default cut-offs (ours, not the paper's).
DEFAULT_CUTOFF = {"lowpass": 0.25, "highpass": 0.05}
#: Default band edges for bandpass/bandstop (ours, not the paper's).
DEFAULT_BAND = (0.05, 0.25)

Range = float | Sequence[float]
Band = Sequence[Range]


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@cached_constant
def _radius(h: int, w: int, basis: str, device: torch.device, half: bool) -> Tensor:
    u = torch.arange(h, dtype=torch.float64)
    v = torch.arange(w // 2 + 1 if half else w, dtype=torch.float64)
    if basis == "dct":
        fu, fv = u / h, v / w
    else:
        fu = torch.minimum(u, h - u) * 2 / h
        fv = torch.minimum(v, w - v) * 2 / w
    rho = torch.sqrt(fu[:, None] ** 2 + fv[None, :] ** 2) / math.sqrt(2)
    return rho.to(device)


def spectral_radius(
    h: int,
    w: int,
    device: torch.device | str | None = None,
    basis: str = "dct",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Normalised radius ``rho`` of every 2-D frequency (see the module docstring).

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
        >>> spectral_radius(2, 2, basis="fft")[1, 1].item()
        1.0
    """
    _check_size(h, "h")
    _check_size(w, "w")
    check_choice(basis, "basis", SPECTRAL_BASES)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _radius(h, w, basis, dev, False).to(dtype)


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
    if not isinstance(band, Sequence) or isinstance(band, str) or len(band) != 2:
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


def _keep_mask(rho: Tensor, mode: str, low: Tensor, high: Tensor, keep_dc: bool) -> Tensor:
    """Boolean mask ``N x 1 x *rho.shape`` of the kept radii (``N``: 1 or the batch)."""
    lo = low.view(-1, 1, 1, 1)
    hi = high.view(-1, 1, 1, 1)
    in_band = (rho >= lo) & ((rho < hi) | (hi >= 1))
    keep = in_band if mode in ("lowpass", "bandpass") else ~in_band
    if keep_dc and mode in ("highpass", "bandpass"):
        keep = keep | (rho == 0)  # rho is 0 at DC only (in both bases)
    return keep


def _limit(low: tuple[float, float], high: tuple[float, float]) -> float:
    """A radius beyond which the keep mask no longer changes (edges >= 1 are no limit)."""
    return max(low[1], high[1] if high[0] < 1 else 0.0)


def _filter(
    h: int,
    w: int,
    mode: str,
    low: Tensor,
    high: Tensor,
    limit: float,
    keep_dc: bool,
    basis: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | DCT2FilterPlan:
    """The DCT plan (dct basis) or the rfft2-grid mask (fft basis) for these edges."""
    rho = _radius(h, w, basis, device, basis == "fft")
    low, high = low.to(device), high.to(device)
    if basis == "fft":
        return _keep_mask(rho, mode, low, high, keep_dc).to(dtype)
    return dct2_filter_plan_radial(
        rho, lambda r: _keep_mask(r, mode, low, high, keep_dc), limit, dtype
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
    edges = [torch.tensor([e], dtype=torch.float64) for e in (low, high)]
    limit = _limit((low, low), (high, high))
    return _filter(h, w, mode, *edges, limit, keep_dc, basis, device, dtype)


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
    cd = compute_dtype(image.dtype)
    filt: Tensor | DCT2FilterPlan
    if a_lo == a_hi and b_lo == b_hi:
        filt = _fixed_filter(H, W, mode, a_lo, b_lo, keep_dc, basis, image.device, cd)
    else:
        dev = draw_device(image, generator)
        low = sample_uniform(a_lo, a_hi, B if a_lo < a_hi else 1, generator, dev)
        high = sample_uniform(b_lo, b_hi, B if b_lo < b_hi else 1, generator, dev)
        limit = _limit((a_lo, a_hi), (b_lo, b_hi))
        filt = _filter(H, W, mode, low, high, limit, keep_dc, basis, image.device, cd)
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
