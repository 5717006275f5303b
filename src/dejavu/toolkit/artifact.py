"""The base-network artefact: ``base.safetensors`` + ``base.json``, one writer, one reader.

What runs at inference is the base network alone. A run directory (and
``dejavu export --format safetensors``) keeps it as two files:

- ``base.safetensors``: the network's state dict (tied weights stored once,
  as :func:`safetensors.torch.save_model` does);
- ``base.json`` (same folder, same stem): what is needed to rebuild the
  network: ``model`` (a :func:`~dejavu.toolkit.models.create_model` name),
  ``model_kwargs``, ``heads`` and, for use, ``task``, ``num_classes``,
  ``class_names``, ``ignore_index``, ``mean``, ``std``, ``input_size``, ...;
  ``"regeneration_removed": true`` marks a DejaVu-SA network exported without
  its training-only branch.

:func:`write_base` is the only writer (checkpointing and export use it) and
:func:`load_base` the only reader (``load_eval_model``, ``dejavu export``
verification). Every file is written to a temporary file in the same folder,
flushed to disk and moved over the old one (:func:`atomic_write`), the
weights before the JSON, so a crash never leaves a ``base.json`` that
describes weights that are not there.

Example:
    >>> import tempfile
    >>> from dejavu.toolkit.models import create_model
    >>> net = create_model("fpn_test_resnet", num_classes=3).eval()
    >>> meta = {"model": "fpn_test_resnet", "heads": {"seg": 3}}
    >>> path = write_base(net, meta, tempfile.mkdtemp())
    >>> path.name, path.with_suffix(".json").is_file()
    ('base.safetensors', True)
    >>> model, meta = load_base(path)
    >>> same = all(torch.equal(v, net.state_dict()[k]) for k, v in model.state_dict().items())
    >>> meta["heads"], same
    ({'seg': 3}, True)
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from torch import nn

from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = [
    "BASE_JSON",
    "BASE_WEIGHTS",
    "atomic_path",
    "atomic_write",
    "base_network",
    "base_paths",
    "load_base",
    "load_base_weights",
    "read_base_metadata",
    "strip_training_only",
    "write_base",
]

BASE_WEIGHTS = "base.safetensors"
BASE_JSON = "base.json"


# ------------------------------------------------------------------ atomic files
def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; on success it is fsynced and moved over ``path``.

    For writers that take a file name (``safetensors``). If the body raises,
    the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(p) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and move it over ``path``.

    If the body raises, the temporary file is removed and ``path`` is left as
    it was.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()


# ------------------------------------------------------------------ the artefact
def base_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, json)`` for a ``.safetensors`` path or a folder (its ``base.*`` files).

    Example:
        >>> [p.name for p in base_paths("runs/a")], [p.name for p in base_paths("m.safetensors")]
        (['base.safetensors', 'base.json'], ['m.safetensors', 'm.json'])
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / BASE_WEIGHTS
    return path, path.with_suffix(".json")


def strip_training_only(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without training-only parts (DejaVu-SA's regeneration branch).

    Every submodule with a ``remove_regeneration()`` method (e.g.
    :class:`dejavu.shared_attention.SharedAttention`) has it called on the
    copy; the eval-mode outputs do not change, the exported graph and weights
    shrink. A model without such parts is copied unchanged.

    Example:
        >>> net = nn.Conv2d(3, 2, 1)
        >>> strip_training_only(net) is net
        False
    """
    stripped = copy.deepcopy(model)
    for module in stripped.modules():
        remove = getattr(module, "remove_regeneration", None)
        if callable(remove):
            remove()
    return stripped


def write_base(model: nn.Module, metadata: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``model``'s weights and ``metadata`` as the base-network artefact, atomically.

    Args:
        model: the base network (any device; written from a CPU copy when needed).
        metadata: JSON-serialisable description; :func:`load_base` needs
            ``model`` and ``heads`` (and uses ``model_kwargs``).
        path: the ``.safetensors`` file, or a folder (then ``base.safetensors``
            and ``base.json`` in it).

    Returns:
        The path of the weights.
    """
    from safetensors.torch import save_model

    weights, meta_path = base_paths(path)
    if any(t.device.type != "cpu" for t in model.state_dict().values()):
        model = copy.deepcopy(model).cpu()
    with atomic_path(weights) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})
    with atomic_write(meta_path, "w") as f:
        f.write(json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")
    return weights


def read_base_metadata(weights: str | Path) -> dict[str, Any]:
    """Read the ``base.json`` beside ``base.safetensors`` (same folder, same stem).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    weights, meta_path = base_paths(weights)
    if not meta_path.is_file():
        raise UserPathError(
            f"{meta_path} not found: a base network's weights ({weights.name}) need the JSON "
            "written beside them to rebuild the network"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{meta_path} is not valid JSON (truncated or corrupt: {err})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def load_base_weights(
    model: nn.Module, weights: str | Path, network: str | None = None
) -> nn.Module:
    """Load ``base.safetensors`` into ``model`` (strictly: every key and shape must match).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file safetensors cannot read (truncated, not safetensors) or
            weights made for another network (named ``network``; default: the
            model's class), listing a few missing/unexpected keys.
    """
    from safetensors.torch import load_file

    from dejavu.toolkit.checkpoint_files import load_state_checked, safetensors_error

    weights, _ = base_paths(weights)
    if not weights.is_file():
        raise UserPathError(f"base-network weights not found: {weights}")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors' own error type varies between versions
        raise safetensors_error(weights, err) from None
    # Tied weights are stored once (save_model): fill in the aliases the file left out.
    own = model.state_dict()
    for name, value in own.items():
        if name not in state:
            twin = next(
                (k for k, v in own.items() if k in state and v.data_ptr() == value.data_ptr()),
                None,
            )
            if twin is not None:
                state[name] = state[twin]
    return load_state_checked(model, state, weights, network or type(model).__name__)


def load_base(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the base network from the artefact: ``(model in eval mode, metadata)``.

    Args:
        path: a ``.safetensors`` file (with its JSON beside it) or a folder
            holding ``base.safetensors`` + ``base.json``.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: metadata without ``model``/``heads``, or weights that do not fit.
    """
    weights, meta_path = base_paths(path)
    if not weights.is_file():
        raise UserPathError(f"base-network weights not found: {weights}")
    meta = read_base_metadata(weights)
    model = base_network(meta, meta_path)
    return load_base_weights(model, weights, str(meta["model"])).eval(), meta


def base_network(meta: Mapping[str, Any], source: str | Path = "base.json") -> nn.Module:
    """The base network that ``base.json`` metadata describes, freshly initialised.

    What :func:`load_base` loads the weights into; on its own it serves what
    does not depend on the weights, such as the inference cost of a run whose
    checkpoints were pruned (:func:`~dejavu.toolkit.compare.prune_run`).

    Args:
        meta: the metadata (``model``, ``heads``, optional ``model_kwargs`` and
            ``regeneration_removed``).
        source: where the metadata came from, for the error message.

    Raises:
        ValueError: metadata without ``model`` or ``heads``.

    Example:
        >>> net = base_network({"model": "fpn_test_efficientnet", "heads": {"depth": 1}})
        >>> type(net).__name__
        'TimmFPN'
    """
    from dejavu.toolkit.models import create_model

    for key in ("model", "heads"):
        if key not in meta:
            raise ConfigError(f"{source} has no {key!r} entry")
    model = create_model(meta["model"], heads=meta["heads"], **meta.get("model_kwargs", {}))
    if meta.get("regeneration_removed"):
        model = strip_training_only(model)
    return model
