"""Aggregation of per-model records into tables (and, later, the report)."""

from .aggregate import aggregate

__all__ = ["aggregate"]
