"""Score-based black-box attacks: Square (torchattacks) and SimBA-DCT (ours, L-inf bounded).

Both only query the model's outputs, so they are immune to masked gradients: sanity rule 6
compares them with the white-box attacks. Both stop querying an example once it is fooled.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.schema import PositiveBudget, PositiveInt, PositiveReal, Strict
from .base import Attack, register
from .boundary import TORCHATTACKS_NORM
from .counting import isolated_rng


class SquareParams(Strict):
    norm: Literal["linf", "l2"]
    eps: PositiveBudget
    queries: PositiveInt
    restarts: PositiveInt
    p_init: PositiveReal
    loss: Literal["margin", "ce"]
    rescale_schedule: bool  # squeeze the schedule of p (written for 10,000 queries) into `queries`


class SimBAParams(Strict):
    norm: Literal["linf"]
    eps: PositiveBudget
    step: PositiveReal  # alpha: step along one orthonormal DCT basis vector (unit L2 norm)
    max_iters: PositiveInt  # directions tried; at most channels * freq_dims**2 exist
    freq_dims: PositiveInt  # low-frequency block: DCT frequencies (u, v) with u, v < freq_dims


def square(model, x, y, *, norm: str, eps: float, queries: int, restarts: int, p_init: float, loss: str,
           rescale_schedule: bool, seed: int) -> torch.Tensor:
    import torchattacks  # torchattacks takes seconds to import: only the attacks built on it load it

    attack = torchattacks.Square(model, norm=TORCHATTACKS_NORM[norm], eps=eps, n_queries=queries,
                                 n_restarts=restarts, p_init=p_init, loss=loss, resc_schedule=rescale_schedule,
                                 seed=seed)
    with isolated_rng(x.device):
        return attack(x, y)


@register
class Square(Attack):
    """Square attack (Andriushchenko et al. 2020): random square updates on the margin loss."""

    kind = "square"
    fp32_only = True  # see Attack.fp32_only
    Params = SquareParams
    implementation = "torchattacks.Square"
    access = "black-box"
    cost = 15.0  # see Attack.cost

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        adv = square(model, x, y, norm=p.norm, eps=p.eps, queries=p.queries, restarts=p.restarts, p_init=p.p_init,
                     loss=p.loss, rescale_schedule=p.rescale_schedule, seed=self.seed)
        return self.within_budget(x, adv)


def dct_matrix(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II basis: row k is the k-th basis vector of length n."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    basis = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype)


def simba(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, order: torch.Tensor,
          freq_dims: int) -> torch.Tensor:
    """SimBA-DCT (Guo et al. 2019) with every iterate projected onto the L-inf eps-ball.

    `order` lists direction indices c * freq_dims**2 + u * freq_dims + v. For each direction
    q, every unfooled example tries x - step*q, then x + step*q, and keeps the first that
    lowers the probability of its true class. All examples share the direction, as in the
    authors' batched code; an example stops once fooled.
    """
    _, h, w = x.shape[1:]
    rows_h, rows_w = dct_matrix(h, x.dtype, x.device), dct_matrix(w, x.dtype, x.device)
    x_adv = x.clone()
    with torch.no_grad():
        prob = F.softmax(model(x), dim=1).gather(1, y[:, None]).squeeze(1)
        active = torch.arange(len(x), device=x.device)
        for d in order.tolist():
            if not len(active):
                break
            c, rest = divmod(d, freq_dims * freq_dims)
            u, v = divmod(rest, freq_dims)
            q = torch.zeros_like(x[0])
            q[c] = rows_h[u][:, None] * rows_w[v][None, :]
            fooled = torch.zeros(len(active), dtype=torch.bool, device=x.device)
            undecided = torch.arange(len(active), device=x.device)
            for sign in (-1.0, 1.0):
                rows = active[undecided]
                candidate = (x[rows] + (x_adv[rows] + sign * step * q - x[rows]).clamp(-eps, eps)).clamp(0, 1)
                logits = model(candidate)
                p_new = F.softmax(logits, dim=1).gather(1, y[rows][:, None]).squeeze(1)
                better = p_new < prob[rows]
                x_adv[rows[better]] = candidate[better]
                prob[rows[better]] = p_new[better]
                fooled[undecided[better]] = logits.argmax(1)[better] != y[rows[better]]
                undecided = undecided[~better]
                if not len(undecided):
                    break
            active = active[~fooled]
    return x_adv


@register
class SimBA(Attack):
    """SimBA-DCT over a random order of low-frequency directions, L-inf bounded by eps."""

    kind = "simba"
    Params = SimBAParams
    implementation = "pipeline.attacks.blackbox"
    access = "black-box"
    cost = 25.0  # see Attack.cost

    def check_input(self, shape: tuple[int, ...]) -> None:
        if self.params.freq_dims > min(shape[-2:]):
            raise UserError(f"attack.simba.freq_dims: {self.params.freq_dims} exceeds the image size {tuple(shape[-2:])}")

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        n_dirs = x.shape[1] * p.freq_dims**2
        order = torch.randperm(n_dirs, device="cpu")[: p.max_iters]
        return simba(model, x, y, eps=p.eps, step=p.step, order=order, freq_dims=p.freq_dims)
