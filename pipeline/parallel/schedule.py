"""Start each stage once the stages it depends on are done, at most `jobs` slots at once; GPUs of their own."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

from pipeline.core.errors import UserError

from . import devices
from .plan import Stage, plan

#: Per-stage logs and the last run's record (start/end/exit code per stage), git-ignored staging state.
STATE_DIR = Path(".otjr") / "repro"


def log_path(root: Path, name: str) -> Path:
    return root / STATE_DIR / "logs" / (re.sub(r"[^A-Za-z0-9@._-]", "_", name) + ".log")


def repro(where: Path = Path("."), targets: list[str] | None = None, jobs: int | None = None,
          gpus: list[str] | None = None, cluster: str | None = None) -> int:
    """Reproduce `targets` (every stage without) like `dvc repro`, independent stages at once; return the exit
    code: 0, 1 when a stage failed (its dependents are not run; the others are), 130 when interrupted.
    `jobs`: slots (None: 1 here, no limit on a cluster); `gpus`: GPU ids (None: detect; here only)."""
    root, stages, fresh = plan(where, targets)
    ids = [] if cluster else (devices.detect() if gpus is None else gpus)
    for s in stages:
        if ids and s.device and s.ranks > len(ids):
            raise UserError(f"stage {s.name} needs {s.ranks} GPUs; there are {len(ids)} ({','.join(ids)})")
    jobs = jobs or (max(len(stages), 1) if cluster else 1)
    from .executors import Cluster, Local

    executor = (Cluster(cluster) if cluster else Local(jobs)) if stages else None  # bad --cluster: exit 2 here
    say(f"{len(stages)} stages to run ({fresh} up to date), at most {jobs} at once"
        + (f" on {cluster}" if cluster else f", GPUs: {','.join(ids)}" if ids else ""))
    if executor is None:
        return 0
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _loop(root, stages, jobs, devices.Pool(ids), executor)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def say(line: str) -> None:
    print(f"otjr repro: {line}", file=sys.stderr, flush=True)


def _loop(root: Path, stages: list[Stage], jobs: int, pool: devices.Pool, executor) -> int:
    from pipeline.core.progress import progress

    waiting = {s.name: s for s in stages}
    running: dict = {}  # future -> (stage, its GPUs, its slots)
    done, failed, skipped, record = set(), {}, [], {}
    free = jobs
    interactive = sys.stderr.isatty()
    with progress(interactive) as bar:
        task = bar.add_task("stages", total=len(stages), info="")
        try:
            while waiting or running:
                for s in list(waiting.values()):
                    if any(u in failed or u in skipped for u in s.upstream):
                        skipped.append(waiting.pop(s.name).name)
                        continue
                    slots = min(s.ranks, jobs)
                    if slots > free or not all(u in done for u in s.upstream):
                        continue
                    taken = pool.take(s.ranks if s.device and pool.ids else 0)
                    if taken is None:
                        continue
                    env = {"CUDA_VISIBLE_DEVICES": ",".join(taken)} if pool.ids else {}
                    future = executor.submit(str(root), s.name, str(log_path(root, s.name)), env,
                                             s.ranks if s.device else 0)
                    running[future] = (waiting.pop(s.name), taken, slots)
                    free -= slots
                if not running:
                    break
                bar.update(task, completed=len(done) + len(failed),
                           info=f"running {len(running)}: {', '.join(r[0].name for r in running.values())}; "
                                f"waiting {len(waiting)}")
                for future in executor.wait(list(running), timeout=1.0):
                    s, taken, slots = running.pop(future)
                    pool.give(taken)
                    free += slots
                    try:
                        rc, start, end = future.result()
                    except Exception as err:  # the executor lost it (a Dask worker died): the stage failed
                        rc, start, end = -1, None, None
                        say(f"{s.name}: {type(err).__name__}: {err}")
                    record[s.name] = {"start": start, "end": end, "exit": rc, "gpus": taken}
                    if rc == 0:
                        done.add(s.name)
                    else:
                        failed[s.name] = rc
                    if not interactive:
                        say(f"{s.name}: {'done' if rc == 0 else f'FAILED (exit {rc})'}"
                            + (f" in {end - start:.1f} s" if start is not None else ""))
            bar.update(task, completed=len(done) + len(failed), info="")
        except KeyboardInterrupt:
            executor.stop()
            _write(root, record)
            say(f"interrupted: stopped {len(running)} running stage(s): "
                + ", ".join(r[0].name for r in running.values()))
            return 130
    executor.close()
    _write(root, record)
    for name, rc in failed.items():
        print(f"error: stage {name} failed (exit {rc}); its log: {log_path(root, name).relative_to(root)}",
              file=sys.stderr)
    if skipped:
        say(f"not run, after a failed stage: {', '.join(skipped)}")
    return 1 if failed else 0


def _write(root: Path, record: dict) -> None:
    """.otjr/repro/run.json: each stage's start, end (epoch seconds), exit code and GPUs, of the last run."""
    path = root / STATE_DIR / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
