"""Decision-boundary cross-sections (paper Fig. 9).

The predicted class on a 2-D slice of input space through a test image x: the points
x + a*u + b*v, with u the unit direction of the model's own adversarial perturbation and
v a random unit direction orthogonal to u (the same random draw for every model). The
slice is not clipped to [0, 1], so it stays a plane; the centre grid point is x itself.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.passes import predict


def plane(delta: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal (u, v): u along `delta` (a random direction if `delta` is zero), v random and orthogonal to u."""
    flat = delta.flatten().double()
    r1 = torch.randn(flat.numel(), generator=generator, dtype=torch.float64, device=generator.device)
    r2 = torch.randn(flat.numel(), generator=generator, dtype=torch.float64, device=generator.device)
    u = flat if float(flat.norm()) > 0 else r1
    u = u / u.norm()
    v = r2 - (r2 @ u) * u
    v = v / v.norm()
    return u.view_as(delta), v.view_as(delta)


def grid_coordinates(radius: float, resolution: int) -> torch.Tensor:
    """`resolution` evenly spaced coordinates in [-radius, radius]; the middle one is exactly 0."""
    half = resolution // 2
    return torch.arange(-half, half + 1, dtype=torch.float64, device="cpu") * (radius / half)


def decision_grid(model: nn.Module, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, coords: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
    """(R, R) predicted classes; entry [i, j] is the prediction at x + coords[j]*u + coords[i]*v
    (rows follow v, columns follow u, as an image with the adversarial direction horizontal)."""
    b, a = torch.meshgrid(coords, coords, indexing="ij")
    points = x.double().unsqueeze(0) + a.reshape(-1, *[1] * x.dim()) * u + b.reshape(-1, *[1] * x.dim()) * v
    points = points.to(x.dtype)
    was_training = model.training
    model.eval()
    try:
        labels = predict(model, points, batch_size)
    finally:
        model.train(was_training)
    return labels.view(len(coords), len(coords))
