"""`attack.workers`: the suite spread over forked processes gives the sequential run's results, bit for bit."""

from __future__ import annotations

import os
import time
from typing import Literal

import pytest
import torch

from conftest import REPO
from pipeline.attacks import Attack, InvalidAdversarial, evaluate, parallel, summarise
from pipeline.attacks.evaluate import Plan
from pipeline.config import load_params
from pipeline.core.schema import PositiveBudget, Strict
from test_attacks_evaluate import suite
from trained_models import digits, trained


@pytest.fixture
def one_thread():
    """One torch thread, as the workers use (the parallel path's condition), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pools(monkeypatch) -> list[int]:
    """The worker counts of the pools opened (the real pool still runs)."""
    opened: list[int] = []
    real = parallel._pool

    def spy(workers):
        opened.append(workers)
        return real(workers)

    monkeypatch.setattr(parallel, "_pool", spy)
    return opened


def cheap_suite() -> list[Attack]:
    """Cheap attacks, DeepFool and a short AutoAttack among them (both record `results()`)."""
    attacks = suite("fgsm", "pgd20", "deepfool", "square", "simba", "autoattack")
    aa = attacks[-1]
    attacks[-1] = type(aa)(aa.params.model_copy(update={"steps": 5, "square_queries": 50}), 10, aa.seed, aa.name)
    return attacks


def without_seconds(record: dict) -> dict:
    return {k: ({kk: vv for kk, vv in v.items() if kk != "seconds"} if isinstance(v, dict) else v)
            for k, v in record.items()}


def test_workers_give_the_sequential_results_in_the_suite_order(one_thread, pools):
    model = trained("pgd_at")
    d = digits()
    x, y = d.x_test[:24], d.y_test[:24]
    done: list[str] = []
    alone = evaluate(model, x, y, cheap_suite(), batch_size=64, n_of={"simba": 12}, plan=Plan(block=8))
    attacks = cheap_suite()
    spread = evaluate(model, x, y, attacks, batch_size=64, n_of={"simba": 12}, workers=2, on_attack=done.append,
                      plan=Plan(block=8))
    assert pools == [2]
    assert list(spread.outcomes) == [a.name for a in attacks]
    assert sorted(done) == sorted(a.name for a in attacks)
    for name, o in alone.outcomes.items():
        s = spread.outcomes[name]
        assert torch.equal(o.robust, s.robust), name
        assert (o.validity, o.passes, o.results) == (s.validity, s.passes, s.results), name
    assert spread.outcomes["deepfool"].results["attacked"] > 0
    aa = spread.outcomes["autoattack"]
    assert sum(aa.results["fooled_by_stage"].values()) == int((spread.clean & ~aa.robust).sum()) > 0
    assert without_seconds(summarise(alone, cheap_suite())) == without_seconds(summarise(spread, attacks))
    assert all(o.seconds > 0 for o in spread.outcomes.values())


class _Probe(Attack):
    """A test attack at L-inf 0.2; subclasses say what it does."""

    class Params(Strict):
        norm: Literal["linf"] = "linf"
        eps: PositiveBudget = 0.2

    implementation = "pipeline.attacks"


class _WhereRun(_Probe):
    """Leaves the images as they are, slowly, and gathers the process each block ran in."""

    kind = "where_run"

    def perturb(self, model, x, y):
        time.sleep(0.3)  # long enough that both workers take blocks
        return x.clone()

    def gathered(self):
        return {"pid": torch.tensor([os.getpid()])}

    def restore(self, parts):
        self.pids = [int(p["pid"]) for p in parts]

    def results(self):
        return {"processes": len(set(self.pids))}


def test_one_attack_in_several_blocks_is_shared_by_the_workers_and_reported_once(one_thread, pools):
    d = digits()
    done: list[str] = []
    attacks = [_WhereRun(_WhereRun.Params(), 10), *suite("fgsm")]
    result = evaluate(trained("pgd_at"), d.x_test[:32], d.y_test[:32], attacks, batch_size=64, workers=2,
                      on_attack=done.append, plan=Plan(block=8))
    assert pools == [2]
    assert result.outcomes["where_run"].results == {"processes": 2}  # its four blocks ran in both workers
    assert len(attacks[0].pids) == 4 and os.getpid() not in attacks[0].pids
    assert sorted(done) == ["fgsm", "where_run"]  # one line per attack, not per block


class _OutOfRange(_Probe):
    """Returns pixels above 1: the evaluator's check must stop it, in whatever process it runs."""

    kind = "out_of_range"

    def perturb(self, model, x, y):
        return x + 2


def test_an_invalid_batch_in_a_worker_stops_the_evaluation_here(one_thread, pools):
    d = digits()
    attacks = [*suite("fgsm"), _OutOfRange(_OutOfRange.Params(), 10)]
    with pytest.raises(InvalidAdversarial, match="out_of_range: invalid adversarial batch"):
        evaluate(trained("pgd_at"), d.x_test[:16], d.y_test[:16], attacks, batch_size=64, workers=2)
    assert pools == [2]


def test_sequential_with_several_torch_threads_or_one_worker(monkeypatch, one_thread):
    def no_pool(workers):
        raise AssertionError("no worker process should be forked")

    monkeypatch.setattr(parallel, "_pool", no_pool)
    d = digits()
    x, y = d.x_test[:16], d.y_test[:16]
    evaluate(trained("pgd_at"), x, y, suite("fgsm", "pgd20"), batch_size=64, workers=1)
    evaluate(trained("pgd_at"), x, y, suite("fgsm"), batch_size=64, workers="auto")  # one attack
    torch.set_num_threads(2)
    result = evaluate(trained("pgd_at"), x, y, suite("fgsm", "pgd20"), batch_size=64, workers=2)
    assert list(result.outcomes) == ["fgsm", "pgd20"]


def test_worker_count_and_where_forking_is_allowed(one_thread, monkeypatch):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert parallel.resolve_workers("auto", 12) == 3
    assert parallel.resolve_workers("auto", 2) == 2
    assert parallel.resolve_workers(8, 5) == 5 and parallel.resolve_workers(1, 5) == 1
    assert parallel.can_fork(2, torch.device("cpu"))
    assert not parallel.can_fork(1, torch.device("cpu"))
    assert not parallel.can_fork(2, torch.device("cuda"))
    torch.set_num_threads(2)
    assert not parallel.can_fork(2, torch.device("cpu"))


def test_dearest_attacks_are_handed_out_first():
    costs = {a.name: a.cost for a in suite(*load_params(REPO / "params.yaml").attack.suite)}
    assert max(costs, key=costs.get) == "autoattack"
    assert costs["pgd100"] == 5 * costs["pgd20"] and costs["fgsm"] < costs["pgd20"]
