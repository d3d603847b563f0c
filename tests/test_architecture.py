"""The package's shape: no import cycles between its modules (lazy imports inside functions count too), and
the layers import one way: the library (models, nn, distributions, data, training) never imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pixelwave

ROOT = Path(pixelwave.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the pixelwave modules it imports, anywhere in its body. `from P import name` counts as an
    import of P.name where that is a module, else of P."""
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in known and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    """The test above can fail: a made-up graph with a cycle is reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "pixelwave.training.loop" in graph["pixelwave.training"]  # edges are read: the package imports it


def test_the_library_never_imports_the_cli():
    graph = import_graph()
    library = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in
               ("models", "nn", "distributions", "data", "training", "fast", "audio", "checkpoint", "compat",
                "pretrained")]
    assert library
    for m in library:
        assert not {e for e in graph[m] if e.startswith("pixelwave.cli")}, m
