"""Reading images, label maps and dense targets from disk, with errors that name the file.

Every reader here turns the many ways a file can be bad (missing, truncated,
not an image, wrong number of channels) into an exception that names the
file and the problem, so that a broken sample in a 10 000-image dataset is
found from the message alone. PIL does the decoding; its errors are wrapped.

All readers return numpy arrays in the file's own layout (``H x W`` or
``H x W x C``); :func:`image_to_tensor` and friends turn them into the
tensors of the sample format (see :mod:`dejavu.toolkit.data`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from dejavu.toolkit.data.limits import check_image_pixels, max_image_pixels
from dejavu.toolkit.errors import ConfigError, UserPathError
from dejavu.toolkit.tasks.heads import IGNORE_INDEX  # the segmentation target's ignore label

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "check_label_values",
    "check_same_size",
    "image_to_tensor",
    "input_images",
    "read_array",
    "read_image",
    "read_label",
    "read_rgb_label",
    "read_uint16",
    "require_dir",
    "require_file",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

PathLike = str | os.PathLike[str]


def require_dir(path: PathLike, layout: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a directory.

    Args:
        path: the directory a loader needs.
        layout: a short description of the expected layout, shown in the error.

    Raises:
        FileNotFoundError: naming ``path`` and ``layout`` when it is not a directory.

    Example:
        >>> require_dir(".", "anything").is_dir()
        True
    """
    p = Path(path)
    if not p.is_dir():
        raise UserPathError(f"directory not found: {p} (expected layout: {layout})")
    return p


def require_file(path: PathLike, layout: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a file, else raise naming the layout.

    Raises:
        FileNotFoundError: naming ``path`` and ``layout`` when it is not a file.
    """
    p = Path(path)
    if not p.is_file():
        raise UserPathError(f"file not found: {p} (expected layout: {layout})")
    return p


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_bomb_guard_off() -> Iterator[None]:
    # PIL's own decompression-bomb guard (a warning above ~89 MP, an error above twice
    # that) is replaced by data.max_image_pixels, checked right after the header is read.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _open(path: PathLike) -> Image.Image:
    """Open and fully decode an image, wrapping PIL's errors with the file name.

    The image's size is read from its header and checked against
    ``data.max_image_pixels`` (:mod:`dejavu.toolkit.data.limits`) before
    anything is decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise UserPathError(f"image file not found: {p}")
    if p.stat().st_size == 0:
        raise ConfigError(f"{p}: empty file (0 bytes), not an image")
    try:
        with _pil_bomb_guard_off():
            img = Image.open(p)  # reads the header only
        check_image_pixels(img.size, p, max_image_pixels())
        # Image.open only reads the header; a truncated file fails in load().
        img.load()
    except UnidentifiedImageError as e:
        raise ConfigError(f"{p}: not a readable image file ({e})") from e
    except ConfigError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise ConfigError(f"{p}: corrupt or truncated image ({e})") from e
    return img


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as ``H x W x 3`` uint8 RGB, the way an image viewer shows it.

    - EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`): a
      photo stored sideways with "rotate 90" in its EXIF comes out upright,
      as viewers (and OpenCV's ``imread``) show it. Label maps are read as
      stored (:func:`read_label`).
    - Grey-scale, palette, CMYK, LA and RGBA files are converted to RGB
      (alpha is dropped, not composited).
    - 16-bit grey-scale files (mode ``I;16``, and ``I`` read as 16-bit) are
      scaled to 8 bits (``round(v / 257)``, so 65535 -> 255) instead of being
      clipped at 255; 16-bit RGB PNGs are reduced to 8 bits by PIL itself.
    - A file larger than ``data.max_image_pixels`` is refused before it is
      decoded (:mod:`dejavu.toolkit.data.limits`).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is empty, corrupt, truncated, not an
            image or too large.

    Example:
        >>> import tempfile, PIL.Image
        >>> f = tempfile.NamedTemporaryFile(suffix=".png").name
        >>> PIL.Image.new("RGB", (4, 3)).save(f)
        >>> read_image(f).shape
        (3, 4, 3)
    """
    img = _open(path)
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as e:  # an unreadable EXIF block
        raise ConfigError(f"{path}: corrupt EXIF data ({e})") from e
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img).astype(np.float64)
        grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


def input_images(paths: Sequence[PathLike]) -> list[Path]:
    """The image files named by ``paths`` (``dejavu predict --input``), all checked first.

    A folder stands for the image files directly inside it (by extension, any
    case: ``.png .jpg .jpeg .bmp .tif .tiff .webp``; other files and hidden
    ones are ignored); a file is taken whatever its extension. Every image is
    then decoded once (:func:`read_image`), so a missing, empty, truncated,
    non-image or too-large file is reported, naming it, before any
    prediction is written.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without images.
        ValueError: naming the first file that cannot be read as an image.
    """
    from dejavu.toolkit.data.folder import IMAGE_EXTENSIONS

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".")
                and f.suffix.lower() in IMAGE_EXTENSIONS
            )  # fmt: skip
            if not found:
                raise UserPathError(
                    f"{p}: no image files in this folder (looked for {' '.join(IMAGE_EXTENSIONS)})"
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserPathError(f"input not found: {p}")
    for f in files:
        read_image(f)
    return files


def read_label(path: PathLike) -> np.ndarray:
    """Read a single-channel label map (8- or 16-bit, or palette indices) as ``H x W``.

    Palette ("P") images give their indices, as the PASCAL/ADE tools write them.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is corrupt or has several channels (an
            RGB colour-coded label must be converted to class indices first).
    """
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise ConfigError(
            f"{path}: label maps must be single-channel (mode L, P, I or I;16), "
            f"got mode {img.mode!r} with {len(img.getbands())} bands; convert colour-coded "
            "labels to class indices first"
        )
    arr = np.array(img)
    if arr.ndim != 2:
        raise ConfigError(f"{path}: expected a 2-D label map, got shape {arr.shape}")
    return arr


def read_rgb_label(path: PathLike) -> np.ndarray:
    """Read a colour-coded label map (COCO panoptic PNGs) as stored: ``H x W x 3`` uint8.

    Unlike :func:`read_image`, nothing is converted or rotated (EXIF is
    ignored): the three bytes of a pixel are its code (COCO panoptic:
    ``id = R + 256 G + 256**2 B``), so only 8-bit RGB files are accepted.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is corrupt, too large or not 8-bit RGB.

    Example:
        >>> import tempfile, PIL.Image
        >>> f = tempfile.NamedTemporaryFile(suffix=".png").name
        >>> PIL.Image.new("RGB", (4, 3), (1, 2, 0)).save(f)
        >>> read_rgb_label(f)[0, 0].tolist()
        [1, 2, 0]
    """
    img = _open(path)
    if img.mode != "RGB":
        raise ConfigError(
            f"{path}: a colour-coded label map must be an 8-bit RGB image (mode RGB), "
            f"got mode {img.mode!r} with {len(img.getbands())} bands"
        )
    return np.array(img, dtype=np.uint8)


def read_uint16(path: PathLike) -> np.ndarray:
    """Read a 16-bit single-channel PNG (depth maps) as ``H x W`` uint16.

    Raises:
        ValueError: naming the file if it is not a single-channel 16-bit image.
    """
    img = _open(path)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise ConfigError(
            f"{path}: expected a 16-bit single-channel PNG (mode I;16), got mode {img.mode!r}"
        )
    arr = np.array(img)
    if arr.ndim != 2:
        raise ConfigError(f"{path}: expected a 2-D 16-bit map, got shape {arr.shape}")
    if arr.dtype != np.uint16:
        if arr.min() < 0 or arr.max() > 65535:
            raise ConfigError(f"{path}: values outside the 16-bit range [0, 65535]")
        arr = arr.astype(np.uint16)
    return arr


def read_array(path: PathLike, ndim: Sequence[int] = (2, 3)) -> np.ndarray:
    """Read a ``.npy`` array (no pickles), checking its number of dimensions.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is not a valid ``.npy`` or has the
            wrong number of dimensions.
    """
    p = Path(path)
    if not p.is_file():
        raise UserPathError(f"array file not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{p}: corrupt or unreadable .npy file ({e})") from e
    if arr.ndim not in tuple(ndim):
        raise ConfigError(f"{p}: expected an array with ndim in {tuple(ndim)}, got {arr.shape}")
    return arr


def check_same_size(
    image: np.ndarray, target: np.ndarray, target_path: PathLike, image_path: PathLike
) -> None:
    """Check that a target has the image's height and width.

    Raises:
        ValueError: naming both files and both sizes (as ``H x W``).

    Example:
        >>> check_same_size(np.zeros((2, 3, 3)), np.zeros((2, 3)), "l.png", "i.png")
    """
    ih, iw = image.shape[:2]
    th, tw = target.shape[:2]
    if (ih, iw) != (th, tw):
        raise ConfigError(
            f"size mismatch: {target_path} is {th}x{tw} (HxW) but its image "
            f"{image_path} is {ih}x{iw}"
        )


def check_label_values(
    label: np.ndarray, num_classes: int, path: PathLike, ignore_index: int | None = IGNORE_INDEX
) -> None:
    """Check that every label is a class index ``0..num_classes-1`` or ``ignore_index``.

    Args:
        label: the label map as stored in ``path``.
        num_classes: values ``0..num_classes-1`` are allowed.
        path: the file, named in the error.
        ignore_index: one more allowed value; None allows none.

    Raises:
        ValueError: naming the file, the offending values and the allowed range.

    Example:
        >>> check_label_values(np.array([[0, 1], [255, 2]]), 3, "x.png")
    """
    values = np.unique(label)
    bad = values[(values < 0) | (values >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10])
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        extra = f" (or {ignore_index} = ignore)" if ignore_index is not None else ""
        raise ConfigError(
            f"{path}: label values {shown}{more} are outside the allowed range "
            f"0..{num_classes - 1}{extra}"
        )


def image_to_tensor(image: np.ndarray) -> Tensor:
    """Turn an ``H x W x 3`` uint8 array into a ``3 x H x W`` float32 tensor in ``[0, 1]``.

    Example:
        >>> image_to_tensor(np.full((2, 3, 3), 255, np.uint8)).amax().item()
        1.0
    """
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an H x W x 3 uint8 array, got {image.dtype} {image.shape}")
    arr = image if image.flags.writeable else image.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1)
    return t.to(torch.float32).div_(255.0)
