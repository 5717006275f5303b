"""The core never imports the toolkit (DESIGN.md: two layers, one direction)."""

from __future__ import annotations

import ast
from pathlib import Path

import dejavu

SRC = Path(dejavu.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_does_not_import_toolkit():
    core_files = [p for p in SRC.rglob("*.py") if "toolkit" not in p.relative_to(SRC).parts]
    assert len(core_files) > 10
    offenders = {
        str(p.relative_to(SRC)): sorted(n for n in _imports(p) if n.startswith("dejavu.toolkit"))
        for p in core_files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_imports_without_toolkit_dependencies():
    # lightning is a toolkit dependency: importing the core must not pull it in.
    import subprocess
    import sys

    code = "import sys, dejavu, dejavu.redaction, dejavu.crm, dejavu.losses, dejavu.conditioning\n"
    code += "print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
