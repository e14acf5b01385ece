"""Sanity checks against gradient masking: rules, sweeps, and the stage that runs them."""

from .rules import RULES, Check, Context, tolerance_pp

__all__ = ["RULES", "Check", "Context", "tolerance_pp"]
