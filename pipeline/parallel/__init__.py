"""`otjr repro -j N`: run the DVC graph's independent stages at once, each through DVC.

`plan` reads the stage graph and what is out of date from DVC; `devices` hands out GPUs; `executors` start a
stage here (a process) or on a Dask cluster; `schedule` starts each stage once its upstream stages are done.
"""

from .schedule import repro

__all__ = ["repro"]
