"""Benchmark: robust accuracy of the fast paths against the fp32 reference path at matched seeds (embedded default).

Trains the given runs on digits with the default params.yaml under several `speed:` settings
and attacks each model with the default suite (FGSM, PGD-20 on the first `attack.n` test
images). The fp32 path is trained with two seeds: their difference is the noise that a
speed option has to stay within. Each configuration runs in its own scratch project and
process; training and attack in-process (no per-stage start-up).

    OMP_NUM_THREADS=1 python bench/speed_accuracy.py [--runs pgd_at otjr trades opt_jr rand_jr]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: name -> (seed, speed overrides)
CONFIGS = {
    "fp32 seed 0": (0, {}),
    "fp32 seed 1": (1, {}),
    "bf16 seed 0": (0, {"precision": "bf16"}),
    "bf16+channels_last seed 0": (0, {"precision": "bf16", "channels_last": True}),
    "finite_difference h=1e-2 seed 0": (0, {"jacobian": "finite_difference", "fd_step": 1e-2}),
    "finite_difference h=0.1 seed 0": (0, {"jacobian": "finite_difference", "fd_step": 0.1}),
}


def one_config(root: Path, seed: int, speed: dict, runs: list[str]) -> dict:
    """Train and attack `runs` in `root` (called in a fresh process)."""
    import torch
    from ruamel.yaml import YAML

    torch.set_num_threads(1)
    os.environ["OTJR_ROOT"] = str(root)
    yaml = YAML(typ="safe", pure=True)
    params = yaml.load((REPO / "params.yaml").read_text())
    params["seed"] = seed
    params.setdefault("speed", {}).update(speed)
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)
    from pipeline import api
    from pipeline.core.io import read_json

    api.download("digits")
    api.preprocess("digits")
    out = {}
    for run in runs:
        tic = time.perf_counter()
        api.train("digits", run)
        seconds = time.perf_counter() - tic
        record = read_json(api.attack("digits", run))
        out[run] = {"clean": record["clean"]["accuracy"], "fgsm": record["fgsm"]["accuracy"],
                    "pgd20": record["pgd20"]["accuracy"], "n": record["n"], "train_s": round(seconds, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["pgd_at", "otjr", "trades", "opt_jr", "rand_jr"])
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-speed-accuracy"))
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        seed, speed = CONFIGS[args.config]
        print(json.dumps(one_config(args.root, seed, speed, args.runs)))
        return
    results = {}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for i, name in enumerate(CONFIGS):
        root = args.root / f"config{i}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        proc = subprocess.run([sys.executable, __file__, "--config", name, "--root", str(root), "--runs", *args.runs],
                              env=env, check=True, capture_output=True, text=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    n = next(iter(next(iter(results.values())).values()))["n"]
    print(f"digits, default params, attack.n = {n} test images; accuracy in percent (clean / FGSM / PGD-20), "
          f"training seconds in-process (load average {os.getloadavg()[0]:.2f})\n")
    print("| run | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for run in args.runs:
        cells = []
        for name in results:
            r = results[name][run]
            cells.append(f"{r['clean']:.1f} / {r['fgsm']:.1f} / **{r['pgd20']:.1f}** ({r['train_s']:.0f} s)")
        print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
