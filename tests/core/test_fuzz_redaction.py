"""Fuzzing every redaction: sizes, dtypes, parameters at their bounds, invalid parameters.

For valid parameters the output must keep the input's shape and dtype, be
finite and keep what the redaction promises:

* ``random``: the kept fraction of each sample is within 6 binomial standard
  deviations of its keep probability range (on samples of >= 400 pixels;
  ``p = 1`` keeps every pixel on any size);
* ``checkerboard``: each sample is exactly an aligned checkerboard of a cell
  size in the range (so its kept count is exact);
* ``blocks``: each sample is constant on every cell of a grid of a block size
  in the range and drops ``round(ratio * n_cells)`` cells for a ratio in the
  range;
* spectral: every frequency that :func:`dejavu.redaction.spectral_keep_mask`
  keeps for all edges of the ranges is unchanged, every frequency it removes
  for all of them is zero (for fixed edges: exactly the mask);
* ``none``: the image itself; ``choice``: every sample is one of the above.

Invalid parameters (out of range, NaN, infinite, ``lo > hi``, wrong types)
raise a ``ValueError`` whose message names the parameter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
from fuzz_profile import fuzz
from hypothesis import given
from hypothesis import strategies as st

from dejavu.redaction import REDACTION_NAMES, Redacted, create_redaction, spectral_keep_mask

SPATIAL = ("random", "checkerboard", "blocks")
SPECTRAL = ("lowpass", "highpass", "bandpass", "bandstop")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Sides: 1, primes, odd and even; the big ones are drawn about once in ten.
SMALL_SIDES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 19, 23, 24, 29, 31, 37]
BIG_SIDES = [64, 97, 127, 128, 131, 199, 251, 256, 257]
sides = st.sampled_from(SMALL_SIDES * 4 + BIG_SIDES)
# Unit roundoff of each dtype (half its machine epsilon).
UNIT = {dt: torch.finfo(dt).eps / 2 for dt in DTYPES}


# ------------------------------------------------------------------ valid parameters
def _unit(low_open: bool) -> st.SearchStrategy[float]:
    """Numbers in [0, 1] (``(0, 1]`` when ``low_open``), the bounds drawn often."""
    bounds = [1.0] if low_open else [0.0, 1.0]
    inner = st.floats(0.0, 1.0, exclude_min=low_open)
    return st.one_of(st.sampled_from(bounds), inner)


def _pair(values: st.SearchStrategy) -> st.SearchStrategy:
    """A fixed value or a ``(lo, hi)`` pair with ``lo <= hi`` (equal bounds included)."""
    return st.one_of(
        values,
        st.tuples(values, values).map(lambda t: (min(t), max(t))),
        values.map(lambda v: (v, v)),
    )


def _int_pair(top: int) -> st.SearchStrategy:
    """A size in ``[1, top]`` or a short ``(lo, hi)`` range inside it."""
    fixed = st.one_of(st.sampled_from([1, top]), st.integers(1, top))
    ranged = st.tuples(st.integers(1, top), st.integers(0, 6)).map(
        lambda t: (t[0], min(t[0] + t[1], top))
    )
    return st.one_of(fixed, ranged)


def _band() -> st.SearchStrategy:
    """``(low, high)`` edges, each fixed or a range, every low edge <= every high edge."""

    def build(v: list[float], low_ranged: bool, high_ranged: bool) -> tuple:
        a_lo, a_hi, b_lo, b_hi = sorted(v)
        low = (a_lo, a_hi) if low_ranged else a_hi
        high = (b_lo, b_hi) if high_ranged else b_lo
        return (low, high)

    return st.builds(
        build, st.lists(_unit(False), min_size=4, max_size=4), st.booleans(), st.booleans()
    )


@st.composite
def valid_kwargs(draw: st.DrawFn, name: str, top: int) -> dict:
    """Valid constructor arguments of redaction ``name`` for images of max side ``top``."""
    if name == "random":
        return {"p": draw(_pair(_unit(True)))}
    if name == "checkerboard":
        return {"cell": draw(_int_pair(top))}
    if name == "blocks":
        return {"block": draw(_int_pair(top)), "ratio": draw(_pair(_unit(False)))}
    if name in SPECTRAL:
        kw: dict = {"basis": draw(st.sampled_from(["dct", "dct", "fft"]))}
        if name in ("lowpass", "highpass"):
            kw["cutoff"] = draw(_pair(_unit(False)))
        else:
            kw["band"] = draw(_band())
        if name in ("highpass", "bandpass"):
            kw["keep_dc"] = draw(st.booleans())
        return kw
    return {}


def _range(value: object) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _check_random(x: torch.Tensor, keep: torch.Tensor, p: object) -> None:
    lo, hi = _range(p)
    n = x.shape[-2] * x.shape[-1]
    for k in keep[:, 0]:
        frac = k.double().mean().item()
        if lo == hi == 1.0:
            assert frac == 1.0, "p = 1 keeps every pixel"
        elif n >= 400:
            sd = 0.5 / math.sqrt(n)  # the largest binomial standard deviation of a fraction
            assert lo - 6 * sd <= frac <= hi + 6 * sd, (frac, p, n)


def _checker(h: int, w: int, cell: int, phase: int) -> np.ndarray:
    rows = np.arange(h)[:, None] // cell
    cols = np.arange(w)[None, :] // cell
    return (rows + cols) % 2 == phase


def _check_checkerboard(keep: torch.Tensor, cell: object) -> None:
    lo, hi = _range(cell)
    h, w = keep.shape[-2:]
    for k in keep[:, 0].double().numpy().astype(bool):
        found = [
            c
            for c in range(lo, hi + 1)
            for ph in (0, 1)
            if np.array_equal(k, _checker(h, w, c, ph))
        ]
        assert found, f"not an aligned checkerboard of a cell in {cell}"
        c = found[0]
        # The exact kept count of that pattern (the phase decides which parity is kept).
        cells = np.add.outer(np.arange(h) // c, np.arange(w) // c) % 2
        assert k.sum() in ((cells == 0).sum(), (cells == 1).sum())


def _check_blocks(keep: torch.Tensor, block: object, ratio: object) -> None:
    b_lo, b_hi = _range(block)
    r_lo, r_hi = _range(ratio)
    h, w = keep.shape[-2:]
    for k in keep[:, 0].double().numpy():
        fits = []
        for s in range(b_lo, b_hi + 1):
            rows, cols = np.arange(0, h, s), np.arange(0, w, s)
            cmax = np.maximum.reduceat(np.maximum.reduceat(k, rows, axis=0), cols, axis=1)
            cmin = np.minimum.reduceat(np.minimum.reduceat(k, rows, axis=0), cols, axis=1)
            if not np.array_equal(cmax, cmin):
                continue  # not whole cells of this grid
            n = cmax.size
            dropped = int((cmax == 0).sum())
            if round(r_lo * n) <= dropped <= round(r_hi * n):
                fits.append(s)
        assert fits, f"not whole dropped cells of a block in {block} with a ratio in {ratio}"


def _spectrum(x: np.ndarray, basis: str) -> np.ndarray:
    if basis == "dct":
        return scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")
    return np.fft.fft2(x, axes=(-2, -1), norm="ortho")


def _image(spectrum: np.ndarray, basis: str) -> np.ndarray:
    if basis == "dct":
        return scipy.fft.idctn(spectrum, axes=(-2, -1), norm="ortho")
    return np.fft.ifft2(spectrum, axes=(-2, -1), norm="ortho").real


def _extreme_masks(h: int, w: int, name: str, kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies kept for every edge in the ranges, and those kept for some edge."""
    basis, keep_dc = kw["basis"], kw.get("keep_dc", True)
    extra = {"keep_dc": keep_dc} if name in ("highpass", "bandpass") else {}

    def mask(**edges: object) -> np.ndarray:
        return spectral_keep_mask(h, w, name, basis=basis, **edges, **extra).numpy()

    if name in ("lowpass", "highpass"):
        c_lo, c_hi = _range(kw["cutoff"])
        small, large = (c_lo, c_hi) if name == "lowpass" else (c_hi, c_lo)
        return mask(cutoff=small), mask(cutoff=large)
    (a_lo, a_hi), (b_lo, b_hi) = (_range(e) for e in kw["band"])
    narrow, wide = (a_hi, b_lo), (a_lo, b_hi)
    if name == "bandpass":  # keeps the band: keeps least with the narrowest band
        return mask(band=narrow), mask(band=wide)
    return mask(band=wide), mask(band=narrow)  # bandstop removes the band


def _check_spectral(x: torch.Tensor, out: torch.Tensor, name: str, kw: dict) -> None:
    h, w = x.shape[-2:]
    always, sometimes = _extreme_masks(h, w, name, kw)
    assert not (always & ~sometimes).any()
    x64, y64 = x.double().numpy(), out.double().numpy()
    xs = _spectrum(x64, kw["basis"])
    # The transforms run in float32 (float64 for float64 input) and the result is
    # rounded to the input dtype (unit roundoff u).
    u = UNIT[x.dtype]
    compute = 1e-12 if x.dtype == torch.float64 else 2e-6
    if np.array_equal(always, sometimes):
        # Fixed edges: the output is the float64 reference, pixel by pixel, to rounding.
        ref = _image(xs * always, kw["basis"])
        rms = np.sqrt(np.mean(x64**2)) + 1e-30
        np.testing.assert_allclose(y64, ref, rtol=u, atol=10 * compute * max(rms, 1.0))
        return
    # Edges drawn per sample: the frequencies kept (removed) for every edge in the
    # ranges are kept (removed). One coefficient's error is at most the error's
    # 2-norm (Parseval), at most (u + compute) times the image's, per sample and channel.
    ys = _spectrum(y64, kw["basis"])
    norm = np.sqrt((x64**2).sum(axis=(-2, -1), keepdims=True))
    tol = (1.01 * u + 10 * compute) * np.maximum(norm, 1.0)
    assert (np.abs(ys - xs) <= tol)[..., always].all(), "a frequency kept for every edge changed"
    assert (np.abs(ys) <= tol)[..., ~sometimes].all(), "a frequency removed for every edge stayed"


@st.composite
def images(draw: st.DrawFn) -> torch.Tensor:
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(sides), draw(sides)
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.randn(b, c, h, w, generator=g).to(dtype)


def _check_redacted(x: torch.Tensor, name: str, kw: dict, out: Redacted) -> None:
    b, _, h, w = x.shape
    assert out.image.shape == x.shape and out.image.dtype == x.dtype
    assert bool(torch.isfinite(out.image).all())
    if name == "none":
        assert out.image is x and out.keep is None
        return
    if name in SPECTRAL:
        assert out.keep is None
        _check_spectral(x, out.image, name, kw)
        return
    keep = out.keep
    assert keep is not None and keep.shape == (b, 1, h, w) and keep.dtype == x.dtype
    assert bool(((keep == 0) | (keep == 1)).all())
    assert torch.equal(out.image, x * keep), "kept pixels unchanged, the others 0"
    if name == "random":
        _check_random(x, keep, kw["p"])
    elif name == "checkerboard":
        _check_checkerboard(keep, kw["cell"])
    else:
        _check_blocks(keep, kw["block"], kw["ratio"])


@fuzz(150)
@given(data=st.data(), x=images(), name=st.sampled_from(REDACTION_NAMES[:-1]))
def test_valid_parameters_keep_what_they_promise(
    data: st.DataObject, x: torch.Tensor, name: str
) -> None:
    kw = data.draw(valid_kwargs(name, max(x.shape[-2:])), label="kwargs")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    out = create_redaction(name, **kw)(x, generator=g)
    _check_redacted(x, name, kw, out)


@fuzz(60)
@given(data=st.data(), x=images())
def test_choice_gives_each_sample_one_of_its_redactions(
    data: st.DataObject, x: torch.Tensor
) -> None:
    top = max(x.shape[-2:])
    names = data.draw(st.lists(st.sampled_from(REDACTION_NAMES[:-1]), min_size=1, max_size=3))
    kws = [data.draw(valid_kwargs(n, top)) for n in names]
    weights = data.draw(st.lists(st.integers(0, 3), min_size=len(names), max_size=len(names)))
    if sum(weights) == 0:
        weights[0] = 1
    probs = [v / sum(weights) for v in weights]
    items = [{"name": n, **kw} for n, kw in zip(names, kws, strict=True)]
    choice = create_redaction("choice", redactions=items, probs=probs)
    out = choice(x, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1))))
    assert out.image.shape == x.shape and out.image.dtype == x.dtype
    assert bool(torch.isfinite(out.image).all())
    if out.keep is not None:
        assert out.keep.shape == (x.shape[0], 1, *x.shape[-2:]) and out.keep.dtype == x.dtype
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], out.image[i : i + 1]
        ki = None if out.keep is None else out.keep[i : i + 1]
        matches = []
        for n, kw, p in zip(names, kws, probs, strict=True):
            if p == 0:
                continue
            if n in SPATIAL:
                if ki is None:
                    continue
                row = Redacted(yi, ki)
            else:  # no mask, or an all-ones row when another sample was spatial
                if ki is not None and not bool((ki == 1).all()):
                    continue
                row = Redacted(yi, None)
            try:
                if n == "none":
                    assert torch.equal(yi, xi)
                else:
                    _check_redacted(xi, n, kw, row)
            except AssertionError:
                continue
            matches.append(n)
        assert matches, f"sample {i} is none of {names}"


# ------------------------------------------------------------------ invalid parameters
NOT_A_NUMBER = st.sampled_from(
    ["0.5", "abc", None, [0.1, 0.2, 0.3], {"lo": 0.1}, b"\x01\x01", True, False, object()]
)
NAN_INF = st.sampled_from([math.nan, math.inf, -math.inf])


def _bad_unit(low_open: bool) -> st.SearchStrategy:
    """Values of a probability-like parameter that must be refused."""
    below = st.floats(max_value=0.0, exclude_max=not low_open, allow_nan=False)
    above = st.floats(min_value=1.0, exclude_min=True, allow_nan=False)
    bad = st.one_of(below, above, NAN_INF, NOT_A_NUMBER)
    good = _unit(low_open)
    return st.one_of(
        bad,
        st.tuples(bad, good),
        st.tuples(good, bad),
        st.tuples(good, good).filter(lambda t: t[0] > t[1]),  # lo > hi
        st.tuples(good, good, good),  # not a pair
    )


def _bad_int() -> st.SearchStrategy:
    """Values of a size parameter (``cell``, ``block``) that must be refused."""
    bad = st.one_of(
        st.integers(max_value=0),
        st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda v: not float(v).is_integer()
        ),
        NAN_INF,
        NOT_A_NUMBER,
    )
    good = st.integers(1, 4)
    return st.one_of(
        bad,
        st.tuples(bad, good),
        st.tuples(good, bad),
        st.tuples(st.integers(2, 5), st.integers(1, 1)),  # lo > hi
        st.tuples(good, good, good),
    )


def _bad_band() -> st.SearchStrategy:
    good = _unit(False)
    return st.one_of(
        st.tuples(_bad_unit(False), good),
        st.tuples(good, _bad_unit(False)),
        st.tuples(good, good).filter(lambda t: t[0] > t[1]),  # low > high
        st.tuples(good, good, good),
        st.one_of(good, NAN_INF, st.sampled_from(["ab", b"\x00\x01", {"low": 0.1}])),  # not a pair
    )


BAD = {
    "random": {"p": _bad_unit(True)},
    "checkerboard": {"cell": _bad_int()},
    "blocks": {"block": _bad_int(), "ratio": _bad_unit(False)},
    "lowpass": {
        "cutoff": _bad_unit(False).filter(lambda v: v is not None),
        "basis": st.just("dft"),
    },
    "highpass": {
        "cutoff": _bad_unit(False).filter(lambda v: v is not None),
        "keep_dc": st.sampled_from([0, 1, "yes", None]),
    },
    "bandpass": {"band": _bad_band(), "keep_dc": st.sampled_from([0, 1, "yes", None])},
    "bandstop": {"band": _bad_band()},
    "choice": {
        "probs": st.one_of(
            st.just([0.7, 0.7]),
            st.just([1.0]),
            st.just([-0.5, 1.5]),
            st.just([math.nan, 1.0]),
            st.just("uniform"),
        ),
        "redactions": st.sampled_from(
            [[], "random", [{"p": 0.5}], [3], [{"name": "random", "p": 2.0}]]
        ),
    },
}
# What the message names for each parameter (the band's edges are "band low/high edge").
MENTION = {"redactions": ("redaction",), "keep_dc": ("keep_dc",), "basis": ("basis",)}


@fuzz(150)
@given(data=st.data(), name=st.sampled_from(sorted(BAD)), h=st.integers(1, 9), w=st.integers(1, 9))
def test_invalid_parameters_raise_a_value_error_naming_them(
    data: st.DataObject, name: str, h: int, w: int
) -> None:
    param = data.draw(st.sampled_from(sorted(BAD[name])), label="param")
    value = data.draw(BAD[name][param], label="value")
    kwargs = {param: value}
    if name == "choice" and param == "probs":
        kwargs["redactions"] = ["random", "lowpass"]
    if name == "choice" and param == "redactions" and value == [{"name": "random", "p": 2.0}]:
        param = "p"  # a nested redaction's own parameter
    x = torch.randn(2, 3, h, w)
    with pytest.raises(ValueError) as info:
        create_redaction(name, **kwargs)(x, generator=torch.Generator().manual_seed(0))
    message = str(info.value)
    assert any(m in message for m in MENTION.get(param, (param,))), (param, value, message)


@fuzz(40)
@given(
    name=st.sampled_from(["checkerboard", "blocks"]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    extra=st.integers(1, 20),
    ranged=st.booleans(),
)
def test_sizes_larger_than_the_image_are_refused(
    name: str, h: int, w: int, extra: int, ranged: bool
) -> None:
    param = "cell" if name == "checkerboard" else "block"
    size = max(h, w) + extra
    value = (1, size) if ranged else size
    with pytest.raises(ValueError, match=param):
        create_redaction(name, **{param: value})(torch.randn(1, 3, h, w))


@fuzz(30)
@given(name=st.sampled_from(REDACTION_NAMES), key=st.sampled_from(["q", "size", "prob", "mode"]))
def test_unknown_arguments_are_named(name: str, key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown argument.*{key!r}"):
        create_redaction(name, **{key: 0.1})


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("random", "p", b"\x01\x01"),
        ("checkerboard", "cell", b"\x01\x02"),
        ("blocks", "ratio", bytearray(b"\x00\x01")),
        ("bandstop", "band", b"\x00\x01"),
        ("choice", "probs", b"\x00\x01"),
    ],
)
def test_bytes_are_not_number_pairs(name: str, param: str, value: object) -> None:
    # Regression: bytes are a Sequence of ints, and were read as the pair (0, 1) etc.
    kwargs = {param: value}
    if name == "choice":
        kwargs["redactions"] = ["random", "lowpass"]
    with pytest.raises(ValueError, match=param):
        create_redaction(name, **kwargs)
