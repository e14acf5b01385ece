"""The losses OTJR is built from: sliced Wasserstein distance and the Jacobian penalty."""

from .jacobian import jacobian_penalty
from .sliced_wasserstein import random_projections, sliced_wasserstein

__all__ = ["sliced_wasserstein", "random_projections", "jacobian_penalty"]
