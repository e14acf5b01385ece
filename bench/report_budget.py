"""Benchmark: the analyze and report stages for many runs on the embedded default.

Takes a project root where the default `dvc repro` has finished, copies its runs' results
(checkpoints, attack and sanity records, training logs) under new run names until there are
`--runs` of them, and times `analyze` + `report` in-process (add ~2.5 s of Python/torch
start-up per stage process under DVC).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/report_budget.py /path/to/finished/project --runs 14
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--runs", type=int, default=14)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (to look at the report)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="report-bench-"))
    for part in ("params.yaml", "data", "models", "metrics"):
        src = args.project / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / part)
    os.environ["OTJR_ROOT"] = str(work)

    from pipeline.analysis.run import analyze_dataset
    from pipeline.core import paths
    from pipeline.config import load_params
    from pipeline.report.build import build_report

    params = load_params()
    (ds,) = params.datasets
    runs = list(params.runs)
    i = 0
    while len(runs) < args.runs:
        src = params.runs[i % len(params.runs)]
        new = f"{src}_copy{i}"
        shutil.copy(paths.checkpoint(ds, src), paths.checkpoint(ds, new))
        shutil.copy(paths.attack_result(ds, src), paths.attack_result(ds, new))
        shutil.copy(paths.sanity_result(ds, src), paths.sanity_result(ds, new))
        shutil.copytree(paths.train_log_dir(ds, src), paths.train_log_dir(ds, new))
        runs.append(new)
        i += 1
    params = dataclasses.replace(params, runs=tuple(runs))
    tic = time.perf_counter()
    analyze_dataset(ds, params, show_progress=False)
    mid = time.perf_counter()
    build_report(params)
    end = time.perf_counter()
    print(f"{len(runs)} runs on {ds}: analyze {mid - tic:.1f} s, report {end - mid:.1f} s (in-process, "
          f"without start-up)")
    if args.keep:
        print(f"report: {work / 'metrics' / 'report' / 'report.md'}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
