"""Attacks: a registry of attack kinds (params.yaml configures the named instances), and the evaluator."""

from . import autoattack, blackbox, boundary, gradient  # noqa: F401  (registration)
from .base import ATTACKS, Attack, build, register
from .evaluate import Evaluation, InvalidAdversarial, evaluate, summarise

__all__ = ["ATTACKS", "Attack", "build", "register", "evaluate", "summarise", "Evaluation", "InvalidAdversarial"]
