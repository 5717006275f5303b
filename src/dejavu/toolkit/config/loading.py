"""Reading and writing configs: YAML with ``_base_`` inheritance, ``--set`` overrides,
mapping <-> dataclass conversion with type checks (see :mod:`dejavu.toolkit.config`)."""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

import yaml

from dejavu.toolkit.config.schema import ExperimentConfig
from dejavu.toolkit.config.validation import validate_config
from dejavu.toolkit.errors import ConfigError, UserPathError, yaml_error_message

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_yaml",
    "save_config",
]

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float.

    YAML 1.1 (PyYAML) needs a dot in a float's mantissa, so ``1e-3`` would be
    the string "1e-3"; YAML 1.2 and every user expect a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(exc, where)) from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML file and resolve its ``_base_`` chain into one mapping.

    Args:
        path: the YAML file.

    Returns:
        The merged mapping (no ``_base_`` keys left; ``name`` set to the
        file's stem when no file in the chain sets it).

    Raises:
        UserPathError: when the file or one of its bases is missing.
        ConfigError: on invalid YAML, a non-mapping document or a ``_base_`` cycle.
    """
    path = Path(path)
    data = _load_chain(path, ())
    data.setdefault("name", path.stem)
    return data


def _load_chain(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"_base_ cycle: {chain}")
    if not path.is_file():
        raise UserPathError(f"config file not found: {path}")
    data = _parse_yaml(path.read_text(), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _deep_merge(merged, _load_chain(path.parent / base, (*seen, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``base`` (mappings recursively; anything else replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in new.items():
        if isinstance(value, Mapping):
            value = dict(value)
            if value.pop("_replace_", False):
                out[key] = copy.deepcopy(value)
            elif isinstance(out.get(key), Mapping):
                out[key] = _deep_merge(out[key], value)
            else:
                out[key] = _deep_merge({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- dict <-> dataclass
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if val_tp is Any:
            return "mapping"
        return f"mapping of {_type_name(key_tp)} to {_type_name(val_tp)}"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


class _MismatchError(Exception):
    pass


def _convert(value: Any, tp: Any) -> Any:
    """``value`` checked against (and lightly converted to) the annotation ``tp``."""
    if tp is Any:
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg)
            except _MismatchError:
                continue
        raise _MismatchError
    if tp is type(None):
        if value is None:
            return None
        raise _MismatchError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _MismatchError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _MismatchError
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _MismatchError
    if tp is str:
        if isinstance(value, str):
            return value
        raise _MismatchError
    if origin is list:
        (arg,) = typing.get_args(tp)
        if isinstance(value, list | tuple):
            return [_convert(v, arg) for v in value]
        raise _MismatchError
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if isinstance(value, Mapping):
            return {_convert(k, key_tp): _convert(v, val_tp) for k, v in value.items()}
        raise _MismatchError
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module


def _from_mapping(cls: type[T], data: Any, path: str) -> T:
    where = path or "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r} ({type(data).__name__})")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {
        f.name: f.default_factory()
        for f in dataclasses.fields(cls)
        if f.default_factory is not dataclasses.MISSING
        and not dataclasses.is_dataclass(hints[f.name])
    }
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {key_path!r}; valid keys at {where}: {names}")
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = _from_mapping(tp, value, key_path)
            continue
        if isinstance(value, Mapping) and key in defaults:
            # Free-form mappings start from their defaults, whose keys every variant accepts.
            value = {**defaults[key], **value}
        try:
            kwargs[key] = _convert(value, tp)
        except _MismatchError:
            raise ConfigError(
                f"config key {key_path!r} must be {_type_name(tp)}, "
                f"got {value!r} ({type(value).__name__})"
            ) from None
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a (possibly partial) mapping.

    Missing keys take their defaults.

    Raises:
        ConfigError: on unknown keys, wrong types or invalid values (see module docs).

    Example:
        >>> config_from_dict({"optim": {"lr": 0.01}}).optim.lr
        0.01
    """
    cfg = _from_mapping(ExperimentConfig, data, "")
    validate_config(cfg)
    return cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The full config as plain Python data (what ``config.yaml`` holds).

    Example:
        >>> config_to_dict(ExperimentConfig())["optim"]["name"]
        'adamw'
    """
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the full resolved config as YAML (loadable with :func:`load_config`), atomically.

    Returns:
        The path written.
    """
    from dejavu.toolkit.artifact import atomic_write

    path = Path(path)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    with atomic_write(path, "w") as f:  # a reader never sees a half-written config
        f.write(text)
    return path


# --------------------------------------------------------------------------- overrides
def _section_fields(path: Sequence[str]) -> tuple[type | None, dict[str, Any]]:
    """Walk the dataclass tree along ``path``; return the last dataclass and its hints."""
    cls: type | None = ExperimentConfig
    for part in path:
        assert cls is not None
        tp = _hints(cls).get(part)
        cls = tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None
        if cls is None:
            return None, {}
    return cls, _hints(cls) if cls is not None else {}


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a config mapping.

    The value is parsed as YAML. Keys that name dataclass fields are checked
    here so that a typo is reported with the valid keys; a mapping assigned to
    a free-form mapping field (``dejavu.redaction``) replaces it, one assigned
    to a section (``optim``) is merged into it.

    Example:
        >>> apply_overrides({}, ["optim.lr=0.1", "dejavu.enabled=false"])
        {'optim': {'lr': 0.1}, 'dejavu': {'enabled': False}}
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override must look like 'a.b.c=value', got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override key must be a dotted path like 'optim.lr', got {key!r}")
        value = _parse_yaml(text, f"override {item!r}") if text.strip() else None

        # Check every part that lies inside the dataclass tree (not inside free-form dicts).
        for depth in range(len(parts)):
            cls, hints = _section_fields(parts[:depth])
            if cls is None:
                break
            if parts[depth] not in hints:
                where = ".".join(parts[:depth]) or "the top level"
                valid = [f.name for f in dataclasses.fields(cls)]
                raise ConfigError(
                    f"unknown config key {'.'.join(parts[: depth + 1])!r} in override {item!r}; "
                    f"valid keys at {where}: {valid}"
                )

        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        leaf_cls, _ = _section_fields(parts)
        if (
            isinstance(value, Mapping)
            and leaf_cls is not None
            and isinstance(node.get(parts[-1]), dict)
        ):
            node[parts[-1]] = _deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: a YAML file (its ``_base_`` chain is resolved), or None.
        overrides: ``a.b.c=value`` strings applied after the file.

    Returns:
        The validated config.

    Raises:
        UserPathError: when a file is missing.
        ConfigError: on unknown keys, wrong types or invalid values.

    Example:
        >>> load_config(None, ["dejavu.enabled=false"]).dejavu.enabled
        False
    """
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a sequence of 'key=value' strings, got {overrides!r}")
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data)
