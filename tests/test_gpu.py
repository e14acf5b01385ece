"""What only a GPU can show (`pytest -m gpu`; skipped without CUDA; `bench/gpu_check.sh` runs them).

Every speed option on CUDA computes the same function as the fp32 reference on CUDA within
its dtype's tolerance; the device-resident feeder's crop/flip equals the streaming feeder's
on CUDA; every attack of the suite runs on CUDA in fp32 (Square included) and under the
bf16 evaluation path; torchrun trains with NCCL in one process, and in two when the machine
has two GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, TINY, write_params
from pipeline.methods import METHODS, Setup
from pipeline.methods.jacobian import jacobian_mode
from pipeline.models import create
from pipeline.config import load_params
from pipeline.params import SpeedParams
from pipeline.core.pgd import Adversary
from pipeline.train.speed import prepare, resolve
from pipeline.train.step import Step

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda", 0)
ADVERSARY = Adversary(8 / 255, 2 / 255, 3)
#: (speed options, loss rtol, gradient cosine at least): fp32 options differ by kernel rounding only
OPTIONS = [
    ({"channels_last": True}, 1e-4, 0.9999),
    ({"cudnn_benchmark": True}, 1e-4, 0.9999),
    ({"compile": True}, 1e-4, 0.9999),
    ({"precision": "bf16"}, 3e-2, 0.97),
    ({"precision": "bf16", "channels_last": True, "cudnn_benchmark": True}, 3e-2, 0.97),
]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(autouse=True)
def exact_fp32():
    """The reference is true fp32 (no TF32), and the cuDNN setting is restored after each test."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def _objective_and_grads(params, method: str, options: dict, x, y, x_adv):
    torch.manual_seed(0)
    model = create("wrn34_10", num_classes=10, depth=10, widen=2).to(CUDA)
    speed_params = SpeedParams(**options)
    speed = resolve(speed_params, CUDA)
    prepare(model, speed)
    jacobian = jacobian_mode(speed_params.jacobian, speed_params.fd_step)
    m = METHODS.get(method)(params.for_method(method), Setup(ADVERSARY, 10, jacobian))
    step = Step(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), m, speed=speed, device=CUDA)
    step.start_epoch(0, 0.1)
    torch.manual_seed(1)  # the same projections in every case
    loss = step.method.objective(step.trained, x, x_adv, y)
    loss.total.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    step(x, y)  # and a whole step runs
    return loss.total.detach(), grads


#: Every option with every objective, except torch.compile with OTJR's exact penalty (whose objective stays
#: eager, so it adds only a third compile, the slowest part of `pytest -m gpu`, to the 8 minutes).
CASES = [(*o, m, j) for m, j in [("pgd_at", "exact"), ("otjr", "exact"), ("otjr", "finite_difference")]
         for o in OPTIONS if not (o[0] == {"compile": True} and (m, j) == ("otjr", "exact"))]


@pytest.mark.parametrize("options, rtol, cosine, method, jacobian", CASES,
                         ids=[f"{m}-{j}-{'+'.join(f'{k}={v}' for k, v in o.items())}" for o, _, _, m, j in CASES])
def test_every_speed_option_computes_the_fp32_function_on_cuda(params, options, rtol, cosine, method, jacobian):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 32, 32, generator=g, device="cpu").to(CUDA)
    y = torch.randint(0, 10, (32,), generator=g, device="cpu").to(CUDA)
    x_adv = (x + (8 / 255) * torch.empty_like(x).uniform_(-1, 1)).clamp(0, 1)  # fixed: the objective is compared
    ref, g_ref = _objective_and_grads(params, method, {"jacobian": jacobian}, x, y, x_adv)
    fast, g_fast = _objective_and_grads(params, method, {**options, "jacobian": jacobian}, x, y, x_adv)
    torch.testing.assert_close(fast, ref, rtol=rtol, atol=rtol)
    assert float(F.cosine_similarity(g_fast, g_ref, dim=0)) >= cosine


def test_device_resident_crop_flip_equals_the_streaming_feeders_on_cuda(digits):
    from pipeline.train import batches as feed

    on_device = feed.training_batches("digits", CUDA, 50, "crop_flip", "device", 2)
    streamed = feed.training_batches("digits", CUDA, 50, "crop_flip", "stream", 2)
    assert isinstance(on_device, feed.Batches) and isinstance(streamed, feed.StreamingBatches)
    for epoch in range(2):
        torch.manual_seed(99)
        a = [(x.clone(), y.clone()) for x, y in on_device.epoch(3, epoch)]
        torch.manual_seed(99)
        b = [(x.clone(), y.clone()) for x, y in streamed.epoch(3, epoch)]
        assert len(a) == len(b) > 0
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.device.type == "cuda" and torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_attack_suite_runs_on_cuda(params, precision):
    from pipeline.attacks.evaluate import evaluate, summarise
    from pipeline.attacks.run import build_suite, evaluation_precision
    from trained_models import digits, trained

    data = digits()
    model = trained("xe").to(CUDA)
    try:
        x, y = data.x_test[:64].to(CUDA), data.y_test[:64].to(CUDA)
        attacks = build_suite(params, 10)
        evaluation_precision(CUDA)
        result = evaluate(model, x, y, attacks, 256, params.seed, precision=precision)
        summary = summarise(result, attacks)
        assert summary["clean"]["accuracy"] > 90
        for attack in attacks:  # every attack fools the undefended model, within its budget
            assert summary[attack.name]["accuracy"] < summary["clean"]["accuracy"] / 2, attack.name
            assert summary[attack.name]["validity"]["max_norm"] <= attack.eps + 1e-6
    finally:
        model.cpu()


def _torchrun(root, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "pipeline", "stage", "train", "--dataset", "digits", "--method", "otjr"]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("processes", [1, 2])
def test_torchrun_trains_with_nccl(digits, processes):
    from pipeline.core.io import load_tensors

    if processes > torch.cuda.device_count():
        pytest.skip(f"needs {processes} GPUs")
    write_params(digits, {**TINY, "device": "cuda", "train.epochs": 1})
    proc = _torchrun(digits, processes)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, info = load_tensors(digits / "models" / "digits" / "otjr.safetensors")
    assert info["device"].startswith("cuda") and info["settings"]["processes"] == processes


class _OneRankGroup:
    """Ranks of a one-process NCCL group that takes the distributed code paths (DDP, collectives)."""

    def __init__(self):
        from pipeline.train.distributed import Ranks

        class Forced(Ranks):
            @property
            def distributed(self) -> bool:
                return True

        self.ranks = Forced(0, 1, 0)


def _train_steps(ranks, run_name: str = "otjr-lbgat", steps: int = 3):
    """A few trainer steps of `run_name` on CUDA with `ranks` (the pieces `fit` uses)."""
    from pipeline.methods import ADDONS, AddOnSetup, parse_run
    from pipeline.train import distributed
    from pipeline.train.batches import Batches

    params = load_params(REPO / "params.yaml")
    run = parse_run(run_name)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g, device="cpu").to(CUDA)
    labels = torch.randint(0, 10, (64,), generator=g, device="cpu").to(CUDA)
    new_model = lambda: create("small_cnn", num_classes=10, in_channels=1, width=4).to(CUDA)  # noqa: E731
    torch.manual_seed(0)
    model = new_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    method = METHODS.get(run.method)(params.for_method(run.method), Setup(Adversary(0.1, 0.03, 2), 10))
    addon = ADDONS.get(run.addons[0])(params.for_addon(run.addons[0]),
                                      AddOnSetup(model, optimizer, new_model,
                                                 lambda t: distributed.mean_over_ranks(t, ranks)))
    step = Step(model, optimizer, method, addon, ranks=ranks, device=CUDA)
    step.start_epoch(0, 0.05)
    torch.manual_seed(1)
    for i, (x, y) in enumerate(Batches(images, labels, 16, "crop_flip", ranks).epoch(0, 0)):
        if i < steps:
            step(x, y)
    return model


def test_nccl_collectives_and_ddp_on_one_gpu():
    """NCCL as the trainer drives it, in a one-process group: the same weights as without it."""
    import socket

    import torch.distributed as dist

    from pipeline.train import distributed
    from pipeline.train.distributed import SINGLE

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                            device_id=CUDA)
    try:
        ranks = _OneRankGroup().ranks
        ddp = _train_steps(ranks)
        states = distributed.rank_states({"model": ddp}, ranks, CUDA)
        assert {"rank.0.rng.cpu", "rank.0.rng.cuda"} <= set(states)
        distributed.restore_rank(states, {"model": ddp}, ranks, CUDA)
        assert distributed.same_everywhere(distributed.weights_digest(ddp), ranks, CUDA)
        mean = distributed.mean_over_ranks([torch.ones(3, device=CUDA)], ranks)[0]
        assert mean.device.type == "cuda" and torch.equal(mean, torch.ones(3, device=CUDA))
    finally:
        dist.destroy_process_group()
    single = _train_steps(SINGLE)
    for (name, a), b in zip(ddp.named_parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
