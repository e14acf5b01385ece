"""dvc.yaml, rendered from the registries: `otjr dvc render` writes it, `--check` compares.

The pipeline's shape has one source of truth. The runs are the registered methods and
every method-addon pair a method accepts (`trades-awp`); each run's training stage lists
exactly the params keys its method and add-on read (`Method.param_keys`), so
`dvc exp run -S lambda_j=...` re-runs OTJR's trainings and nothing else. Datasets,
evaluated runs (`runs`) and further seeds (`seeds`) stay DVC templates over
params.yaml (`foreach` / `matrix`), so `-S 'datasets=[...]'` and `-S 'seeds=[1,2]'`
work without re-rendering. Each stage's code dependencies are what its command imports,
followed through the import graph when the pipeline runs (see `code_deps`): the first stage,
`code`, hashes each command's files into `metrics/code/<command>.md5`, and a stage depends on
its command's file, so a code change re-runs exactly the stages whose imports it touches. A
training's file is its run's, `train-<run>.md5`: the trainer with the modules of the run's method
and add-on, which the method and add-on registries import by name (pipeline/core/registry.py),
so editing TRADES re-trains trades and trades-awp only. One dependency per stage instead of
its ~40 files keeps dvc.lock small; DVC re-reads and rewrites the whole lock after every stage.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from .core.errors import UserError
from .core.io import write_text
from .methods import ADDONS, METHODS, parse_run, variants_from
from .params import read_yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")  # code the stages run that lives in this repository

#: The stage commands; the `code` stage hashes each one's code into a file its stages depend on (`fingerprinted`).
COMMANDS = ("download", "preprocess", "train", "attack", "sanity", "analyze", "report", "aggregate")
CODE_DIR = "metrics/code"

#: What the shared trainer reads for every run (pipeline/train); a method's own keys come from its registration.
TRAIN_BASE = ("seed", "threads", "model", "train", "adversary", "threat.linf", "speed")

#: The `attack` keys the sanity checks read from params.yaml (pipeline/sanity/sweeps.py).
SANITY_ATTACK_KEYS = ("attack.batch_size", "attack.pgd20", "threat.linf")

HEADER = """\
# Rendered by `otjr dvc render` (pipeline/dvc_render.py) from the registries: do not edit by hand.
# Re-render after adding a method, an add-on or a stage, or moving code; `otjr dvc render --check`
# (and tests/test_dvc_render.py) fail when this file differs from the render.
#
# download -> preprocess -> train (one stage per run: a method, or method-addon) -> attack -> sanity
# -> analyze -> report -> aggregate. Every command is `python -m pipeline stage ...`, the same code as
# `otjr stage ...` by hand. Each training stage lists exactly the params its run reads, so
# `-S lambda_j=...` re-runs OTJR's trainings and what follows them, and no other run's.
# Seeds: `seed` is every run's first seed (stages `train-<run>@<dataset>`, files models/<dataset>/...);
# each of the further `seeds` adds its own stages (`...-seeds@<dataset>-<seed>`, files under
# <dataset>.seed<seed>/) that no existing stage depends on, so adding a seed re-runs nothing done.
# Code dependencies: stage `code` hashes the pipeline and stages modules each command imports,
# transitively, into metrics/code/<command>.md5, the one code dependency of that command's stages;
# a training's is its run's, train-<run>.md5: the trainer, the run's method and its add-on.
# Stage `params` runs before all: it checks params.yaml as the stages read it, so bad params stop
# `dvc repro` / `dvc exp run -S` before DVC deletes any output; its output's text never changes.
"""


# ------------------------------------------------------------------ the import graph
def module_file(module: str, root: Path = REPO) -> Path | None:
    """The source file of a dotted module name inside this repository (a package's __init__.py)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


#: Modules whose functions each serve a different stage: for these only the module-level imports and the
#: imports of the functions a stage calls (by name, within the module) are followed.
BY_FUNCTION = {"pipeline.api"}


def _reachable(tree: ast.Module, entry: str) -> list[ast.AST]:
    """The module's top-level statements other than functions, and the functions `entry` calls, transitively."""
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    nodes: list[ast.AST] = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    todo, done = [entry], set()
    while todo:
        name = todo.pop()
        if name in done or name not in functions:
            continue
        done.add(name)
        nodes.append(functions[name])
        todo += [c.func.id for c in ast.walk(functions[name]) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    return nodes


def imported_modules(path: Path, module: str, entry: str | None = None) -> set[str]:
    """Dotted names of every module `path` imports from PACKAGES, at module level or inside functions.

    Imports inside functions count: they run when the stage runs (the lazy ones only save start-up).
    `from x import name` counts `x.name` as well where that is a module. With `entry`, only the
    module level and the functions `entry` reaches (see BY_FUNCTION).
    """
    stat = path.stat()
    return set(_imports(path, (stat.st_mtime_ns, stat.st_size), module, entry))


@functools.lru_cache(maxsize=None)
def _imports(path: Path, version: tuple[int, int], module: str, entry: str | None) -> frozenset[str]:
    """`imported_modules`, computed once per version of the file (the `code` stage walks 8 closures)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: set[str] = set()
    roots = _reachable(tree, entry) if entry else [tree]
    for node in (n for root in roots for n in ast.walk(root)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(m for m in found if m.split(".")[0] in PACKAGES)


def closure(entry: str, root: Path = REPO, function: str | None = None) -> set[Path]:
    """Every source file in PACKAGES that importing `entry` can run, transitively.

    Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`, except the top-level
    `stages` package, whose __init__ only wires up the command line (it imports every stage
    module; counting that would make every stage depend on every other's command).
    """
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name == "stages" and i < len(parts):
                continue
            path = module_file(name, root)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(imported_modules(path, name, function if name in BY_FUNCTION else None))
    return seen


def collapse(files: set[Path], root: Path = REPO) -> list[str]:
    """Files as DVC deps: a folder where every .py file below it is listed, else the files; sorted."""
    files = {f.resolve() for f in files}
    out: list[str] = []

    def walk(folder: Path) -> None:
        sources = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
        if sources and all(p in files for p in sources):
            out.append(folder.relative_to(root).as_posix())
            return
        for p in sorted(folder.iterdir()):
            if p.is_dir() and p.name != "__pycache__":
                walk(p)
            elif p.suffix == ".py" and p in files:
                out.append(p.relative_to(root).as_posix())

    for top in PACKAGES:
        walk(root / top)
    return sorted(out)


def code_deps(command: str, root: Path = REPO) -> list[str]:
    """Code dependencies of `otjr stage <command>`: its command module and everything it imports.

    `train-<run>` is the training of one run: `train`'s code (the trainer, which imports no method) and
    the modules of the run's method and add-on, with what they import. The top-level `pipeline`
    package (pipeline/__init__.py, __main__.py) runs for every command; its files are listed unless
    the whole package already is.
    """
    command, _, run = command.partition("-")
    files = closure(f"stages.{command}", root, function=command) | closure("stages._cli", root)
    if run:
        r = parse_run(run, key="run")
        for module in [METHODS.module(r.method), *(ADDONS.module(a) for a in r.addons)]:
            files |= closure(module, root)
    files |= {root / "pipeline" / "__main__.py"}
    return collapse(files, root)


def fingerprinted() -> list[str]:
    """What the `code` stage hashes, one file each: every command but `train`, and `train-<run>` for every
    registered run (a training depends on its own run's method and add-on only)."""
    return [c for c in COMMANDS if c != "train"] + [f"train-{run}" for run in registered_runs()]


def code_file(command: str) -> str:
    """The file listing the hashes of `command`'s code (`train-<run>`: one run's training): its stages' one
    code dependency."""
    return f"{CODE_DIR}/{command}.md5"


def fingerprint(command: str, root: Path = REPO) -> str:
    """`md5sum`-style lines for every file `command`'s code deps cover (a folder: each file in it).

    From `code_deps`, not the closure's files: a folder whose every module is imported counts
    with its other files too (pipeline/data's ImageNet100 class list).
    """
    lines = []
    for dep in code_deps(command, root):
        path = root / dep
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        lines += [f"{hashlib.md5(f.read_bytes()).hexdigest()}  {f.relative_to(root).as_posix()}" for f in files]
    return "\n".join(lines) + "\n"


def write_fingerprints(root: Path = REPO) -> list[Path]:
    """The `code` stage: each command's fingerprint, rewritten only where it changed; the files written."""
    written = []
    for command in fingerprinted():
        path, text = root / code_file(command), fingerprint(command, root)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
            written.append(path)
    return written


# ------------------------------------------------------------------ the runs
def registered_runs() -> list[str]:
    """Every run the registries define: each method, then each method-addon pair the method accepts."""
    names = list(METHODS.names())
    names += [f"{m}-{a}" for a in ADDONS.names() for m in METHODS.names() if a in METHODS.get(m).addons]
    return names


def variants(root: Path = REPO) -> dict[str, str]:
    """params.yaml's variant runs: {name: method}."""
    path = root / "params.yaml"
    if not path.is_file():
        return {}
    try:
        return variants_from(read_yaml(path).get("variants"))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def runs(root: Path = REPO, listed: list[str] | None = None) -> list[str]:
    """The runs that get train stages: those params.yaml evaluates (`runs`, each a registered run or one of
    its `variants`; or `listed` here), so a preset of six runs trains six; every registered run where none is
    named."""
    path = root / "params.yaml"
    listed = listed or (read_yaml(path).get("runs") if path.is_file() else None)
    if not listed:
        return registered_runs()
    known = registered_runs() + list(variants(root))
    unknown = [r for r in listed if r not in known]
    if unknown:
        raise UserError(f"{path}: 'runs': unknown run {unknown[0]!r}; runs: {', '.join(known)}")
    return list(dict.fromkeys(listed))


def train_params(run: str, variant_entries: dict | None = None) -> list[str]:
    """The params keys the training of `run` reads: the trainer's, the method's and its add-on's; for a variant
    (`variant_entries`: params.yaml's `variants` block), its own entry `variants.<run>` and the method's keys it
    does not change."""
    entries = variant_entries or {}
    r = parse_run(run, key="run", variants=variants_from(entries))
    keys = list(TRAIN_BASE) + list(METHODS.get(r.method).param_keys())
    if r.variant:
        changed = set(entries[r.variant])
        keys = [k for k in keys if k not in changed] + [f"variants.{r.variant}"]
    for addon in r.addons:
        keys += [k for k in ADDONS.get(addon).param_keys() if k not in keys]
    return keys


# ------------------------------------------------------------------ the stages
@dataclass(frozen=True)
class Seeding:
    """How one stage family names its dataset folder and seed: the first seed's or a further one's."""

    further: bool

    @property
    def suffix(self) -> str:
        return "-seeds" if self.further else ""

    def loop(self, **dims: str) -> dict:
        """The foreach/matrix header and the names of the dataset (and run) items inside it."""
        if not self.further and list(dims) == ["dataset"]:
            return {"foreach": "${datasets}"}
        matrix = {k: v for k, v in dims.items()}
        if self.further:
            matrix["seed"] = "${seeds}"
        return {"matrix": matrix}

    def item(self, dims: list[str], name: str) -> str:
        return "${item}" if (not self.further and dims == ["dataset"]) else f"${{item.{name}}}"

    def folder(self, dims: list[str]) -> str:
        """The dataset folder of per-run files: `<dataset>` for `seed`, `<dataset>.seed<s>` for a further seed."""
        ds = self.item(dims, "dataset")
        return f"{ds}.seed${{item.seed}}" if self.further else ds

    def flag(self) -> str:
        return " --seed ${item.seed}" if self.further else ""

    def params(self, keys: list[str]) -> list[str]:
        """A further seed's stages take their seed from the command line, never from `seed`."""
        return [k for k in keys if not (self.further and k == "seed")]


def _train(run: str, s: Seeding, code: list[str], variant_entries: dict) -> dict:
    dims = ["dataset"]
    ds, folder = s.item(dims, "dataset"), s.folder(dims)
    body = {
        "cmd": f"python -m pipeline stage train --dataset {ds} --method {run}{s.flag()}",
        "deps": [f"data/prepared/{ds}", *code],
        "params": s.params(train_params(run, variant_entries)),
        # the training's last-epoch figures: an output, not metrics (the headline is; the curves are plots)
        "outs": [f"models/{folder}/{run}.safetensors", {f"metrics/train/{folder}/{run}/metrics.json": {"cache": False}}],
        "plots": [{f"metrics/train/{folder}/{run}/plots/metrics": {"cache": False, "x": "step"}}],
    }
    loop = s.loop(dataset="${datasets}")
    return {**loop, "do": body} if "foreach" in loop else {**loop, **body}


def _per_run(command: str, s: Seeding, code: list[str], params: list[str], extra_deps: list[str],
             outs: list[str]) -> dict:
    body = {
        "cmd": f"python -m pipeline stage {command} --dataset ${{item.dataset}} --method ${{item.method}}{s.flag()}",
        "deps": [*extra_deps, *code],
        "params": s.params(params),
        "outs": outs,
    }
    return {**s.loop(dataset="${datasets}", method="${runs}"), **body}


def _attack(s: Seeding, code: list[str]) -> dict:
    f = s.folder(["dataset", "method"])
    return _per_run("attack", s, code, ["seed", "threads", "eval_split", "threat", "attack"],
                    [f"models/{f}/${{item.method}}.safetensors", "data/prepared/${item.dataset}"],
                    [f"metrics/attacks/{f}/${{item.method}}.json", f"metrics/attacks/{f}/${{item.method}}.flags.safetensors"])


def _sanity(s: Seeding, code: list[str]) -> dict:
    f = s.folder(["dataset", "method"])
    # of `attack` only what the checks read themselves (the sweeps reuse PGD-20's budget); the rest comes
    # through the attack record, a dependency, and listing the whole block would double dvc.lock
    return _per_run("sanity", s, code, ["seed", "threads", "eval_split", *SANITY_ATTACK_KEYS, "sanity"],
                    [f"models/{f}/${{item.method}}.safetensors", "data/prepared/${item.dataset}",
                     f"metrics/attacks/{f}/${{item.method}}.json", f"metrics/attacks/{f}/${{item.method}}.flags.safetensors",
                     f"metrics/attacks/{f}/${{sanity.undefended}}.json"],  # rule 10: the undefended run's PGD-20
                    [f"metrics/sanity/{f}/${{item.method}}.json"])


PLOTS = [  # (file, template, x, y, title) of `dvc plots show`, written by the report stage
    ("train_loss.csv", "lines_by_model", "epoch", "loss", "Training objective per epoch"),
    ("train_clean_acc.csv", "lines_by_model", "epoch", "clean_acc", "Held-out clean accuracy (%) per epoch"),
    ("train_pgd_acc.csv", "lines_by_model", "epoch", "pgd_acc", "Held-out PGD accuracy (%) per epoch"),
    ("eps_sweep.csv", "lines_by_model", "eps", "accuracy", "PGD accuracy (%) against the L-inf budget (sanity rule 5)"),
    ("clean_vs_robust.csv", "scatter_by_model", "clean", "worst_case", "Clean vs worst-case robust accuracy (%)"),
]


PARAMS_CHECK = "metrics/params.ok"  # the `params` stage's output (pipeline.core.paths.params_check)


def _after_params_check(stage: dict) -> dict:
    """`stage` depending first on the `params` stage's output, so DVC runs the check before it."""
    body = stage.get("do", stage)
    body["deps"] = [PARAMS_CHECK, *body.get("deps", [])]
    return stage


def stages(root: Path = REPO, listed: list[str] | None = None) -> dict:
    """Every stage of dvc.yaml, in order: `params` first, and every other stage depending on it."""
    return {"params": {  # re-checks on any edit of params.yaml or the code; persist: a refusal deletes nothing
        "cmd": "python -m pipeline stage params",
        "deps": ["params.yaml", *PACKAGES],
        "outs": [{PARAMS_CHECK: {"cache": False, "persist": True}}]},
        **{name: _after_params_check(stage) for name, stage in _stages(root, listed).items()}}


def _stages(root: Path, listed: list[str] | None) -> dict:
    code = {c: [code_file(c)] for c in COMMANDS}
    out: dict = {
        "code": {  # first: what each command imports, hashed; a stage re-runs when its command's hashes change
            "cmd": "python -m pipeline stage code",
            "deps": list(PACKAGES),
            "outs": [{code_file(c): {"cache": False}} for c in fingerprinted()]},
        "download": {"foreach": "${datasets}", "do": {
            "cmd": "python -m pipeline stage download --dataset ${item}",
            "deps": code["download"], "params": ["data.sources"], "outs": ["data/raw/${item}"]}},
        "preprocess": {"foreach": "${datasets}", "do": {
            "cmd": "python -m pipeline stage preprocess --dataset ${item}",
            "deps": ["data/raw/${item}", *code["preprocess"]], "params": ["data.val_fraction", "data.resolution",
                                                                "data.train_n"],
            "outs": ["data/prepared/${item}"]}},
    }
    methods = variants(root)  # validated once: {variant: method}
    path = root / "params.yaml"
    entries = (read_yaml(path).get("variants") or {}) if methods else {}
    for further in (False, True):
        s = Seeding(further)
        for run in runs(root, listed):
            # a variant trains with its method's code
            out[f"train-{run}{s.suffix}"] = _train(run, s, [code_file(f"train-{methods.get(run, run)}")], entries)
    for further in (False, True):
        s = Seeding(further)
        out[f"attack{s.suffix}"] = _attack(s, code["attack"])
        out[f"sanity{s.suffix}"] = _sanity(s, code["sanity"])
    out["analyze"] = {"foreach": "${datasets}", "do": {  # the first seed's models, one process per dataset
        "cmd": "python -m pipeline stage analyze --dataset ${item}",
        "deps": ["models/${item}", "data/prepared/${item}", *code["analyze"]],
        "params": ["seed", "threads", "eval_split", "runs", "threat.linf", "analysis"],
        "outs": ["metrics/analysis/${item}.json"]}}
    out["report"] = {
        "cmd": "python -m pipeline stage report",
        "deps": ["metrics/attacks", "metrics/sanity", "metrics/analysis", "metrics/train", *code["report"]],
        "params": ["seed", "seeds", "eval_split", "datasets", "runs", "threat.linf", "analysis"],
        "outs": ["metrics/report/report.md"],
        "plots": ["metrics/report/figures"] + [
            {f"metrics/plots/{f}": {"cache": False, "template": f"pipeline/report/dvc_templates/{t}.json", "x": x,
                                    "y": y, "title": title}} for f, t, x, y, title in PLOTS],
    }
    out["aggregate"] = {
        "cmd": "python -m pipeline stage aggregate",
        "always_changed": True,  # cheap; prints the results table at the end of every `dvc repro`
        "deps": ["metrics/attacks", "metrics/sanity", "metrics/report/report.md", *code["aggregate"]],
        "params": ["seed", "seeds", "datasets", "runs"],
        # persist: DVC would delete them before every run (it always runs), losing the committed summary
        # when the stage fails; the stage replaces each atomically instead. The headline alone is metrics
        # (`dvc exp show`, `otjr exp show`); the full summary and its statistics are outputs
        "metrics": [{"metrics/headline.json": {"cache": False, "persist": True}}],
        "outs": [{"metrics/summary.json": {"cache": False, "persist": True}},
                 {"metrics/summary_stats.json": {"cache": False, "persist": True}},
                 {"metrics/summary.md": {"persist": True}}],
    }
    return out


def render(root: Path = REPO, listed: list[str] | None = None) -> str:
    """The text of dvc.yaml (train stages for params.yaml's `runs`, or for the runs `listed` here)."""
    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump({"stages": stages(root, listed)}, buf)
    return HEADER + buf.getvalue()


def write(path: Path | None = None, check: bool = False) -> bool:
    """Write the render to dvc.yaml (or only compare when `check`); returns whether the file was already current."""
    path = Path(path) if path else REPO / "dvc.yaml"
    text = render()
    current = path.read_text() if path.is_file() else None
    if check:
        if current != text:
            raise UserError(f"{path}: differs from the render of the registries; run `otjr dvc render`")
        return True
    if current != text:
        path.write_text(text)
    return current == text
