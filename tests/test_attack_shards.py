"""The attack stage in blocks: the same record for 1, 2 and 3 torchrun ranks, a restart after SIGKILL that ends
byte-identical to an unbroken run, a dead rank that changes nothing tracked, and pass counts a hook confirms."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli, write_params
from pipeline.attacks import build
from pipeline.attacks.blocks import BlockResult, block_seed, owned, pack, spans, unpack
from pipeline.attacks.counting import Passes
from pipeline.attacks.evaluate import Plan, evaluate
from pipeline.config import load_params
from trained_models import digits, one_thread, trained

RUN = "pgd_at"
ATTACK = ("stage", "attack", "--dataset", "digits", "--method", RUN)
#: A small PGD-AT model; the attack settings are the default's (48 images, the twelve attacks, blocks of 8).
PARAMS = {"train.epochs": 2, "train.eval_n": 16, "model.args.width": 8, "runs": [RUN]}


def test_blocks_cover_the_images_once_and_ranks_share_them():
    assert spans(48, 8) == [(i, i + 8) for i in range(0, 48, 8)]
    assert spans(20, 8) == [(0, 8), (8, 16), (16, 20)] and spans(20, None) == [(0, 20)]
    for ranks in (1, 2, 3):
        shares = [owned(6, r, ranks) for r in range(ranks)]
        assert sorted(sum(shares, [])) == list(range(6))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # 2 and 3 ranks split the default's 6 blocks evenly
    seeds = {block_seed(s, i) for s in (0, 1) for i in range(6)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)


def test_blocks_travel_as_safetensors_bytes():
    blocks = {("pgd20", 3): BlockResult(torch.tensor([True, False, True]), Passes(7, 5), 0.25,
                                        {"nan": 0, "min": 0.0, "max": 1.0, "max_norm": 0.2, "budget": 0.2},
                                        {"distances": torch.tensor([0.5, float("inf")], dtype=torch.float64)}),
              ("clean", 0): BlockResult(torch.tensor([False]), Passes(1, 0), 0.5)}
    back = unpack(pack(blocks))
    assert back.keys() == blocks.keys()
    for key, block in blocks.items():
        got = back[key]
        assert torch.equal(got.flags, block.flags) and got.passes == block.passes and got.seconds == block.seconds
        assert got.validity == block.validity
        assert got.gathered.keys() == block.gathered.keys()
        assert all(torch.equal(got.gathered[k], v) for k, v in block.gathered.items())


def test_pass_counts_agree_with_hooks_on_the_model():
    """Our counter against forward/backward hooks on the model itself, for the clean pass, PGD-20 and AutoAttack,
    summed over blocks of 8 images."""
    params = load_params(REPO / "params.yaml")
    d = digits()
    x, y = d.x_test[:16], d.y_test[:16]
    model = trained(RUN)
    images = {"forward": 0, "backward": 0}
    hooks = [model.register_forward_hook(lambda m, i, o: images.__setitem__("forward", images["forward"] + len(i[0]))),
             model.register_full_backward_hook(
                 lambda m, gi, go: images.__setitem__("backward", images["backward"] + len(go[0])))]
    try:
        with one_thread():
            pgd, aa = (build(params.attack, n, 10, 0) for n in ("pgd20", "autoattack"))
            aa = type(aa)(aa.params.model_copy(update={"steps": 10, "square_queries": 100}), 10, 0, aa.name)  # shorter
            attacks = [pgd, aa]
            result = evaluate(model, x, y, attacks, 500, 0, plan=Plan(block=8))
    finally:
        for h in hooks:
            h.remove()
    total = sum((o.passes for o in result.outcomes.values()), result.clean_passes)
    assert (total.forward, total.backward) == (images["forward"], images["backward"])
    assert result.clean_passes == Passes(16, 0)
    pgd = result.outcomes["pgd20"].passes  # an image leaves PGD at its first misclassified iterate: at most 20 steps
    attacked = int(result.clean.sum())
    assert 0 < pgd.backward <= 20 * attacked and pgd.backward < pgd.forward <= 22 * attacked


# --- the stage, by hand and under torchrun --------------------------------------------------------------------------

def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory) -> Path:
    """A project with the default's attack settings and a small PGD-AT checkpoint of the digits."""
    root = tmp_path_factory.mktemp("shards")
    write_params(root, PARAMS)
    for stage in ("download", "preprocess"):
        run_cli("stage", stage, "--dataset", "digits", cwd=root, check=True)
    run_cli("stage", "train", "--dataset", "digits", "--method", RUN, cwd=root, check=True)
    return root


def _outputs(root: Path) -> tuple[dict, bytes]:
    record = json.loads((root / "metrics" / "attacks" / "digits" / f"{RUN}.json").read_text())
    return record, (root / "metrics" / "attacks" / "digits" / f"{RUN}.flags.safetensors").read_bytes()


def _torchrun(root: Path, ranks: int, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           "-m", "pipeline", *args]
    return subprocess.Popen(cmd, cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _without_ranks(record: dict) -> dict:
    out = json.loads(json.dumps(record))
    out["evaluation"].pop("ranks")
    out.pop("device")
    return out


@pytest.mark.slow
def test_one_two_and_three_ranks_write_the_same_record(trained_project, unbroken):
    root = trained_project
    one, flags = json.loads(unbroken[0]), unbroken[1]
    assert one["evaluation"]["ranks"] == 1 and one["evaluation"]["block"] == 8 and one["n"] == 48
    for ranks in (2, 3):
        proc = _torchrun(root, ranks, *ATTACK)
        log = proc.communicate()[0]
        assert proc.returncode == 0, log
        many, many_flags = _outputs(root)
        assert many["evaluation"]["ranks"] == ranks and many["device"] == "cpu"
        assert _without_ranks(many) == _without_ranks(one)  # every accuracy, flag count, validity and pass count
        assert many_flags == flags
        timing = json.loads((root / "metrics" / "timing" / "attack" / "digits" / f"{RUN}.json").read_text())
        assert timing["ranks"] == ranks and timing["devices"] == ["cpu"] * ranks
        assert set(timing["seconds"]) == set(one["worst_case"]["attacks"])
    assert not (root / ".otjr" / "attack" / "digits" / RUN).exists()  # finished: no partial state left


@pytest.mark.slow
def test_evaluate_under_two_ranks_writes_what_one_process_writes(trained_project):
    """`otjr evaluate` under torchrun: the same attack record as one process; rank 0 alone runs the sanity checks
    and analyses and reports (three attacks here: the stage test above covers the suite)."""
    root = trained_project
    checkpoint = str(root / "models" / "digits" / f"{RUN}.safetensors")
    record = root / "metrics" / "attacks" / "digits" / "outside.json"
    write_params(root, {**PARAMS, "attack.suite": ["fgsm", "pgd20", "autoattack"], "sanity.n": 16, "analysis.n": 16})
    try:
        run_cli("evaluate", checkpoint, "--dataset", "digits", "--name", "outside", cwd=root, check=True,
                env={"OMP_NUM_THREADS": "1"})
        one = json.loads(record.read_text())
        proc = _torchrun(root, 2, "evaluate", checkpoint, "--dataset", "digits", "--name", "outside")
        log = proc.communicate()[0]
    finally:
        write_params(root, PARAMS)
    assert proc.returncode == 0, log
    assert log.count("evaluated outside@digits") == 1 and log.count("sanity: ") == 1, log
    two = json.loads(record.read_text())
    assert two["evaluation"]["ranks"] == 2
    assert _without_ranks(two) == _without_ranks(one)


def _block_files(root: Path) -> list[Path]:
    return sorted((root / ".otjr" / "attack").rglob("*.safetensors"))


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=root, env=_env(root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_when(proc: subprocess.Popen, done) -> None:
    """SIGKILL the process and its workers once `done()` holds (polled)."""
    deadline = time.monotonic() + 300
    while not done() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the stage ended before it was killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def unbroken(trained_project) -> list[bytes]:
    """The record and flags of one uninterrupted one-process run (attack.workers: auto)."""
    run_cli(*ATTACK, cwd=trained_project, check=True, env={"OMP_NUM_THREADS": "1"})
    return [p.read_bytes() for p in _tracked(trained_project)]


def _tracked(root: Path) -> list[Path]:
    return [root / "metrics" / "attacks" / "digits" / f"{RUN}{s}" for s in (".json", ".flags.safetensors")]


@pytest.mark.slow
def test_a_killed_attack_stage_resumes_to_the_unbroken_record_byte_for_byte(trained_project, unbroken):
    """SIGKILL at random blocks (three times), then a full run: the record and flags of an unbroken run, byte for
    byte; changed params discard the partial state."""
    root = trained_project
    total = 6 * 13  # 48 images in blocks of 8: the clean pass and 12 attacks
    rng = random.Random(0)
    before = [p.read_bytes() for p in _tracked(root)]  # another test may have run the stage under torchrun
    for _ in range(3):
        target = rng.randint(len(_block_files(root)) + 1, min(len(_block_files(root)) + 25, total - 1))
        _kill_when(_start(root, *ATTACK), lambda: len(_block_files(root)) >= target)
        assert [p.read_bytes() for p in _tracked(root)] == before  # the tracked outputs untouched
    assert 3 <= len(_block_files(root)) < total
    proc = subprocess.run([sys.executable, "-m", "pipeline", *ATTACK], cwd=root, env=_env(root), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert [p.read_bytes() for p in _tracked(root)] == unbroken
    assert not _block_files(root)

    # killed again, then restarted with another PGD-20: the old blocks go, none is reused
    _kill_when(_start(root, *ATTACK), lambda: len(_block_files(root)) >= 10)
    old = {p.parent for p in _block_files(root)}
    write_params(root, {**PARAMS, "attack.pgd20.steps": 10})
    try:
        _kill_when(_start(root, *ATTACK), lambda: any(p.parent not in old for p in _block_files(root)))
        assert len({p.parent for p in _block_files(root)}) == 1 and all(not d.exists() for d in old)
    finally:
        write_params(root, PARAMS)


def _ranks_of(launcher: subprocess.Popen) -> dict[int, int]:
    """RANK -> pid of the processes torchrun started (from /proc)."""
    found = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            stat = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != launcher.pid:
                continue
            env = dict(kv.split("=", 1) for kv in environ.read_bytes().decode(errors="replace").split("\0") if "=" in kv)
        except (OSError, IndexError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(environ.parent.name)
    return found


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_stage_and_leaves_the_record_untouched(trained_project, unbroken):
    root = trained_project
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in _tracked(root)]
    shutil.rmtree(root / ".otjr" / "attack", ignore_errors=True)  # what an earlier test left: wait for new blocks
    proc = _torchrun(root, 2, *ATTACK)
    deadline = time.monotonic() + 300
    while not _block_files(root) and time.monotonic() < deadline:
        time.sleep(0.01)
    ranks = _ranks_of(proc)
    assert 1 in ranks, ranks
    os.kill(ranks[1], signal.SIGKILL)
    log = proc.communicate()[0]
    assert proc.returncode != 0
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in _tracked(root)] == before
    assert not [line for line in log.splitlines() if "/pipeline/" in line], f"a traceback through our code:\n{log}"
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1 and all("another of the 2 ranks failed" in e for e in errors), log
