"""`otjr bench`: training-step time of methods on the current device, fast path against a straightforward reference."""

from .run import bench

__all__ = ["bench"]
