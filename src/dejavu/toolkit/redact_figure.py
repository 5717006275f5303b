"""The redaction figure: an image beside each of its redactions.

Redactions work on normalised images (0 = the dataset mean), so the image is
normalised with the ImageNet statistics the datasets use, redacted, and
turned back into colours: a removed pixel shows as the mean colour (grey),
a removed frequency band as the blur or ringing it leaves.

Example:
    >>> image = torch.rand(1, 3, 64, 96)
    >>> tiles = redaction_tiles(image, ["lowpass", "random"], seed=0)
    >>> [title for title, _ in tiles]
    ['input', 'lowpass', 'random']
    >>> tiles[1][1].shape
    (64, 96, 3)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from dejavu._validation import check_image
from dejavu.redaction import REDACTION_NAMES, create_redaction
from dejavu.toolkit.data.io import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor, read_image
from dejavu.toolkit.visualize import denormalize, save_panel

__all__ = [
    "DEFAULT_MODES",
    "load_figure_image",
    "parse_params",
    "redaction_tiles",
    "save_redaction_figure",
]

#: The redactions the figure shows by default: two spectral, three spatial.
DEFAULT_MODES: tuple[str, ...] = ("lowpass", "bandstop", "random", "checkerboard", "blocks")

# "choice" needs a list of redactions and draws one at random: not a figure column.
_FIGURE_MODES = tuple(n for n in REDACTION_NAMES if n != "choice")


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (values read as YAML) into a dict.

    A key may be ``mode.key`` to apply to one redaction only.

    Example:
        >>> parse_params(["cutoff=0.2", "bandstop.band=[0.1, 0.3]"])
        {'cutoff': 0.2, 'bandstop.band': [0.1, 0.3]}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"redaction parameter must look like key=value, got {item!r}")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"redaction parameter {item!r}: invalid value ({exc})") from exc
    return out


def _accepted(mode: str) -> set[str]:
    cls = type(create_redaction(mode))
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _mode_kwargs(modes: Sequence[str], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each mode the parameters it takes; reject a parameter no mode takes."""
    accepted = {m: _accepted(m) for m in modes}
    kwargs: dict[str, dict[str, Any]] = {m: {} for m in modes}
    for key, value in params.items():
        mode, dot, name = key.rpartition(".")
        targets = [mode] if dot else [m for m in modes if name in accepted[m]]
        if dot and mode not in kwargs:
            raise ValueError(
                f"parameter {key!r} names redaction {mode!r}, which is not among the modes "
                f"shown: {', '.join(modes)}"
            )
        if dot and name not in accepted[mode]:
            raise ValueError(
                f"redaction {mode!r} has no parameter {name!r}; "
                f"allowed: {', '.join(sorted(accepted[mode])) or 'none'}"
            )
        if not targets:
            takes = {m: sorted(a) for m, a in accepted.items()}
            raise ValueError(f"no redaction shown takes parameter {name!r}; parameters: {takes}")
        for m in targets:
            kwargs[m][name] = value
    return kwargs


def load_figure_image(path: str | Path, max_size: int | None = 512) -> Tensor:
    """Read an image file as a ``1 x 3 x H x W`` float tensor in ``[0, 1]``.

    Args:
        path: any format PIL reads.
        max_size: the longest side is reduced to this (aspect kept); ``None``
            keeps the size.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is not a readable image.
    """
    from PIL import Image

    array = read_image(path)
    if max_size is not None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 8:
            raise ValueError(f"max_size must be an int >= 8 or None, got {max_size!r}")
        h, w = array.shape[:2]
        scale = max_size / max(h, w)
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            array = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.LANCZOS))
    return image_to_tensor(array).unsqueeze(0)


def redaction_tiles(
    image: Tensor,
    modes: Sequence[str] = DEFAULT_MODES,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[tuple[str, np.ndarray]]:
    """The figure's tiles: ``("input", image)`` then ``(mode, redacted image)`` per mode.

    Args:
        image: ``1 x 3 x H x W`` in ``[0, 1]``.
        modes: redaction names (:data:`dejavu.redaction.REDACTION_NAMES` but
            ``"choice"``).
        seed: seed of the random draws; each mode gets a generator seeded with it.
        params: ``key=value`` parameters as from :func:`parse_params`: a plain
            key goes to every mode that takes it, ``mode.key`` to that mode.
        mean, std: normalisation applied before redacting.

    Returns:
        ``(title, H x W x 3 uint8)`` pairs; a title carries the parameters
        that were set.
    """
    check_image(image, "image", channels=3)
    if image.shape[0] != 1:
        raise ValueError(f"image must hold one image (1 x 3 x H x W), got {tuple(image.shape)}")
    if isinstance(modes, str) or len(modes) == 0:
        raise ValueError(f"modes must be a non-empty list of redaction names, got {modes!r}")
    for mode in modes:
        if mode not in _FIGURE_MODES:
            raise ValueError(
                f"unknown redaction mode {mode!r}; allowed: {', '.join(_FIGURE_MODES)}"
            )
    kwargs = _mode_kwargs(modes, params or {})
    m = torch.tensor(mean, dtype=image.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(1, 3, 1, 1)
    normalized = (image - m) / s
    tiles = [("input", denormalize(normalized[0], mean, std))]
    for mode in modes:
        redaction = create_redaction(mode, **kwargs[mode])
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            redacted = redaction(normalized, generator=generator).image
        set_params = ", ".join(f"{k}={v}" for k, v in kwargs[mode].items())
        title = f"{mode} ({set_params})" if set_params else mode
        tiles.append((title, denormalize(redacted[0], mean, std)))
    return tiles


def save_redaction_figure(
    image: str | Path,
    out: str | Path,
    modes: Sequence[str] = DEFAULT_MODES,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    max_size: int | None = 512,
    dpi: int = 100,
) -> Path:
    """Write the figure for an image file: the input, then one titled column per redaction.

    Each tile is drawn at the image's own resolution (at least 160 pixels high
    so that titles fit): the PNG is about ``(len(modes) + 1) * W`` wide.

    Args:
        image: image file.
        out: output PNG.
        modes, seed, params: see :func:`redaction_tiles`.
        max_size: see :func:`load_figure_image`.
        dpi: resolution of the figure.

    Returns:
        The path written.
    """
    tensor = load_figure_image(image, max_size)
    tiles = redaction_tiles(tensor, modes, seed=seed, params=params)
    h = tensor.shape[-2]
    return save_panel(
        tiles, out, cell_size=max(h, 160) / dpi, dpi=dpi, suptitle=f"{Path(image).name}: redactions"
    )
