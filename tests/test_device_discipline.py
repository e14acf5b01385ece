"""Device discipline without a GPU: tensors that pipeline code creates without `device=` are caught.

Under `device_discipline.misplaced_factories()` such tensors land on torch's `meta` device
while the model and data stay on the CPU, so code that would put a stray CPU tensor next
to CUDA tensors on a GPU fails here the same way (see tests/device_discipline.py). The
first test shows the harness catches a planted bug; the others run a training step of
every registered method and add-on, the trainer with both batch feeders, every attack of
the suite, the sanity rules and the analyses under it.
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO, write_params, TINY
from device_discipline import misplaced_factories
from pipeline.methods import ADDONS, METHODS, AddOnSetup, Setup
from pipeline.methods.jacobian import jacobian_mode
from pipeline.models import create
from pipeline.config import load_params
from pipeline.core.pgd import Adversary
from pipeline.train.speed import Speed, prepare
from pipeline.train.step import Step

PLANTED = '''
def planted_objective(original):
    def objective(model, x, x_adv, y, guide=None):
        loss = original(model, x, x_adv, y, guide)
        weights = torch.ones(x.shape[0]) / x.shape[0]  # the bug: no device=
        return type(loss)(loss.total * weights.sum(), loss.terms)
    return objective
'''


def _planted(original):
    """A method objective with a factory call missing `device=`, compiled as if it lived in pipeline/."""
    namespace = {"__name__": "pipeline.planted", "torch": torch}
    exec(PLANTED, namespace)
    return namespace["planted_objective"](original)


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def _batch(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _step(params, run: str, jacobian: str = "exact", speed: Speed | None = None, objective_wrapper=None):
    method_name, *addons = run.split("-")
    torch.manual_seed(0)
    model = prepare(create("small_cnn", num_classes=10, in_channels=1, width=4), speed)
    cls = METHODS.get(method_name)
    method = cls(params.for_method(method_name), Setup(Adversary(0.2, 0.05, 2), 10,
                                                       jacobian_mode(jacobian, params.speed.fd_step)))
    if objective_wrapper is not None:
        method.objective = objective_wrapper(method.objective)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-4)
    addon = None
    for name in addons:
        new = lambda: create("small_cnn", num_classes=10, in_channels=1, width=4)  # noqa: E731
        addon = ADDONS.get(name)(params.for_addon(name), AddOnSetup(model, optimizer, new))
    step = Step(model, optimizer, method, addon, speed=speed, device=torch.device("cpu"))
    step.start_epoch(0, 0.05)
    return step


def _runs() -> list[str]:
    runs = []
    for name in METHODS.names():
        runs.append(name)
        runs += [f"{name}-{addon}" for addon in sorted(METHODS.get(name).addons)]
    return runs


def test_the_harness_catches_a_factory_call_without_device(params):
    x, y = _batch()
    step = _step(params, "pgd_at", objective_wrapper=_planted)
    with misplaced_factories(), pytest.raises(RuntimeError, match="meta"):
        step(x, y).total.item()
    step(x, y).total.item()  # outside the harness the planted code runs on the CPU


@pytest.mark.parametrize("run", _runs())
def test_a_training_step_of_every_method_and_addon_keeps_its_tensors_on_the_data_device(params, run):
    x, y = _batch()
    cases = [("exact", None), ("exact", Speed("cpu", torch.bfloat16, channels_last=True))]
    if METHODS.get(run.split("-")[0]).uses_jacobian:
        cases.append(("finite_difference", None))
    for jacobian, speed in cases:
        step = _step(params, run, jacobian, speed)
        with misplaced_factories():
            loss = step(x, y)
            values = [float(loss.total.detach()), *(float(v) for v in loss.terms.values())]
        assert all(torch.isfinite(torch.tensor(values))), (run, jacobian, speed)


@pytest.mark.parametrize("loader", ["device", "stream"])
def test_the_trainer_with_either_feeder(digits, loader):
    from pipeline import api

    write_params(digits, {**TINY, "train.epochs": 1, "data.loader": loader, "data.workers": 0})
    with misplaced_factories():
        api.train("digits", "otjr")


def test_attack_suite_sanity_and_analyses(digits):
    """The attack stage with every attack of the suite, the sanity stage and the analyze stage."""
    from pipeline import api

    write_params(digits, {**TINY, "train.epochs": 1, "attack.n": 24, "sanity.n": 24, "analysis.n": 16,
                          "analysis.ratio_n": 8, "analysis.cross_section.resolution": 5, "runs": ["xe", "pgd_at"],
                          "sanity.undefended": "xe"})
    for run in ("xe", "pgd_at"):
        api.train("digits", run)
    with misplaced_factories():
        for run in ("xe", "pgd_at"):
            api.attack("digits", run)
            api.sanity("digits", run)
        api.analyze("digits")


def test_the_training_step_benchmark_and_the_gpu_checks_attack_section(params, tmp_path):
    """`otjr bench` (fast and reference paths) and gpu_check's attack throughput, at toy size."""
    from pipeline.benchmark import gpu_check
    from pipeline.benchmark.run import ModelChoice, bench

    with misplaced_factories():
        result = bench([ModelChoice("small_cnn", {"width": 4}, (1, 8, 8))], ["pgd_at", "otjr"], ["fast", "reference"],
                       ["exact", "finite_difference"], params.speed, params, torch.device("cpu"), batch_size=4,
                       steps=1, warmup=0)
        assert len(result["rows"]) == 5
        throughput = gpu_check.suite_throughput(tmp_path, gpu_check.TINY, torch.device("cpu"))
    assert set(throughput["bf16"]["attacks"]) == set(throughput["suite"])
