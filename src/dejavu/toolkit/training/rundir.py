"""The run directory before and while a run writes into it: never overwritten by accident,
checked for being writable and for room before training, write failures in one line.

- :func:`start_point` decides where ``run_fit`` starts: a fresh run refuses a
  run directory that already holds anything (naming ``--resume`` and
  ``--overwrite``); ``resume`` continues from ``last.ckpt``, or from step 0
  when the run never saved one; ``overwrite`` moves the old run aside
  (:func:`move_aside`: ``<name>.old-<date>-<time>`` beside it, nothing
  deleted), only after every other check passed.
- :func:`check_writable` (before anything is read or written) and
  :func:`check_free_space` (once the network is built) refuse, with a
  :class:`~dejavu.toolkit.errors.ConfigError`, an output directory that cannot
  be written (read-only, no permission, under a file) or that lacks the room
  for the run's checkpoints.
- :func:`write_errors` turns a failed write during training (a full disk, a
  file system turned read-only) into
  :class:`~dejavu.toolkit.errors.RunDirWriteError`, one line: every file of
  the run directory is written atomically, so what is there is whole.
- :func:`remove_stale_temporaries`: the temporary files a killed writer left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from torch import Tensor, nn

from dejavu.toolkit.errors import ConfigError, RunDirWriteError, RunExistsError, UserPathError

__all__ = [
    "check_free_space",
    "check_writable",
    "checkpoint_bytes",
    "move_aside",
    "remove_stale_temporaries",
    "start_point",
    "write_errors",
]

LAST = "last.ckpt"


def _entries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []


def start_point(
    run_dir: Path, resume: bool | str | Path, overwrite: bool = False
) -> tuple[Path | None, bool]:
    """Where a run starts: ``(checkpoint to resume from or None, move the old run aside)``.

    Args:
        run_dir: ``output_dir / name``.
        resume: ``True``: from ``run_dir / last.ckpt`` (from step 0 when the
            directory holds a run that never saved one); a path: from that
            checkpoint; ``False``: a fresh run.
        overwrite: a fresh run even where one exists (it is moved aside).

    Raises:
        RunExistsError: a fresh run into a directory that holds anything.
        UserPathError: nothing to resume, or a missing checkpoint.
        ConfigError: ``resume`` and ``overwrite`` together.
    """
    if overwrite and resume not in (False, None):
        raise ConfigError("resume and overwrite exclude each other: continue a run, or replace it")
    last = run_dir / LAST
    if resume is True:
        if last.is_file():
            return last, False
        if _entries(run_dir):
            warnings.warn(
                f"{run_dir} holds a run that saved no checkpoint yet: starting it from step 0",
                stacklevel=3,
            )
            return None, False
        raise UserPathError(f"resume=True but {last} does not exist (nothing to resume)")
    if resume is False or resume is None:
        entries = _entries(run_dir)
        if entries and not overwrite:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise RunExistsError(
                f"{run_dir} already holds a run ({shown}): continue it with --resume "
                "(resume=True), or start afresh with --overwrite (overwrite=True: the old run "
                f"is moved aside to {run_dir.name}.old-<date>-<time>, nothing is deleted), or "
                "choose another name or output_dir"
            )
        return None, bool(entries)
    path = Path(resume)
    if not path.is_file():
        raise UserPathError(f"resume checkpoint {path} does not exist")
    return path, False


def move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to ``<name>.old-<YYYYmmdd-HHMMSS>[-<n>]`` beside it; nothing is deleted.

    Returns:
        The new path of the old run.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    os.replace(run_dir, target)
    return target


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(run_dir: Path) -> None:
    """Refuse a run directory that cannot be created or written, leaving no trace.

    A temporary file is created (and removed at once) in the run directory or,
    when it does not exist yet, in its nearest existing parent. Works for the
    root user too (a read-only file system still refuses).

    Raises:
        ConfigError: naming the directory and the reason.
    """
    where = _nearest_existing(run_dir)
    if not where.is_dir():
        raise ConfigError(
            f"cannot create the run directory {run_dir}: {where} is a file, not a folder "
            "(choose another output_dir or name)"
        )
    try:
        with tempfile.TemporaryFile(dir=where, prefix=".dejavu-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot write the run directory {run_dir}: {where} is not writable "
            f"({err.strerror or err}); choose another output_dir, or fix its permissions"
        ) from None


def checkpoint_bytes(module: nn.Module, optimizer_slots: int = 2) -> int:
    """About how many bytes one training checkpoint of ``module`` takes.

    The weights and buffers, plus ``optimizer_slots`` copies of the trainable
    weights (AdamW keeps two moments, SGD one momentum buffer).

    Example:
        >>> checkpoint_bytes(nn.Linear(10, 10))  # 110 float32 weights, x 3
        1320
    """
    state = sum(
        t.numel() * t.element_size() for t in module.state_dict().values() if isinstance(t, Tensor)
    )
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return int(state + optimizer_slots * trainable)


def check_free_space(run_dir: Path, needed: int) -> None:
    """Refuse a run whose output directory has less than ``needed`` bytes free.

    Raises:
        ConfigError: naming the directory, what is free and what is needed.
    """
    where = _nearest_existing(run_dir)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise ConfigError(
            f"not enough free space for the run directory {run_dir}: {free / 1e6:.1f} MB free "
            f"on {where}, its checkpoints need about {needed / 1e6:.1f} MB (last.ckpt, "
            "best.ckpt and the one being written); free some space or choose another output_dir"
        )


#: Write errors that mean the run directory (or its disk) refuses writes.
_DISK_ERRNOS = {
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, name)
}
_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def write_errors(run_dir: Path) -> Iterator[None]:
    """Turn a failed write into the run directory into :class:`RunDirWriteError` (one line).

    A full disk, a quota, a file system turned read-only, or a permission
    error on a file of the run directory; other errors pass unchanged.
    """
    try:
        yield
    except OSError as err:
        filename = str(err.filename or "")
        inside = bool(filename) and Path(filename).absolute().is_relative_to(run_dir.absolute())
        if err.errno in _DISK_ERRNOS or (err.errno in _PERMISSION_ERRNOS and inside):
            what = f" ({filename})" if filename else ""
            raise RunDirWriteError(
                f"could not write in {run_dir}{what}: {err.strerror or err}. The files there "
                f"are whole: each is written to a temporary file and renamed, so {run_dir / LAST} "
                "is the last complete checkpoint; free some space (or fix the permissions) "
                "and continue with --resume"
            ) from None
        raise


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove the temporary files a killed writer left in ``run_dir`` (``.<file>.*.tmp``).

    They are what :func:`~dejavu.toolkit.artifact.atomic_path` writes before
    renaming; no reader ever opens them. Returns the files removed.
    """
    removed = []
    if run_dir.is_dir():
        for p in run_dir.glob(".*.tmp"):
            if p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed
