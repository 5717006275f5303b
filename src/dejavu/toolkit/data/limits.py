"""How large an image the readers accept: ``data.max_image_pixels``, checked from the header.

A 20000 x 20000 PNG is a few kilobytes on disk and 1.2 GB once decoded (more
as float32), so an image is refused *before* it is decoded when its header
announces more than the limit (width x height). The limit is process-wide:
:class:`~dejavu.toolkit.training.DenseDataModule` and ``run_predict`` set it
from the config (``data.max_image_pixels``, default
:data:`DEFAULT_MAX_IMAGE_PIXELS`, ``null`` for none); data-loader workers
inherit it (forked workers from the parent's memory, spawned ones through
the ``DEJAVU_MAX_IMAGE_PIXELS`` environment variable that
:func:`set_max_image_pixels` also sets).

PIL has a related guard (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP: a
warning above it, an error above twice it). The readers of
:mod:`dejavu.toolkit.data.io` replace it with this limit while they open a
file, so the config alone decides and the error names the file and the key.

Example:
    >>> check_image_pixels((4000, 2000), "photo.jpg", limit=10_000_000)
    >>> check_image_pixels((20000, 20000), "huge.png", limit=10_000_000)
    Traceback (most recent call last):
    ...
    dejavu.toolkit.errors.ConfigError: huge.png: the image is 20000 x 20000 pixels (400.0 MP), ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dejavu.toolkit.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "check_image_pixels",
    "max_image_pixels",
    "set_max_image_pixels",
]

#: 100 megapixels: a 12 000 x 8 000 photo passes, a 20 000 x 20 000 bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_ENV = "DEJAVU_MAX_IMAGE_PIXELS"
_UNSET = object()
_limit: object = _UNSET


def _from_env() -> int | None:
    value = os.environ.get(_ENV)
    if value is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    if value.strip().lower() in ("", "none", "null"):
        return None
    return int(value)


def max_image_pixels() -> int | None:
    """The current limit in pixels (``None``: no limit).

    Example:
        >>> max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
        True
    """
    if _limit is _UNSET:
        return _from_env()
    return _limit  # type: ignore[return-value]


def set_max_image_pixels(limit: int | None) -> None:
    """Set the process-wide limit (and ``$DEJAVU_MAX_IMAGE_PIXELS`` for spawned workers).

    Raises:
        ConfigError: for a limit that is not a positive integer or ``None``.
    """
    global _limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"data.max_image_pixels must be a positive integer or null, got {limit!r}"
        )
    _limit = limit
    os.environ[_ENV] = "none" if limit is None else str(limit)


def check_image_pixels(size: Sequence[int], path: object, limit: int | None) -> None:
    """Refuse an image whose ``(width, height)`` exceeds the limit.

    Args:
        size: ``(width, height)`` as PIL's ``Image.size`` (read from the header).
        path: the file, named in the error.
        limit: the limit in pixels (:func:`max_image_pixels`); ``None``: no limit.

    Raises:
        ConfigError: naming the file, its size, the limit and the config key.
    """
    if limit is None:
        return
    w, h = (int(v) for v in size)
    if w * h > limit:
        raise ConfigError(
            f"{path}: the image is {w} x {h} pixels ({w * h / 1e6:.1f} MP), more than "
            f"data.max_image_pixels = {limit} ({limit / 1e6:.1f} MP); it was not decoded. "
            "Downscale it or raise data.max_image_pixels (null: no limit)"
        )
