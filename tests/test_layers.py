"""The package's layers: imports point down only, and no circle of imports.

Every import of a netstep module counts, wherever it is written: at the top of a module,
inside a function (a lazy import for start-up speed is still a dependency), and under
`if TYPE_CHECKING:` (a type-only import still ties the two modules together, and a reader
follows it the same way). The test reads the source with `ast`, so no import can hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "netstep"

# Lowest first. A module may import its own layer and the layers below it, never above.
LAYERS = [
    ("base", ["netstep.errors", "netstep.render", "netstep.i18n"]),
    ("kernel", ["netstep.kernel"]),
    ("state", ["netstep.state"]),
    ("course", ["netstep.course"]),
    ("ops", ["netstep.ops"]),
    ("core", ["netstep.core"]),
    ("present", ["netstep.present"]),
    ("front ends", ["netstep.cli", "netstep.session", "netstep.stepping", "netstep.console", "netstep.practice",
                    "netstep.tutor", "netstep.magic", "netstep.notebooks", "netstep.shell", "netstep.doctor",
                    "netstep.book", "netstep.demo", "netstep.worker", "netstep.__main__", "netstep"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_module(name: str, known: dict[str, Path]) -> bool:
    return name in known


def imports_of(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(netstep module, line) for every import in `path`, at any depth of the code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "netstep"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "netstep":
                continue
            for alias in node.names:  # `from netstep.ops import apply` names a module; `import Lab` a name
                sub = f"{node.module}.{alias.name}"
                found.append((sub if is_module(sub, known) else node.module, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: netstep imports by full name, not relatively")
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, line in imports_of(path, known):
            assert target in known, f"{path}:{line} imports {target}, which does not exist"
            if target != name:
                edges[name].add(target)
    return edges


def layer_of(name: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{name} belongs to no layer: add it to LAYERS in {__file__}"
    return rank


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_imports_point_down_only() -> None:
    wrong = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
             for name, targets in graph().items() for target in sorted(targets)
             if layer_of(target) > layer_of(name)]
    assert wrong == []


def test_no_module_reaches_into_another_modules_private_names() -> None:
    known = modules()
    wrong = []
    for path in known.values():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netstep"):
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "_":  # (`_`: gettext's, netstep.i18n)
                        wrong.append(f"{path}:{node.lineno} imports {node.module}.{alias.name}")
                    elif f"{node.module}.{alias.name}" in known:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__") and node.attr != "_"):
                wrong.append(f"{path}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert wrong == []


def test_the_checker_sees_a_circle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer_of("netstep.kernel.netlink") < layer_of("netstep.core.lab") < layer_of("netstep.cli")
    source = PACKAGE / "core" / "engine.py"
    assert ("netstep.ops.apply", 0) in [(target, 0) for target, _ in imports_of(source, modules())]


def test_lab_provides_what_the_operations_ask_of_it() -> None:
    from netstep.core.lab import Lab
    from netstep.ops.access import LabAccess

    wanted = {name for name in vars(LabAccess) if not name.startswith("_")} | set(LabAccess.__annotations__)
    lab = Lab("layers")  # not locked: nothing is made
    assert sorted(name for name in wanted if not hasattr(lab, name)) == []
