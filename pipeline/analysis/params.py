"""The `analysis:` block of params.yaml: sizes and the adversary of the paper's analyses."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..core.schema import LinfBudget, NonNegativeInt, PositiveBudget, PositiveInt, PositiveReal, Strict


class CrossSectionParams(Strict):
    """2-D slices of input space around test images (paper Fig. 9)."""

    images: PositiveInt = Field(description="test images sliced (the first ones every model classifies correctly)")
    resolution: int = Field(ge=3, description="grid points per side; odd, so the centre is the image itself")
    radius: PositiveReal = Field(description="half-width of the slice in units of eps*sqrt(input size)")

    @field_validator("resolution")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd so that the centre grid point is the image itself")
        return value


class AnalysisParams(Strict):
    """What `otjr stage analyze` computes, on the first `n` test images of each dataset."""

    n: PositiveInt = Field(description="test images for gradient magnitudes and activations")
    batch_size: PositiveInt
    eps: LinfBudget = Field(description="L-inf budget of the analyses' PGD (the paper: 8/255)")
    step: PositiveBudget = Field(description="PGD step size (the paper: 2/255)")
    random_start: bool
    grad_steps: list[NonNegativeInt] = Field(min_length=1, description="PGD-k iterates whose input gradient is measured; 0 = clean")
    adv_steps: PositiveInt = Field(description="PGD steps of the adversarial examples for activations and layer ratios")
    ratio_n: PositiveInt = Field(description="test images for the per-layer gradient ratios (one backward pass each)")
    cross_section: CrossSectionParams

    @field_validator("grad_steps")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if sorted(set(value)) != value:
            raise ValueError("must be strictly increasing, e.g. [0, 1, 5, 10, 15, 20]")
        return value
