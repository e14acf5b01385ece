"""Loss gradients the paper analyses: w.r.t. the input (Tables 5, 12) and per layer (Figs 4, 6).

Every loss is the per-example cross-entropy: inputs are attacked and differentiated with the
model in eval mode, so no example's gradient depends on the others in its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.passes import frozen
from ..core.pgd import pgd_linf


@dataclass(frozen=True)
class PGD:
    """The analyses' L-inf PGD on the cross-entropy (uniform random start when `random_start`)."""

    eps: float
    step: float
    random_start: bool

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int,
                 seed: int) -> torch.Tensor:
        """PGD-`steps` examples; the random starts come from a generator seeded with `seed` (the global
        stream is left alone), so PGD-k is the k-th iterate of any longer run from the same seed."""
        if steps == 0:
            return x.detach().clone()
        generator = torch.Generator(device=x.device).manual_seed(seed)
        chunks = []
        for i in range(0, len(y), batch_size):
            yb = y[i : i + batch_size]
            loss = lambda logits, yb=yb: F.cross_entropy(logits, yb, reduction="sum")
            chunks.append(pgd_linf(model, x[i : i + batch_size], loss, self.eps, self.step, steps, self.random_start,
                                   generator=generator))
        return torch.cat(chunks)


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-example d CE(f(x_i), y_i) / d x_i, same shape as `x`."""
    grads = []
    with frozen(model):
        for i in range(0, len(y), batch_size):
            xb = x[i : i + batch_size].detach().clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i : i + batch_size], reduction="sum")
            grads.append(torch.autograd.grad(loss, xb)[0])
    return torch.cat(grads)


def input_gradient_magnitude(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pgd: PGD, steps: list[int],
                             batch_size: int, seed: int) -> list[float]:
    """E ||grad_x CE||_1 per input element (pixel x channel) at the clean point (0) and after PGD-k."""
    out = []
    for k in steps:
        x_k = pgd(model, x, y, k, batch_size, seed)
        out.append(float(input_gradients(model, x_k, y, batch_size).abs().mean()))
    return out


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the parameters the layer ratios are reported for: conv and linear weights (ndim >= 2)."""
    return [name for name, p in model.named_parameters() if p.ndim >= 2]


def layer_gradient_ratios(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
                          ) -> dict[str, list[float]]:
    """Per parameter i and example j: ||grad_theta_i CE(x_adv_j)|| / ||grad_theta_i CE(x_j)|| (paper Fig. 4).

    Returns {parameter name: [ratio per example]} for every parameter with ndim >= 2, in
    registration order (the forward order of the registered architectures). An example whose
    clean gradient is exactly zero for a parameter gives NaN there (dropped by the caller's mean).
    """
    names = weight_layers(model)
    params = dict(model.named_parameters())
    tensors = [params[n] for n in names]
    ratios: dict[str, list[float]] = {n: [] for n in names}
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p in tensors:
        p.requires_grad_(True)
    try:
        for j in range(len(y)):
            norms = []
            for inputs in (x[j : j + 1], x_adv[j : j + 1]):
                loss = F.cross_entropy(model(inputs.detach()), y[j : j + 1])
                grads = torch.autograd.grad(loss, tensors)
                norms.append(torch.stack([g.double().norm() for g in grads]))
            clean, adv = norms
            ratio = torch.where(clean > 0, adv / clean.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)
            for name, r in zip(names, ratio.tolist()):
                ratios[name].append(r)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return ratios
