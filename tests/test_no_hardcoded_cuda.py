"""No code path pins tensors to the GPU by name: devices come from the `device` param.

The rule, checked on the syntax tree of every Python file under pipeline/, stages/ and
bench/: no `.cuda()` call, and no string "cuda" or "cuda:N" passed to a call (positional
or keyword: `torch.device("cuda")`, `.to("cuda:0")`, `device="cuda"`) outside the two
places that turn the configuration into a device: `resolve_device` (device: auto) and
`distributed.start` (the local GPU of a torchrun process). Comparisons such as
`device.type == "cuda"` and dictionary keys are not placement and are allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

SCANNED = ("pipeline", "stages", "bench")
ALLOWED = {("pipeline/core/device.py", "resolve_device"), ("pipeline/train/distributed.py", "start")}
CUDA_NAME = re.compile(r"cuda(:\d+)?")


def _constants_outside_comparisons(node: ast.AST):
    """String constants in `node`'s subtree, not inside a comparison or a subscript, nor dictionary keys."""
    if isinstance(node, (ast.Compare, ast.Subscript)):
        return
    if isinstance(node, ast.Dict):
        for value in node.values:
            yield from _constants_outside_comparisons(value)
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _constants_outside_comparisons(child)


def violations(source: str, filename: str) -> list[str]:
    """'file:line: what' for every hard-coded CUDA placement in `source`."""
    tree = ast.parse(source, filename)
    enclosing = {}  # node -> name of the innermost function around it (ast.walk visits outer ones first)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(fn):
                enclosing[id(inner)] = fn.name
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
            found.append(f"{filename}:{node.lineno}: .cuda() call")
        if (filename, enclosing.get(id(node))) in ALLOWED:
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for const in _constants_outside_comparisons(arg):
                if CUDA_NAME.fullmatch(const.value):
                    found.append(f"{filename}:{const.lineno}: {const.value!r} passed to a call")
    return found


def test_the_rule_catches_each_form_of_hard_coded_placement():
    bad = ('x.cuda()\nm.to("cuda")\ntorch.zeros(3, device="cuda:0")\ntorch.device("cuda" if a else "cpu")\n'
           'def resolve_device():\n    return torch.device("cuda")\n')
    assert len(violations(bad, "pipeline/x.py")) == 5
    ok = ('if device.type == "cuda": pass\nstates["cuda"] = 1\ninfo.update({"cuda": v})\nprint("use cpu or cuda")\nf(x.type != "cuda")\n'
          'def resolve_device():\n    return torch.device("cuda")\n')
    assert violations(ok, "pipeline/core/device.py") == []


def test_no_code_path_hard_codes_cuda():
    files = sorted(p for d in SCANNED for p in (REPO / d).rglob("*.py"))
    assert len(files) > 50
    found = [v for p in files for v in violations(p.read_text(), p.relative_to(REPO).as_posix())]
    assert found == []
