"""The attacks of one evaluation spread over forked worker processes on the CPU (`attack.workers`).

Each block of an attack runs in its own seeded RNG (`counting.isolated_rng`), so where it runs
changes nothing: a child forked after the clean pass inherits the model, the data and the attack
objects, runs one block of one attack per job on one torch thread (as the parent does), and sends
back its outcome with what the attack gathered. The dearest blocks go first, so every worker
starts on AutoAttack and the cheap attacks fill in at the end.

Used only on the CPU, with one torch thread, and where `fork` exists: CUDA cannot be forked,
and a result is bit-identical only at the same thread count in every process (with several
threads per process the workers would also oversubscribe the cores). Anything else runs the
attacks one after the other in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from typing import Callable, Mapping, TypeVar

import torch

T = TypeVar("T")

#: The jobs of the pool being run; forked children inherit them (set only while a pool is open).
_JOBS: dict[str, Callable[[], object]] = {}


def resolve_workers(workers: int | str, n_jobs: int) -> int:
    """`auto`: the CPUs this process may use; never more processes than jobs (at least 1)."""
    if workers == "auto":
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(int(workers), n_jobs))


def can_fork(workers: int, device: torch.device) -> bool:
    """Whether `workers` processes can run the jobs with results identical to a sequential run."""
    return (workers > 1 and device.type == "cpu" and torch.get_num_threads() == 1
            and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)  # a pool's worker may not have children


def run_jobs(jobs: Mapping[str, Callable[[], T]], cost: Mapping[str, float], workers: int | str,
             device: torch.device, on_done: Callable[[str], None] | None = None) -> dict[str, T]:
    """Every job's result, keyed in `jobs`' order; `on_done(name)` as each finishes.

    Spread over worker processes where `can_fork` allows, the dearest (`cost`) first; else
    one after the other in `jobs`' order. A job's exception is raised here, type and message kept.
    """
    n = resolve_workers(workers, len(jobs))
    if not can_fork(n, device):
        return {name: _done(name, job(), on_done) for name, job in jobs.items()}
    order = sorted(jobs, key=lambda name: -cost[name])  # stable: equal costs keep the suite's order
    finished: dict[str, T] = {}
    _JOBS.update(jobs)
    try:
        with _pool(n) as pool:
            for name, payload in pool.imap_unordered(_run_job, order, chunksize=1):
                finished[name] = _done(name, pickle.loads(payload), on_done)
    finally:
        _JOBS.clear()
    return {name: finished[name] for name in jobs}


def _done(name: str, result: T, on_done: Callable[[str], None] | None) -> T:
    if on_done:
        on_done(name)
    return result


def _pool(workers: int):
    """A pool of forked children, each on one torch thread (tests replace this to see it is not used)."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,))


def _run_job(name: str) -> tuple[str, bytes]:
    """In a child: run job `name`; its result pickled plainly (tensors as bytes, no shared memory)."""
    return name, pickle.dumps(_JOBS[name]())
