"""The grid of a sweep: ``--grid KEY=V1,V2,...`` axes, their cells and the cells' names.

Each value is parsed as YAML, as a ``--set`` value is, and the values are
split at the commas that lie outside brackets, braces and quotes
(:func:`split_values`). So a list or a mapping is one value as written:
``dejavu.redaction.band=[0,0.1],[0.1,0.2]`` has two values, and
``dejavu.redaction={name: random, p: 0.25},{name: blocks}`` too. A cell is
one combination of the axes' values (:func:`grid_cells`), named from its
values (:func:`cell_name`): ``dejavu.enabled=false``,
``dejavu.redaction=random_p-0.25+optim.lr=0.001`` (axes joined by ``+``).

Example:
    >>> [c.name for c in grid_cells(parse_grid(["dejavu.redaction.band=[0,0.1],[0.1,0.2]"]))]
    ['dejavu.redaction.band=0_0.1', 'dejavu.redaction.band=0.1_0.2']
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dejavu.toolkit.errors import ConfigError

__all__ = [
    "RESERVED_KEYS",
    "Cell",
    "GridAxis",
    "cell_name",
    "grid_cells",
    "parse_grid",
    "parse_grid_axis",
    "split_values",
    "value_name",
]


#: Config keys the sweep sets for every run (the seed and the run directory).
RESERVED_KEYS: tuple[str, ...] = ("seed", "output_dir", "name")


#: Longer cell names are cut and end in a hash of the full name (file systems cap names at 255).
_NAME_LIMIT = 120


_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


_OPEN, _CLOSE = "[{", {"]": "[", "}": "{"}


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid`` axis: a config key and its values.

    Attributes:
        key: the dotted config key (``dejavu.redaction``).
        texts: each value as written (what the run's ``key=text`` override holds).
        values: each value parsed as YAML.
    """

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    """One combination of the grid's values.

    Attributes:
        name: :func:`cell_name` of its values (its run directory's name).
        overrides: ``key=value`` per axis, in axis order.
        values: axis key -> parsed value.
    """

    name: str
    overrides: tuple[str, ...]
    values: Mapping[str, Any]


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets, braces and quotes.

    A quote opens a quoted string only at the start of a value or after ``[``,
    ``{``, ``,`` or ``:`` (so ``it's`` is a plain word).

    Raises:
        ConfigError: for an unbalanced bracket or brace or an unclosed quote.

    Example:
        >>> split_values("[0,0.1],[0.1,0.2]")
        ['[0,0.1]', '[0.1,0.2]']
        >>> split_values("{name: random, p: 0.25},'a, b',c")
        ['{name: random, p: 0.25}', "'a, b'", 'c']
    """
    pieces: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    start = 0
    previous = ","  # the last character that was not a space
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if quote == '"' and ch == "\\":
                i += 1  # an escaped character inside "..."
            elif ch == quote:
                quote = None
        elif ch in "'\"" and previous in ",[{:":
            quote = ch
        elif ch in _OPEN:
            stack.append(ch)
        elif ch in _CLOSE:
            if not stack or stack[-1] != _CLOSE[ch]:
                raise ConfigError(
                    f"unbalanced {ch!r} at position {i + 1} of {text!r}: brackets and braces "
                    "must pair up within a value"
                )
            stack.pop()
        elif ch == "," and not stack:
            pieces.append(text[start:i])
            start = i + 1
        if not ch.isspace():
            previous = ch
        i += 1
    if quote is not None or stack:
        what = f"quote {quote}" if quote is not None else f"{stack[-1]!r}"
        raise ConfigError(f"unclosed {what} in {text!r}")
    pieces.append(text[start:])
    return pieces


def parse_grid_axis(text: str) -> GridAxis:
    """Parse ``KEY=V1,V2,...`` (see the module for the syntax) into a :class:`GridAxis`.

    Raises:
        ConfigError: a missing ``=`` or key, a key the sweep sets itself
            (:data:`RESERVED_KEYS`), an empty value, invalid YAML, or two
            values that give the same cell name.

    Example:
        >>> axis = parse_grid_axis("dejavu.redaction={name: blocks},{name: random, p: 0.25}")
        >>> axis.key, axis.values
        ('dejavu.redaction', ({'name': 'blocks'}, {'name': 'random', 'p': 0.25}))
    """
    from dejavu.toolkit.config.loading import _parse_yaml

    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ConfigError(
            f"--grid must look like KEY=V1,V2,... with a dotted config key, e.g. "
            f"dejavu.enabled=false,true; got {text!r}"
        )
    if key in RESERVED_KEYS:
        raise ConfigError(
            f"--grid {key}: the sweep sets {', '.join(RESERVED_KEYS)} for every run "
            "(seeds with --seeds / --seed-list, run directories with --out)"
        )
    texts = [piece.strip() for piece in split_values(rest)]
    for i, piece in enumerate(texts):
        if not piece:
            raise ConfigError(
                f"--grid {text!r}: value {i + 1} is empty (no trailing comma; write null "
                "for a null value)"
            )
    values = tuple(
        _parse_yaml(piece, f"--grid {key}, value {i + 1}") for i, piece in enumerate(texts)
    )
    seen: dict[str, str] = {}
    for piece, value in zip(texts, values, strict=True):
        name = value_name(value)
        if name in seen:
            raise ConfigError(
                f"--grid {key}: the values {seen[name]!r} and {piece!r} both give cells the "
                f"name {name!r} (they are equal, or differ only in characters a name cannot "
                "hold); give each value once"
            )
        seen[name] = piece
    return GridAxis(key, tuple(texts), values)


def parse_grid(texts: Sequence[str]) -> list[GridAxis]:
    """Parse every ``--grid`` argument; each key may be given once.

    Example:
        >>> [a.key for a in parse_grid(["optim.lr=0.1,0.2", "dejavu.enabled=false,true"])]
        ['optim.lr', 'dejavu.enabled']
    """
    if isinstance(texts, str):
        raise ConfigError(f"grid must be a list of 'KEY=V1,V2,...' strings, got {texts!r}")
    axes = [parse_grid_axis(t) for t in texts]
    if not axes:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2,...")
    keys = [a.key for a in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
    return axes


def value_name(value: Any) -> str:
    """A value as a short, file-system-safe word (the value part of a cell name).

    Booleans and null as YAML writes them; a list's items joined by ``_``; a
    mapping's ``name`` or ``kind`` first (bare), then ``key-value`` pairs; any
    run of characters other than letters, digits, ``.``, ``_`` and ``-``
    becomes one ``_``.

    Example:
        >>> value_name(False), value_name(1e-3), value_name([0, 0.1])
        ('false', '0.001', '0_0.1')
        >>> value_name({"name": "bandstop", "band": [0.05, 0.25]})
        'bandstop_band-0.05_0.25'
    """
    return _UNSAFE.sub("_", _raw_name(value)).strip("_") or "empty"


def _raw_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        lead = next((k for k in ("name", "kind") if k in value), None)
        parts = [_raw_name(value[lead])] if lead is not None else []
        parts += [f"{k}-{_raw_name(v)}" for k, v in value.items() if k != lead]
        return "_".join(parts) or "empty"
    if isinstance(value, list | tuple):
        return "_".join(_raw_name(v) for v in value) or "empty"
    return str(value)


def cell_name(assignments: Sequence[tuple[str, Any]]) -> str:
    """The name of the cell with these ``(key, value)`` pairs: ``key=value`` joined by ``+``.

    Deterministic and file-system safe (see :func:`value_name`); a name longer
    than 120 characters is cut and ends in 8 hex digits of its full form's hash.

    Example:
        >>> cell_name([("dejavu.enabled", False)])
        'dejavu.enabled=false'
        >>> cell_name([("dejavu.redaction", {"name": "random", "p": 0.25}), ("optim.lr", 0.01)])
        'dejavu.redaction=random_p-0.25+optim.lr=0.01'
    """
    name = "+".join(f"{key}={value_name(value)}" for key, value in assignments)
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_LIMIT - 9]}-{digest}"
    return name


def grid_cells(axes: Sequence[GridAxis]) -> list[Cell]:
    """Every combination of the axes' values, the first axis varying slowest.

    Example:
        >>> cells = grid_cells(parse_grid(["a.b=1,2", "c=x"]))
        >>> [(c.name, c.overrides) for c in cells]
        [('a.b=1+c=x', ('a.b=1', 'c=x')), ('a.b=2+c=x', ('a.b=2', 'c=x'))]
    """
    cells: list[Cell] = []
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        pairs = [(a.key, a.values[i]) for a, i in zip(axes, combo, strict=True)]
        overrides = tuple(f"{a.key}={a.texts[i]}" for a, i in zip(axes, combo, strict=True))
        cells.append(Cell(cell_name(pairs), overrides, dict(pairs)))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):  # only cut names can meet
        raise ConfigError("two cells of the grid got the same name; shorten the grid's values")
    return cells
