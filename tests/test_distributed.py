"""Data-parallel training on two CPU processes (gloo) matches itself across ranks and one process on the same batches."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from conftest import REPO, wait_for_file, write_params
from pipeline.core.io import load_tensors, save_tensors

CPU = torch.device("cpu")
EPOCHS = 2
#: (run, model): xe on a model without batch-norm must equal one process; the others check that the ranks
#: agree through DDP with a double backward (otjr), AWP's averaged ascent and LBGAT's teacher.
CASES = [("xe", "plain"), ("otjr", "small_cnn"), ("trades-awp", "small_cnn"), ("otjr-lbgat", "small_cnn")]


class PlainNet(nn.Module):
    """No batch-norm: every sample's loss is independent of the others, so sharding the batch changes nothing."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        return self.net(x)


def _train(run_name: str, model_kind: str, ranks):
    """What `fit` does for one run, on random uint8 data, with the trainer's own pieces."""
    from pipeline.methods import ADDONS, METHODS, AddOnSetup, Setup, parse_run
    from pipeline.models import create
    from pipeline.config import load_params
    from pipeline.core.pgd import Adversary
    from pipeline.train import distributed
    from pipeline.train.batches import Batches
    from pipeline.train.step import Step

    params = load_params(REPO / "params.yaml")
    run = parse_run(run_name)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (96,), generator=g)

    def new_model():
        return PlainNet() if model_kind == "plain" else create("small_cnn", num_classes=4, in_channels=1, width=4)

    torch.manual_seed(0)
    model = new_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    method = METHODS.get(run.method)(params.for_method(run.method), Setup(Adversary(0.1, 0.03, 2), 4))
    addon = None
    for name in run.addons:
        addon = ADDONS.get(name)(params.for_addon(name), AddOnSetup(model, optimizer, new_model,
                                                                    lambda t: distributed.mean_over_ranks(t, ranks)))
    step = Step(model, optimizer, method, addon, ranks=ranks, device=CPU)
    distributed.seed_rank(0, ranks)
    batches = Batches(images, labels, batch_size=16, augment="none", ranks=ranks)
    for epoch in range(EPOCHS):
        step.start_epoch(epoch, 0.05)
        for x, y in batches.epoch(0, epoch):
            step(x, y)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _rank_states(ranks, out: str) -> None:
    """What the resume state gets from every rank, next to this rank's own batch-norm statistics and RNG."""
    from pipeline.models import create
    from pipeline.train import distributed

    torch.manual_seed(0)
    model = create("small_cnn", num_classes=4, in_channels=1, width=4)
    distributed.seed_rank(0, ranks)
    model.train()(torch.rand(8, 1, 8, 8))  # this rank's batch moves its statistics
    own = {f"buffer.{k}": b.clone() for k, b in model.named_buffers()} | {"rng": torch.get_rng_state()}
    save_tensors(os.path.join(out, f"own.{ranks.rank}.safetensors"), own)
    states = distributed.rank_states({"model": model}, ranks, CPU)
    save_tensors(os.path.join(out, f"states.{ranks.rank}.safetensors"), states)


def _gloo_threads() -> list[str]:
    """This process's threads that gloo runs (Linux /proc)."""
    names = [(t / "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()]
    return [n for n in names if "gloo" in n]


def _worker(rank: int, size: int, port: int, out: str) -> None:
    from pipeline.train import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ranks = distributed.Ranks(rank=rank, size=size, local=rank)
    torch.set_num_threads(1)
    distributed.start(ranks, CPU)
    try:
        for run, kind in CASES:
            save_tensors(os.path.join(out, f"{run}.{rank}.safetensors"), _train(run, kind, ranks))
        _rank_states(ranks, out)
        distributed.barrier(ranks)
    finally:
        distributed.stop(ranks)
    Path(out, f"threads.{rank}.txt").write_text("\n".join(_gloo_threads()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("run, kind", CASES)
def test_ranks_end_with_identical_weights(two_ranks, run, kind):
    a, _ = load_tensors(two_ranks / f"{run}.0.safetensors")
    b, _ = load_tensors(two_ranks / f"{run}.1.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_resume_state_gets_every_ranks_rng_and_batchnorm_statistics(two_ranks):
    states, _ = load_tensors(two_ranks / "states.0.safetensors")
    for rank in range(2):
        own, _ = load_tensors(two_ranks / f"own.{rank}.safetensors")
        assert torch.equal(states[f"rank.{rank}.rng.cpu"], own["rng"])
        for k in own:
            if k.startswith("buffer."):
                assert torch.equal(states[f"rank.{rank}.buffer.model.{k[len('buffer.'):]}"], own[k]), k
    assert not torch.equal(states["rank.0.rng.cpu"], states["rank.1.rng.cpu"])
    means = [k for k in states if k.startswith("rank.1.") and k.endswith("running_mean")]
    assert means and not all(torch.equal(states[k], states[k.replace("rank.1.", "rank.0.", 1)]) for k in means)


def test_no_gloo_thread_outlives_the_process_group(two_ranks):
    """DDP's import of torch.distributed.nn after init would keep the destroyed group alive till exit (abort risk)."""
    for rank in range(2):
        assert (two_ranks / f"threads.{rank}.txt").read_text() == ""


def test_a_rank_gets_its_own_rng_and_buffers_back():
    from pipeline.core.errors import UserError
    from pipeline.train.distributed import Ranks, restore_rank

    model = nn.BatchNorm2d(3)
    states = {}
    for rank in range(2):
        torch.manual_seed(rank)
        states[f"rank.{rank}.rng.cpu"] = torch.get_rng_state()
        for k, b in model.named_buffers():
            states[f"rank.{rank}.buffer.model.{k}"] = torch.full_like(b, rank + 1)
    restore_rank(states, {"model": model}, Ranks(1, 2, 1), CPU)
    assert torch.equal(torch.get_rng_state(), states["rank.1.rng.cpu"])
    assert torch.equal(model.running_var, torch.full((3,), 2.0)) and int(model.num_batches_tracked) == 2
    with pytest.raises(UserError, match="no state of training process 1"):
        restore_rank({k: v for k, v in states.items() if k.startswith("rank.0.")}, {"model": model},
                     Ranks(1, 2, 1), CPU)


def test_two_processes_train_what_one_process_trains_on_the_same_global_batches(two_ranks):
    from pipeline.train.distributed import SINGLE

    single = _train("xe", "plain", SINGLE)
    ddp, _ = load_tensors(two_ranks / "xe.0.safetensors")
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)


def test_shards_split_each_global_batch():
    from pipeline.train.batches import Batches
    from pipeline.train.distributed import Ranks

    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    labels = torch.arange(40)
    whole = [y for _, y in Batches(images, labels, 8, "none").epoch(3, 1)]
    parts = [[y for _, y in Batches(images, labels, 8, "none", Ranks(r, 2, r)).epoch(3, 1)] for r in range(2)]
    for i, y in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][i], parts[1][i]]), y)


def test_batch_size_must_split_over_the_processes():
    from pipeline.core.errors import UserError
    from pipeline.train.distributed import Ranks, check_batch_size

    with pytest.raises(UserError, match="train.batch_size"):
        check_batch_size(30, Ranks(0, 4, 0), False, CPU)
    with pytest.raises(UserError, match="speed.sync_batchnorm"):
        check_batch_size(32, Ranks(0, 4, 0), True, CPU)


# --- the real command under torchrun -------------------------------------------------------------

def _torchrun(root, method: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "pipeline", "stage", "train", "--dataset", "digits", "--method", method]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _kill_torchrun(launcher: subprocess.Popen) -> None:
    """SIGKILL torchrun and its ranks, and wait until they are gone. torchrun starts each rank in a session
    of its own, so killing the launcher's process group leaves the ranks training on as orphans."""
    ranks = _children(launcher.pid)
    os.killpg(launcher.pid, signal.SIGKILL)
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)


def _prepare(root, epochs: int):
    write_params(root, {"train.epochs": epochs, "train.eval_n": 16, "model.args.width": 8})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    for stage in ("download", "preprocess"):
        subprocess.run([sys.executable, "-m", "pipeline", "stage", stage, "--dataset", "digits"], cwd=root, env=env,
                       check=True, capture_output=True)


@pytest.mark.slow
def test_torchrun_training_writes_once_and_resumes_bit_identically(tmp_path):
    """`torchrun --nproc_per_node=2 -m pipeline stage train`: rank 0 writes one checkpoint and one log; a run
    whose launcher and ranks are SIGKILLed after an epoch resumes (each rank with its own RNG states and
    batch-norm statistics) and ends bit-identical to an unbroken one."""
    epochs, method = 5, "otjr"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        root.mkdir()
        _prepare(root, epochs)

    proc = _torchrun(straight, method)
    log = proc.communicate()[0]
    assert proc.returncode == 0, log
    tsv = straight / "metrics" / "train" / "digits" / method / "plots" / "metrics" / "train" / "loss.tsv"
    assert len(tsv.read_text().strip().splitlines()) == epochs + 1  # one writer: header + one row per epoch

    proc = _torchrun(killed, method)
    state = killed / "models" / "digits" / f"{method}.resume.safetensors"
    wait_for_file(state, proc)
    _kill_torchrun(proc)  # the launcher and both ranks
    _, meta = load_tensors(state)
    assert 1 <= meta["epoch"] < epochs

    proc = _torchrun(killed, method)
    log = proc.communicate()[0]
    assert proc.returncode == 0, log
    assert not state.exists()
    a, info_a = load_tensors(straight / "models" / "digits" / f"{method}.safetensors")
    b, info_b = load_tensors(killed / "models" / "digits" / f"{method}.safetensors")
    assert info_a["settings"]["processes"] == 2
    for k in a:
        assert torch.equal(a[k], b[k]), k
