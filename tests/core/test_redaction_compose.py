"""Identity, per-sample choice, the string factory, the result type, docs and compile."""

from __future__ import annotations

import dataclasses
import importlib
import math
import shutil

import pytest
import torch

from dejavu.redaction import (
    REDACTION_NAMES,
    BlocksRedaction,
    ChoiceRedaction,
    IdentityRedaction,
    LowpassRedaction,
    RandomRedaction,
    Redacted,
    Redaction,
    choice_redaction,
    create_redaction,
    dct2,
    idct2,
    random_redaction,
    spectral_keep_mask,
    spectral_redaction,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MODULES = [
    "dejavu.redaction",
    "dejavu.redaction._params",
    "dejavu.redaction.compose",
    "dejavu.redaction.dct",
    "dejavu.redaction.dct_filter",
    "dejavu.redaction.factory",
    "dejavu.redaction.spatial",
    "dejavu.redaction.spectral",
    "dejavu.redaction.types",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_identity() -> None:
    x = torch.randn(2, 3, 5, 7)
    out = IdentityRedaction()(x, generator=_gen(0))
    assert out.image is x and out.keep is None
    assert IdentityRedaction.name == "none"
    with pytest.raises(ValueError, match="4-D"):
        IdentityRedaction()(x[0])


def test_redacted_is_frozen_and_redaction_is_abstract() -> None:
    out = Redacted(torch.zeros(1, 3, 2, 2), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.keep = torch.ones(1, 1, 2, 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Redaction()  # type: ignore[abstract]


@pytest.mark.parametrize("device", DEVICES)
def test_choice_follows_probs_and_assembles_the_batch(device: str) -> None:
    # Blocks with ratio 1 blanks a sample, so each sample shows which redaction it got.
    x = torch.randn(400, 1, 4, 4, device=device) + 10
    blank = BlocksRedaction(block=4, ratio=1.0)
    out = choice_redaction(x, [IdentityRedaction(), blank], probs=[0.2, 0.8], generator=_gen(0))
    is_blank = (out.image == 0).flatten(1).all(1)
    is_same = (out.image == x).flatten(1).all(1)
    assert (is_blank ^ is_same).all()
    sigma = math.sqrt(0.8 * 0.2 / 400)
    assert abs(is_blank.float().mean().item() - 0.8) <= 5 * sigma
    # keep: all ones for the identity samples, the blocks mask (all zeros) for the others.
    assert out.keep is not None and out.keep.shape == (400, 1, 4, 4)
    torch.testing.assert_close(out.keep.flatten(1).mean(1), is_same.float())


def test_choice_samples_match_their_redaction() -> None:
    x = torch.randn(12, 3, 16, 16, dtype=torch.float64)
    low = LowpassRedaction(0.2)
    out = ChoiceRedaction([IdentityRedaction(), low])(x, generator=_gen(1))
    assert out.keep is None  # neither candidate removes pixels
    lowpassed = low(x).image
    picked = set()
    for i in range(12):
        if torch.equal(out.image[i], x[i]):
            picked.add("none")
        else:
            torch.testing.assert_close(out.image[i], lowpassed[i])
            picked.add("lowpass")
    assert picked == {"none", "lowpass"}


def test_choice_keep_rows_and_none_when_no_spatial_pick() -> None:
    x = torch.randn(16, 3, 8, 8) + 10
    out = ChoiceRedaction([LowpassRedaction(), RandomRedaction(p=0.5)])(x, generator=_gen(2))
    assert out.keep is not None
    lowpassed = LowpassRedaction()(x).image
    kinds = set()
    for i, keep in enumerate(out.keep):
        if keep.min() == 1:  # a low-pass sample: nothing removed, an all-ones row
            torch.testing.assert_close(out.image[i], lowpassed[i])
            kinds.add("lowpass")
        else:
            torch.testing.assert_close(out.image[i], x[i] * keep, rtol=0, atol=0)
            kinds.add("random")
    assert kinds == {"lowpass", "random"}
    never = ChoiceRedaction([IdentityRedaction(), RandomRedaction()], probs=[1.0, 0.0])
    assert never(x, generator=_gen(3)).keep is None


def test_choice_is_reproducible_and_differentiable() -> None:
    x = torch.randn(8, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    choice = ChoiceRedaction([RandomRedaction(0.5), LowpassRedaction(0.3), IdentityRedaction()])
    a = choice(x, generator=_gen(4))
    b = choice(x, generator=_gen(4))
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    assert not torch.equal(a.image, choice(x, generator=_gen(5)).image)
    a.image.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert choice(x[:0], generator=_gen(0)).image.shape == (0, 3, 8, 8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ChoiceRedaction([]), "at least one"),
        (lambda: ChoiceRedaction([IdentityRedaction(), "random"]), r"redactions\[1\] must be"),
        (lambda: ChoiceRedaction(IdentityRedaction()), "sequence of Redaction"),
        (lambda: ChoiceRedaction([IdentityRedaction()], probs=[0.5, 0.5]), "sequence of 1"),
        (lambda: ChoiceRedaction([IdentityRedaction()] * 2, probs=[0.7, 0.7]), "sum to 1"),
        (lambda: ChoiceRedaction([IdentityRedaction()] * 2, probs=[1.5, -0.5]), r"probs\[0\]"),
    ],
)
def test_choice_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_factory_builds_every_name() -> None:
    x = torch.randn(2, 3, 40, 40)
    for name in REDACTION_NAMES:
        kwargs = {"redactions": ["none"]} if name == "choice" else {}
        module = create_redaction(name, **kwargs)
        assert isinstance(module, Redaction) and module.name == name
        assert module(x, generator=_gen(0)).image.shape == x.shape
    assert create_redaction("blocks", block=8, ratio=0.25).block == 8
    assert create_redaction("bandstop", band=[0.1, 0.3], basis="fft").basis == "fft"


def test_factory_choice_items() -> None:
    given = RandomRedaction(p=0.7)
    choice = create_redaction(
        "choice", redactions=[{"name": "random", "p": 0.3}, "lowpass", given], probs=[0.2, 0.3, 0.5]
    )
    assert isinstance(choice, ChoiceRedaction)
    names = [m.name for m in choice.redactions]
    assert names == ["random", "lowpass", "random"]
    assert choice.redactions[0].p == 0.3 and choice.redactions[2] is given
    assert choice.probs == [0.2, 0.3, 0.5]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: create_redaction("inpaint"), "unknown redaction name 'inpaint'; allowed: 'none'"),
        (lambda: create_redaction("random", q=0.3), "unknown argument.*'q'.*allowed: 'p'"),
        (lambda: create_redaction("lowpass", band=(0.1, 0.2)), "allowed: 'cutoff', 'basis'"),
        (lambda: create_redaction("none", p=0.5), "allowed: none"),
        (lambda: create_redaction("choice"), "needs redactions"),
        (lambda: create_redaction("choice", redactions="random"), "list of redactions"),
        (lambda: create_redaction("choice", redactions=[{"p": 0.3}]), "'name' key"),
        (lambda: create_redaction("choice", redactions=[3]), r"redactions\[0\] must be"),
        (lambda: create_redaction("choice", redactions=[{"name": "x"}]), "unknown redaction"),
        (lambda: create_redaction("random", p=2.0), "p must be in"),
        (lambda: create_redaction(3), "must be a string"),  # type: ignore[arg-type]
    ],
)
def test_factory_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_public_names_are_exported() -> None:
    package = importlib.import_module("dejavu.redaction")
    assert all(hasattr(package, name) for name in package.__all__)
    for name in MODULES[1:]:
        module = importlib.import_module(name)
        assert set(getattr(module, "__all__", [])) <= set(dir(module))


def _compile_unsupported() -> str | None:
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile (dynamo) does not support this Python/platform"
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cl")):
        return "torch.compile's inductor backend needs a C++ compiler, none found"
    return None


@pytest.mark.slow  # ~15 s on a cold inductor cache (2 CPU cores), ~2 s warm
@pytest.mark.skipif(_compile_unsupported() is not None, reason=str(_compile_unsupported()))
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_torch_compile_smoke() -> None:
    band = (0.05, 0.25)

    def redact(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        spatial = random_redaction(x, p=0.5)
        dct = spectral_redaction(x, "bandstop", band=band)
        fft = spectral_redaction(x, "bandstop", band=band, basis="fft")
        assert spatial.keep is not None
        return spatial.image, spatial.keep, dct.image, fft.image

    x = torch.randn(2, 3, 16, 24)
    image, keep, dct, fft = torch.compile(redact)(x)  # one small function, compiled once
    torch.testing.assert_close(image, x * keep, rtol=0, atol=0)
    assert 0 < keep.mean() < 1
    # 16 x 24 has frequencies exactly on the edge 0.25 (DCT (4, 6), four FFT bins), which
    # a rounded radius put on either side depending on compilation; membership is exact
    # integers, so compiled and eager outputs differ only by float32 transform rounding.
    eager = redact(x)
    torch.testing.assert_close(dct, eager[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fft, eager[3], rtol=1e-5, atol=1e-5)
    # Both match the float64 filter with the exact mask (float32 transforms: ~1e-6).
    for out, basis in ((dct, "dct"), (fft, "fft")):
        mask = spectral_keep_mask(16, 24, "bandstop", band=band, basis=basis).double()
        xd = x.double()
        if basis == "dct":
            expected = idct2(dct2(xd) * mask)
        else:
            expected = torch.fft.ifft2(torch.fft.fft2(xd) * mask).real
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
