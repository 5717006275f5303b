"""The toolkit's user-error types: what the command line reports in one line (exit status 2).

- :class:`ConfigError` (a ``ValueError``): a bad config, override or
  command-line value: an unknown key or name, a value out of range, an
  unsafe or foreign checkpoint, a bad image file.
- :class:`UserPathError` (also a ``FileNotFoundError``): a file or folder the
  user named (config, checkpoint, dataset root, pretrained weights, input
  image) that is not there.
- :class:`RunExistsError` (also a ``FileExistsError``): a fresh run into a
  run directory that already holds one.

Anything else that escapes a command (a bug, a failure in the middle of a
training) is not a user error: the command line prints its traceback and
exits with status 1.

Example:
    >>> with user_input():
    ...     int("x")
    Traceback (most recent call last):
    ...
    dejavu.toolkit.errors.ConfigError: invalid literal for int() with base 10: 'x'
    >>> isinstance(UserPathError("no such file"), FileNotFoundError)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["ConfigError", "RunExistsError", "UserPathError", "user_input"]


class ConfigError(ValueError):
    """A bad config or user input; the message says what and what is allowed."""


class UserPathError(ConfigError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what it must be)."""


class RunExistsError(ConfigError, FileExistsError):
    """A fresh run into a run directory that already holds one."""


@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """Treat a ``ValueError`` / ``FileNotFoundError`` raised inside as the user's input error.

    For the places that only check what the user gave (parsing a command
    line's values, validating names): the error becomes a :class:`ConfigError`
    (:class:`UserPathError` for a missing file), with the same message.
    """
    try:
        yield
    except ConfigError:
        raise
    except FileNotFoundError as exc:
        raise UserPathError(str(exc)) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
