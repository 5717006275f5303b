"""Input checks shared by the core: one place for clear, uniform error messages.

Every public op of the core validates its inputs with these helpers so that a
user gets a ``ValueError`` that names the parameter, what was given and what
is allowed, instead of a shape error deep inside a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any, TypeGuard

from torch import Tensor

__all__ = [
    "as_range",
    "check_choice",
    "check_image",
    "check_in_range",
    "is_pair_like",
    "unsafe_checkpoint_error",
]


def check_image(x: object, name: str = "image", channels: int | None = None) -> Tensor:
    """Check that ``x`` is a floating ``B x C x H x W`` tensor.

    Args:
        x: the object to check.
        name: the parameter name used in the error message.
        channels: if given, the required number of channels.

    Returns:
        ``x`` unchanged.

    Raises:
        ValueError: if ``x`` is not a 4-D floating-point tensor (or has the
            wrong number of channels).

    Example:
        >>> check_image(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape B x C x H x W, got {type(x)!r}")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (B x C x H x W), got shape {tuple(x.shape)} ({x.ndim}-D)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {x.dtype}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]}")
    return x


def check_in_range(
    value: float,
    name: str,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that a scalar lies in an interval; return it as a float.

    Example:
        >>> check_in_range(0.5, "p", 0.0, 1.0, low_inclusive=False)
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok_low = v >= low if low_inclusive else v > low
    ok_high = v <= high if high_inclusive else v < high
    if not (ok_low and ok_high):
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lb}{low}, {high}{hb}, got {value!r}")
    return v


def is_pair_like(value: object) -> TypeGuard[Sequence[Any]]:
    """Whether ``value`` is a sequence of items (a list, tuple, ...), not text or bytes.

    ``str``, ``bytes`` and ``bytearray`` are sequences too, but a parameter
    given as one is a wrong type, not a pair: ``b"\\x00\\x01"`` must not pass
    for the range ``(0, 1)``.

    Example:
        >>> is_pair_like((0.1, 0.5)), is_pair_like("ab"), is_pair_like(b"ab")
        (True, False, False)
    """
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def as_range(
    value: float | Sequence[float],
    name: str,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> tuple[float, float]:
    """Normalise a scalar-or-(lo, hi) parameter to a checked ``(lo, hi)`` range.

    Parameters that are "drawn per sample from ranges" accept either a fixed
    value ``v`` (meaning ``(v, v)``) or a pair ``(lo, hi)`` with ``lo <= hi``.

    Example:
        >>> as_range(0.25, "p", 0.0, 1.0)
        (0.25, 0.25)
        >>> as_range((0.1, 0.5), "p", 0.0, 1.0)
        (0.1, 0.5)
    """
    if is_pair_like(value):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        lo, hi = value
    else:
        lo = hi = value
    kw = {"low_inclusive": low_inclusive, "high_inclusive": high_inclusive}
    lo_f = check_in_range(lo, name, low, high, **kw)
    hi_f = check_in_range(hi, name, low, high, **kw)
    if lo_f > hi_f:
        raise ValueError(f"{name} range must have low <= high, got ({lo!r}, {hi!r})")
    return lo_f, hi_f


def check_choice(value: str, name: str, allowed: Iterable[str]) -> str:
    """Check that ``value`` is one of ``allowed`` names.

    Example:
        >>> check_choice("l1", "kind", ["l1", "l2"])
        'l1'
    """
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def unsafe_checkpoint_error(path: object, err: Exception) -> ValueError:
    """The error for a file that ``torch.load(weights_only=True)`` refused.

    Names the file and the object torch refused (its "WeightsUnpickler error"
    line), and says why the program does not fall back to a full unpickler.

    Example:
        >>> import pickle
        >>> err = pickle.UnpicklingError("Weights only load failed.\\nWeightsUnpickler error: "
        ...                               "Unsupported global: GLOBAL os.system")
        >>> str(unsafe_checkpoint_error("x.ckpt", err)).split(":")[0]
        'x.ckpt is not a safe checkpoint'
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
    reason = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), lines[0])
    reason = reason.split(" Please use ")[0].rstrip(".")  # torch's allowlisting advice: not here
    return ValueError(
        f"{path} is not a safe checkpoint: torch.load(weights_only=True) refused it ({reason}). "
        "dejavu reads checkpoints as tensors and plain data only, so that a file can never "
        "run code; re-save the weights of a file you trust as a plain state_dict (torch.save) "
        "or as safetensors"
    )
