"""Every import points down: a module may import its own layer or lower ones, never a higher one.

The floors, bottom up (docs/DESIGN.md): errors/progress/settings/atomic -> media, model ->
freescale -> work (plan, job store) -> pipeline -> drivers (jobs, pages) -> cli and the package's
Python API. The test reads each module's import statements (no module is imported), so it also
catches imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vidscale

PACKAGE = Path(vidscale.__file__).parent
LAYERS = {
    "errors": 0, "progress": 0, "settings": 0, "atomic": 0, "presets": 0,
    "media": 1, "model": 1,
    "freescale": 2,
    "work": 3, "backends": 3,
    "pipeline": 4,
    "jobs": 5, "pages": 5,
    "cli": 6, "__main__": 6, "__init__": 6, "api": 6,
}


def room(module: str) -> str:
    """``vidscale.work.plan`` -> ``work``; ``vidscale`` (the package itself) -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = ("vidscale",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def imported(path: Path, name: str) -> set[str]:
    """Absolute names of the vidscale modules that ``path`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {module for module in found if module.split(".")[0] == "vidscale"}


def test_every_room_has_a_floor():
    rooms = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if not path.name.startswith(("_", ".")) or path.name in ("__init__.py", "__main__.py")}
    rooms -= {"__pycache__"}
    assert rooms <= set(LAYERS), f"give these a floor in LAYERS: {sorted(rooms - set(LAYERS))}"


def test_imports_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "vidscale":
            floor = LAYERS["__init__"]
        else:
            floor = LAYERS[room(name)]
        for target in imported(path, name):
            if target == "vidscale" or room(target) not in LAYERS:
                continue  # the package itself (``from . import __version__``) or a name in it
            if LAYERS[room(target)] > floor:
                upward.append(f"{name} imports {target}")
    assert not upward, "imports that point up a floor:\n" + "\n".join(upward)


def test_media_never_imports_torch():
    for path in (PACKAGE / "media").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] == "torch"}, path


def import_graph() -> dict[str, set[str]]:
    """Module -> the vidscale modules it imports (at the top or inside functions), modules only."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {target for target in imported(path, name) if target in modules and target != name}
            for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm): each is a
    circle of imports, where no module can be read (or loaded) before the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    """A package's modules import each other one way only: a circle (even through an import
    inside a function) means two modules that are really one, or a piece in the wrong one.
    A package's ``__init__`` importing its own modules is how it exports them, not a circle."""
    graph = import_graph()
    for name in graph:
        package = name if (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else None
        if package:  # the package's exports: leave them out, keep what its modules import
            graph[name] = {target for target in graph[name] if not target.startswith(f"{name}.")}
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_the_circle_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
