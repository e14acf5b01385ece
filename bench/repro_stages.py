"""Where a `dvc repro` spends its time: wall seconds per stage, from DVC's own output.

    python bench/repro_stages.py [--out times.json] [-- DVC_REPRO_ARGS...]   (e.g. -- -f)

Runs `dvc repro` in the current project, stamps each line DVC prints, and counts a stage from
its "Running stage" line to the next one (so DVC's own work after a stage, writing dvc.lock,
is the stage's). Prints the total per stage kind (code, train, attack, ...) and writes every
stage's seconds, the load average and the command to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone

STAGE = re.compile(r"Running stage '([^']+)'")


def stage_seconds(stamped: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds from each stage's start line to the next stage's (the last one's: to `end`)."""
    starts = [(t, m.group(1)) for t, line in stamped if (m := STAGE.search(line))]
    return {name: round((starts[i + 1][0] if i + 1 < len(starts) else end) - t, 2)
            for i, (t, name) in enumerate(starts)}


def kind(stage: str) -> str:
    """`train-otjr-awp@digits` -> train; `attack@digits-otjr` -> attack."""
    return stage.split("@")[0].split("-")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("repro_args", nargs="*")
    args = parser.parse_args()
    command = ["dvc", "repro", *args.repro_args]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    stamped: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            stamped.append((time.perf_counter() - t0, line))
            sys.stdout.write(line)
    end = time.perf_counter() - t0
    seconds = stage_seconds(stamped, end)
    totals: dict[str, list[float]] = {}
    for name, s in seconds.items():
        totals.setdefault(kind(name), []).append(s)
    print(f"\n{'stage kind':<12} {'stages':>6} {'seconds':>8}")
    for k, values in totals.items():
        print(f"{k:<12} {len(values):>6} {sum(values):>8.1f}")
    print(f"{'total':<12} {len(seconds):>6} {end:>8.1f}   (exit code {proc.returncode})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": " ".join(command), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "exit_code": proc.returncode, "wall_s": round(end, 2), "load_before": load_before,
                       "load_after": os.getloadavg(), "cpus": os.cpu_count(),
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "stages": seconds}, f, indent=1)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
