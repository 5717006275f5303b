"""Small shared helpers: cached constant tensors, compute dtype, autocast off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import lru_cache
from typing import ParamSpec, TypeVar, overload

import torch

__all__ = ["cached_constant", "compute_dtype", "no_autocast"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


@overload
def cached_constant(fn: Callable[_P, _T], *, maxsize: int = 256) -> Callable[_P, _T]: ...


@overload
def cached_constant(
    fn: None = None, *, maxsize: int = 256
) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]: ...


def cached_constant(
    fn: Callable[_P, _T] | None = None, *, maxsize: int = 256
) -> Callable[_P, _T] | Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Cache small index/twiddle tensors per (size, device, dtype) arguments.

    Use as ``@cached_constant`` or ``@cached_constant(maxsize=16)``. The
    tensors are built outside inference mode and without grad so that one
    first made under ``torch.inference_mode()`` can still be saved for
    backward in a later training step.
    """

    def decorate(f: Callable[_P, _T]) -> Callable[_P, _T]:
        cached = lru_cache(maxsize=maxsize)(f)

        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            if torch.compiler.is_compiling():
                # Traced once into the graph as constants; the cache would only hold fakes.
                return f(*args, **kwargs)
            with torch.inference_mode(False), torch.no_grad():
                return cached(*args, **kwargs)  # type: ignore[arg-type]

        wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        wrapper.__doc__ = f.__doc__
        return wrapper

    return decorate(fn) if fn is not None else decorate


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32.

    torch.fft has no bfloat16 kernels and float16 only for powers of two on
    CUDA, and spectral masks are sensitive to rounding.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """A context that turns autocast off on ``device`` (a no-op where it has none)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
