"""Publish a finished run's report under docs/: what was run, where, with what, then the report itself.

    python bench/publish_report.py --run DIR --out docs/results/NAME.md --command CMD --seconds S --preset NAME
        [--report metrics/sensitivity.md] [--sweep docs/results/SWEEP.md]

Copies DIR/metrics/report/report.md (or --report, relative to DIR) below a header (command, date, commit, machine, library
versions, wall time) and its figures next to the output, so the page reads on its own. --sweep puts a published
sensitivity sweep (itself a page of this tool) in the report's hyper-parameter section, which `dvc repro` leaves empty.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def machine() -> str:
    """CPU model and core count, and GPUs if any (from torch)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{os.cpu_count()} CPU cores ({cpu}); " + (f"GPU: {', '.join(gpus)}" if gpus else "no GPU")


def _threads(params: Path) -> str | None:
    """params.yaml's `threads` (torch threads per stage process; 0: torch's default)."""
    for line in params.read_text().splitlines() if params.is_file() else []:
        if line.startswith("threads:"):
            value = line.split(":", 1)[1].split("#", 1)[0].strip()
            return "torch's default" if value == "0" else value
    return None


def header(run: Path, command: str, seconds: int, preset: str, report: str = "metrics/report/report.md") -> list[str]:
    sys.path.insert(0, str(run))
    from pipeline.core.versions import library_versions

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(run), *args], capture_output=True, text=True).stdout.strip()

    # the code's commit: the one the run's clone started from (a sweep commits its baseline params on top)
    commit = git("rev-parse", "--short", git("merge-base", "HEAD", "origin/HEAD") or "HEAD") or "unknown"
    versions = ", ".join(f"{k} {v}" for k, v in sorted(library_versions().items()))
    threads = _threads(run / "params.yaml") or os.environ.get("OMP_NUM_THREADS", "torch's default")
    return [f"<!-- written by bench/publish_report.py from {run.name}'s {report}; do not edit -->", "",
            f"- Command: `{command}` (preset `{preset}`), commit {commit}",
            f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {seconds // 60} min {seconds % 60} s",
            f"- Machine: {machine()}; threads per process: {threads}; Python {platform.python_version()}",
            f"- Versions: {versions}", ""]


SENSITIVITY = "## Hyper-parameter sensitivity (paper Table 8)"


def with_sweep(body: list[str], sweep: Path) -> list[str]:
    """`body` with its sensitivity section's text replaced by the page `sweep`: its header (command, date, wall
    time) and tables, headings one level down, and a link to it."""
    if SENSITIVITY not in body:
        sys.exit(f"the report has no section {SENSITIVITY!r} to put {sweep} in")
    start = body.index(SENSITIVITY) + 1
    end = next((i for i in range(start, len(body)) if body[i].startswith("## ")), len(body))
    lines = [line for line in sweep.read_text().splitlines()[1:] if not line.startswith("<!--")]  # no title
    lines = ["#" + line if line.startswith("#") else line for line in lines]
    return [*body[:start], "", f"Published on its own as [{sweep.name}]({sweep.name}); copied here.", *lines, "",
            *body[end:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--report", default="metrics/report/report.md", help="the page to publish, relative to --run")
    ap.add_argument("--sweep", type=Path, help="a published sensitivity sweep to put in the report")
    a = ap.parse_args()
    report = a.run / a.report
    if not report.is_file():
        sys.exit(f"{report}: no report (did dvc repro finish?)")
    lines = report.read_text().splitlines()
    title, body = (lines[0], lines[1:]) if lines and lines[0].startswith("# ") else ("# Report", lines)
    if a.sweep:
        body = with_sweep(body, a.sweep)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join([title, "", *header(a.run, a.command, a.seconds, a.preset, a.report), *body]) + "\n")
    figures = report.parent / "figures"
    if figures.is_dir():
        shutil.copytree(figures, a.out.parent / "figures", dirs_exist_ok=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
