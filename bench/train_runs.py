"""Benchmark: wall and CPU time of every training stage of params.yaml's runs, on one dataset.

Runs `python -m pipeline stage train` once per run (a fresh process each, as under DVC) in a
scratch project root holding a copy of params.yaml, and prints a markdown table with the
stage's wall time, its CPU time (user + sys: close to the wall time on an idle machine
with OMP_NUM_THREADS=1, and less sensitive to other load), the trainer's own training
seconds, and the final per-epoch validation accuracies (clean / training-adversary PGD).

    OMP_NUM_THREADS=1 python bench/train_runs.py [--dataset digits] [--root /tmp/bench-train]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-train-runs"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from pipeline.models import read_checkpoint
    from pipeline.config import load_params

    shutil.rmtree(args.root, ignore_errors=True)
    args.root.mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", args.root / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(args.root), "OMP_NUM_THREADS": "1"}

    def stage(*argv: str) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "stage", *argv], cwd=args.root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter() - tic, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    stage("download", "--dataset", args.dataset)
    stage("preprocess", "--dataset", args.dataset)
    params = load_params(args.root / "params.yaml")
    print(f"load average before: {os.getloadavg()[0]:.2f}; model {params.model.name} {params.model.args}, "
          f"{params.train.epochs} epochs, batch {params.train.batch_size}\n")
    print("| run | stage wall (s) | stage CPU (s) | training (s) | val clean (%) | val PGD (%) |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0.0, 0.0]
    for run in params.runs:
        wall, cpu = stage("train", "--dataset", args.dataset, "--method", run)
        totals[0] += wall
        totals[1] += cpu
        _, info = read_checkpoint(args.root / "models" / args.dataset / f"{run}.safetensors")
        final = info["final"]
        print(f"| {run} | {wall:.1f} | {cpu:.1f} | {info['train_seconds']:.1f} | "
              f"{final.get('val/clean_acc', float('nan')):.1f} | {final.get('val/pgd_acc', float('nan')):.1f} |",
              flush=True)
    print(f"| **total** | {totals[0]:.1f} | {totals[1]:.1f} | | | |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
