"""The README's public-API example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- readme-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its marked API example"
    return match.group(1)


def test_readme_api_example_runs():
    namespace: dict = {}
    exec(compile(_example(), str(README), "exec"), namespace)
    model, deployed = namespace["model"], namespace["deployed"]
    assert deployed is namespace["base"]
    assert int(model.num_steps) == 3
    assert all(p.grad is not None for p in namespace["base"].parameters())
