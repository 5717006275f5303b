"""Where a comparison ran, reported with its numbers (also by ``dejavu diagnose``).

Example:
    >>> sorted(machine_info())
    ['cpu_count', 'cuda', 'platform', 'processor', 'python', 'torch']
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "machine_info"]


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo; platform.processor() is empty on most Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    }
    return info
