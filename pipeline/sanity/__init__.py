"""Sanity checks against gradient masking: rules, sweeps, and the stage that runs them."""

from .rules import RULES, Check, Context, run_rules, tolerance_pp

__all__ = ["RULES", "Check", "Context", "run_rules", "tolerance_pp"]
