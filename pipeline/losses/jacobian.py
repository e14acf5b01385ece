"""Input-output Jacobian penalty along given output directions (paper Eq. 3-5 and 12)."""

from __future__ import annotations

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
