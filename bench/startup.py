"""Benchmark: per-process cost of stage processes, for two checkouts of the pipeline (before / after).

`dvc repro` starts one `python -m pipeline stage ...` process per stage, so what a process
spends before its real work is paid ~45 times by the default pipeline. For each checkout
this runs, in a scratch project on the embedded digits data, `stage train --method xe`
(1 epoch: about 0.1 s of training) and `stage attack --method xe` `--runs` times each,
interleaving the checkouts, and prints the median wall and CPU (user + sys) time per stage
process, and which of torch._dynamo / torchvision a training process imported.

    OMP_NUM_THREADS=1 python bench/startup.py --before /path/to/old/checkout [--after .] [--runs 5]

(`git worktree add /tmp/before <commit>` makes an old checkout.)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORTED = ("import sys, runpy; sys.argv = ['pipeline', 'stage', 'train', '--dataset', 'digits', '--method', 'xe'];"
            "\ntry:\n    runpy.run_module('pipeline', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('imported:', ','.join(m for m in ('torch._dynamo', 'torchvision') if m in sys.modules) or 'none')")


def run(code: Path, root: Path, *argv: str) -> tuple[float, float, str]:
    env = {**os.environ, "PYTHONPATH": str(code), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=root, env=env, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - tic, cpu, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout measured first (e.g. main)")
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-startup"))
    args = parser.parse_args()

    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    roots = {}
    for name, code in checkouts.items():
        root = args.root / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        text = (code / "params.yaml").read_text().replace("epochs: 8 ", "epochs: 1 ")
        (root / "params.yaml").write_text(text)
        for stage in ("download", "preprocess"):
            run(code, root, "-m", "pipeline", "stage", stage, "--dataset", "digits")
        roots[name] = root
    times = {(name, stage): [] for name in checkouts for stage in ("train", "attack")}
    for _ in range(args.runs):
        for name, code in checkouts.items():
            for stage in ("train", "attack"):
                wall, cpu, _ = run(code, roots[name], "-m", "pipeline", "stage", stage, "--dataset", "digits",
                                   "--method", "xe")
                times[(name, stage)].append((wall, cpu))
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.runs} processes each\n")
    print("| checkout | stage | wall (s) | CPU (s) | a training process imports |")
    print("|---|---|---:|---:|---|")
    for name, code in checkouts.items():
        imported = run(code, roots[name], "-c", IMPORTED)[2].strip().splitlines()[-1].removeprefix("imported: ")
        for stage in ("train", "attack"):
            wall = statistics.median(w for w, _ in times[(name, stage)])
            cpu = statistics.median(c for _, c in times[(name, stage)])
            print(f"| {name} ({code.name}) | {stage} xe | {wall:.2f} | {cpu:.2f} | {imported} |")


if __name__ == "__main__":
    main()
