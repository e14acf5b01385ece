"""Every attack of params.yaml's suite, at its settings, on tiny trained digits models.

One test, parametrised over the suite's instances; the default suite uses every registered
kind, so registering a kind (and giving it an instance in params.yaml) is enough to have it
checked. Each attack must fool an undefended model, stay inside its budget and [0, 1] on
every example, and be no weaker on a PGD-AT model than every instance it outranks
(`Attack.outranks`: the weaker kinds it declares, or a shorter PGD, on the same threat model).
"""

from __future__ import annotations

import pytest
import torch
from ruamel.yaml import YAML

from conftest import REPO
from pipeline.attacks import ATTACKS, build
from pipeline.attacks.evaluate import evaluate, perturbation_norm
from pipeline.config import load_params
from pipeline.sanity import tolerance_pp
from trained_models import digits, trained

N = 64  # first test images
SUITE = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())["attack"]["suite"]


@pytest.fixture
def digits_data():
    return digits()


@pytest.fixture
def xe_model():
    return trained("xe")


@pytest.fixture
def pgd_at_model():
    return trained("pgd_at")


@pytest.fixture(scope="session")
def repo_params():
    """params.yaml of the repository, validated (every registered attack must have its block there)."""
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def suite_cache():
    return {}


def outcome(cache, params, model_name, model, data, name):
    """Evaluate attack `name` once per model (cached across the parametrised cases)."""
    key = (model_name, name)
    if key not in cache:
        attack = build(params.attack, name, 10, params.seed)
        x, y = data.x_test[:N], data.y_test[:N]
        result = evaluate(model, x, y, [attack], batch_size=256, seed=params.seed)
        cache[key] = (attack, result)
    return cache[key]


def test_the_default_suite_runs_every_registered_kind(repo_params):
    kinds = repo_params.attack.kinds
    assert set(ATTACKS.names()) == {kinds[n] for n in repo_params.attack.suite}, \
        "add an instance of each kind to params.yaml's attack section and suite"


def test_outranks_orders_the_suite_as_declared(repo_params):
    """The strength relation the next test checks holds where it should, and only on one threat model."""
    suite = {n: build(repo_params.attack, n, 10) for n in repo_params.attack.suite}
    below = {n: sorted(o for o in suite if a.outranks(suite[o])) for n, a in suite.items()}
    assert below["pgd100"] == ["fgsm", "pgd20"] and below["pgd20"] == ["fgsm"]  # PGD-20 is PGD-100's prefix
    assert below["autoattack"] == ["fab_t", "pgd100", "pgd20"]  # not l2_pgd: another threat model
    assert below["mim"] == below["cw_inf"] == ["fgsm"] and below["l2_pgd"] == below["fgsm"] == []


@pytest.mark.parametrize("name", SUITE)
def test_attack_fools_undefended_respects_budget_and_orders(name, digits_data, xe_model, pgd_at_model, repo_params,
                                                             suite_cache):
    attack, xe = outcome(suite_cache, repo_params, "xe", xe_model, digits_data, name)
    clean = 100.0 * xe.clean.float().mean().item()
    acc = 100.0 * xe.outcomes[name].robust.float().mean().item()
    assert clean > 90
    assert acc < clean / 2, f"{name} leaves the undefended model at {acc:.1f}% (clean {clean:.1f}%)"

    # The budget, checked here independently of the evaluator's own check, on fresh outputs.
    x, y = digits_data.x_test[:N], digits_data.y_test[:N]
    keep = xe.clean
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x_adv = attack.perturb(xe_model, x[keep], y[keep])
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not torch.isnan(x_adv).any()
    norms = perturbation_norm((x_adv - x[keep]).double(), attack.norm)
    assert norms.max() <= attack.eps + 1e-6
    assert xe.outcomes[name].validity["max_norm"] <= attack.eps + 1e-6

    _, at = outcome(suite_cache, repo_params, "pgd_at", pgd_at_model, digits_data, name)
    acc_at = 100.0 * at.outcomes[name].robust.float().mean().item()
    for sibling in [o for o in repo_params.attack.suite if attack.outranks(build(repo_params.attack, o, 10))]:
        _, sib = outcome(suite_cache, repo_params, "pgd_at", pgd_at_model, digits_data, sibling)
        acc_sib = 100.0 * sib.outcomes[sibling].robust.float().mean().item()
        assert acc_at <= acc_sib + tolerance_pp(acc_sib, N), f"{name} ({acc_at:.1f}) weaker than {sibling} ({acc_sib:.1f})"
