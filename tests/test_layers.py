"""The import graph: components never import the layers above them, and no two packages import
each other (directly or through others). The layers are written down in docs/architecture.md."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "poisonlab"

# Lowest first; a module may import its own package and any lower layer. Within the component
# layer, packages may import each other as long as the graph stays acyclic.
LAYERS = [
    {"errors", "io", "config", "settings", "registry", "seeding", "metrics", "runtime"},
    {"models", "data", "tuning", "training", "icl", "attacks", "defenses", "mner"},
    {"experiment"},
    {"report"},
    {"studies"},
    {"registries", "commands", "cli", "__init__", "__main__"},
]
LAYER_OF = {package: depth for depth, packages in enumerate(LAYERS) for package in packages}


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _imports() -> list[tuple[str, str, str]]:
    """(importing package, imported package, where) for every poisonlab import, lazy ones too."""
    found = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "poisonlab" and len(parts) > 1:
                    found.append((_package(path), parts[1], f"{path.relative_to(ROOT)}:"
                                                            f"{node.lineno}"))
                elif parts[0] == "poisonlab" and isinstance(node, ast.ImportFrom):
                    found += [(_package(path), alias.name, f"{path.relative_to(ROOT)}:"
                                                           f"{node.lineno}")
                              for alias in node.names]
    return found


def test_every_package_has_a_layer():
    packages = {_package(path) for path in ROOT.rglob("*.py")}
    assert packages <= set(LAYER_OF), sorted(packages - set(LAYER_OF))


def upward(imports: list[tuple[str, str, str]]) -> list[str]:
    return [f"{where}: {source} imports {target}" for source, target, where in imports
            if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[source]]


def test_no_import_climbs_to_a_higher_layer():
    found = upward(_imports())
    assert not found, "\n".join(found)


def test_packages_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for source, target, _ in _imports():
        if source != target and target in LAYER_OF:
            graph.setdefault(source, set()).add(target)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for package in graph if (cycle := cycle_from(package))]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source,target", [("attacks", "experiment"), ("defenses", "studies"),
                                           ("experiment", "report"), ("report", "studies")])
def test_the_check_catches_an_upward_import(source, target):
    assert upward([(source, target, "x.py:1")]) == [f"x.py:1: {source} imports {target}"]
    assert upward([(target, source, "x.py:1")]) == []
