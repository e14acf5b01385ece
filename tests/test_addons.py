"""AWP and LBGAT: exact perturb / restore, the teacher's guide, and the teacher in the resume state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.methods import ADDONS, METHODS, AddOnSetup, Setup
from pipeline.methods.awp import AWPParams
from pipeline.methods.lbgat import LBGATParams
from pipeline.core.pgd import Adversary
from pipeline.train.step import Step


def bn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 10), nn.BatchNorm1d(10), nn.Tanh(), nn.Linear(10, 4)).double()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 1, 2, 3, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 4, (8,), generator=g), (x + 0.05).clamp(0, 1)


def trades(x_adv):
    method = METHODS.get("trades")(METHODS.get("trades").Params(beta=6.0),
                                   Setup(adversary=Adversary(0.1, 0.03, 2), num_classes=4))
    method.adversarial = lambda model, x, y: x_adv  # a fixed batch of adversarial examples
    return method


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)


def awp_step(model, optimizer, method, gamma=0.01, warmup=0):
    awp = ADDONS.get("awp")(AWPParams(gamma=gamma, warmup_epochs=warmup), AddOnSetup(model, optimizer, None))
    return Step(model, optimizer, method, awp)


def naive_perturbed_gradient(model, objective, gamma):
    """Wu et al.: v_l = gamma ||w_l|| g_l / ||g_l|| on weight matrices, then the gradient at w + v.

    Also returns the buffers after one training pass at w + v (the only pass BN should count).
    """
    ascent = copy.deepcopy(model)
    grads = torch.autograd.grad(objective(ascent), [p for p in ascent.parameters() if p.dim() > 1])
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for w, g in zip([p for p in ref.parameters() if p.dim() > 1], grads):
            w += gamma * torch.sqrt((w**2).sum()) * g / torch.sqrt((g**2).sum())
    return torch.autograd.grad(objective(ref), list(ref.parameters())), list(ref.buffers())


def test_awp_restores_exactly_and_steps_with_the_perturbed_gradient():
    model = bn_model()
    x, y, x_adv = batch()
    method = trades(x_adv)
    optimizer = sgd(model)
    step = awp_step(model, optimizer, method, gamma=0.01)
    step(x, y)  # a first step, so momentum buffers are non-zero
    before = copy.deepcopy(model)
    ref_optimizer = sgd(before)
    ref_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    objective = lambda m: method.objective(m, x, x_adv, y).total  # noqa: E731

    expected_grads, expected_buffers = naive_perturbed_gradient(before, objective, 0.01)
    plain = copy.deepcopy(before)
    plain_grads = torch.autograd.grad(objective(plain), list(plain.parameters()))

    step(x, y)
    for p, g, g0 in zip(model.parameters(), expected_grads, plain_grads):
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-12)
    assert any(not torch.allclose(g, g0) for g, g0 in zip(expected_grads, plain_grads))

    # the optimizer's own step from the unperturbed weights, with the gradient the step used: bit for bit
    for p, q in zip(before.parameters(), model.parameters()):
        p.grad = q.grad.clone()
    ref_optimizer.step()
    for p, q in zip(before.parameters(), model.parameters()):
        assert torch.equal(p, q)
    for b, c in zip(expected_buffers, model.buffers()):  # the ascent pass left BN statistics alone
        assert torch.allclose(b, c, rtol=1e-12, atol=0)
    assert not torch.allclose(expected_buffers[0], list(plain.buffers())[0], rtol=1e-12, atol=0)


def test_awp_waits_for_its_warmup_and_gamma_zero_is_plain_training():
    x, y, x_adv = batch(1)
    method = trades(x_adv)
    results = []
    for gamma, warmup, epoch in [(0.01, 2, 1), (0.0, 0, 0), (None, None, 0)]:
        model = bn_model(3)
        optimizer = sgd(model)
        step = awp_step(model, optimizer, method, gamma, warmup) if gamma is not None else Step(
            model, optimizer, method)
        step.start_epoch(epoch, 0.1)
        step(x, y)
        results.append([p.detach().clone() for p in model.parameters()])
    for run in results[:2]:
        assert all(torch.equal(a, b) for a, b in zip(run, results[2]))


def lbgat_step(model, optimizer, method, lam=0.5):
    setup = AddOnSetup(model, optimizer, lambda: bn_model(9))
    return Step(model, optimizer, method, ADDONS.get("lbgat")(LBGATParams(lambda_guide=lam), setup))


def test_lbgat_trains_a_teacher_whose_clean_logits_guide_the_adversarial_logits():
    model = bn_model()
    x, y, x_adv = batch(2)
    method = trades(x_adv)
    optimizer = sgd(model)
    step = lbgat_step(model, optimizer, method, lam=0.5)
    teacher = step.modules["teacher"]
    teacher_opt = step.optimizers["teacher_sgd"]
    assert set(step.modules) == {"model", "teacher"} and set(step.optimizers) == {"sgd", "teacher_sgd"}
    assert teacher_opt.defaults == optimizer.defaults
    assert {id(p) for p in teacher.parameters()}.isdisjoint(id(p) for p in model.parameters())

    t0, s0 = copy.deepcopy(teacher), copy.deepcopy(model)
    loss = step(x, y)
    t_logits, clean, adv = t0(x), s0(x), s0(x_adv)
    kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")
    mse = ((adv - t_logits) ** 2).mean()
    expected = F.cross_entropy(t_logits, y) + 0.5 * mse + 6.0 * kl  # the student's clean CE is replaced
    assert loss.total.item() == pytest.approx(expected.item(), rel=1e-10)
    assert loss.terms["guide_mse"].item() == pytest.approx(mse.item(), rel=1e-10)
    assert not all(torch.equal(a, b) for a, b in zip(t0.parameters(), teacher.parameters()))  # teacher trained
    assert all(p.grad is not None for p in teacher.parameters())


def test_lbgat_teacher_is_part_of_the_resume_state(digits, monkeypatch):
    """Interrupted after epoch 1 and resumed, a trades-lbgat run ends bit-identical to an uninterrupted one,
    which needs the teacher and its optimizer restored (a fresh teacher would steer the student elsewhere)."""
    from pipeline.core import paths
    from pipeline.methods import parse_run
    from pipeline.models import read_checkpoint
    from pipeline.config import load_params
    from pipeline.params import read_yaml
    from pipeline.train import loop

    params, run = load_params(), parse_run("trades-lbgat")
    reference, info = read_checkpoint(loop.fit("digits", run, params, show_progress=False))
    assert info["settings"]["addons"] == {"lbgat": read_yaml(paths.params_file())["lbgat"]}  # as written
    paths.checkpoint("digits", run.name).unlink()

    real_lr_at = loop.lr_at

    def crash_in_second_epoch(train, epoch, epochs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_lr_at(train, epoch, epochs)

    monkeypatch.setattr(loop, "lr_at", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        loop.fit("digits", run, params, show_progress=False)
    assert paths.resume_state("digits", run.name).is_file()
    monkeypatch.setattr(loop, "lr_at", real_lr_at)
    resumed, _ = read_checkpoint(loop.fit("digits", run, params, show_progress=False))
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
