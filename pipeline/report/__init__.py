"""Aggregation of per-run records into metrics/summary.* (`aggregate`) and the report (`build`)."""

from .aggregate import aggregate

__all__ = ["aggregate"]
