"""Benchmark of the attack suite: forward-equivalents per test image and wall time.

Measures, for trained checkpoints of the embedded default (or any dataset), what the full
suite in params.yaml costs: per attack the image-passes through the model (forward +
2 x backward = forward-equivalents) per test image and the seconds taken, in-process; with
--stage also the wall time of the attack and sanity stage processes (start-up included).
It then estimates the cost of the same suite for PreActResNet18 and WRN-34-10 on 10,000
CIFAR-shaped images from those forward-equivalents and the models' FLOPs; that part is an
ESTIMATE (no GPU measured), printed as such.

    python bench/attack_suite.py                    # xe and pgd_at of the default dataset
    python bench/attack_suite.py --runs pgd_at --n 200 --stage
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Assumed sustained TF32 throughput of one H100 on these convnets, low and high (FLOP/s).
H100_TF32_SUSTAINED = (60e12, 150e12)
CIFAR_IMAGES = 10_000

from pipeline.benchmark.attack_cost import robust_example_cost  # noqa: E402  (after the path insert)


def model_flops(name: str) -> float | None:
    """FLOPs of one forward pass of registered model `name` on a 3x32x32 image (None if not registered)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.models import MODELS, create

    if name not in MODELS:
        return None
    model = create(name, num_classes=10, in_channels=3).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    return float(counter.get_total_flops())


def bench_run(dataset: str, run: str, params, n: int) -> dict:
    import torch

    from pipeline.attacks import evaluate, summarise
    from pipeline.attacks.run import build_suite
    from pipeline.models.subject import load_for_dataset, test_subset

    model, _, meta = load_for_dataset(dataset, run)
    x, y, subset = test_subset(dataset, n, torch.device("cpu"))
    attacks = build_suite(params, meta["num_classes"])
    import torchattacks  # noqa: F401  (import time is start-up, not attack time)

    tic = time.perf_counter()
    record = summarise(evaluate(model, x, y, attacks, params.attack.batch_size, params.seed), attacks)
    return {"run": run, "n": len(y), "subset": subset, "seconds": time.perf_counter() - tic, "record": record,
            "num_classes": meta["num_classes"], "pixels": int(x[0].numel())}


def stage_wall(dataset: str, run: str) -> dict[str, float]:
    out = {}
    for stage in ("attack", "sanity"):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "stage", stage, "--dataset", dataset, "--method", run],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
        out[stage] = time.perf_counter() - tic
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=None, help="default: the first of params.yaml's datasets")
    ap.add_argument("--runs", nargs="+", default=["xe", "pgd_at"])
    ap.add_argument("--n", type=int, default=None, help="test images (default: attack.n)")
    ap.add_argument("--stage", action="store_true", help="also time the attack and sanity stage processes")
    args = ap.parse_args()

    import torch

    from pipeline import api
    from pipeline.core import paths
    from pipeline.config import load_params

    params = load_params()
    dataset = args.dataset or params.datasets[0]
    n = args.n or params.attack.n
    print(f"# attack-suite benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {dataset}, n={n}\n")
    results = []
    for run in args.runs:
        if not paths.checkpoint(dataset, run).is_file():
            print(f"(training {run} first)", file=sys.stderr)
            api.train(dataset, run, params)
        r = bench_run(dataset, run, params, n)
        results.append(r)
        rec = r["record"]
        print(f"## {run}: clean {rec['clean']['accuracy']:.1f}%, whole suite {r['seconds']:.1f} s in-process, "
              f"{rec['worst_case']['passes']['per_image']:.0f} forward-equivalents per test image\n")
        print("| attack | accuracy % | forward-eq / image | seconds |")
        print("|---|---:|---:|---:|")
        for name in params.attack.suite:
            e = rec[name]
            print(f"| {name} | {e['accuracy']:.1f} | {e['passes']['per_image']:.0f} | {e['seconds']:.2f} |")
        fe = rec["worst_case"]["passes"]["forward_equivalents"]
        print(f"\nachieved: {1e6 * r['seconds'] / max(fe, 1):.1f} us per forward-equivalent")
        if args.stage:
            wall = stage_wall(dataset, run)
            print(f"stage processes (start-up included): attack {wall['attack']:.1f} s, sanity {wall['sanity']:.1f} s")
        print()

    worst = max(results, key=lambda r: r["record"]["worst_case"]["passes"]["per_image"])
    measured = worst["record"]["worst_case"]["passes"]["per_image"]
    bound = robust_example_cost(params, 10, 3 * 32 * 32)
    print("## ESTIMATE (not measured): 10,000 CIFAR-shaped images on one H100, TF32\n")
    print(f"forward-equivalents per test image: {measured:.0f} measured on {worst['run']}@{dataset} "
          f"(clean {worst['record']['clean']['accuracy']:.0f}%, worst case {worst['record']['worst_case']['accuracy']:.0f}%); "
          f"{sum(bound.values())} for an example no attack fools (budgets of params.yaml, 10 classes, 32x32x3)\n")
    print("| model | GFLOP / forward | estimate at measured cost | upper bound (all robust) |")
    print("|---|---:|---:|---:|")
    for name in ("preact_resnet18", "wrn34_10"):
        flops = model_flops(name)
        if flops is None:
            print(f"| {name} | (not registered in this checkout) | | |")
            continue

        def hours(per_image):
            total = per_image * CIFAR_IMAGES * flops
            return " to ".join(f"{total / t / 3600:.2f} h" for t in reversed(H100_TF32_SUSTAINED))

        print(f"| {name} | {flops / 1e9:.2f} | {hours(measured)} | {hours(sum(bound.values()))} |")
    print(f"\nassumed sustained throughput {H100_TF32_SUSTAINED[0] / 1e12:.0f} to {H100_TF32_SUSTAINED[1] / 1e12:.0f} "
          "TFLOP/s (TF32 tensor cores, large batches); small tail batches of the iterative attacks run slower.")
    print("per robust example, by attack: " + ", ".join(f"{k} {v}" for k, v in bound.items()))


if __name__ == "__main__":
    main()
