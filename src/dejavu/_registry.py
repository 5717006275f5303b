"""``Registry``: the name -> class table behind every ``register_*`` / ``list_*`` pair.

Each pluggable kind (CRM, redaction, dataset, ...) keeps one :class:`Registry`.
A class carries its own key in the class attribute ``name`` and registers
itself with the registry's :meth:`Registry.register` decorator, so nothing
else keeps a list of the names (timm's ``register_model`` pattern).

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register
    ... class Square:
    ...     name = "square"
    ...     def __init__(self, side: int = 1) -> None:
    ...         self.side = side
    >>> shapes.names(), shapes.get("square").__name__
    (['square'], 'Square')
    >>> shapes.options("square")
    ['side']
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from dejavu._validation import check_choice

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered ``name -> class`` table for one pluggable kind.

    Args:
        kind: what the classes are, for messages (``"crm"``, ``"redaction"``, ...).
        label: how an unknown name is introduced (``"unknown <label> 'x'"``; default ``kind``).
    """

    def __init__(self, kind: str, label: str | None = None) -> None:
        self.kind = kind
        self.label = label or kind
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register ``cls`` under its ``name`` attribute.

        Raises:
            ValueError: when the class has no ``name`` or the name is taken by another class.
        """
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} needs a non-empty class attribute `name` to register")
        other = self._classes.get(name)
        if other is not None and other is not cls:
            raise ValueError(f"{self.kind} name {name!r} is already registered by {other.__name__}")
        self._classes[name] = cls
        return cls

    def names(self, pattern: str | None = None) -> list[str]:
        """The registered names, sorted, optionally filtered by a glob ``pattern``."""
        names = sorted(self._classes)
        return names if pattern is None else [n for n in names if fnmatch.fnmatch(n, pattern)]

    def in_order(self) -> list[str]:
        """The registered names in registration order."""
        return list(self._classes)

    def get(self, name: str, allowed: Any = None) -> type[T]:
        """The class registered as ``name`` (``ValueError`` listing the names otherwise).

        Args:
            name: the registered name.
            allowed: the names the error message lists, in its order (default: sorted).
        """
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        choices = tuple(allowed) if allowed is not None else tuple(self.names())
        return self._classes[check_choice(name, self.label, choices)]

    def options(self, name: str) -> list[str]:
        """The keyword options of the class's constructor (``[]`` for ``**kwargs`` only)."""
        params = list(inspect.signature(self.get(name).__init__).parameters.values())[1:]
        return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    # Mapping-style access, so a registry can be copied (``dict(registry)``) and
    # restored (``clear`` + ``update``), e.g. by tests that register toy classes.
    def keys(self) -> list[str]:
        """The registered names in registration order."""
        return self.in_order()

    def __getitem__(self, name: str) -> type[T]:
        return self._classes[name]

    def clear(self) -> None:
        """Forget every registered class."""
        self._classes.clear()

    def update(self, classes: dict[str, type[T]]) -> None:
        """Register ``name -> class`` pairs as they are (no checks: for restoring a copy)."""
        self._classes.update(classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)
