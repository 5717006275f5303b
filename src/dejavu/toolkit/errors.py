"""The toolkit's user-error types: what the command line reports in one line (exit status 2).

- :class:`ConfigError` (a ``ValueError``): a bad config, override or
  command-line value: an unknown key or name, a value out of range, an
  unsafe or foreign checkpoint, a bad image file.
- :class:`UserPathError` (also a ``FileNotFoundError``): a file or folder the
  user named (config, checkpoint, dataset root, pretrained weights, input
  image) that is not there.
- :class:`RunExistsError` (also a ``FileExistsError``): a fresh run into a
  run directory that already holds one.

A run that stops for a reason the user must act on, but that is not their
input, is a :class:`TrainingStoppedError` (a ``RuntimeError``): the command line
prints its one-line message and exits with the error's ``exit_code``:

- :class:`NonFiniteLossError`: a NaN or infinite loss term or gradient (1);
- :class:`RunDirWriteError`: the run directory refused a write (a full
  disk, a read-only file system) (1);
- :class:`DistributedFailureError`: another process of a DDP run died or
  hung (1);
- :class:`RunInterruptedError`: SIGTERM or Ctrl-C, after a resumable checkpoint
  was written (130 for SIGINT, 143 for SIGTERM).

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

__all__ = [
    "ConfigError",
    "DistributedFailureError",
    "NonFiniteLossError",
    "RunDirWriteError",
    "RunExistsError",
    "RunInterruptedError",
    "TrainingStoppedError",
    "UserPathError",
    "one_line",
    "user_input",
    "yaml_error_message",
]


class ConfigError(ValueError):
    """A bad config or user input; the message says what and what is allowed."""


class UserPathError(ConfigError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what it must be)."""


class RunExistsError(ConfigError, FileExistsError):
    """A fresh run into a run directory that already holds one."""


class TrainingStoppedError(RuntimeError):
    """A run stopped for a reason the user must act on (not their input, not a bug).

    Attributes:
        exit_code: the command line's exit status.
    """

    exit_code: int = 1


class NonFiniteLossError(TrainingStoppedError):
    """A loss term or the gradients were NaN or infinite; no weight was updated."""


class DistributedFailureError(TrainingStoppedError):
    """Another process of a distributed run died or hung; this one stopped instead of waiting."""


class RunDirWriteError(TrainingStoppedError):
    """The run directory refused a write during training (a full disk, a read-only file
    system); what it holds is whole (every file is written atomically)."""


class RunInterruptedError(TrainingStoppedError):
    """SIGTERM or Ctrl-C stopped the run; the message says what was saved and how to resume.

    Example:
        >>> RunInterruptedError("stopped", exit_code=143).exit_code
        143
    """

    def __init__(self, message: str, exit_code: int = 130, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)
        self.resumable = bool(resumable)


def one_line(exc: BaseException) -> str:
    """The message of a user error as one line, for ``dejavu: error: ...``.

    A DataLoader worker re-raises its exception in the main process with the
    worker's traceback in the message ("Caught ConfigError in DataLoader
    worker process 0. Original Traceback ..."); the original message is its
    last line. Other line breaks become ``"; "``.

    Example:
        >>> one_line(ConfigError("Caught ConfigError in DataLoader worker process 0.\\n"
        ...     "Original Traceback (most recent call last):\\n  File ...\\n"
        ...     "dejavu.toolkit.errors.ConfigError: a.png: corrupt or truncated image"))
        'a.png: corrupt or truncated image (in a data-loader worker)'
    """
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        name = type(exc).__name__
        for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
            if last.startswith(prefix):
                last = last[len(prefix) :]
                break
        return f"{last} (in a data-loader worker)"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def yaml_error_message(exc: Exception, where: str) -> str:
    """One line for a YAML syntax error: ``<where>, line L, column C: invalid YAML: <problem>``.

    Example:
        >>> import yaml
        >>> try:
        ...     yaml.safe_load("a: 1\\n b: 2\\n")
        ... except yaml.YAMLError as exc:
        ...     print(yaml_error_message(exc, "c.yaml"))
        c.yaml, line 2, column 3: invalid YAML: mapping values are not allowed here
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if mark is None or problem is None:
        return f"{where}: invalid YAML: {' '.join(str(exc).split())}"
    detail = f"{problem} ({context})" if context else str(problem)
    return f"{where}, line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {detail}"


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
