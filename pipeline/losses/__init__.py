"""The losses the methods are built from: sliced Wasserstein distance, Jacobian penalties, Sinkhorn divergence."""

from .jacobian import jacobian_penalty
from .random_jacobian import random_directions, random_jacobian_penalty
from .sinkhorn import entropic_ot, sinkhorn_divergence
from .sliced_wasserstein import random_projections, sliced_wasserstein

__all__ = [
    "sliced_wasserstein", "random_projections", "jacobian_penalty",
    "random_directions", "random_jacobian_penalty", "entropic_ot", "sinkhorn_divergence",
]
