"""dvc.yaml is rendered from the registries: the committed file is the render, a new method gets its
stage, code deps follow the imports, and with DVC itself a further seed adds stages without
re-running any existing one (on a copy of the pipeline whose commands only write their outputs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field
from ruamel.yaml import YAML

from conftest import REPO, write_params
from pipeline import dvc_render
from pipeline.core.errors import UserError
from pipeline.core.schema import Strict
from pipeline.methods import METHODS
from pipeline.methods.base import Method

yaml = YAML(typ="safe", pure=True)


def test_committed_dvc_yaml_is_the_render():
    assert (REPO / "dvc.yaml").read_text() == dvc_render.render(), "dvc.yaml is stale: run `otjr dvc render`"


def test_render_check_command_fails_on_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "dvc.yaml"
    stale.write_text("stages: {}\n")
    with pytest.raises(Exception, match="differs from the render"):
        dvc_render.write(stale, check=True)
    assert dvc_render.write(stale) is False and dvc_render.write(stale, check=True) is True


class _ToyParams(Strict):
    strength: float = Field(gt=0)


@pytest.fixture
def toy_method():
    """A method registered for the test only, with its own params block `toy`."""

    class Toy(Method):
        name = "toy"
        Params = _ToyParams
        param_block = "toy"

        def objective(self, model, x, x_adv, y, guide=None):  # pragma: no cover - never trained here
            raise NotImplementedError

    METHODS.register("toy")(Toy)
    try:
        yield Toy
    finally:
        METHODS._items.pop("toy")


def test_a_registered_method_gets_its_train_stages_with_its_own_params(toy_method):
    stages = yaml.load(dvc_render.render(listed=[*dvc_render.runs(), "toy"]))["stages"]
    first, further = stages["train-toy"], stages["train-toy-seeds"]
    assert first["do"]["params"] == [*dvc_render.TRAIN_BASE, "toy"]
    assert first["do"]["cmd"] == "python -m pipeline stage train --dataset ${item} --method toy"
    assert further["params"] == [k for k in dvc_render.TRAIN_BASE if k != "seed"] + ["toy"]
    assert all("toy" not in s.get("do", s).get("params", []) for n, s in stages.items() if "toy" not in n)
    assert "train-toy" not in yaml.load(dvc_render.render())["stages"]  # trained only once params.yaml evaluates it


def test_train_stages_follow_the_runs_params_yaml_evaluates(tmp_path):
    (tmp_path / "params.yaml").write_text("runs:\n- otjr\n- pgd_at\n")
    assert dvc_render.runs(tmp_path) == ["otjr", "pgd_at"]
    (tmp_path / "params.yaml").write_text("runs:\n- otjr\n- nosuch\n")
    with pytest.raises(UserError, match="'runs': unknown run 'nosuch'"):
        dvc_render.runs(tmp_path)


def test_code_deps_are_what_each_command_imports():
    deps = {c: dvc_render.code_deps(c) for c in ("download", "train", "attack", "sanity", "report", "aggregate")}
    # the trainer imports no method and no attack: a training's own method and add-on come with its run
    assert not any(d.startswith(("pipeline/attacks", "pipeline/methods/otjr.py")) for d in deps["train"])
    for command in ("download", "preprocess"):
        assert not any(d.startswith(("pipeline/attacks", "pipeline/sanity")) for d in dvc_render.code_deps(command))
    awp = set(dvc_render.code_deps("train-trades-awp"))
    assert {"pipeline/methods/trades.py", "pipeline/methods/awp.py"} <= awp
    assert awp - {"pipeline/methods/trades.py", "pipeline/methods/awp.py"} == set(deps["train"])
    for command, found in deps.items():
        assert {"pipeline/params.py", "pipeline/api.py", f"stages/{command}.py"} <= set(found), command
        assert any(d == "pipeline/core" or d.startswith("pipeline/core/") for d in found), command
    assert "pipeline/data" in deps["train"] and "pipeline/train" in deps["train"]
    assert "pipeline/core" in deps["train"]  # the trainer's PGD lives there: a change to it re-trains
    assert "pipeline/sanity" in deps["sanity"] and "pipeline/sanity" not in deps["attack"]
    assert not any(d.startswith("pipeline/report") for d in deps["train"] + deps["attack"])
    assert not any(d.startswith("pipeline/external") for c in deps for d in deps[c])  # only `otjr evaluate` uses it


def test_every_module_that_registers_a_method_or_add_on_is_listed_in_its_registry():
    """The registries import an entry's module by name: a module they do not list would never register."""
    from pipeline.methods import ADDONS

    found = {"\n@register\n": set(), "\n@register_addon\n": set()}
    for path in sorted((REPO / "pipeline" / "methods").glob("*.py")):
        found = {mark: names | ({path.stem} if mark in path.read_text() else set()) for mark, names in found.items()}
    for registry, names in zip((METHODS, ADDONS), found.values()):
        assert set(registry.names()) == names
        assert all(registry.get(n).__module__ == f"pipeline.methods.{n}" for n in names)


def _fake_checkout(tmp_path: Path) -> Path:
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_fingerprint_lists_every_file_of_the_code_deps_with_its_md5(tmp_path):
    root = _fake_checkout(tmp_path)
    lines = dvc_render.fingerprint("train", root).splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    expected = set()
    for dep in dvc_render.code_deps("train", root):
        p = root / dep
        expected |= ({f.relative_to(root).as_posix() for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts}
                     if p.is_dir() else {dep})
    assert set(listed) == expected and len(lines) == len(expected)
    out = subprocess.run(["md5sum", *sorted(listed)], cwd=root, capture_output=True, text=True, check=True).stdout
    assert {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.splitlines()} == listed


def test_fingerprints_change_exactly_for_the_commands_that_import_a_changed_file(tmp_path):
    root = _fake_checkout(tmp_path)
    assert len(dvc_render.write_fingerprints(root)) == len(dvc_render.fingerprinted())
    assert dvc_render.write_fingerprints(root) == []  # unchanged code: no file rewritten
    with open(root / "pipeline" / "sanity" / "rules.py", "a") as f:
        f.write("# edited\n")
    changed = {p.stem for p in dvc_render.write_fingerprints(root)}
    assert "sanity" in changed and not changed & {"download", "preprocess", "train", "attack"}
    with open(root / "pipeline" / "core" / "pgd.py", "a") as f:
        f.write("# edited\n")
    assert {"train-xe", "attack", "analyze"} <= {p.stem for p in dvc_render.write_fingerprints(root)}
    with open(root / "pipeline" / "methods" / "trades.py", "a") as f:
        f.write("# edited\n")
    assert {p.stem for p in dvc_render.write_fingerprints(root)} == {"train-trades", "train-trades-awp",
                                                                     "train-trades-lbgat"}


def test_every_stage_but_code_depends_on_its_commands_fingerprint_only():
    for name, stage in dvc_render.stages().items():
        body = stage.get("do", stage)
        code = [d for d in body["deps"] if d.startswith(("pipeline", "stages", dvc_render.CODE_DIR))]
        command = body["cmd"].split()[4]
        whole = name in ("code", "params")  # they run before the fingerprints exist, on every code change
        if command == "train":  # one fingerprint per run: its method and add-on
            command = f"train-{body['cmd'].split('--method ')[1].split()[0]}"
        assert code == (list(dvc_render.PACKAGES) if whole else [dvc_render.code_file(command)]), name


def test_the_params_check_comes_before_every_stage_and_its_refusal_deletes_nothing():
    stages = dvc_render.stages()
    first = stages["params"]
    assert list(stages)[0] == "params" and "params.yaml" in first["deps"]
    assert first["outs"] == [{dvc_render.PARAMS_CHECK: {"cache": False, "persist": True}}]
    for name, stage in list(stages.items())[1:]:
        assert stage.get("do", stage)["deps"][0] == dvc_render.PARAMS_CHECK, name
    # the always-run aggregate keeps the committed summary when it fails: DVC deletes no persisted output
    aggregate = stages["aggregate"]
    assert all(next(iter(m.values()))["persist"] for m in aggregate["metrics"] + aggregate["outs"])


STAGE_RUNS = {  # fingerprint -> a command line of it that stops at missing data, after importing what it runs
    "download": ["stage", "download", "--dataset", "nosuch"],
    "train-xe": ["stage", "train", "--dataset", "digits", "--method", "xe"],
    "train-trades-awp": ["stage", "train", "--dataset", "digits", "--method", "trades-awp"],
    "attack": ["stage", "attack", "--dataset", "digits", "--method", "otjr"],
    "sanity": ["stage", "sanity", "--dataset", "digits", "--method", "otjr"],
    "analyze": ["stage", "analyze", "--dataset", "digits"],
}


@pytest.mark.parametrize("command", list(STAGE_RUNS))
def test_a_stage_imports_only_code_its_fingerprint_lists(tmp_path, command):
    """The fingerprint is what runs: every pipeline module the stage's process imports (its `sys.modules` at
    exit) is hashed in its file, so no edit to code a stage runs goes unnoticed; the registries import by name."""
    write_params(tmp_path)
    show = "import atexit, sys; atexit.register(lambda: print('modules:', *sys.modules, file=sys.stderr))"
    proc = subprocess.run([sys.executable, "-c", f"{show}; from stages import main; main()", *STAGE_RUNS[command]],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr, proc.stderr[-2000:]  # missing data, after the imports
    imported = proc.stderr.split("modules:", 1)[1].split()
    ours = {m for m in imported if m.split(".")[0] == "pipeline"}
    listed = {line.split("  ", 1)[1] for line in dvc_render.fingerprint(command).splitlines()}
    unlisted = {m for m in ours if dvc_render.module_file(m).relative_to(REPO).as_posix() not in listed}
    assert not unlisted, f"{command} imports code its fingerprint misses: {sorted(unlisted)}"
    loaded = {m.rsplit(".", 1)[1] for m in ours if m.startswith(("pipeline.methods.", "pipeline.attacks."))}
    registered = set(METHODS.names()) | {"awp", "lbgat"}
    if command.startswith("train-"):
        assert loaded & registered == set(command.split("-")[1:]) and not any(m.startswith("pipeline.attacks")
                                                                                  for m in ours)
    else:
        assert not loaded & registered and (command in ("attack", "sanity")) == ("pipeline.attacks.apgd" in ours)


def test_closure_follows_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pipeline"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("import os\n")
    (pkg / "unused.py").write_text("")
    found = {p.relative_to(tmp_path).as_posix() for p in dvc_render.closure("pipeline.a", tmp_path)}
    assert found == {"pipeline/__init__.py", "pipeline/a.py", "pipeline/sub/__init__.py", "pipeline/sub/b.py",
                     "pipeline/c.py"}
    assert dvc_render.collapse({tmp_path / f for f in found}, tmp_path) == [
        "pipeline/__init__.py", "pipeline/a.py", "pipeline/c.py", "pipeline/sub"]


# ------------------------------------------------------------------ with DVC: what re-runs
FAKE = """\
import sys, time
from pathlib import Path
now = time.time_ns()  # new content on every run, as a real re-run's: what follows it re-runs too
for out in sys.argv[1:]:
    p = Path(out)
    if p.suffix:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text('{"x": %d}' % now if p.suffix == '.json' else 'x,y\\n1,%d\\n' % now if p.suffix == '.csv'
                     else f"{out} {now}")
    else:
        p.mkdir(parents=True, exist_ok=True)
        (p / "x.txt").write_text(f"{out} {now}")
"""


def _outs(body: dict) -> list[str]:
    found = []
    for key in ("outs", "metrics", "plots"):
        for entry in body.get(key, []):
            found.append(entry if isinstance(entry, str) else next(iter(entry)))
    return found


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OTJR_ROOT",)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
            "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid"}


def _run(*args: str, cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _ran(root: Path, *args: str) -> set[str]:
    """The stages `dvc <args>` runs (with --dry: would run; their dependencies must exist)."""
    out = _run(sys.executable, "-m", "dvc", *args, cwd=root)
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.fixture(scope="module")
def fake_pipeline(tmp_path_factory) -> Path:
    """The rendered pipeline (its deps, params, outs) with commands that only write their outputs, reproduced."""
    root = tmp_path_factory.mktemp("fake")
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")
    _set(root, "runs", dvc_render.registered_runs())  # every run, the add-on ones too (the default has none)
    shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")
    (root / "fake.py").write_text(FAKE)
    stages = dvc_render.stages(listed=dvc_render.registered_runs())
    for name, stage in stages.items():
        body = stage.get("do", stage)
        if name not in ("code", "params"):  # the real ones: they hash the copied code, check its params
            body["cmd"] = "python fake.py " + " ".join(_outs(body))
    with open(root / "dvc.yaml", "w") as f:
        yaml.dump({"stages": stages}, f)
    _run("git", "init", "-q", cwd=root)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=root)
    _run(sys.executable, "-m", "dvc", "repro", "-q", cwd=root)
    _run("git", "add", "-A", cwd=root)
    _run("git", "commit", "-qm", "reproduced", cwd=root)
    return root


def _set(root: Path, key: str, value) -> None:
    params = yaml.load((root / "params.yaml").read_text())
    params[key] = value
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)


@pytest.mark.slow
def test_adding_seeds_adds_stages_and_reruns_nothing_done(fake_pipeline):
    root = fake_pipeline
    assert _ran(root, "repro", "--dry") == {"aggregate"}  # always_changed; everything else is up to date
    _set(root, "seeds", [2])  # one further seed (not 1: the stages are named by the seed, not its position)
    try:
        ran = _ran(root, "repro")
        again = _ran(root, "repro")
        assert (root / "models" / "digits.seed2" / "otjr.safetensors").is_file()
    finally:
        _run("git", "checkout", "--", ".", cwd=root)  # params.yaml, dvc.lock, the git-tracked (cache: false) outputs
        _run("git", "clean", "-fdq", cwd=root)  # what a further seed wrote (untracked once .gitignore is back)
        _run(sys.executable, "-m", "dvc", "checkout", "-q", cwd=root)
    new = {s for s in ran if s.split("@")[0].endswith("-seeds")}
    assert ran - new == {"params", "report", "aggregate"}  # params.yaml changed; report and aggregate read every seed
    methods = yaml.load((root / "params.yaml").read_text())["runs"]
    assert new == ({f"train-{r}-seeds@digits-2" for r in methods}
                   | {f"{k}-seeds@digits-{m}-2" for k in ("attack", "sanity") for m in methods})
    assert again == {"aggregate"}


def _repro_with(root: Path, key: str, value) -> set[str]:
    """The stages `dvc repro` runs with params key `key` set to `value` (what `dvc exp run -S` runs),
    then params.yaml and the outputs back as committed."""
    params = yaml.load((root / "params.yaml").read_text())
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)
    try:
        return _ran(root, "repro")
    finally:
        _run("git", "checkout", "--", ".", cwd=root)  # params.yaml, dvc.lock, the git-tracked (cache: false) outputs
        _run("git", "clean", "-fdq", cwd=root)  # what a further seed wrote (untracked once .gitignore is back)
        _run(sys.executable, "-m", "dvc", "checkout", "-q", cwd=root)


@pytest.mark.slow
def test_lambda_j_reruns_only_otjr_runs_and_a_sanity_setting_no_training(fake_pipeline):
    root = fake_pipeline
    methods = yaml.load((root / "params.yaml").read_text())["runs"]
    ran = _repro_with(root, "lambda_j", 0.01)
    otjr = {"otjr", "otjr-awp", "otjr-lbgat"}
    assert {s for s in ran if s.startswith("train-")} == {f"train-{r}@digits" for r in otjr}
    assert {s for s in ran if s.startswith(("attack", "sanity"))} == {f"{k}@digits-{r}" for k in ("attack", "sanity")
                                                                      for r in otjr}
    ran = _repro_with(root, "sanity.noise_samples", 3)
    assert not any(s.startswith(("train-", "attack")) for s in ran)
    assert {s for s in ran if s.startswith("sanity")} == {f"sanity@digits-{m}" for m in methods}
    # sanity lists only attack.batch_size and attack.pgd20: any other attack key re-runs it through the record
    ran = _repro_with(root, "attack.n", 40)
    assert not any(s.startswith("train-") for s in ran)
    assert {s for s in ran if s.startswith(("attack", "sanity"))} == {f"{k}@digits-{m}" for k in ("attack", "sanity")
                                                                      for m in methods}


def _edited(root: Path, file: str, *dvc: str) -> str:
    """`dvc <args>` (each a tuple) after a comment is added to `file`; the file, the code stage's outputs,
    dvc.lock and the outputs back as committed after. The last command's output."""
    path = root / file
    original = path.read_text()
    path.write_text(original + "# edited\n")
    try:
        return [_run(sys.executable, "-m", "dvc", *args, cwd=root) for args in dvc][-1]
    finally:
        path.write_text(original)
        _run("git", "checkout", "--", ".", cwd=root)  # dvc.lock, the fingerprints, the git-tracked outputs
        _run("git", "clean", "-fdq", cwd=root)  # what a further seed wrote (untracked once .gitignore is back)
        _run(sys.executable, "-m", "dvc", "checkout", "-q", cwd=root)


def _each(kinds: tuple[str, ...], runs: list[str]) -> set[str]:
    return {f"{k}@digits-{r}" for k in kinds for r in runs}


#: A comment added to a file -> the stages whose code it is: what `dvc status` lists once the code stage ran
#: (`aggregate` aside: it always runs). Add-on runs as rendered for every registered run.
EDITS = {
    "pipeline/attacks/apgd.py": lambda runs: _each(("attack", "sanity"), runs) | {"report"},
    "pipeline/sanity/rules.py": lambda runs: _each(("sanity",), runs),
    "pipeline/methods/trades.py": lambda runs: {f"train-{r}@digits" for r in ("trades", "trades-awp", "trades-lbgat")},
    "pipeline/methods/awp.py": lambda runs: {f"train-{r}@digits" for r in ("trades-awp", "otjr-awp")},
    "pipeline/train/loop.py": lambda runs: {f"train-{r}@digits" for r in runs},
    "pipeline/report/tables.py": lambda runs: {"report"},
}


@pytest.mark.slow
@pytest.mark.parametrize("file", list(EDITS))
def test_a_code_edit_changes_exactly_the_stages_that_run_that_code(fake_pipeline, file):
    root = fake_pipeline
    status = json.loads(_edited(root, file, ("repro", "-q", "code"), ("status", "--json")))
    runs = yaml.load((root / "params.yaml").read_text())["runs"]
    assert set(status) - {"aggregate"} == EDITS[file](runs)


@pytest.mark.slow
def test_a_code_change_reruns_only_the_stages_that_import_it(fake_pipeline):
    root = fake_pipeline
    methods = yaml.load((root / "params.yaml").read_text())["runs"]
    ran = set(re.findall(r"Running stage '([^']+)'", _edited(root, "pipeline/sanity/rules.py", ("repro",))))
    # `params` checks the file with the edited code (its output unchanged, nothing follows from it)
    assert ran == {"params", "code", *_each(("sanity",), methods), "report", "aggregate"}  # and what reads sanity's
    ran = set(re.findall(r"Running stage '([^']+)'", _edited(root, "pipeline/methods/trades.py", ("repro",))))
    trades = ["trades", "trades-awp", "trades-lbgat"]
    assert ran == {"params", "code", *(f"train-{r}@digits" for r in trades), *_each(("attack", "sanity"), trades),
                   "analyze@digits", "report", "aggregate"}  # analyze reads every model of the dataset
