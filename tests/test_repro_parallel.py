"""`otjr repro -j N` (pipeline/parallel): independent stages at once, each through DVC, with the results of a
sequential `dvc repro`; on a fake pipeline (commands that record when and on which GPUs they ran) and the real one."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from conftest import REPO

yaml = YAML(typ="safe", pure=True)

# Each fake command records its start/end and CUDA_VISIBLE_DEVICES in $FAKE_TIMES/<name>.jsonl, then writes
# its outputs from its name and its inputs' bytes (the same on every run, as the real stages'); $FAKE_FAIL
# names stages that fail, $FAKE_SLOW one that runs until killed (after writing its pid).
FAKE = """\
import json, os, sys, time
from pathlib import Path
words = [a for a in sys.argv[1:] if not a.startswith("--")]  # stage <command> <name> <ins|-> <outs...>
name, ins, outs = words[2], [i for i in words[3].split(",") if i != "-"], words[4:]
times = Path(os.environ["FAKE_TIMES"])
start = time.time()
if name == os.environ.get("FAKE_SLOW"):
    (times / (name + ".pid")).write_text(str(os.getpid()))
    time.sleep(600)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0.5")))
if name in os.environ.get("FAKE_FAIL", "").split(","):
    sys.exit(f"{name}: failing as told")
data = name.encode() + b"".join(Path(i).read_bytes() for i in ins)
for out in outs:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(data)
with open(times / (name + ".jsonl"), "a") as f:
    f.write(json.dumps({"start": start, "end": time.time(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\\n")
"""

# name: (command it imitates, inputs); each stage writes out/<name>.txt. `train-w` runs on two ranks.
GRAPH = {
    "prep": ("preprocess", []),
    "train-x": ("train", ["prep"]), "train-y": ("train", ["prep"]), "train-z": ("train", ["prep"]),
    "train-w": ("train --nproc_per_node=2", ["prep"]),
    "attack-x": ("attack", ["train-x"]), "attack-y": ("attack", ["train-y"]), "attack-z": ("attack", ["train-z"]),
    "report": ("report", ["attack-x", "attack-y", "attack-z", "train-w"]),
    "notes": ("download", []),
}
DEVICE = {n for n, (c, _) in GRAPH.items() if c.startswith(("train", "attack"))}


def _downstream(name: str) -> set[str]:
    found = {n for n, (_, ins) in GRAPH.items() if name in ins}
    return found.union(*(_downstream(n) for n in found)) if found else set()


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OTJR_ROOT", "PYTHONPATH", "OTJR_GPUS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
            "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid", **extra}


def _run(*args: str, cwd: Path, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _ok(*args: str, cwd: Path, **env) -> str:
    proc = _run(*args, cwd=cwd, **env)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _otjr(*args: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "pipeline", "repro", *args, cwd=cwd, PYTHONPATH=str(REPO), **env)


def _fake(root: Path) -> Path:
    """A git + DVC project with GRAPH's stages, nothing reproduced; its stages record into root/times."""
    root.mkdir(parents=True)
    (root / "fake.py").write_text(FAKE)
    stages = {}
    for name, (command, ins) in GRAPH.items():
        deps = ["fake.py", *(f"out/{i}.txt" for i in ins)]
        stages[name] = {"cmd": f"python fake.py stage {command} {name} {','.join(deps[1:]) or '-'} out/{name}.txt",
                        "deps": deps, "outs": [f"out/{name}.txt"]}
    with open(root / "dvc.yaml", "w") as f:
        yaml.dump({"stages": stages}, f)
    (root / ".gitignore").write_text("/times/\n/.otjr/\n")
    _ok("git", "init", "-q", cwd=root)
    _ok(sys.executable, "-m", "dvc", "init", "-q", cwd=root)
    _ok("git", "add", "-A", cwd=root)
    _ok("git", "commit", "-qm", "fake", cwd=root)
    (root / "times").mkdir()
    return root


def _times(root: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (root / "times").glob("*.jsonl")}


def _lock(root: Path) -> dict:
    return yaml.load((root / "dvc.lock").read_text())


def _locked(root: Path, stage: str) -> bool:
    """Whether DVC has recorded `stage` in dvc.lock (it is done, as a stage whose command ended is not yet)."""
    try:
        return stage in (_lock(root) or {}).get("stages", {})
    except (OSError, YAMLError):  # not written yet, or being written
        return False


def _outputs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "out").glob("*.txt"))}


def _clean(root: Path) -> None:
    assert json.loads(_ok(sys.executable, "-m", "dvc", "status", "--json", cwd=root).strip().splitlines()[-1]) == {}
    before = _times(root)
    out = _ok(sys.executable, "-m", "dvc", "repro", cwd=root, FAKE_TIMES=str(root / "times"))
    assert "Running stage" not in out and _times(root) == before  # a plain `dvc repro` does nothing


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    """The fake project reproduced by a plain `dvc repro`: the reference."""
    root = _fake(tmp_path_factory.mktemp("seq") / "p")
    _ok(sys.executable, "-m", "dvc", "repro", cwd=root, FAKE_TIMES=str(root / "times"))
    return root


@pytest.mark.slow
def test_parallel_gives_sequential_lock_and_outputs_in_dependency_order_on_distinct_gpus(sequential, tmp_path):
    root = _fake(tmp_path / "p")
    # commands of 2 s: longer than DVC's start, during which it holds the project's lock
    proc = _otjr("-j", "4", cwd=root, FAKE_TIMES=str(root / "times"), OTJR_GPUS="0,1,2", FAKE_SLEEP="2")
    assert proc.returncode == 0, proc.stderr
    assert _lock(root) == _lock(sequential)  # every stage, every hash
    assert _outputs(root) == _outputs(sequential)
    runs = {n: r for n, (r,) in _times(root).items()}  # each stage ran exactly once
    assert set(runs) == set(GRAPH)
    for name, (_, ins) in GRAPH.items():
        assert all(runs[name]["start"] >= runs[i]["end"] for i in ins), name
    # four slots, three GPUs: device stages overlapped, never on a shared GPU; the others got none
    gpus = {n: set((r["gpus"] or "").split(",")) - {""} for n, r in runs.items()}
    assert {n: len(g) for n, g in gpus.items()} == {n: 2 if n == "train-w" else int(n in DEVICE) for n in GRAPH}
    overlaps = [(a, b) for a in runs for b in runs
                if a < b and runs[a]["start"] < runs[b]["end"] and runs[b]["start"] < runs[a]["end"]]
    assert any(a in DEVICE and b in DEVICE for a, b in overlaps), "no two stages ran at once"
    assert all(not gpus[a] & gpus[b] for a, b in overlaps)
    _clean(root)


@pytest.mark.slow
def test_a_failing_stage_stops_exactly_its_dependents_and_is_named_with_its_log(sequential, tmp_path):
    root = _fake(tmp_path / "p")
    proc = _otjr("-j", "2", cwd=root, FAKE_TIMES=str(root / "times"), FAKE_FAIL="train-y")
    assert proc.returncode == 1
    log = root / ".otjr" / "repro" / "logs" / "train-y.log"
    assert re.search(rf"^error: stage train-y failed \(exit \d+\); its log: {re.escape(str(log.relative_to(root)))}$",
                     proc.stderr, re.M), proc.stderr
    assert "train-y: failing as told" in log.read_text()
    assert set(_times(root)) == set(GRAPH) - {"train-y"} - _downstream("train-y")
    # the rest is done: once it passes, only the failed stage and its dependents run
    proc = _otjr("-j", "2", cwd=root, FAKE_TIMES=str(root / "times"))
    assert proc.returncode == 0, proc.stderr
    assert {n for n, r in _times(root).items() if len(r) == 1} == set(GRAPH)
    assert _lock(root) == _lock(sequential) and _outputs(root) == _outputs(sequential)


@pytest.mark.slow
def test_an_interrupted_run_stops_its_children_and_the_next_run_does_only_the_rest(sequential, tmp_path):
    import psutil

    root = _fake(tmp_path / "p")
    times = root / "times"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "repro", "-j", "2"], cwd=root, text=True,
                            env=_env(PYTHONPATH=str(REPO), FAKE_TIMES=str(times), FAKE_SLOW="train-z"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ((times / "train-z.pid").exists() and _locked(root, "attack-x")) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    slow = int((times / "train-z.pid").read_text())
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=180)  # stopping DVC children took over 60 s on a loaded 2-core machine
    assert proc.returncode == 130, err
    assert "interrupted" in err and "train-z" in err
    assert not psutil.pid_exists(slow) or psutil.Process(slow).status() == psutil.STATUS_ZOMBIE
    first = _times(root)
    assert "train-z" not in first and "report" not in first
    proc = _otjr("-j", "2", cwd=root, FAKE_TIMES=str(times))
    assert proc.returncode == 0, proc.stderr
    second = _times(root)
    assert {n: len(r) for n, r in second.items()} == {n: 1 for n in GRAPH}  # nothing done ran twice
    assert _lock(root) == _lock(sequential) and _outputs(root) == _outputs(sequential)
    _clean(root)


def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path):
    root = _fake(tmp_path / "p")
    (root / "cluster.yaml").write_text("kind: kubernetes\n")
    for args, env, says in [(["-j", "0"], {}, "-j 0"), (["-j", "x"], {}, "-j x"),
                            (["--gpus", "0,0"], {}, "named twice"),
                            ([], {"OTJR_GPUS": "0"}, "train-w needs 2 GPUs"),
                            (["nosuchstage"], {}, "nosuchstage"),
                            (["--cluster", "cluster.yaml"], {}, "needs `kind: slurm`")]:
        proc = _otjr(*args, cwd=root, FAKE_TIMES=str(root / "times"), **env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert not (root / ".otjr").exists() and not (root / "dvc.lock").exists() and not _times(root)


def test_stage_needs_from_its_command():
    from pipeline.parallel.plan import needs

    assert needs("python -m pipeline stage train --dataset digits --method xe") == (1, True)
    assert needs("torchrun --standalone --nproc_per_node=4 -m pipeline stage train --dataset d --method otjr") == (4, True)
    assert needs(["torchrun --nproc-per-node 2 -m pipeline stage attack -d x -m y"]) == (2, True)
    assert needs("python -m pipeline stage report") == (1, False)
    assert needs("python -m pipeline stage download --dataset trainset") == (1, False)


def test_gpu_detection_stub_and_pool_never_lends_a_gpu_twice(monkeypatch):
    from pipeline.core.errors import UserError
    from pipeline.parallel import devices

    monkeypatch.setenv("OTJR_GPUS", "3,1")
    assert devices.detect() == ["3", "1"]
    monkeypatch.setenv("OTJR_GPUS", "")
    assert devices.detect() == []
    monkeypatch.delenv("OTJR_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert devices.detect() == ["2", "5"]
    with pytest.raises(UserError):
        devices.parse("0,1,0")
    pool = devices.Pool(["0", "1", "2"])
    a, b = pool.take(2), pool.take(1)
    assert pool.take(1) is None and set(a) | set(b) == {"0", "1", "2"} and not set(a) & set(b)
    pool.give(a)
    assert sorted(pool.take(2)) == sorted(a)


# The real pipeline, tiny: two independent trainings and an attack, from scratch
TARGETS = ("attack@digits-xe", "train-otjr@digits")
WALL = {"seconds", "train_seconds"}  # wall times in records: they differ between any two runs


def _tiny(root: Path) -> Path:
    """A copy of this checkout's tracked files (no results) in a fresh git repo, with tiny params."""
    from conftest import TINY, write_params

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("data/", "models/", "metrics/")) and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    write_params(root, {**TINY, "train.epochs": 1})
    _ok("git", "init", "-q", cwd=root)
    _ok("git", "add", "-A", cwd=root)
    _ok("git", "commit", "-qm", "copy", cwd=root)
    return root


def _content(path: Path):
    """A result's content but its wall times (JSON, and the JSON in a checkpoint's metadata)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in WALL}
        return [strip(v) for v in x] if isinstance(x, list) else x

    if path.suffix == ".json":
        return strip(json.loads(path.read_text()))
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = {k: strip(json.loads(v)) if v.startswith("{") else v for k, v in (f.metadata() or {}).items()}
            return meta, {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}
    return path.read_bytes()


def _same_results(a: Path, b: Path) -> None:
    """The same dvc.lock entries (stages, commands, params, every dependency and output with its hash) and the
    same files, byte for byte; a file that holds wall times may differ in them alone (and so its hash)."""
    la, lb = _lock(a)["stages"], _lock(b)["stages"]
    assert set(la) == set(lb)
    timed = set()
    for d in ("data", "models", "metrics"):
        for p in sorted((a / d).rglob("*")):
            if p.is_file() and p.name != ".gitignore" and not p.relative_to(a).parts[:2] == ("metrics", "timing"):
                # DVC appends to .gitignore in the order stages end; metrics/timing/ holds wall times (no output)
                q = b / p.relative_to(a)
                if p.read_bytes() != q.read_bytes():
                    assert _content(p) == _content(q), p
                    timed.add(str(p.relative_to(a)))

    def hashes(lock: dict) -> dict:
        return {(s, kind, e["path"]): (e.get("md5") if e["path"] not in timed else None)
                for s, entry in lock.items() for kind in ("deps", "outs") for e in entry.get(kind, [])}

    assert hashes(la) == hashes(lb)
    assert {s: (e["cmd"], e.get("params")) for s, e in la.items()} == {s: (e["cmd"], e.get("params"))
                                                                       for s, e in lb.items()}


def _tiny_clean(root: Path) -> None:
    status = _ok(sys.executable, "-m", "dvc", "status", "--json", *TARGETS, cwd=root)
    assert json.loads(status.strip().splitlines()[-1]) == {}
    assert "Running stage" not in _ok(sys.executable, "-m", "dvc", "repro", *TARGETS, cwd=root)


@pytest.fixture(scope="module")
def tiny_sequential(tmp_path_factory) -> Path:
    root = _tiny(tmp_path_factory.mktemp("tiny") / "seq")
    _ok(sys.executable, "-m", "dvc", "repro", *TARGETS, cwd=root)
    return root


@pytest.mark.slow
def test_the_tiny_pipeline_in_parallel_gives_the_sequential_results(tiny_sequential, tmp_path):
    root = _tiny(tmp_path / "par")
    proc = _otjr("-j", "2", *TARGETS, cwd=root)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((root / ".otjr" / "repro" / "run.json").read_text())
    assert record["train-xe@digits"]["start"] < record["train-otjr@digits"]["end"]  # side by side
    assert record["train-otjr@digits"]["start"] < record["train-xe@digits"]["end"]
    assert record["attack@digits-xe"]["start"] >= record["train-xe@digits"]["end"]
    _same_results(tiny_sequential, root)
    _tiny_clean(root)


@pytest.mark.slow
def test_a_dask_local_cluster_of_processes_runs_the_tiny_pipeline_to_the_same_results(tiny_sequential, tmp_path,
                                                                                      monkeypatch):
    distributed = pytest.importorskip("distributed")

    root = _tiny(tmp_path / "dask")
    for k, v in _env().items():  # what the worker processes inherit: stage commands' `python` is this one
        monkeypatch.setenv(k, v)
    for k in ("OTJR_ROOT", "PYTHONPATH"):
        monkeypatch.delenv(k, raising=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        proc = _otjr("--cluster", cluster.scheduler_address, *TARGETS, cwd=root)
    assert proc.returncode == 0, proc.stderr
    _same_results(tiny_sequential, root)
    _tiny_clean(root)


@pytest.mark.slow
def test_a_dask_scheduler_and_two_workers_run_the_tiny_pipeline_to_the_same_results(tiny_sequential, tmp_path):
    pytest.importorskip("distributed")
    root = _tiny(tmp_path / "dask")
    info = tmp_path / "scheduler.json"
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--no-dashboard", "--scheduler-file", str(info)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 120
        while not info.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            started.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                             "--no-dashboard"], env=_env(), cwd=tmp_path,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        proc = _otjr("--cluster", address, *TARGETS, cwd=root)
    finally:
        for p in started:
            p.terminate()
        for p in started:
            p.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr
    _same_results(tiny_sequential, root)
    _tiny_clean(root)
