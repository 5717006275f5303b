"""Reading the checkpoint and weight files a user names, with one-line errors.

A file given as ``--ckpt``, ``--resume`` or an export source can be wrong in
several ways, and each gets its own :class:`~dejavu.toolkit.errors.ConfigError`
(exit status 2 on the command line) that names the file:

- **not a checkpoint**: empty, or neither a ``torch.save`` archive (a zip)
  nor a pickle (e.g. random bytes, a text file, an image);
- **truncated**: a ``torch.save`` archive cut short (its zip directory, at
  the end of the file, is missing: a copy or a save that did not finish);
- **corrupt**: a complete archive whose contents do not read back;
- **not a safe checkpoint**: a pickle holding objects other than tensors
  and plain data (:func:`dejavu._validation.unsafe_checkpoint_error`);
- **made for another model**: its weights do not fit the network the
  config (or the checkpoint's own config) builds: the error lists a few
  missing and unexpected keys and shape mismatches.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.ckpt"
    >>> _ = p.write_bytes(b"hello")
    >>> read_checkpoint(p)
    Traceback (most recent call last):
    ...
    dejavu.toolkit.errors.ConfigError: .../x.ckpt is not a checkpoint: ...
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dejavu._validation import unsafe_checkpoint_error
from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = ["check_state_fits", "load_state_checked", "read_checkpoint", "safetensors_error"]

_ZIP_MAGIC = b"PK\x03\x04"


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if "WeightsUnpickler error:" in text:  # torch's reason, inside a long paragraph
        reason = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0]
        return reason.strip(" .") or type(err).__name__
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that say what is wrong.

    Raises:
        UserPathError: no file at ``path``.
        ConfigError: the file is empty, not a checkpoint, truncated, corrupt or
            not a safe checkpoint (see the module docs).
    """
    path = Path(path)
    if not path.is_file():
        raise UserPathError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ConfigError(f"{path} is not a checkpoint: the file is empty (0 bytes)")
    with path.open("rb") as f:
        head = f.read(4)
    is_zip = head == _ZIP_MAGIC
    if is_zip and not zipfile.is_zipfile(path):
        raise ConfigError(
            f"{path} is truncated: a torch.save archive without its end ({size} bytes; the "
            "copy or the save that wrote it did not finish)"
        )
    is_pickle = len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5
    if not is_zip and not is_pickle:
        raise ConfigError(
            f"{path} is not a checkpoint: neither a torch.save archive nor a pickle "
            f"(it starts with {head!r})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if is_zip or "Unsupported global" in str(err):
            raise ConfigError(str(unsafe_checkpoint_error(path, err))) from None
        raise ConfigError(
            f"{path} is not a checkpoint: a pickle, but not a torch.save file ({_first_line(err)})"
        ) from None
    except EOFError:
        raise ConfigError(f"{path} is truncated: the data ends early ({size} bytes)") from None
    except (RuntimeError, OSError, KeyError, ValueError) as err:
        what = "corrupt" if is_zip else "not a checkpoint"
        raise ConfigError(f"{path} is {what}: torch.load failed ({_first_line(err)})") from None


def _some(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def check_state_fits(
    expected: Mapping[str, Tensor],
    state: Mapping[str, Any],
    path: str | Path,
    network: str = "the network",
) -> None:
    """Check that ``state`` has exactly ``expected``'s keys and shapes.

    Args:
        expected: the network's own state dict.
        state: the weights read from ``path``.
        path: the file, named in the error.
        network: how the network is named in the error (e.g. ``"fpn_test_resnet"``).

    Raises:
        ConfigError: ``<path> was made for another model than <network>: missing
            keys ...; unexpected keys ...; other shapes ...``.

    Example:
        >>> check_state_fits({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, "x.ckpt", "net")
        Traceback (most recent call last):
        ...
        dejavu.toolkit.errors.ConfigError: x.ckpt was made for another model than net: \
1 missing key (w); 1 unexpected key (v)
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if isinstance(state[k], Tensor) and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {label} key{'s' * (len(keys) != 1)} ({_some(keys)})")
    if shapes:
        parts.append(f"{len(shapes)} with another shape (file vs network: {_some(shapes, 2)})")
    raise ConfigError(f"{path} was made for another model than {network}: " + "; ".join(parts))


def load_state_checked(
    model: nn.Module, state: Mapping[str, Any], path: str | Path, network: str = "the network"
) -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` after :func:`check_state_fits`."""
    check_state_fits(model.state_dict(), state, path, network)
    model.load_state_dict(dict(state), strict=True)
    return model


def safetensors_error(path: str | Path, err: BaseException) -> ConfigError:
    """The error for a ``.safetensors`` file that safetensors cannot read.

    Example:
        >>> str(safetensors_error("b.safetensors", OSError("Error while deserializing header")))
        'b.safetensors is not a readable safetensors file (truncated or not safetensors: \
Error while deserializing header)'
    """
    return ConfigError(
        f"{path} is not a readable safetensors file (truncated or not safetensors: "
        f"{_first_line(err)})"
    )
