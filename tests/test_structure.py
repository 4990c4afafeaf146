"""The house's shape, checked the way a reader would: the import graph of src/edgedistill has no circle, every
import goes down the layer order that docs/architecture.md gives, and no module or function outgrows its limit."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "edgedistill"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function (lazy imports count too)."""
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in filter(None, map(resolve, targets)):
                if target != mod and target != PACKAGE and not mod.startswith(target + "."):
                    edges[mod].add(target)
    return edges


def unit(mod: str) -> str:
    """The top-level module or subpackage a module belongs to: the layers are made of these."""
    return mod.split(".")[1] if "." in mod else mod


def documented_layers() -> list[list[str]]:
    """The layer order as docs/architecture.md gives it, top layer first: lines `N. `a`, `b` ...`."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^(\d+)\. (.+)$", section, re.M)
    return [re.findall(r"`([\w.]+)`", names.split(": ")[0]) for _, names in sorted(rows, key=lambda r: -int(r[0]))]


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return None

    return next((c for m in sorted(edges) if m not in state and (c := visit(m))), None)


def test_the_import_graph_has_no_circle():
    assert cycle(imports(modules())) is None, " -> ".join(cycle(imports(modules())) or [])


def test_every_import_goes_down_the_documented_layer_order_of_at_most_10_layers():
    layers = documented_layers()
    level = {u: len(layers) - i for i, names in enumerate(layers) for u in names}
    mods = modules()
    units = {unit(m) for m in mods if m != PACKAGE}
    assert units <= set(level), f"not in docs/architecture.md's layer order: {sorted(units - set(level))}"
    assert len(layers) <= 10
    upward = sorted(f"{m} -> {t} (layer {level[unit(m)]} -> {level[unit(t)]})"
                    for m, targets in imports(mods).items() if m != PACKAGE
                    for t in targets if unit(t) != unit(m) and level[unit(t)] >= level[unit(m)])
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def test_no_module_over_400_lines_and_no_function_over_60():
    too_long = []
    for path in sorted([*(SRC / PACKAGE).rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        text = path.read_text()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


def test_the_benchmarks_use_the_pipelines_documented_api_only():
    """benchmarks/ reaches the pipeline through `edgedistill.pipeline.__all__` (its docstring says what each is)."""
    import edgedistill.pipeline as pipeline

    beyond = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgedistill.pipeline"):
                names = [a.name for a in node.names]
                if node.module != "edgedistill.pipeline" or set(names) - set(pipeline.__all__):
                    beyond.append(f"{path.name}: from {node.module} import {', '.join(names)}")
    assert not beyond, "\n".join(beyond)
