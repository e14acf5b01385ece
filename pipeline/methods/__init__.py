"""Training methods (losses) and add-ons: registries; each is one module registered by name."""

from . import alp, awp, lbgat, opt_jr, otjr, pgd_at, rand_jr, sat, sat_jr, sw, trades, xe  # noqa: F401  (registration)
from .addons import ADDONS, AddOn, AddOnSetup
from .base import METHODS, Guide, Loss, Method, NoParams, Setup, method_settings, register
from .runs import Run, parse_run

__all__ = ["METHODS", "ADDONS", "Method", "AddOn", "AddOnSetup", "Guide", "Loss", "NoParams", "Run", "Setup",
           "register", "method_settings", "parse_run"]
