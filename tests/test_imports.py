"""The package's own imports: no cycle among its modules, and no private name (leading
``_``) taken from another module. Read from the source (``ast``), so that imports inside
functions count too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vae_tutorial"


def imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from`` import of the package's own modules in ``path``
    (``name`` is ``""`` for ``import vae_tutorial.x``), wherever it appears in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import a, or from . import x
                base = node.module
            elif node.level == 0 and (node.module or "").startswith("vae_tutorial"):
                base = node.module.removeprefix("vae_tutorial").lstrip(".") or None
            else:
                continue
            for alias in node.names:
                if base is None:  # from . import x: the module x itself
                    found.append((alias.name, ""))
                else:
                    found.append((base.split(".")[0], alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("vae_tutorial."):
                    found.append((alias.name.split(".")[1], ""))
    return found


def graph(package: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: [names]}}`` over the package's modules."""
    modules = {p.stem: p for p in sorted(package.glob("*.py"))}
    edges = {}
    for name, path in modules.items():
        edges[name] = {}
        for target, imported in imports(path):
            if target in modules and target != name:
                edges[name].setdefault(target, []).append(imported)
    return edges


def find_cycle(edges: dict[str, dict]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or ``None`` (depth-first search)."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def private_imports(edges: dict[str, dict]) -> list[str]:
    return [
        f"{module} imports {name} from {target}"
        for module, targets in edges.items()
        for target, names in targets.items()
        for name in names
        if name.startswith("_")
    ]


def test_the_package_has_no_import_cycle():
    edges = graph()
    assert len(edges) > 20 and edges["graphed"].keys() >= {"epoch"}  # the walk sees imports
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_no_module_imports_a_private_name_from_another():
    assert private_imports(graph()) == []


def test_the_cuda_graph_step_builds_on_the_epoch_never_the_reverse():
    edges = graph()
    assert "epoch" in edges["graphed"] and "graphed" not in edges["epoch"]


def test_the_walk_finds_a_planted_cycle_and_a_private_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import run\n")
    (tmp_path / "b.py").write_text("import os\n\n\ndef run():\n    from .c import _helper\n")
    (tmp_path / "c.py").write_text("from vae_tutorial.a import thing\n")
    edges = graph(tmp_path)
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert private_imports(edges) == ["b imports _helper from c"]
    (tmp_path / "c.py").write_text("import os\n")
    assert find_cycle(graph(tmp_path)) is None
