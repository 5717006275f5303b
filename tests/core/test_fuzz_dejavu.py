"""Fuzzing ``DejaVu`` forward/backward on image sizes that are not multiples of 32.

A tiny base network (one 3x3 convolution), each registered CRM kind
("forward", "recursive", "zero", "spade") at tiny widths, the random, blocks
and lowpass redactions, every regeneration loss and CRM scales 1/4..1: the
losses are finite scalars, every gradient is finite, the regeneration loss
alone reaches the base network, and the outputs have the documented shapes
(``pred`` at the input size, ``redacted`` like the image, ``keep``
``B x 1 x H x W`` or None, ``regenerated`` and ``target`` at the CRM's
``working_size``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fuzz_profile import fuzz
from hypothesis import event, given
from hypothesis import strategies as st
from torch import nn

from dejavu import DejaVu
from dejavu.crm import list_crms
from dejavu.dejavu import LOSS_KEYS
from dejavu.losses import REGEN_LOSSES

# Tiny widths: the point is shapes and gradients, not capacity.
CRMS = {
    "forward": {"width": 4, "depth": 2},
    "recursive": {"width": 4, "depth": 1, "num_groups": 2},
    "zero": {},
    "spade": {"width": 4, "depth": 2, "hidden": 4},
}
REDACTIONS = ("random", "blocks", "lowpass")
# 1, primes, odd and even sides around the multiples of 32 (never a multiple of 32).
sides = st.one_of(
    st.sampled_from([1, 2, 3, 5, 7, 31, 33, 47, 63, 65]),
    st.integers(1, 72).filter(lambda n: n % 32 != 0),
)


def seg_loss(pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)


def test_the_fuzzed_crms_are_registered() -> None:
    assert set(CRMS) <= set(list_crms())


@st.composite
def redactions(draw: st.DrawFn, top: int) -> tuple[str, dict]:
    name = draw(st.sampled_from(REDACTIONS))
    if name == "random":
        return name, {"p": draw(st.sampled_from([0.25, 1.0, (0.1, 0.9)]))}
    if name == "blocks":
        block = draw(st.integers(1, min(top, 16)))
        return name, {"block": block, "ratio": draw(st.sampled_from([0.0, 0.5, 1.0, (0.2, 0.8)]))}
    return name, {"cutoff": draw(st.sampled_from([0.0, 0.1, 0.25, 1.0, (0.05, 0.5)]))}


@fuzz(120)
@given(
    data=st.data(),
    crm=st.sampled_from(sorted(CRMS)),
    b=st.integers(1, 3),
    h=sides,
    w=sides,
    k=st.integers(2, 5),
    scale=st.sampled_from([0.25, 0.5, 1.0]),
    regen_loss=st.sampled_from(REGEN_LOSSES),
    cyclic=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_backward_on_odd_sizes(
    data: st.DataObject,
    crm: str,
    b: int,
    h: int,
    w: int,
    k: int,
    scale: float,
    regen_loss: str,
    cyclic: float,
    seed: int,
) -> None:
    redaction, redaction_kwargs = data.draw(redactions(max(h, w)), label="redaction")
    torch.manual_seed(seed)
    base = nn.Conv2d(3, k, 3, padding=1)
    model = DejaVu(
        base,
        seg_loss,
        crm=crm,
        cond_channels=k,
        crm_kwargs={**CRMS[crm], "scale": scale},
        redaction=redaction,
        redaction_kwargs=redaction_kwargs,
        regen_loss=regen_loss,
        cyclic_weight=cyclic,
        seed=seed,
    )
    g = torch.Generator().manual_seed(seed)
    batch = {
        "image": torch.randn(b, 3, h, w, generator=g),
        "seg": torch.randint(0, k, (b, h, w), generator=g),
    }
    working = model.crm.working_size(h, w)
    # Two documented refusals: CRM-0 needs a keep mask, and SSIM a working size above 5 px.
    if crm == "zero" and redaction == "lowpass":
        with pytest.raises(ValueError, match="needs a keep mask"):
            model(batch)
        return
    if regen_loss == "l1+ssim" and min(working) <= 5:
        with pytest.raises(ValueError, match="larger than 5 pixels"):
            model(batch)
        return
    out = model(batch)
    event(f"ran crm={crm}, redaction={redaction}")

    # Documented shapes.
    assert out["pred"]["seg"].shape == (b, k, h, w)
    assert out["redacted"].shape == (b, 3, h, w)
    if redaction == "lowpass":
        assert out["keep"] is None
    else:
        assert out["keep"].shape == (b, 1, h, w)
    assert out["regenerated"].shape == out["target"].shape == (b, 3, *working)
    for key in LOSS_KEYS:
        assert out[key].ndim == 0 and bool(torch.isfinite(out[key])), (key, out[key])

    # The regeneration loss alone reaches the base network (autograd.grad raises if the
    # base is not in its graph), with finite gradients.
    (regen_grad,) = torch.autograd.grad(out["regen"], base.weight, retain_graph=True)
    assert bool(torch.isfinite(regen_grad).all())
    if _expect_regen_gradient(crm, regen_loss, working, out):
        assert bool(regen_grad.abs().sum() > 0), "the regeneration gradient vanished"

    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name


def _expect_regen_gradient(crm: str, regen_loss: str, working: tuple[int, int], out: dict) -> bool:
    """Whether the regeneration loss must depend on the prediction here.

    It legitimately does not on a 1 x 1 working image: the learned CRMs see a
    constant (replicate-padded) input there, which their group norms with one
    channel per group (tiny widths) make scale-invariant, and the "gradient"
    loss has no pixel pair. Nor for CRM-0 when no working-resolution cell was
    redacted (kept pixels stay as they are) or fewer than two cells hold visible
    colour (every class then gets the same colour).
    """
    if working == (1, 1):
        return False
    if crm == "zero":
        keep_w = F.interpolate(out["keep"], size=working, mode="area").flatten(1)
        fills = (keep_w < 1).any(1) & ((keep_w > 0).sum(1) >= 2)
        return bool(fills.any())
    return True


@pytest.mark.parametrize("crm", ["recursive", "spade"])
def test_a_one_value_group_norm_works_at_batch_size_one(crm: str) -> None:
    # Regression: a tiny CRM whose bottleneck is 1 x 1 with one channel per norm group
    # raised "Expected more than 1 value per channel" for a batch of one (PyTorch's
    # batch-statistics check), while a batch of two gave an answer. Now both give the
    # same per-sample result.
    from dejavu.crm import create_crm

    torch.manual_seed(0)
    kwargs = {"width": 4, "depth": 1, "scale": 1.0}
    module = create_crm(crm, 2, **kwargs, **({"hidden": 4} if crm == "spade" else {}))
    redacted, cond = torch.randn(2, 3, 2, 2), torch.softmax(torch.randn(2, 2, 2, 2), dim=1)
    both = module(redacted, cond)
    one = module(redacted[:1], cond[:1])
    torch.testing.assert_close(one, both[:1])
