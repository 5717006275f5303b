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


def test_training_does_not_import_export():
    # export.py reads checkpoints through training; training never reaches back into export.
    training = [p for p in (SRC / "toolkit" / "training").rglob("*.py")]
    offenders = {
        str(p.relative_to(SRC)) for p in training if "dejavu.toolkit.export" in _imports(p)
    }
    assert offenders == set()


def test_one_owner_of_the_base_artefact_and_of_output_dicts():
    # base.safetensors + base.json are written and read by dejavu.toolkit.artifact only, with
    # safetensors' public API; a network's tensor-or-dict output becomes a dict through
    # dejavu.dejavu.prediction_dict only.
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        rel = str(path.relative_to(SRC))
        assert "_remove_duplicate_names" not in text, rel
        if rel != "toolkit/artifact.py":
            assert "safetensors.torch" not in text or rel.startswith("toolkit/models/"), rel
        assert "def output_dict" not in text, rel


def test_architecture_md_names_only_files_that_exist():
    # The layout in docs/architecture.md is the guide to "where do I change X": every
    # module it names must exist (by its name somewhere under src/dejavu).
    import re

    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    layout = text.split("## Layout", 1)[1].split("## Where do I change X", 1)[0]
    named = set(re.findall(r"\b([a-z_]+\.py)\b", layout))
    existing = {p.name for p in SRC.rglob("*.py")}
    assert len(named) > 40
    assert named - existing == set()
