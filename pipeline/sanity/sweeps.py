"""What the sanity rules measure on the model itself (paper Table 10 and Carlini et al. 2019).

A `Context` holds one model with its attack record and the sanity subset; the rules
(`pipeline.sanity.rules`) read it. Every measurement runs on the sanity subset in the
model's eval mode with frozen parameters; attacks use the same early-stopping PGD as the
attack stage, each run in its own forked, seeded RNG so the sweeps do not depend on one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from ..attacks.counting import isolated_rng
from ..attacks.evaluate import percent
from ..attacks.iterative import cross_entropy, margin, on_labels
from ..core.errors import UserError
from ..core.passes import batched_logits, frozen, predict
from ..core.pgd import ascend
from ..params import Params


@dataclass
class Context:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    record: dict[str, Any]  # the attack stage's JSON for this model
    params: Params
    num_classes: int
    flags: dict[str, torch.Tensor] = field(default_factory=dict)  # the attack stage's per-example robust flags
    undefended_record: dict[str, Any] | None = None  # rule 10: the undefended run's attack record
    measured: dict[tuple, Any] = field(default_factory=dict, repr=False)  # runs shared by several rules

    @cached_property
    def clean(self) -> torch.Tensor:
        with frozen(self.model):
            return predict(self.model, self.x, self.params.attack.batch_size) == self.y

    @cached_property
    def eps_sweep(self) -> dict[str, Any]:
        return eps_sweep(self)

    @cached_property
    def steps_sweep(self) -> dict[str, Any]:
        return steps_sweep(self)


def pgd_settings(ctx: Context) -> tuple[float, float]:
    """(eps, step) of the attack stage's PGD-20, which the sweeps and the noise check reuse."""
    settings = ctx.params.attack.settings.get("pgd20")
    if settings is None or settings.norm != "linf":
        raise UserError("params.yaml: the sanity checks need an L-inf 'attack.pgd20' block (its eps and step)")
    return float(settings.eps), float(settings.step)


def pgd_robust(ctx: Context, eps: float, step: float, steps: int, seed: int) -> torch.Tensor:
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
            yb = ctx.y[b]
            run = ascend(ctx.model, ctx.x[b], on_labels(cross_entropy, yb), eps=eps, step=step, steps=steps, labels=yb)
            robust[b] = run.fooled_at > steps
    ctx.measured[key] = robust
    return robust


def steps_sweep(ctx: Context) -> dict[str, Any]:
    """PGD accuracy against the number of steps at the attack stage's eps and step (independent runs)."""
    eps, step = pgd_settings(ctx)
    steps = sorted(ctx.params.sanity.steps_sweep)
    acc = [percent(pgd_robust(ctx, eps, step, k, ctx.params.seed + k)) for k in steps]
    return {"steps": steps, "accuracy": acc, "eps": eps, "step": step, "clean": percent(ctx.clean), "n": len(ctx.y)}


def eps_sweep(ctx: Context) -> dict[str, Any]:
    """PGD accuracy against eps, `sweep_steps` steps of 2.5*eps/steps (Madry et al.'s rule)."""
    s = ctx.params.sanity
    eps = sorted(float(e) for e in s.eps_sweep)
    acc = [percent(pgd_robust(ctx, e, 2.5 * e / s.sweep_steps, s.sweep_steps, ctx.params.seed)) for e in eps]
    return {"eps": eps, "accuracy": acc, "clean": percent(ctx.clean), "steps": s.sweep_steps,
            "step_rule": "2.5*eps/steps", "n": len(ctx.y)}


def noise_robust(ctx: Context) -> torch.Tensor:
    """Per-example flags: correct under every one of `noise_samples` uniform draws in the L-inf eps-ball."""
    eps, _ = pgd_settings(ctx)
    robust = ctx.clean.clone()
    bs = ctx.params.attack.batch_size
    with frozen(ctx.model), isolated_rng(ctx.x.device, ctx.params.seed):
        for _ in range(ctx.params.sanity.noise_samples):
            noisy = (ctx.x + torch.empty_like(ctx.x).uniform_(-eps, eps)).clamp(0, 1)
            robust &= predict(ctx.model, noisy, bs) == ctx.y
    return robust


def input_gradients(ctx: Context) -> dict[str, torch.Tensor]:
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


def repeated_logits(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of the sanity subset, computed twice in eval mode."""
    bs = ctx.params.attack.batch_size
    with frozen(ctx.model):
        return batched_logits(ctx.model, ctx.x, bs), batched_logits(ctx.model, ctx.x, bs)
