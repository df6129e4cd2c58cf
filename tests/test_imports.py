"""The module graph drawn from the imports: no loop inside cir, and methods never import attacks.

Every `import` and `from ... import` of a cir module counts, deferred ones inside functions and
type-checking ones included: a loop hidden by a deferred import is still a loop.
"""

import ast
from pathlib import Path

import cir

SOURCE = Path(cir.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SOURCE.rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1 packages
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_every_module_and_known_edges():
    graph = import_graph()
    assert {"cir.unlearn", "cir.evals.mcq", "cir.attacks.relearn", "cir.methods.repselect"} <= set(graph)
    assert "cir.evals.metrics" in graph["cir.evals.mcq"]
    assert {"cir.budget", "cir.records"} <= graph["cir.unlearn"] and "cir.budget" in graph["cir.point"]
    assert "cir.adapter" in graph["cir.methods.repselect"] and "cir.adapter" in graph["cir.attacks.lora"]


def test_no_import_loop_inside_cir():
    assert cycles(import_graph()) == []


def test_cycles_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_method_imports_an_attack():
    graph = import_graph()
    leaks = {
        (source, target)
        for source, targets in graph.items()
        if source.startswith("cir.methods")
        for target in targets
        if target == "cir.attacks" or target.startswith("cir.attacks.")
    }
    assert leaks == set()


# The recipes that read top to bottom, one per command family; each calls the layer below
# (inputs, experiment, point, unlearn, attacks, outputs, report), never another recipe.
RECIPES = {"cir.pipeline", "cir.bench", "cir.tune"}


def test_no_recipe_imports_another():
    graph = import_graph()
    assert set(graph) >= RECIPES
    crossings = {(source, target) for source in RECIPES for target in graph[source] if target in RECIPES}
    assert crossings == set()
    assert "cir.point" in graph["cir.bench"] and "cir.point" in graph["cir.tune"]  # the shared entry point


def test_the_layer_below_the_recipes_imports_no_recipe():
    graph = import_graph()
    below = {"cir.inputs", "cir.experiment", "cir.point", "cir.outputs", "cir.report", "cir.unlearn"}
    assert {(s, t) for s in below for t in graph[s] if t in RECIPES | {"cir.cli"}} == set()
