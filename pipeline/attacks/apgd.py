"""APGD (Croce & Hein 2020, Algorithm 1) on CE or the targeted DLR loss, with parallel targets.

The step-size schedule, momentum (alpha = 0.75), checkpoints (0.22 / 0.06 / 0.03 of the
iterations) and the two step-halving conditions follow the authors' reference code
(`pyautoattack`), per example. Two things make it cheap without changing what an example
sees: APGD-T's target classes run side by side as extra rows of one batch instead of one
after another, and an example (all of its rows) leaves the batch at its first
misclassified iterate, which is what the reference returns for it anyway.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.pgd import Norm, l2_norms, per_row


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): the targeted DLR loss (needs >= 4 classes)."""
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _normalise(t: torch.Tensor, norm: Norm) -> torch.Tensor:
    size = t.flatten(1).abs().amax(1) if norm == "linf" else l2_norms(t)
    return t / per_row(size + 1e-12, t)


def _project(x: torch.Tensor, x_new: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return torch.minimum(torch.maximum(x_new, x - eps), x + eps).clamp(0.0, 1.0)
    delta = x_new - x
    return (x + _normalise(delta, norm) * per_row(l2_norms(delta).clamp(max=eps), x)).clamp(0.0, 1.0)


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: Norm, steps: int, rho: float,
         loss: Literal["ce", "dlr_targeted"] = "ce", target: torch.Tensor | None = None,
         group: torch.Tensor | None = None, n_groups: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run per row; rows sharing a `group` (an example) stop together once one is fooled.

    Returns (x_adv, fooled) per group: the first adversarial iterate found for fooled
    groups, the clean input (the group's first row) elsewhere.
    """
    if group is None:
        group, n_groups = torch.arange(len(x), device=x.device), len(x)
    x = x.detach()
    out = torch.empty(n_groups, *x.shape[1:], dtype=x.dtype, device=x.device)
    out[group] = x
    fooled = torch.zeros(n_groups, dtype=torch.bool, device=x.device)

    def loss_fn(logits, yy, tt):
        return F.cross_entropy(logits, yy, reduction="none") if loss == "ce" else dlr_targeted(logits, yy, tt)

    def evaluate(xa, yy, tt):
        xa = xa.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            values = loss_fn(logits, yy, tt)
            (grad,) = torch.autograd.grad(values.sum(), xa)
        return values.detach(), grad, logits.detach().argmax(1) != yy

    n_iter_2, n_iter_min, size_decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    # drawn in the default dtype, as the reference does, so float64 runs see the same start
    noise = 2 * torch.rand(x.shape, device=x.device) - 1 if norm == "linf" else torch.randn(x.shape, device=x.device)
    x_adv = (x + eps * _normalise(noise, norm)).clamp(0.0, 1.0)
    tgt = target if target is not None else y
    loss_now, grad, hit = evaluate(x_adv, y, tgt)

    # Per-row state; rows of fooled groups are dropped from every tensor as they fall.
    state = {"x": x, "y": y, "t": tgt, "g": group, "x_adv": x_adv, "x_old": x_adv.clone(), "grad": grad,
             "x_best": x_adv.clone(), "grad_best": grad.clone(), "loss_best": loss_now.clone(),
             # step and loss history in the default dtype, as in the reference implementation
             "step": 2.0 * eps * torch.ones(len(x), device=x.device),
             "loss_last_check": loss_now.clone(), "reduced_last_check": torch.ones(len(x), dtype=torch.bool, device=x.device)}
    history = torch.zeros(steps, len(x), device=x.device)

    def drop(hit_rows: torch.Tensor) -> torch.Tensor:
        """Record the iterates of newly fooled groups and remove all their rows; returns the kept mask."""
        nonlocal history
        g = state["g"]
        newly = g[hit_rows]
        fresh = ~fooled[newly]
        out[newly[fresh]] = state["x_adv"][hit_rows][fresh]
        fooled[newly] = True
        keep = ~fooled[g]
        if not keep.all():
            for key in state:
                state[key] = state[key][keep]
            history = history[:, keep]
        return keep

    drop(hit)
    k, counter = n_iter_2, 0
    for i in range(steps):
        if not len(state["x"]):
            break
        s = state
        with torch.no_grad():
            x0, x_cur = s["x"], s["x_adv"]
            momentum = x_cur - s["x_old"]
            s["x_old"] = x_cur
            a = 0.75 if i > 0 else 1.0
            step = per_row(s["step"], x0)
            direction = s["grad"].sign() if norm == "linf" else _normalise(s["grad"], norm)
            z = _project(x0, x_cur + step * direction, eps, norm)
            s["x_adv"] = _project(x0, x_cur + (z - x_cur) * a + momentum * (1 - a), eps, norm)
        loss_now, s["grad"], hit = evaluate(s["x_adv"], s["y"], s["t"])
        history[i] = loss_now
        loss_now = loss_now[drop(hit)]
        improved = loss_now > s["loss_best"]
        s["x_best"][improved] = s["x_adv"][improved]
        s["grad_best"][improved] = s["grad"][improved]
        s["loss_best"][improved] = loss_now[improved]
        counter += 1
        if counter == k:
            increases = sum((history[i - c] > history[i - c - 1]).float() for c in range(k))
            stalled = ~s["reduced_last_check"] & (s["loss_last_check"] >= s["loss_best"])
            reduce = (increases <= k * rho) | stalled
            s["reduced_last_check"] = reduce
            s["loss_last_check"] = s["loss_best"].clone()
            s["step"][reduce] /= 2.0
            s["x_adv"][reduce] = s["x_best"][reduce]
            s["grad"][reduce] = s["grad_best"][reduce]
            counter, k = 0, max(k - size_decr, n_iter_min)
    return out, fooled
