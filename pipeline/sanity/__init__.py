"""Sanity checks against gradient masking: what they measure (sweeps), the rules, and the stage that runs them."""

from .rules import RULES, Check, run_rules, tolerance_pp
from .sweeps import Context

__all__ = ["RULES", "Check", "Context", "run_rules", "tolerance_pp"]
