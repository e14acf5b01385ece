"""Training methods (losses): a registry; each method is one module registered by name."""

from . import otjr, pgd_at, xe  # noqa: F401  (registration)
from .addons import ADDONS
from .base import METHODS, Loss, Method, NoParams, Run, Setup, method_settings, parse_run, register

__all__ = ["METHODS", "ADDONS", "Method", "Loss", "NoParams", "Run", "Setup", "register", "method_settings", "parse_run"]
