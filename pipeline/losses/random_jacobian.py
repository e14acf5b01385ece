"""Random-projection Jacobian penalty (Hoffman et al. 2019; paper Eq. 3-5).

The squared Frobenius norm of each sample's input-output Jacobian, estimated with random
unit output directions: C * ||v . J||^2 with v uniform on the sphere is unbiased for
||J||_F^2. `n_proj = -1` computes it exactly as the sum over an orthonormal basis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .jacobian import jacobian_penalty


def random_directions(batch: int, dim: int, device=None, dtype=torch.float32, generator=None) -> torch.Tensor:
    """(batch, dim): one direction per sample, uniform on the unit sphere S^(dim-1)."""
    v = torch.randn(batch, dim, device=device, dtype=dtype, generator=generator)
    return F.normalize(v, dim=1)


def random_jacobian_penalty(inputs: torch.Tensor, outputs: torch.Tensor, n_proj: int, generator=None) -> torch.Tensor:
    """Batch mean of the estimated ||J(x_i)||_F^2, with the graph kept for training.

    `n_proj >= 1` averages that many independent draws (fresh per sample and per draw);
    `n_proj == -1` is exact: sum over the C basis directions of ||e_c . J||^2 (no C factor).
    """
    batch, classes = outputs.shape
    if n_proj == -1:
        eye = torch.eye(classes, dtype=outputs.dtype, device=outputs.device)
        # jacobian_penalty scales by C (the estimator factor); a basis sum needs none.
        return sum(jacobian_penalty(inputs, outputs, eye[c].expand(batch, classes)) for c in range(classes)) / classes
    if n_proj < 1:
        raise ValueError(f"random_jacobian_penalty: n_proj must be >= 1 or -1, got {n_proj}")
    draws = [
        jacobian_penalty(
            inputs, outputs, random_directions(batch, classes, outputs.device, outputs.dtype, generator)
        )
        for _ in range(n_proj)
    ]
    return sum(draws) / n_proj
