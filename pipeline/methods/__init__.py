"""Training methods (losses) and add-ons: registries; each is one module, named like it and imported
when first asked for (`METHODS.get`), so a training loads only its own method and add-on."""

from .addons import ADDONS, AddOn, AddOnSetup
from .base import METHODS, Guide, Loss, Method, NoParams, Setup, method_settings, register
from .runs import Run, parse_run, variants_from

__all__ = ["METHODS", "ADDONS", "Method", "AddOn", "AddOnSetup", "Guide", "Loss", "NoParams", "Run", "Setup",
           "register", "method_settings", "parse_run", "variants_from"]
