"""What the sanity rules measure on the model itself (paper Table 10 and Carlini et al. 2019).

Every measurement runs on the sanity subset in the model's eval mode with frozen parameters;
attacks use the same early-stopping PGD as the attack stage, each run in its own forked,
seeded RNG so the sweeps do not depend on one another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..attacks.counting import isolated_rng
from ..attacks.evaluate import percent, predict
from ..attacks.iterative import ascend, cross_entropy, margin
from ..core.errors import UserError
from ..train.adversary import frozen

if TYPE_CHECKING:
    from .rules import Context


def pgd_settings(ctx: "Context") -> tuple[float, float]:
    """(eps, step) of the attack stage's PGD-20, which the sweeps and the noise check reuse."""
    settings = ctx.params.attack.settings.get("pgd20")
    if settings is None or settings.norm != "linf":
        raise UserError("params.yaml: the sanity checks need an L-inf 'attack.pgd20' block (its eps and step)")
    return float(settings.eps), float(settings.step)


def pgd_robust(ctx: "Context", eps: float, step: float, steps: int, seed: int) -> torch.Tensor:
    """Per-example flags: classified correctly and not fooled by CE-PGD (random start) within `steps`."""
    key = ("pgd", eps, step, steps, seed)
    if key in ctx.measured:
        return ctx.measured[key]
    robust = ctx.clean.clone()
    if eps == 0:
        return robust
    bs = ctx.params.attack.batch_size
    idx = robust.nonzero().flatten()
    with frozen(ctx.model), isolated_rng(ctx.x.device, seed):
        for i in range(0, len(idx), bs):
            b = idx[i : i + bs]
            run = ascend(ctx.model, ctx.x[b], ctx.y[b], cross_entropy, eps=eps, step=step, steps=steps)
            robust[b] = run.fooled_at > steps
    ctx.measured[key] = robust
    return robust


def steps_sweep(ctx: "Context") -> dict[str, Any]:
    """PGD accuracy against the number of steps at the attack stage's eps and step (independent runs)."""
    eps, step = pgd_settings(ctx)
    steps = sorted(ctx.params.sanity.steps_sweep)
    acc = [percent(pgd_robust(ctx, eps, step, k, ctx.params.seed + k)) for k in steps]
    return {"steps": steps, "accuracy": acc, "eps": eps, "step": step, "clean": percent(ctx.clean), "n": len(ctx.y)}


def eps_sweep(ctx: "Context") -> dict[str, Any]:
    """PGD accuracy against eps, `sweep_steps` steps of 2.5*eps/steps (Madry et al.'s rule)."""
    s = ctx.params.sanity
    eps = sorted(float(e) for e in s.eps_sweep)
    acc = [percent(pgd_robust(ctx, e, 2.5 * e / s.sweep_steps, s.sweep_steps, ctx.params.seed)) for e in eps]
    return {"eps": eps, "accuracy": acc, "clean": percent(ctx.clean), "steps": s.sweep_steps,
            "step_rule": "2.5*eps/steps", "n": len(ctx.y)}


def noise_robust(ctx: "Context") -> torch.Tensor:
    """Per-example flags: correct under every one of `noise_samples` uniform draws in the L-inf eps-ball."""
    eps, _ = pgd_settings(ctx)
    robust = ctx.clean.clone()
    bs = ctx.params.attack.batch_size
    with frozen(ctx.model), isolated_rng(ctx.x.device, ctx.params.seed):
        for _ in range(ctx.params.sanity.noise_samples):
            noisy = (ctx.x + torch.empty_like(ctx.x).uniform_(-eps, eps)).clamp(0, 1)
            robust &= predict(ctx.model, noisy, bs) == ctx.y
    return robust


def input_gradients(ctx: "Context") -> dict[str, torch.Tensor]:
    """L1 norms of the input gradients of CE and of the logit margin at the clean-correct points."""
    idx = ctx.clean.nonzero().flatten()
    bs = ctx.params.attack.batch_size
    norms: dict[str, list[torch.Tensor]] = {"ce": [], "margin": []}
    with frozen(ctx.model):
        for i in range(0, len(idx), bs):
            b = idx[i : i + bs]
            x = ctx.x[b].clone().requires_grad_(True)
            with torch.enable_grad():
                logits = ctx.model(x)
                for name, fn in (("ce", cross_entropy), ("margin", margin)):
                    (g,) = torch.autograd.grad(fn(logits, ctx.y[b]).sum(), x, retain_graph=True)
                    norms[name].append(g.flatten(1).abs().sum(1))
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in norms.items()}


def repeated_logits(ctx: "Context") -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of the sanity subset, computed twice in eval mode."""
    bs = ctx.params.attack.batch_size
    with frozen(ctx.model), torch.no_grad():
        first = torch.cat([ctx.model(ctx.x[i : i + bs]) for i in range(0, len(ctx.x), bs)])
        second = torch.cat([ctx.model(ctx.x[i : i + bs]) for i in range(0, len(ctx.x), bs)])
    return first, second
