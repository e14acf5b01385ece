"""Add-ons that wrap a method's training step (AWP, LBGAT): registry."""

from __future__ import annotations

from ..core.registry import Registry

ADDONS: Registry[type] = Registry("add-on")
