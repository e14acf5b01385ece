"""The evaluator: pass counting, RNG isolation, model state, early stopping, and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import REPO, write_params
from pipeline.attacks import ATTACKS, build, evaluate, summarise
from pipeline.attacks.counting import CountingModel
from pipeline.attacks.iterative import cross_entropy, on_labels
from pipeline.core.pgd import ascend
from pipeline.core.errors import UserError
from pipeline.config import load_params
from trained_models import EPS, digits, trained


def suite(*names):
    params = load_params(REPO / "params.yaml")
    return [build(params.attack, n, 10, params.seed) for n in names]


def never_fooled_model() -> nn.Module:
    """A linear model whose class-0 bias no perturbation in [0, 1] can overcome."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].bias[0] = 1e4
    return model.eval()


def test_counting_model_counts_image_passes():
    model = CountingModel(never_fooled_model())
    x = torch.rand(5, 1, 8, 8)
    y = torch.zeros(5, dtype=torch.long)
    ascend(model, x, on_labels(cross_entropy, y), eps=EPS, step=EPS / 4, steps=7, labels=y)
    assert (model.passes.forward, model.passes.backward) == (5 * 8, 5 * 7)
    xr = x.clone().requires_grad_(True)
    out = model(xr).sum()
    out.backward(retain_graph=True)
    out.backward()
    assert (model.passes.forward, model.passes.backward) == (5 * 9, 5 * 9)


def test_early_stop_spends_nothing_on_fooled_examples():
    model = trained("xe")
    d = digits()
    x, y = d.x_test[:32], d.y_test[:32]
    result = evaluate(model, x, y, suite("pgd100"), batch_size=64)
    passes = result.outcomes["pgd100"].passes
    attacked = int(result.clean.sum())
    assert result.outcomes["pgd100"].robust.sum() == 0
    # Without stopping: 101 forwards and 100 backwards per attacked example.
    assert passes.backward < 10 * attacked
    assert passes.forward < 12 * attacked + len(y)


def test_pgd100_fools_every_example_pgd20_fools():
    model = trained("pgd_at")
    d = digits()
    x, y = d.x_test[:96], d.y_test[:96]
    result = evaluate(model, x, y, suite("pgd20", "pgd100"), batch_size=256)
    r20, r100 = result.outcomes["pgd20"].robust, result.outcomes["pgd100"].robust
    assert not (r100 & ~r20).any(), "same seed, same first 20 iterates: PGD-100 fools a superset"
    assert r20.any()


def test_evaluation_isolates_rng_keeps_model_and_ignores_suite_order():
    model = copy.deepcopy(trained("pgd_at"))
    before = copy.deepcopy(model.state_dict())
    d = digits()
    x, y = d.x_test[:24], d.y_test[:24]
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    forward = evaluate(model, x, y, suite("pgd20", "square", "simba"), batch_size=64, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    backward = evaluate(model, x, y, suite("simba", "square", "pgd20"), batch_size=64, seed=0)
    for name in ("pgd20", "square", "simba"):
        assert torch.equal(forward.outcomes[name].robust, backward.outcomes[name].robust)
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_summary_records_settings_passes_and_worst_case():
    model = trained("pgd_at")
    d = digits()
    x, y = d.x_test[:24], d.y_test[:24]
    attacks = suite("fgsm", "pgd20", "deepfool")
    record = summarise(evaluate(model, x, y, attacks, batch_size=64), attacks)
    for name in ("fgsm", "pgd20", "deepfool"):
        entry = record[name]
        assert entry["params"]["eps"] > 0 and entry["implementation"] and entry["implementation_version"]
        assert entry["passes"]["forward_equivalents"] == entry["passes"]["forward"] + 2 * entry["passes"]["backward"]
    assert record["deepfool"]["median_l2"] is None or record["deepfool"]["median_l2"] > 0
    assert record["worst_case"]["accuracy"] <= min(record[n]["accuracy"] for n in ("fgsm", "pgd20", "deepfool"))


@pytest.mark.parametrize("override, message", [
    ({"attack.suite": ["pgd20", "carlini"]}, "'attack.suite': unknown attack 'carlini'"),
    ({"attack.pgd20.eps": 0}, "'attack.pgd20.eps'"),
    ({"attack.pgd20.eps": "-8/255"}, "'attack.pgd20.eps'"),
    ({"attack.fgsm.norm": "l2"}, "'attack.fgsm.norm'"),
    ({"attack.simba.norm": "l1"}, "'attack.simba.norm'"),
    ({"attack.precision": "fp16"}, "'attack.precision'"),
])
def test_bad_attack_settings_are_one_line_errors(project, override, message):
    write_params(project, override)
    with pytest.raises(UserError) as err:
        load_params()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_autoattack_needs_four_classes():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(UserError, match="autoattack needs at least 4 classes"):
        build(params.attack, "autoattack", 3)


def test_checkpoint_for_another_class_count_fails_before_any_work(digits):
    from pipeline import api
    from pipeline.core import paths
    from pipeline.data import load_meta
    from pipeline.models import build, model_spec, save_checkpoint

    meta = load_meta("digits")
    spec = model_spec("small_cnn", {"width": 4}, 3, 1, meta["mean"], meta["std"])
    save_checkpoint(paths.checkpoint("digits", "xe"), build(spec), spec, {"dataset": "digits"})
    with pytest.raises(UserError, match="model has 3 classes but dataset digits has 10"):
        api.attack("digits", "xe")
    assert not paths.attack_result("digits", "xe").exists()


def test_simba_frequency_block_larger_than_image_fails_before_attacking(digits):
    from pipeline import api
    from pipeline.core import paths

    write_params(digits, {"attack.suite": ["simba"], "attack.simba.freq_dims": 16, "train.epochs": 1})
    api.train("digits", "xe")
    with pytest.raises(UserError, match="attack.simba.freq_dims: 16 exceeds the image size"):
        api.attack("digits", "xe")
    assert not paths.attack_result("digits", "xe").exists()


class _Lookup(nn.Module):
    """Logits looked up by the example id written in the first pixel (id / 100)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x):
        return self.table[(x.flatten(1)[:, 0] * 100).round().long()]


def test_fab_targeted_keeps_each_example_with_its_own_targets(monkeypatch):
    """Glue of fab_targeted: rows, targets and the prefix re-run stay aligned (FAB itself faked)."""
    from pipeline.attacks import boundary

    n, classes = 12, 10
    torch.manual_seed(1)
    table = torch.randn(n, classes)
    y = table.argmax(1)
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 0, 0] = torch.arange(n) / 100
    model = _Lookup(table)
    ranked = table.argsort(1, descending=True)
    wanted = ranked[torch.arange(n), 1 + torch.arange(n) % 3]  # the target that works: rank 2, 3 or 4
    steps_needed = torch.tensor([1, 5, 30] * 4)  # some fall in the 3-step prefix, some need the full run

    def fake_rows(model_, xs, ys, targets, seed, fab_args):
        ids = (xs.flatten(1)[:, 0] * 100).round().long()
        hit = (targets == wanted[ids]).any(0) & (steps_needed[ids] <= fab_args["steps"])
        return xs + 0.01 * hit.view(-1, 1, 1, 1), hit

    monkeypatch.setattr(boundary, "_fab_rows", fake_rows)
    out = boundary.fab_targeted(model, x, y, n_targets=3, seed=0, steps=30, norm="linf", eps=0.1)
    fooled = (out - x).flatten(1).abs().amax(1) > 0
    assert fooled.all()
    out = boundary.fab_targeted(model, x, y, n_targets=2, seed=0, steps=30, norm="linf", eps=0.1)
    fooled = (out - x).flatten(1).abs().amax(1) > 0
    assert torch.equal(fooled, torch.arange(n) % 3 < 2)


def test_jacobian_attacks_slice_large_batches_without_changing_results(monkeypatch):
    """Slicing changes no outcome. Run on one thread: with several, BLAS reduction order depends on
    the batch size, and an example on DeepFool's edge can flip on a 1e-7 difference (seen on 2 cores)."""
    from pipeline.attacks import boundary

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = trained("pgd_at")
        d = digits()
        x, y = d.x_test[:20], d.y_test[:20]
        whole = evaluate(model, x, y, suite("fab", "deepfool"), batch_size=64)
        monkeypatch.setattr(boundary, "JACOBIAN_BYTES", 4 * 10 * 64 * 3)  # three images per slice
        sliced = evaluate(model, x, y, suite("fab", "deepfool"), batch_size=64)
    finally:
        torch.set_num_threads(threads)
    for name in ("fab", "deepfool"):
        assert torch.equal(whole.outcomes[name].robust, sliced.outcomes[name].robust)



@pytest.mark.parametrize("name", [n for n in ATTACKS.names()
                                  if "l2" in ATTACKS.get(n).Params.model_fields["norm"].annotation.__args__
                                  and "linf" in ATTACKS.get(n).Params.model_fields["norm"].annotation.__args__])
def test_attacks_offering_both_norms_run_in_l2(name):
    params = load_params(REPO / "params.yaml")
    instance = next(n for n in params.attack.suite if params.attack.kinds[n] == name)  # the default's first of the kind
    settings = params.attack.settings[instance].model_copy(update={"norm": "l2", "eps": 0.75})
    attack = ATTACKS.get(name)(settings, 10, 0)
    d = digits()
    x, y = d.x_test[:24], d.y_test[:24]
    result = evaluate(trained("xe"), x, y, [attack], batch_size=64)  # raises on any example outside the L2 ball
    outcome = result.outcomes[name]
    assert outcome.validity["max_norm"] <= 0.75 + 1e-6
    assert outcome.robust.float().mean() < result.clean.float().mean() / 2


def test_l2_projection_stays_in_the_ball_after_float32_rounding():
    from pipeline.core.pgd import fit_l2, l2_norms, project

    torch.manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(64, 3, 224, 224)  # ImageNet-sized, away from the [0, 1] box
    projected = project(x, x + 0.01 * torch.randn_like(x), 0.5, "l2")
    assert (l2_norms((projected - x).double()) > 0.5 + 5e-7).any(), "rounding overshoots without the fit"
    fitted = fit_l2(x, projected, 0.5)
    assert (l2_norms((fitted - x).double()) <= 0.5 + 5e-7).all()


def test_bf16_path_attacks_through_autocast_but_keeps_clean_and_fp32_only_attacks_in_fp32():
    """attack.precision: bf16 — the model's convolutions see bf16 for PGD, fp32 for the clean pass and Square."""
    data = digits()
    model = trained("pgd_at")
    x, y = data.x_test[:32], data.y_test[:32]
    dtypes: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    handle = conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        attacks = suite("pgd20", "square")
        assert not attacks[0].fp32_only and attacks[1].fp32_only
        fp32 = evaluate(model, x, y, attacks, 256, 0)
        dtypes.clear()
        bf16 = evaluate(model, x, y, attacks[:1], 256, 0, precision="bf16")
        assert dtypes[0] == torch.float32 and set(dtypes[1:]) == {torch.bfloat16}  # clean pass, then PGD's passes
        dtypes.clear()
        square = evaluate(model, x, y, attacks[1:], 256, 0, precision="bf16")
        assert set(dtypes) == {torch.float32}
    finally:
        handle.remove()
    assert not model.training  # left in eval mode, as it came
    assert torch.equal(bf16.clean, fp32.clean) and torch.equal(square.clean, fp32.clean)
    assert torch.equal(square.outcomes["square"].robust, fp32.outcomes["square"].robust)  # the same run as fp32
    assert bf16.outcomes["pgd20"].passes.forward > 0  # counted on the bf16 model too
    assert (bf16.outcomes["pgd20"].robust & ~bf16.clean).sum() == 0
