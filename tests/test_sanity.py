"""The sanity rules flag a gradient-masked model and pass honest ones; the stage and --strict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import REPO, write_params
from pipeline.attacks import build, evaluate, summarise
from pipeline.core.errors import UserError
from pipeline.config import load_params
from pipeline.sanity import Context, run_rules
from pipeline.sanity.run import overall
from trained_models import RoundedInput, digits, trained

N_ATTACK, N_SANITY = 40, 120


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def attack_record(model, params) -> tuple[dict, dict]:
    """The attack stage's record and flags for `model` under the full default suite."""
    d = digits()
    x, y = d.x_test[:N_ATTACK], d.y_test[:N_ATTACK]
    attacks = [build(params.attack, n, 10, params.seed) for n in params.attack.suite]
    result = evaluate(model, x, y, attacks, params.attack.batch_size, params.seed)
    record = {"n": N_ATTACK, "subset": f"first {N_ATTACK}", "seed": params.seed,
              "versions": {"torch": torch.__version__, "torchattacks": "3.3.0"}, **summarise(result, attacks)}
    flags = {"clean": result.clean, **{k: o.robust for k, o in result.outcomes.items()}}
    return record, flags


@pytest.fixture(scope="module")
def xe_record(params):
    return attack_record(trained("xe"), params)[0]


def checks_for(model, params, xe_record) -> dict[int, object]:
    record, flags = attack_record(model, params)
    d = digits()
    ctx = Context(model=model, x=d.x_test[:N_SANITY], y=d.y_test[:N_SANITY], record=record, params=params,
                  num_classes=10, flags=flags, undefended_record=xe_record)
    return {c.id: c for c in run_rules(ctx)}


def test_every_rule_of_the_design_is_implemented():
    from pipeline.sanity import RULES

    assert [number for number, _, _ in RULES] == list(range(1, 12))


def test_gradient_masked_model_is_flagged(params, xe_record):
    checks = checks_for(RoundedInput(trained("xe")).eval(), params, xe_record)
    assert overall(list(checks.values())) == "fail"
    assert checks[8].verdict == "fail" and checks[8].figures["zero_margin_gradients"] > 0
    assert checks[6].verdict == "fail", checks[6].detail  # black-box attacks beat the blinded white-box ones


def test_honest_pgd_at_model_passes(params, xe_record):
    checks = checks_for(trained("pgd_at"), params, xe_record)
    failed = {i: c.detail for i, c in checks.items() if c.verdict == "fail"}
    assert not failed
    assert checks[10].verdict == "pass" and checks[10].figures["pgd20"] <= 5
    assert checks[5].figures["accuracy"][-1] <= 100 / 10 + checks[5].tolerance_pp
    assert checks[4].figures["steps"] == [1, 10, 20, 40, 50] and len(checks[4].figures["accuracy"]) == 5


def test_rule_10_fails_when_the_undefended_model_survives(params, xe_record):
    survivor = {**xe_record, "pgd20": {**xe_record["pgd20"], "accuracy": 40.0}}
    d = digits()
    ctx = Context(model=trained("xe"), x=d.x_test[:8], y=d.y_test[:8], record=xe_record, params=params,
                  num_classes=10, undefended_record=survivor)
    from pipeline.sanity.rules import undefended_falls

    assert undefended_falls(ctx).verdict == "fail"


class _Round(nn.Module):
    def forward(self, x):
        return torch.round(x * 4) / 4


def _register_masked_architecture() -> None:
    from pipeline.models import MODELS
    from pipeline.models.small_cnn import small_cnn

    if "rounded_small_cnn_test" not in MODELS:
        MODELS.register("rounded_small_cnn_test")(
            lambda num_classes, in_channels=1, width=8: nn.Sequential(_Round(), small_cnn(num_classes, in_channels, width)))


@pytest.mark.slow
def test_stages_write_records_and_strict_fails_a_masked_model(digits):
    from pipeline import api
    from pipeline.core import paths
    from pipeline.core.io import load_tensors, read_json

    write_params(digits, {"attack.n": 32, "sanity.n": 48, "train.epochs": 3})
    api.train("digits", "xe")
    out = api.attack("digits", "xe")
    record = read_json(out)
    for key in ("n", "subset", "seed", "device", "versions", "clean", "worst_case"):
        assert key in record
    assert record["n"] == 32 and set(load_params().attack.suite) <= set(record)
    flags, _ = load_tensors(paths.attack_flags("digits", "xe"))
    assert set(flags) >= {"clean", "worst_case", *load_params().attack.suite}
    sanity_path, verdict = api.sanity("digits", "xe", strict=True)
    sanity = read_json(sanity_path)
    assert verdict == sanity["verdict"] != "fail"
    assert [r["id"] for r in sanity["rules"]] == list(range(1, 12))

    # A model whose forward rounds its input: the stage flags it and --strict turns that into an error.
    _register_masked_architecture()
    write_params(digits, {"attack.n": 32, "sanity.n": 48, "train.epochs": 3, "model.name": "rounded_small_cnn_test",
                          "attack.suite": ["fgsm", "pgd20", "square"]})
    api.train("digits", "pgd_at")
    api.attack("digits", "pgd_at")
    _, verdict = api.sanity("digits", "pgd_at")
    assert verdict == "fail"
    with pytest.raises(UserError, match="a sanity rule failed"):
        api.sanity("digits", "pgd_at", strict=True)
