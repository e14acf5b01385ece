"""Minimum-norm attacks that walk to the decision boundary: FAB (untargeted and targeted) and DeepFool.

FAB is torchattacks' implementation of Croce & Hein (2020). FAB-T attacks the top
`n_target_classes` other classes of the clean logits, as AutoAttack does; instead of one
call per target class, the batch is repeated once per target and every row gets its own
target label (torchattacks' targeted mode with a label function). With one restart FAB
draws no random numbers, so this is the same computation; and a short run is the start
of a long one, which lets examples fooled early stop early (`fab_with_prefix`). Both
return an example only where the boundary point lies inside the eps-ball.

DeepFool is unbounded: its record gives the median L2 distance it needed and the accuracy
at the L2 budget (an example counts as fooled when DeepFool fooled it within eps). It runs
torchattacks' DeepFool update batched (torchattacks loops over images one by one).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Literal

import torch

from ..core.pgd import l2_norms
from ..core.schema import NonNegativeReal, PositiveBudget, PositiveInt, PositiveReal, Strict
from .base import Attack, register
from .counting import isolated_rng

TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}


class FABParams(Strict):
    norm: Literal["linf", "l2"]
    eps: PositiveBudget
    steps: PositiveInt
    restarts: PositiveInt
    alpha_max: PositiveReal
    eta: PositiveReal
    beta: PositiveReal


class FABTParams(FABParams):
    restarts: Literal[1]  # AutoAttack's FAB-T; targets share one batch, which needs a single run
    n_target_classes: PositiveInt


class DeepFoolParams(Strict):
    norm: Literal["l2"]
    eps: PositiveBudget
    steps: PositiveInt
    overshoot: NonNegativeReal


#: FAB's iterations are first run as a short prefix of this fraction (see `fab_with_prefix`).
PREFIX_FRACTION = 0.1
#: Memory for one batch's input Jacobian (classes x pixels per example), FAB's and DeepFool's.
JACOBIAN_BYTES = 2**30


def in_jacobian_chunks(attack_batch, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """`attack_batch(x, y)` on slices small enough for their Jacobians to fit `JACOBIAN_BYTES`.

    Examples are attacked independently, so slicing changes no result; it keeps ImageNet-sized
    inputs with 100 classes from asking for tens of gigabytes at once.
    """
    rows = max(1, JACOBIAN_BYTES // (4 * num_classes * x[0].numel()))
    return torch.cat([attack_batch(x[i : i + rows], y[i : i + rows]) for i in range(0, len(x), rows)])


def fab(model, norm: str, eps: float, steps: int, restarts: int, alpha_max: float, eta: float, beta: float,
        seed: int, num_classes: int):
    import torchattacks  # torchattacks takes seconds to import: only the attacks built on it load it

    return torchattacks.FAB(model, norm=TORCHATTACKS_NORM[norm], eps=eps, steps=steps, n_restarts=restarts,
                            alpha_max=alpha_max, eta=eta, beta=beta, seed=seed, multi_targeted=False,
                            n_classes=num_classes)


def fab_with_prefix(run, n: int, steps: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`run(rows, steps) -> (adv, fooled)` on all n rows with a tenth of the steps, then in full on the rest.

    FAB keeps the smallest adversarial perturbation it has met, and with one restart it
    draws no random numbers, so a short run is exactly the start of the full one: what it
    fools within eps, the full run fools too. Stopping those examples early changes no
    result (with more restarts the later random starts differ, and the attack can only
    gain); against an undefended model it saves nine tenths of the work.
    """
    prefix = max(1, int(steps * PREFIX_FRACTION))
    adv, fooled = run(torch.arange(n, device=device), prefix)
    rest = (~fooled).nonzero().flatten()
    if len(rest) and steps > prefix:
        adv[rest], fooled[rest] = run(rest, steps)
    return adv, fooled


def top_targets(model, x: torch.Tensor, n_targets: int) -> torch.Tensor:
    """(n_targets, batch): the classes ranked 2nd, 3rd, ... by the clean logits (AutoAttack's choice)."""
    with torch.no_grad():
        order = model(x).argsort(dim=1)
    return torch.stack([order[:, -rank] for rank in range(2, n_targets + 2)])


def fab_untargeted(model, x: torch.Tensor, y: torch.Tensor, *, seed: int, steps: int, **fab_args) -> torch.Tensor:
    def run(rows, k):
        attack = fab(model, steps=k, seed=seed, **fab_args)
        with isolated_rng(x.device):
            adv = attack(x[rows], y[rows]).to(x.dtype)  # torchattacks' FAB works in float32
        with torch.no_grad():
            return adv, model(adv).argmax(1) != y[rows]

    return fab_with_prefix(run, len(x), steps, x.device)[0]


def fab_targeted(model, x: torch.Tensor, y: torch.Tensor, *, n_targets: int, seed: int, steps: int,
                 **fab_args) -> torch.Tensor:
    """FAB-T over the top `n_targets` classes; per example the first target that succeeds.

    The most likely other class is attacked first, on its own; the remaining targets then
    run side by side, only on the examples it left unfooled (against an undefended model
    that is almost none, against a robust one two batched runs instead of nine).
    Expects clean-correct examples: torchattacks aligns the label function's output with
    the rows it attacks, which are only the correctly classified ones.
    """
    targets = top_targets(model, x, n_targets)
    out = x.clone()
    todo = torch.arange(len(x), device=x.device)
    for ranks in (range(0, 1), range(1, n_targets)):
        if not len(todo) or not len(ranks):
            continue
        chosen = targets[list(ranks)][:, todo]
        xs, ys = x[todo], y[todo]
        adv, hit = fab_with_prefix(
            lambda rows, k: _fab_rows(model, xs[rows], ys[rows], chosen[:, rows], seed, {**fab_args, "steps": k}),
            len(todo), steps, x.device)
        out[todo[hit]] = adv[hit]
        todo = todo[~hit]
    return out


def _fab_rows(model, x, y, targets, seed, fab_args) -> tuple[torch.Tensor, torch.Tensor]:
    """Targeted FAB with each of `targets` (rows: targets, columns: examples) in one batch."""
    k = len(targets)
    rows_x, rows_y = x.repeat(k, *([1] * (x.dim() - 1))), y.repeat(k)
    attack = fab(model, seed=seed, **fab_args)
    with contextlib.redirect_stdout(io.StringIO()):  # torchattacks announces mode changes on stdout
        attack.set_mode_targeted_by_function(lambda images, labels: targets.flatten())
    with isolated_rng(x.device):
        adv = attack(rows_x, rows_y).to(x.dtype)  # torchattacks' FAB works in float32
    with torch.no_grad():
        hit = (model(adv).argmax(1) != rows_y).view(k, len(x))
    first = hit.float().argmax(0)  # first successful target, 0 where none
    picked = adv.view(k, *x.shape)[first, torch.arange(len(x), device=x.device)]
    return picked, hit.any(0)


@register
class FAB(Attack):
    """Untargeted FAB (Croce & Hein 2020)."""

    kind = "fab"
    fp32_only = True  # see Attack.fp32_only
    Params = FABParams
    implementation = "torchattacks.FAB"
    cost = 40.0  # see Attack.cost

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        adv = in_jacobian_chunks(
            lambda xs, ys: fab_untargeted(model, xs, ys, seed=self.seed, norm=p.norm, eps=p.eps, steps=p.steps,
                                          restarts=p.restarts, alpha_max=p.alpha_max, eta=p.eta, beta=p.beta,
                                          num_classes=self.num_classes),
            x, y, self.num_classes)
        return self.within_budget(x, adv)


@register
class FABTargeted(Attack):
    """Targeted FAB over the top n_target_classes other classes (AutoAttack's FAB-T)."""

    kind = "fab_t"
    fp32_only = True  # see Attack.fp32_only
    Params = FABTParams
    implementation = "torchattacks.FAB"
    cost = 80.0  # see Attack.cost

    @property
    def n_targets(self) -> int:
        return min(self.params.n_target_classes, self.num_classes - 1)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        adv = fab_targeted(model, x, y, n_targets=self.n_targets, seed=self.seed, norm=p.norm, eps=p.eps,
                           steps=p.steps, restarts=p.restarts, alpha_max=p.alpha_max, eta=p.eta, beta=p.beta,
                           num_classes=self.num_classes)
        return self.within_budget(x, adv)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target_classes_used": self.n_targets}


def deepfool(model, x: torch.Tensor, y: torch.Tensor, *, steps: int, overshoot: float) -> torch.Tensor:
    """DeepFool's L2 step, batched: torchattacks.DeepFool's update for a whole batch at once.

    At each step an unfooled example moves to the linearised boundary of the closest other
    class, by (1 + overshoot) times the distance, and is clipped to [0, 1]; an example
    stops once fooled or after `steps` steps. torchattacks runs the same update one image
    at a time (tests check the two agree).
    """
    x_adv = x.detach().clone()
    active = torch.arange(len(x), device=x.device)
    rows = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        xa = x_adv[active].clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            grads = torch.stack([torch.autograd.grad(logits[:, c].sum(), xa, retain_graph=c + 1 < logits.shape[1])[0]
                                 for c in range(logits.shape[1])], dim=1)
        logits = logits.detach()
        ya = y[active]
        keep = logits.argmax(1) == ya
        if not keep.any():
            break
        active, logits, grads, ya, xa = active[keep], logits[keep], grads[keep], ya[keep], xa.detach()[keep]
        r = rows[: len(active)]
        f_diff = logits - logits[r, ya][:, None]  # f_k - f_y
        w_diff = grads - grads[r, ya][:, None]  # w_k - w_y
        w_norm = w_diff.flatten(2).norm(dim=2)
        value = f_diff.abs() / w_norm
        value[r, ya] = float("inf")
        best = value.argmin(1)
        w_best, f_best, n_best = w_diff[r, best], f_diff[r, best].abs(), w_norm[r, best]
        delta = w_best * (f_best / n_best**2).view(-1, *([1] * (x.dim() - 1)))
        x_adv[active] = (xa + (1 + overshoot) * delta).clamp(0, 1)
    return x_adv


@register
class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al. 2016); accuracy at the L2 budget, median distance recorded."""

    kind = "deepfool"
    fp32_only = True  # see Attack.fp32_only
    Params = DeepFoolParams
    implementation = "pipeline.attacks.boundary"
    cost = 8.0  # see Attack.cost

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._distances: list[torch.Tensor] = []

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        adv = in_jacobian_chunks(lambda xs, ys: deepfool(model, xs, ys, steps=p.steps, overshoot=p.overshoot),
                                 x, y, self.num_classes)
        with torch.no_grad():
            fooled = model(adv).argmax(1) != y
        distance = l2_norms((adv - x).double())
        self._distances.append(torch.where(fooled, distance, torch.full_like(distance, math.inf)).cpu())
        return torch.where((fooled & (distance <= p.eps)).view(-1, *([1] * (x.dim() - 1))), adv, x)

    def results(self) -> dict[str, Any]:
        """Median L2 distance over the attacked (clean-correct) examples; a failure counts as infinite."""
        d = torch.cat(self._distances) if self._distances else torch.empty(0, dtype=torch.float64, device="cpu")
        median = float(d.median()) if len(d) else math.nan
        return {"median_l2": median if math.isfinite(median) else None,
                "fooled_unbounded": int(torch.isfinite(d).sum()), "attacked": len(d)}

    def gathered(self) -> dict[str, torch.Tensor]:
        return {"distances": torch.cat(self._distances) if self._distances else torch.empty(0, dtype=torch.float64, device="cpu")}

    def restore(self, parts: list[dict[str, torch.Tensor]]) -> None:
        self._distances = [p["distances"] for p in parts]
