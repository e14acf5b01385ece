"""Speed options compute the same function as the reference path (within dtype tolerance).

The reference is the plain fp32 eager step and, independently, the straightforward
implementation of `otjr bench` (attack by loss.backward(), a Python loop over projections,
torch.optim.SGD). No timing here: speed is measured by `otjr bench` (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO, write_params
from pipeline.benchmark import reference
from pipeline.core.errors import UserError
from pipeline.losses import finite_difference_jacobian_penalty, jacobian_penalty, random_projections, sliced_wasserstein
from pipeline.methods import METHODS, Setup
from pipeline.methods.jacobian import Exact, FiniteDifference, jacobian_mode
from pipeline.models import create
from pipeline.config import load_params
from pipeline.params import SpeedParams
from pipeline.core.passes import batch_statistics_only
from pipeline.core.pgd import Adversary
from pipeline.train.speed import Forward, forward_of, prepare, resolve
from pipeline.train.step import Step

CPU = torch.device("cpu")
ADVERSARY = Adversary(0.1, 0.03, 3)


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def tiny(seed=0, width=4) -> nn.Module:
    torch.manual_seed(seed)
    return create("small_cnn", num_classes=4, in_channels=1, width=width)


def step_for(params, method: str, speed_params: SpeedParams, model: nn.Module, optimizer=None):
    speed = resolve(speed_params, CPU)
    prepare(model, speed)
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    jacobian = jacobian_mode(speed_params.jacobian, speed_params.fd_step)
    m = METHODS.get(method)(params.for_method(method), Setup(ADVERSARY, 4, jacobian))
    step = Step(model, optimizer, m, speed=speed, device=CPU)
    step.start_epoch(0, 0.05)
    return step


def flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


# --- the reference implementation ---------------------------------------------------------------

def test_reference_sliced_wasserstein_is_the_vectorised_one():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    theta = random_projections(5, 7, dtype=torch.float64, generator=g)
    d1, dir1 = sliced_wasserstein(src, tgt, theta)
    d2, dir2 = reference.reference_sliced_wasserstein(src, tgt, theta)
    torch.testing.assert_close(d1, d2)
    torch.testing.assert_close(dir1, dir2)
    g1 = torch.autograd.grad(d1, (src, tgt))
    g2 = torch.autograd.grad(d2, (src, tgt))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", ["pgd_at", "otjr"])
def test_reference_step_and_trainer_step_train_the_same_weights(params, method):
    x, y = batch()
    fast_model, ref_model = tiny(), tiny()
    fast = step_for(params, method, SpeedParams(), fast_model,
                    torch.optim.SGD(fast_model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4))
    otjr = params.method_params["otjr"].model_dump()
    ref = reference.ReferenceStep(ref_model, method, ADVERSARY, 0.05, 0.9, 5e-4, otjr)
    for i in range(3):
        torch.manual_seed(10 + i)
        a = fast(x, y).total
        torch.manual_seed(10 + i)
        b = ref(x, y)
        torch.testing.assert_close(a.detach(), b, rtol=1e-4, atol=1e-5)
    for p, q in zip(fast_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


# --- each speed option --------------------------------------------------------------------------

def test_no_option_means_the_model_itself():
    model = tiny()
    assert forward_of(model, resolve(SpeedParams(), CPU)) is model


def objective_and_grads(params, method: str, speed_params: SpeedParams, seed=5, x_adv=None):
    model = tiny()
    step = step_for(params, method, speed_params, model)
    x, y = batch()
    torch.manual_seed(seed)
    x_adv = step.method.adversarial(step.local, x, y) if x_adv is None else x_adv
    loss = step.method.objective(step.trained, x, x_adv, y)
    loss.total.backward()
    return loss, flat_grads(model)


@pytest.mark.parametrize("method", ["pgd_at", "otjr", "trades", "rand_jr"])
def test_channels_last_computes_the_same_function(params, method):
    ref, g_ref = objective_and_grads(params, method, SpeedParams())
    fast, g_fast = objective_and_grads(params, method, SpeedParams(channels_last=True))
    torch.testing.assert_close(fast.total, ref.total, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-3, atol=1e-5)


def test_bf16_autocast_runs_the_model_in_bf16_and_keeps_fp32_islands(params):
    speed = resolve(SpeedParams(precision="bf16"), CPU)
    model = tiny(width=8)
    forward = forward_of(model, speed)
    conv_dtypes = []
    model.net[0].register_forward_hook(lambda m, i, o: conv_dtypes.append(o.dtype))
    x, y = batch()
    logits = forward(x)
    assert conv_dtypes == [torch.bfloat16] and logits.dtype == torch.float32
    assert forward.full_precision(x).dtype == torch.float32 and conv_dtypes[-1] == torch.float32

    torch.manual_seed(0)
    x_adv = ADVERSARY.perturb(forward, x, y)  # perturbation and projection stay fp32, exactly inside the ball
    assert x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= ADVERSARY.eps + 1e-7 and x_adv.min() >= 0 and x_adv.max() <= 1

    for method in ("pgd_at", "otjr", "sat"):  # the same adversarial examples: the objective alone is compared
        torch.manual_seed(1)
        x_adv = ADVERSARY.perturb(tiny(), x, y)
        ref, g_ref = objective_and_grads(params, method, SpeedParams(), x_adv=x_adv)
        fast, g_fast = objective_and_grads(params, method, SpeedParams(precision="bf16"), x_adv=x_adv)
        assert fast.total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in fast.terms.values())
        # bf16 keeps 8 bits of mantissa: the same function to ~1e-2 relative. OTJR's gradient moves most
        # (cosine ~0.98 here): at initialisation the SW displacements are about the size of bf16's rounding
        torch.testing.assert_close(fast.total, ref.total, rtol=3e-2, atol=3e-2)
        cos = F.cosine_similarity(g_fast, g_ref, dim=0)
        assert cos > (0.97 if method == "otjr" else 0.995), (method, float(cos))


@pytest.mark.slow
def test_compile_computes_the_same_function(params, tmp_path, monkeypatch):
    """torch.compile (inductor on the CPU); the exact Jacobian objective stays eager, the FD one compiles."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    for method, jacobian in (("pgd_at", "exact"), ("otjr", "exact"), ("otjr", "finite_difference")):
        ref, g_ref = objective_and_grads(params, method, SpeedParams(jacobian=jacobian))
        fast, g_fast = objective_and_grads(params, method, SpeedParams(compile=True, jacobian=jacobian))
        torch.testing.assert_close(fast.total, ref.total, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-3, atol=1e-5)


def test_double_backward_objectives_get_the_eager_model(params):
    model = tiny()
    speed = resolve(SpeedParams(compile=True), CPU)
    forward = forward_of(model, speed)
    assert isinstance(forward, Forward) and forward.eager._compiled is None and forward._compiled is not None
    exact = METHODS.get("otjr")(params.for_method("otjr"), Setup(ADVERSARY, 4, Exact()))
    fd = METHODS.get("otjr")(params.for_method("otjr"), Setup(ADVERSARY, 4, FiniteDifference(1e-3)))
    pgd = METHODS.get("pgd_at")(params.for_method("pgd_at"), Setup(ADVERSARY, 4))
    assert exact.double_backward and not fd.double_backward and not pgd.double_backward


# --- the finite-difference Jacobian penalty ------------------------------------------------------

class SmoothNet(nn.Module):
    """Conv + batch-norm (train mode couples the samples) + tanh: smooth, so the FD error is pure O(h)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


def penalty_and_grads(model, x, directions, step=None):
    params = list(model.parameters())
    x_req = x.clone().requires_grad_(True)
    out = model(x_req)
    if step is None:
        p = jacobian_penalty(x_req, out, directions)
    else:
        p = finite_difference_jacobian_penalty(model, x_req, out, directions, step)
    grads = torch.autograd.grad(p, params, materialize_grads=True)
    return p.detach(), torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("train", [False, True])
def test_finite_difference_penalty_tends_to_the_exact_one(train):
    torch.manual_seed(0)
    model = SmoothNet().double().train(train)
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    directions = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    exact, g_exact = penalty_and_grads(model, x, directions)
    errors = []
    for h in (1e-2, 1e-3, 1e-4):
        with batch_statistics_only(model):
            p, g = penalty_and_grads(model, x, directions, h)
        errors.append((abs(float(p / exact) - 1), float((g - g_exact).norm() / g_exact.norm())))
    assert errors[-1][0] < 1e-4 and errors[-1][1] < 1e-3, errors
    for (e1, g1), (e2, g2) in zip(errors, errors[1:]):  # first order: 10x smaller step, ~10x smaller error
        assert e2 < e1 / 5 and g2 < g1 / 5, errors


def test_finite_difference_objective_is_close_to_the_exact_one(params):
    ref, g_ref = objective_and_grads(params, "otjr", SpeedParams())
    fd, g_fd = objective_and_grads(params, "otjr", SpeedParams(jacobian="finite_difference", fd_step=1e-3))
    torch.testing.assert_close(fd.terms["jacobian"], ref.terms["jacobian"], rtol=2e-2, atol=1e-6)
    torch.testing.assert_close(fd.total, ref.total, rtol=1e-3, atol=1e-5)


def test_batch_statistics_only_leaves_running_statistics_alone():
    model = tiny().train()
    x, _ = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with batch_statistics_only(model):
        out = model(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(out, model(x))  # and it normalised with the batch's statistics, as in train mode
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # the plain pass counted


# --- no host synchronisation in the step ----------------------------------------------------------

@pytest.mark.parametrize("name, speed_params", [
    ("otjr", SpeedParams()),
    ("otjr", SpeedParams(precision="bf16", channels_last=True, jacobian="finite_difference")),
    ("trades", SpeedParams()), ("sat_jr", SpeedParams()), ("alp", SpeedParams()),
])
def test_step_never_waits_for_the_device(params, monkeypatch, name, speed_params):
    """No .item(), bool(), float(), .tolist() or .numpy() on a tensor inside a training step."""
    step = step_for(params, name, speed_params, tiny())
    x, y = batch()
    step(x, y)  # first call outside the trap (lazy initialisations are not the hot loop)

    def sync(*args, **kwargs):
        raise AssertionError("host synchronisation inside the training step")

    for attr in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, attr, sync)
    loss = step(x, y)
    monkeypatch.undo()
    assert torch.isfinite(loss.total)


# --- params ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, fragment", [
    ({"speed.precision": "fp16"}, "'speed.precision'"),
    ({"speed.fd_step": 0}, "'speed.fd_step'"),
    ({"speed.turbo": True}, "unknown key 'speed.turbo'"),
    ({"speed.compile": "yes"}, "'speed.compile'"),
])
def test_bad_speed_settings_name_the_key(project, overrides, fragment):
    write_params(project, overrides)
    with pytest.raises(UserError) as err:
        load_params()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_speed_block_is_optional_and_safe_by_default(project):
    import ruamel.yaml

    yaml = ruamel.yaml.YAML(typ="safe", pure=True)
    raw = yaml.load((project / "params.yaml").read_text())
    raw.pop("speed", None)
    write_params(project, base=raw)
    assert load_params().speed == SpeedParams(precision="fp32", channels_last=False, cudnn_benchmark=False,
                                              compile=False, jacobian="exact", sync_batchnorm=False)
