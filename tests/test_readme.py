"""The README's library example names only things the package has (running it needs the demo model)."""

import ast
import importlib
import re
from pathlib import Path

import cir

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_library_example_compiles_and_every_cir_name_exists():
    blocks = python_blocks()
    assert blocks, "README has no python example"
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("cir"):
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not missing, f"{node.module} has no {missing}"
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "cir"
            ):
                assert hasattr(cir, node.attr), f"cir has no {node.attr}"
