"""Input-output Jacobian penalty along given output directions (paper Eq. 3-5 and 12).

Exact (double backward, as the paper) or by a finite difference along the gradient (a speed option).
"""

from __future__ import annotations

from typing import Callable

import torch


def jacobian_penalty(inputs: torch.Tensor, outputs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """C * mean_i ||d(directions_i . outputs_i) / d inputs_i||^2, with the graph kept for training.

    `outputs` = model(inputs) with `inputs` requiring grad; `directions` (B, C) are treated as
    constants. The factor C is Hoffman et al.'s Frobenius-estimator scale: for directions
    uniform on the sphere this estimates the squared Frobenius norm of the Jacobian.
    """
    if not inputs.requires_grad:
        raise ValueError("jacobian_penalty: inputs must require grad (and outputs depend on them)")
    num_classes = outputs.shape[1]
    projected = (outputs * directions.detach()).sum()
    (grad,) = torch.autograd.grad(projected, inputs, create_graph=True)
    return num_classes * grad.pow(2).sum() / inputs.shape[0]


def finite_difference_jacobian_penalty(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    directions: torch.Tensor,
    step: float,
) -> torch.Tensor:
    """`jacobian_penalty` without double backward, by a finite difference along the gradient.

    With G(x) = sum_i directions_i . f(x)_i over the batch (what `jacobian_penalty`
    differentiates: sum_i ||dG/dx_i||^2 = ||grad G||^2) and D = grad G / ||grad G|| the
    detached unit direction of steepest ascent, the slope of G along D is ||grad G||, so

        C / B * ((G(x + s D) - G(x)) / s)^2,   s = step * sqrt(B),

    tends to the exact penalty as step -> 0 (s is scaled so that each sample moves by `step`
    in L2 on average), and so does its gradient in the weights; batch-norm's coupling of
    the samples is included, as in the exact value. The bias is O(step) (curvature, and
    ReLUs that switch between x and x + s D, which make the weight gradient differ a lot
    more than the value: see docs/benchmarks.md). `forward` maps inputs to fp32 logits
    (call it without autocast: the difference of two nearby bf16 logits is noise) and
    `outputs` = forward(inputs), with `inputs` requiring grad. Costs one input-gradient
    backward and one forward at x + s D instead of a double backward, and works under
    torch.compile.
    """
    if not inputs.requires_grad:
        raise ValueError("finite_difference_jacobian_penalty: inputs must require grad (and outputs depend on them)")
    batch, num_classes = outputs.shape
    dirs = directions.detach()
    g = (outputs * dirs).sum(1)
    (grad,) = torch.autograd.grad(g.sum(), inputs, retain_graph=True)
    grad = grad.detach()
    s = step * batch**0.5
    unit = grad / grad.norm().clamp_min(torch.finfo(grad.dtype).tiny)
    moved = (forward(inputs.detach() + s * unit) * dirs).sum(1)
    slope = (moved - g).sum() / s  # a sum of per-sample differences: no cancellation between samples
    return num_classes * slope.pow(2) / batch
