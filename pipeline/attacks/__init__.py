"""Attacks: a registry keyed by result-schema names, and the evaluator that runs a suite."""

from . import autoattack, blackbox, boundary, gradient  # noqa: F401  (registration)
from .base import ATTACKS, Attack, register
from .evaluate import Evaluation, InvalidAdversarial, evaluate, summarise

__all__ = ["ATTACKS", "Attack", "register", "evaluate", "summarise", "Evaluation", "InvalidAdversarial"]
