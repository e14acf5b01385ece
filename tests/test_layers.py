"""The import graph of `pipeline/`: no cycle, no import running up a floor.

Floors, bottom first; a module may import its own floor and the ones below. The graph is
read from the source (ast), so it also sees imports inside functions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "pipeline"

#: Bottom first. Names are pipeline's sub-packages (or top-level modules); `MODULE_FLOOR` places single modules.
FLOORS: list[set[str]] = [
    {"core"},                          # errors, registries, paths, I/O, the frozen / batched passes, the one PGD loop
    {"losses", "models", "data"},
    {"methods"},                       # training objectives and add-ons
    {"params"},                        # params.yaml's typed blocks
    {"train"},                         # the shared trainer
    {"attacks"},                       # the evaluation suite
    {"config"},                        # params.yaml validated against every registry (attacks included)
    {"sanity", "analysis", "report"},  # what reads the trained models and the attack records
    {"external"},                      # models from elsewhere through the same suite
    {"api", "dvc_render", "presets", "reference", "parallel"},  # the function API the stages call; dvc.yaml; presets; docs/reference.md; otjr repro -j
    {"benchmark", "__main__"},
]
#: Modules placed apart from their package: the package's own docstring-only __init__, and the analysis
#: block's schema, which is part of params.yaml's (it sits beside the analyses it configures).
MODULE_FLOOR = {"pipeline": "core", "pipeline.analysis.params": "params"}

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]):
    """(imported pipeline module, line, inside a function) for every import statement of the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        inside = id(node) in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, inside
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            for t in subs or [target]:
                yield t, node.lineno, inside


def floor_of(module: str) -> int:
    key = MODULE_FLOOR.get(module) or (module.split(".") + [""])[1]
    for i, floor in enumerate(FLOORS):
        if key in floor:
            return i
    raise AssertionError(f"{module}: its package '{key}' is on no floor; add it to FLOORS in {__file__}")


def graph() -> dict[str, dict[str, tuple[int, bool]]]:
    known = modules()
    edges: dict[str, dict[str, tuple[int, bool]]] = defaultdict(dict)
    for name, path in known.items():
        for target, line, inside in imports(name, path, known):
            if target.startswith("pipeline") and target != name:
                edges[name].setdefault(target, (line, inside))
    return edges


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_runs_up_a_floor():
    upward = sorted(f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)}) at line {line}"
                    for a, targets in graph().items() for b, (line, _) in targets.items()
                    if b.startswith("pipeline.") and floor_of(b) > floor_of(a))
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    """No cycle among the imports."""
    edges = graph()
    known = modules()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in known:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(known):
        if module not in state:
            visit(module)
