r"""The shell commands a config file documents in its ``# $ `` comment lines.

A study config (``configs/studies/*.yaml``) names the exact commands that run
its grids, as comment lines starting with ``# $ `` and continued, shell style,
by a trailing backslash on the next comment lines. The tests dry-run them and
``benchmarks/run_studies.py`` runs them, so the commands a reader sees are the
ones that were measured.

Example:
    >>> import tempfile
    >>> lines = ["# $ dejavu sweep a.yaml --seeds 5 \\", "#     --grid 'x=1,2'", "name: a"]
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("\n".join(lines))
    >>> documented_commands(f.name)
    [['dejavu', 'sweep', 'a.yaml', '--seeds', '5', '--grid', 'x=1,2']]
    >>> Path(f.name).unlink()
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["documented_commands"]


def documented_commands(path: str | os.PathLike) -> list[list[str]]:
    """The commands in ``path``'s ``# $ `` comment lines, split as a shell splits them.

    Args:
        path: a text file (a YAML config).

    Returns:
        One argument list per command, in file order.

    Raises:
        ValueError: naming the file when a command's quotes do not close.
    """
    commands: list[str] = []
    open_line = False
    for line in Path(path).read_text().splitlines():
        text = line.removeprefix("#").strip()
        if line.startswith("# $ "):
            commands.append(text.removeprefix("$ "))
        elif open_line and line.startswith("#"):
            commands[-1] += " " + text
        else:
            open_line = False
            continue
        open_line = commands[-1].endswith("\\")
        commands[-1] = commands[-1].removesuffix("\\").rstrip()
    try:
        return [shlex.split(c) for c in commands]
    except ValueError as exc:
        raise ValueError(f"{path}: a documented command does not parse ({exc})") from None
