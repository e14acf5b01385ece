"""Where a stage runs: a process on this machine (`Local`) or a task on a Dask cluster (`Cluster`).

Either way the stage runs as `dvc --wait-for-lock repro --single-item STAGE` in the project folder, so DVC
hashes, caches and writes dvc.lock as `dvc repro` does (it releases its lock while the command runs).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.core.errors import UserError


def run_stage(root: str, name: str, log: str, env: dict[str, str], started=None) -> tuple[int, float, float]:
    """Run one stage through DVC, its output to `log`; return (exit code, start, end) in epoch seconds.
    A module-level function: Dask sends it to a worker, which must see `root` on a shared filesystem."""
    start = time.time()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", name],
                                cwd=root, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        if started is not None:
            started(proc)
        rc = proc.wait()
    return rc, start, time.time()


def kill_tree(pid: int, grace_s: float = 10) -> None:
    """SIGTERM a process and all its descendants (torchrun's ranks live in sessions of their own), then
    SIGKILL whatever still runs after `grace_s`."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


class Local:
    """Stages as child processes of this one, at most `jobs` at once."""

    def __init__(self, jobs: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def submit(self, root: str, name: str, log: str, env: dict[str, str], gpus: int):
        return self.pool.submit(self._run, root, name, log, env)

    def _run(self, root, name, log, env):
        box = []

        def started(proc):
            with self.lock:
                self.procs.add(proc)
            box.append(proc)

        try:
            return run_stage(root, name, log, env, started)
        finally:
            with self.lock:
                self.procs.difference_update(box)

    @staticmethod
    def wait(futures, timeout: float):
        return concurrent.futures.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED").done

    def stop(self) -> None:
        """Stop every running stage (each whole process tree) and the pool."""
        with self.lock:
            procs = list(self.procs)
        threads = [threading.Thread(target=kill_tree, args=(p.pid,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class Cluster:
    """Stages as tasks of a Dask cluster: a scheduler's address (`tcp://host:8786`), or a YAML config naming
    a dask-jobqueue cluster. Device stages ask for `GPU` resources when the first worker has some: start each
    GPU worker with `--resources GPU=1` and its own CUDA_VISIBLE_DEVICES."""

    def __init__(self, where: str):
        try:
            from distributed import Client
        except ImportError:
            raise UserError("--cluster needs Dask: pip install 'otjr-pipeline[cluster]'") from None
        self.cluster = jobqueue(Path(where)) if where.endswith((".yaml", ".yml")) else None
        self.futures: list = []
        try:
            self.client = Client(self.cluster or where, timeout="30s")
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(f"--cluster {where}: cannot reach the Dask scheduler ({err})") from None
        try:  # a batch system may take long to start a job; a running cluster has its workers
            self.client.wait_for_workers(1, timeout=None if self.cluster else 120)
        except TimeoutError:
            self.client.close()
            raise UserError(f"--cluster {where}: no Dask worker joined within 120 s") from None
        workers = self.client.scheduler_info()["workers"].values()
        self.gpus = any(w.get("resources", {}).get("GPU") for w in workers)

    def submit(self, root: str, name: str, log: str, env: dict[str, str], gpus: int):
        future = self.client.submit(run_stage, root, name, log, env, key=f"stage-{name}-{time.time_ns()}",
                                    pure=False, resources={"GPU": gpus} if gpus and self.gpus else None)
        self.futures.append(future)
        return future

    @staticmethod
    def wait(futures, timeout: float):
        from distributed import wait
        from distributed.client import TimeoutError as DaskTimeout

        try:
            return wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED").done
        except (TimeoutError, DaskTimeout):
            return set()

    def stop(self) -> None:
        """Cancel every stage not finished (a command already running on a worker runs to its end)."""
        self.client.cancel(self.futures)
        self.close()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def jobqueue(config: Path):
    """A dask-jobqueue cluster from a YAML file: `kind: slurm|pbs`, `jobs: N` and `cluster:` (its arguments)."""
    from ruamel.yaml import YAML

    kinds = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}
    try:
        spec = YAML(typ="safe", pure=True).load(config.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"--cluster {config}: cannot read it ({err})") from None
    if not isinstance(spec, dict) or spec.get("kind") not in kinds or not isinstance(spec.get("jobs"), int):
        raise UserError(f"--cluster {config}: needs `kind: slurm` or `kind: pbs`, `jobs: <count>` and `cluster:`"
                        " (dask-jobqueue's arguments)")
    try:
        import dask_jobqueue
    except ImportError:
        raise UserError("--cluster with a config needs dask-jobqueue: pip install 'otjr-pipeline[cluster]'") from None
    cluster = getattr(dask_jobqueue, kinds[spec["kind"]])(**(spec.get("cluster") or {}))
    cluster.scale(jobs=spec["jobs"])
    return cluster
