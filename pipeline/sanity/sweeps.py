"""Attack sweeps the sanity rules need (paper Table 10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..attacks.evaluate import percent, predict
from ..train.adversary import frozen, pgd_linf

if TYPE_CHECKING:
    from .rules import Context


def pgd_accuracy(model, x, y, eps: float, steps: int, batch_size: int) -> float:
    """L-inf PGD (uniform start, step 2.5*eps/steps as in Madry et al.) accuracy in percent."""
    correct = 0
    step = 2.5 * eps / steps
    with frozen(model):
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            loss = lambda logits, yb=yb: torch.nn.functional.cross_entropy(logits, yb, reduction="sum")
            x_adv = pgd_linf(model, xb, loss, eps, step, steps) if eps > 0 else xb
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == yb).sum())
    return 100.0 * correct / max(len(y), 1)


def eps_sweep(ctx: "Context") -> dict[str, Any]:
    s = ctx.params.sanity
    bs = ctx.params.attack.batch_size
    with frozen(ctx.model):
        clean = percent(predict(ctx.model, ctx.x, bs) == ctx.y)
    eps = sorted(float(e) for e in s.eps_sweep)
    acc = [pgd_accuracy(ctx.model, ctx.x, ctx.y, e, s.sweep_steps, bs) for e in eps]
    return {"eps": eps, "accuracy": acc, "clean": clean, "steps": s.sweep_steps, "step_rule": "2.5*eps/steps", "n": len(ctx.y)}
