"""Load local weights into a base network: the whole network or only its backbone.

Nothing is ever downloaded: ``pretrained`` is a path to a state_dict saved with
``torch.save`` (``.pth`` / ``.pt`` / ``.ckpt``, read with ``weights_only=True``)
or with safetensors (``.safetensors``). Checkpoints that wrap the state_dict
(``{"state_dict": ...}`` as Lightning writes, ``{"model": ...}``, ...) are
unwrapped.

Which module the file is meant for is worked out from the file itself: each
module of ``model.pretrained_targets()`` (the whole network, the wrapped
library model where there is one, the backbone) is tried, with and without
stripping a common key prefix of the file (``"module."``, ``"model."``,
``"backbone."``, ``"features."``, ...), and the pairing that loads the most
tensors (matched by name and shape) wins. Names also match when they differ
only in ``.`` vs ``_`` (timm's ``features_only`` wrappers flatten
``stages.0`` into ``stages_0``), so a timm classification checkpoint loads
into a ``features_only`` backbone.

A file from which less than ``min_fraction`` of the chosen module's tensors
load is refused with a ``ValueError``; otherwise the missing, unexpected and
shape-mismatched keys are listed in the returned :class:`PretrainedReport`
(and in a warning from :func:`dejavu.toolkit.models.create_model`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dejavu.toolkit.errors import ConfigError, UserPathError

__all__ = ["PretrainedReport", "load_pretrained", "read_state_dict"]

# Keys under which common checkpoint formats keep the state_dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "weights")


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the file read.
        target: which module the file was loaded into (e.g. ``"backbone"``).
        prefix: the key prefix stripped from the file's keys (``""`` for none).
        loaded: module keys that received a tensor from the file.
        missing: module keys the file did not provide (left as initialised).
        unexpected: file keys that were not used.
        mismatched: ``"key: file shape vs module shape"`` for names that
            matched but whose shapes did not (left as initialised).
    """

    path: Path
    target: str
    prefix: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every tensor of the file and of the target module was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, max_keys: int = 10) -> str:
        """A human-readable account, listing at most ``max_keys`` keys per group."""

        def show(keys: tuple[str, ...]) -> str:
            more = f", ... ({len(keys) - max_keys} more)" if len(keys) > max_keys else ""
            return ", ".join(keys[:max_keys]) + more

        prefix = f" (file key prefix {self.prefix!r} stripped)" if self.prefix else ""
        lines = [f"loaded {len(self.loaded)} tensors from {self.path} into the {self.target}"]
        lines[0] += prefix
        groups = [
            ("missing in the file", self.missing),
            ("unused from the file", self.unexpected),
            ("shape mismatch (left as initialised)", self.mismatched),
        ]
        lines += [f"  {what} ({len(keys)}): {show(keys)}" for what, keys in groups if keys]
        return "\n".join(lines)


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state_dict from a local ``torch.save`` or safetensors file.

    Args:
        path: the file.

    Returns:
        name -> tensor (on the CPU). A checkpoint that wraps its state_dict
        (``{"state_dict": ...}``, ``{"model": ...}``, ...) is unwrapped;
        tensors that are not parameters (e.g. a Lightning ``"epoch"``) are dropped.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file cannot be read or holds no state_dict.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(nn.Linear(2, 3).state_dict(), f"{d}/w.pt")
        ...     sorted(read_state_dict(f"{d}/w.pt"))
        ['bias', 'weight']
    """
    file = Path(path)
    if not file.is_file():
        raise UserPathError(f"pretrained weights file not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(file), device="cpu")
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            f"could not read {file} as a state_dict (torch.save with weights_only=True, "
            f"or .safetensors): {type(err).__name__}: {err}"
        ) from err
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                tensors = {k: v for k, v in inner.items() if isinstance(v, Tensor)}
                if tensors:
                    obj = tensors
                    break
    if not _is_state_dict(obj):
        raise ConfigError(
            f"{file} does not hold a state_dict (a mapping of names to tensors); "
            f"found {type(obj).__name__}"
            + (f" with keys {list(obj)[:10]}" if isinstance(obj, Mapping) else "")
        )
    return dict(obj)


def _norm(key: str) -> str:
    return key.replace(".", "_")


def _norm_index(module_sd: Mapping[str, Tensor]) -> dict[str, str | None]:
    """Normalised key -> module key (``None`` where two module keys normalise alike)."""
    index: dict[str, str | None] = {}
    for k in module_sd:
        n = _norm(k)
        index[n] = None if n in index else k
    return index


def _candidate_prefixes(
    file_keys: list[str], module_sd: Mapping[str, Tensor], index: dict[str, str | None], top: int
) -> list[str]:
    """The ``top`` file-key prefixes (none, or one or two dotted components) whose removal
    turns the most file keys into module keys."""
    votes: Counter[str] = Counter({"": 0})
    for key in file_keys:
        parts = key.split(".")
        for n in range(min(3, len(parts))):
            name = ".".join(parts[n:])
            if name in module_sd or index.get(_norm(name)) is not None:
                votes[".".join(parts[:n]) + "." if n else ""] += 1
    return [p for p, _ in votes.most_common(top)]


@dataclass
class _Match:
    pairs: dict[str, str]  # module key -> file key
    mismatched: dict[str, str]  # file key -> "module key: file shape vs model shape"


def _match(
    file_sd: Mapping[str, Tensor],
    prefix: str,
    module_sd: Mapping[str, Tensor],
    by_norm: dict[str, str | None],
) -> _Match:
    pairs: dict[str, str] = {}
    mismatched: dict[str, str] = {}
    for fkey, tensor in file_sd.items():
        if not fkey.startswith(prefix):
            continue
        name = fkey[len(prefix) :]
        mkey = name if name in module_sd else by_norm.get(_norm(name))
        if mkey is None or mkey in pairs:
            continue
        if tuple(module_sd[mkey].shape) == tuple(tensor.shape):
            pairs[mkey] = fkey
        else:
            mismatched[fkey] = (
                f"{mkey}: file {tuple(tensor.shape)} vs model {tuple(module_sd[mkey].shape)}"
            )
    return _Match(pairs, mismatched)


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    min_fraction: float = 0.5,
) -> PretrainedReport:
    """Load a local state_dict into ``model`` or the part of it the file was made for.

    Args:
        model: a base network. Its ``pretrained_targets()`` (if it has that
            method) lists the candidate modules; otherwise only ``model`` itself.
        path: a ``torch.save`` or ``.safetensors`` state_dict file.
        min_fraction: the least fraction of the chosen module's tensors that
            must load for the file to count as compatible.

    Returns:
        A :class:`PretrainedReport` (what loaded, what is missing, unused or mismatched).

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file holds no state_dict, or too little of it fits
            any candidate module (the message shows example keys of both).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(nn.Linear(2, 3).state_dict(), f"{d}/w.pt")
        ...     load_pretrained(nn.Linear(2, 3), f"{d}/w.pt").complete
        True
    """
    file_sd = read_state_dict(path)
    # DataParallel / DDP wrappers put "module." in front of every key
    if all(k.startswith("module.") for k in file_sd):
        file_sd = {k[len("module.") :]: v for k, v in file_sd.items()}
    targets_fn = getattr(model, "pretrained_targets", None)
    targets: list[tuple[str, nn.Module]] = (
        list(targets_fn()) if callable(targets_fn) else [("whole network", model)]
    )

    best: tuple[int, str, nn.Module, dict[str, Tensor], str, _Match] | None = None
    for desc, module in targets:
        module_sd = module.state_dict()
        index = _norm_index(module_sd)
        for prefix in _candidate_prefixes(list(file_sd), module_sd, index, top=3):
            m = _match(file_sd, prefix, module_sd, index)
            # strictly more wins, so ties go to the earlier target and the shorter prefix
            if best is None or len(m.pairs) > best[0]:
                best = (len(m.pairs), desc, module, module_sd, prefix, m)
    assert best is not None
    n_loaded, desc, module, module_sd, prefix, match = best

    if n_loaded == 0 or n_loaded < min_fraction * len(module_sd):
        raise ConfigError(
            f"{path} does not fit {type(model).__name__}: at best {n_loaded} of its "
            f"{len(file_sd)} tensors match (by name and shape) the {len(module_sd)} tensors of "
            f"the {desc}, below min_fraction={min_fraction}. Candidates tried: "
            f"{[d for d, _ in targets]}. File keys e.g. {list(file_sd)[:5]}; "
            f"{desc} keys e.g. {list(module_sd)[:5]}"
        )
    new_sd = {mkey: file_sd[fkey] for mkey, fkey in match.pairs.items()}
    module.load_state_dict(new_sd, strict=False)
    used = set(match.pairs.values()) | set(match.mismatched)
    mismatched_keys = {s.split(":")[0] for s in match.mismatched.values()}
    return PretrainedReport(
        path=Path(path),
        target=desc,
        prefix=prefix,
        loaded=tuple(match.pairs),
        missing=tuple(k for k in module_sd if k not in match.pairs and k not in mismatched_keys),
        unexpected=tuple(k for k in file_sd if k not in used),
        mismatched=tuple(match.mismatched.values()),
    )
