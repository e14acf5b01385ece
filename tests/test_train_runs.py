"""Every registered method, alone and with each add-on it combines with, trains on tiny data:
no NaN, and its own objective goes down. A new method is covered by registering it."""

from __future__ import annotations

import pytest
import torch

from conftest import REPO, run_cli, write_params
from pipeline.core.errors import UserError
from pipeline.methods import ADDONS, METHODS, AddOnSetup, Setup, parse_run
from pipeline.models import create
from pipeline.config import load_params
from pipeline.core.pgd import Adversary
from pipeline.train.step import Step

RUNS = METHODS.names() + [f"{m}-{a}" for a in ADDONS.names() for m in METHODS.names() if a in METHODS.get(m).addons]


def tiny_model() -> torch.nn.Module:
    return create("small_cnn", num_classes=4, in_channels=1, width=4)


@pytest.mark.parametrize("name", RUNS)
def test_run_trains_and_lowers_its_objective(name):
    params = load_params(REPO / "params.yaml")  # each method's and add-on's own settings
    run = parse_run(name)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    torch.manual_seed(0)
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    method = METHODS.get(run.method)(params.for_method(run.method), Setup(Adversary(0.1, 0.03, 3), num_classes=4))
    addon = None
    for a in run.addons:
        addon = ADDONS.get(a)(params.for_addon(a), AddOnSetup(model, optimizer, tiny_model))
    step = Step(model, optimizer, method, addon)
    step.start_epoch(0, 0.05)

    torch.manual_seed(1)  # the same attack start and projections before and after training
    before = step.objective(x, y).total.item()
    for _ in range(15):
        loss = step(x, y)
        assert torch.isfinite(loss.total) and all(torch.isfinite(v) for v in loss.terms.values())
    torch.manual_seed(1)
    after = step.objective(x, y).total.item()
    assert all(torch.isfinite(p).all() for m in step.modules.values() for p in m.parameters())
    assert after < 0.97 * before, f"{name}: objective {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"runs": ["xe", "sat-awp"]}, "add-on 'awp' does not combine with method 'sat'"),
        ({"runs": ["rand_jr-lbgat"]}, "add-on 'lbgat' does not combine with method 'rand_jr'"),
        ({"runs": ["trades-awp-lbgat"]}, "at most one add-on"),
        ({"runs": ["trades-boost"]}, "unknown add-on 'boost'"),
        ({"runs": ["madry"]}, "unknown method 'madry'"),
        ({"trades.beta": -1}, "'trades.beta'"),
        ({"alp.alpha": 1.5}, "'alp.alpha'"),
        ({"alp.lambda_pair": -0.5}, "'alp.lambda_pair'"),
        ({"sat.entropic_eps": 0}, "'sat.entropic_eps'"),
        ({"sat.lambda_ot": -1}, "'sat.lambda_ot'"),
        ({"rand_jr.n_proj": 0}, "'rand_jr.n_proj'"),
        ({"sat_jr.lambda_j": -0.02}, "'sat_jr.lambda_j'"),
        ({"opt_jr.num_projections": 0}, "'opt_jr.num_projections'"),
        ({"sw.lambda_sw": -64}, "'sw.lambda_sw'"),
        ({"awp.gamma": -0.005}, "'awp.gamma'"),
        ({"lbgat.lambda_guide": -1}, "'lbgat.lambda_guide'"),
        ({"awp.typo": 1}, "unknown key 'awp.typo'"),
    ],
)
def test_bad_runs_and_weights_name_the_key(project, overrides, fragment):
    write_params(project, overrides)
    with pytest.raises(UserError) as err:
        load_params()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_missing_addon_block_is_named(project):
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((project / "params.yaml").read_text())
    del data["awp"]
    data["runs"] = ["trades-awp"]
    with open(project / "params.yaml", "w") as f:
        yaml.dump(data, f)
    with pytest.raises(UserError, match="missing key 'awp"):
        load_params()


def test_cli_rejects_a_bad_combination_before_training(project):
    proc = run_cli("stage", "train", "--dataset", "digits", "--method", "sat-lbgat", cwd=project)
    assert proc.returncode == 2
    assert "add-on 'lbgat' does not combine with method 'sat'" in proc.stderr + proc.stdout
    assert not (project / "models").exists()
