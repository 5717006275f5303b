"""Where a comparison ran, and on which code, reported with its numbers (also by
``dejavu diagnose`` and ``dejavu sweep``).

Example:
    >>> sorted(machine_info())
    ['code', 'cpu_count', 'cuda', 'platform', 'processor', 'python', 'torch']
    >>> sorted(code_version())
    ['commit', 'dejavu', 'dirty']
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["code_text", "code_version", "cpu_model", "machine_info", "machine_text"]


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo; platform.processor() is empty on most Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Tracked folders that runs write their results into (relative to the checkout's top):
#: a change there is a result, not a change of the code that produced it.
RESULT_PATHS = ("docs", "benchmarks/results")


def _git(*args: str, cwd: Path) -> str | None:
    """``git <args>`` run in ``cwd``; None where that is not a checkout."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(source: Path | None = None) -> dict[str, Any]:
    """The dejavu version, and the git commit of its source when it runs from a checkout.

    ``dirty`` says whether tracked files differ from that commit (None outside
    a checkout, e.g. an installed wheel): a result is reproducible from its
    commit only when it is False. Changes under :data:`RESULT_PATHS` (the
    results that sweeps and comparisons write) do not count.

    Args:
        source: the folder of this module (the default; tests pass another
            checkout's).
    """
    from dejavu import __version__

    here = source or Path(__file__).resolve().parent
    # Only a checkout that tracks this very file is dejavu's source: an install into the
    # ignored .venv of some other repository would otherwise report that repository.
    ours = _git("ls-files", "--error-unmatch", Path(__file__).name, cwd=here) is not None
    commit = _git("rev-parse", "HEAD", cwd=here) if ours else None
    code_paths = [":(top)", *(f":(top,exclude){p}" for p in RESULT_PATHS)]
    status = (
        _git("status", "--porcelain", "--untracked-files=no", "--", *code_paths, cwd=here)
        if commit
        else None
    )
    return {
        "dejavu": __version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
    }


def machine_info() -> dict[str, Any]:
    """Where the comparison ran (reported with its numbers)."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "code": code_version(),
    }
    return info


def code_text(machine: dict[str, Any]) -> str:
    """``"; code dejavu 0.1.0 at 1a2b3c4"``: the code part of a report's machine line
    (empty for a report written before reports recorded it).

    Example:
        >>> code_text({"code": {"dejavu": "0.1.0", "commit": "1a2b3c4d5e", "dirty": True}})
        '; code dejavu 0.1.0 at 1a2b3c4 (with uncommitted changes)'
        >>> code_text({})
        ''
    """
    code = machine.get("code")
    if not code:
        return ""
    text = f"; code dejavu {code.get('dejavu')}"
    if code.get("commit"):
        text += f" at {code['commit'][:7]}"
        if code.get("dirty"):
            text += " (with uncommitted changes)"
    return text


def machine_text(machine: dict[str, Any]) -> str:
    """The machine line of a report's markdown, from its ``machine`` record.

    Example:
        >>> machine_text({"processor": "AMD EPYC", "cpu_count": 2, "cuda": None,
        ...               "torch": "2.14.1"})
        'AMD EPYC, 2 CPUs, GPU none, torch 2.14.1'
    """
    return (
        f"{machine.get('processor')}, {machine.get('cpu_count')} CPUs, "
        f"GPU {machine.get('cuda') or 'none'}, torch {machine.get('torch')}{code_text(machine)}"
    )
