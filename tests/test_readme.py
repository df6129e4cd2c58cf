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


def test_library_example_runs_on_a_tiny_model(monkeypatch, capsys):
    # the example as written, with the demo swapped for a tiny saved Llama and its data
    import tiny
    from cir.inputs import Loaded
    from cir.unlearn import UnlearnData

    data = UnlearnData(list(tiny.FACTS), tiny.TEXTS[3:5], tiny.TEXTS[3:])
    loaded = Loaded(tiny.model("llama", layers=4), tiny.tokenizer(), data, None, None)
    monkeypatch.setattr(cir, "load_inputs", lambda inputs: loaded)
    (block,) = python_blocks()
    exec(compile(block, str(README), "exec"), {})
    first, second, third = capsys.readouterr().out.splitlines()[-3:]
    stop_reason, epochs, before, after = first.split()
    assert stop_reason in ("budget", "max_epochs") and int(epochs) >= 0
    assert 0 < float(before) <= 1 and 0 < float(after) <= 1 and float(second) <= 0.01
    assert third.startswith("[") and 0 < float(third.split()[-1]) < 1  # back-offs, the checks' share
