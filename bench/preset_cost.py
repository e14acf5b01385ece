"""Estimated GPU time of each preset, from counted FLOPs (no GPU needed).

For every preset and every registered method, one real training step (the method's own
loss, PGD included, and its backward pass) runs on the `meta` device under a dispatch
mode that adds up torch's per-operator FLOP formulas (`torch.utils.flop_counter`): exact
counts of matrix and convolution FLOPs, nothing executed. Time = FLOPs per epoch
(training images + per-epoch PGD monitoring) x epochs / an assumed sustained throughput.
`--cpu-check` also times one real step on the CPU to show the counts match real work.

    python bench/preset_cost.py [--tflops 80 150] [--cpu-check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import presets  # noqa: E402
from pipeline.benchmark.flops import FlopCount  # noqa: E402
from pipeline.methods import METHODS, Setup  # noqa: E402
from pipeline.models import create  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.core.pgd import Adversary  # noqa: E402

#: Published training-set sizes (ImageNet100: the 100 CMC classes of ILSVRC-2012 train).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet100": 126_689, "intel": 14_034}
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet100": 100, "intel": 6}


def step_flops(p, method: str, device: str = "meta", batch: int = 2) -> float:
    """FLOPs per image of one training step of `method` under params `p`."""
    dataset = p.datasets[0]
    side = p.data.resize(dataset)[0] or 32
    model = create(p.model.name, num_classes=CLASSES[dataset], **p.model.args).to(device).train()
    adversary = Adversary(p.adversary.eps, p.adversary.step, p.adversary.steps)
    m = METHODS.get(method)(p.for_method(method), Setup(adversary=adversary, num_classes=CLASSES[dataset]))
    x = torch.rand(batch, 3, side, side, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    counter = FlopCount()
    with counter:
        m.loss(model, x, y).total.backward()
    return counter.flops / batch


def monitor_flops(p) -> float:
    """Per-epoch monitoring: PGD on eval_n held-out images (attack steps + clean and adversarial forward)."""
    dataset = p.datasets[0]
    side = p.data.resize(dataset)[0] or 32
    model = create(p.model.name, num_classes=CLASSES[dataset], **p.model.args).to("meta").eval()
    adversary = Adversary(p.adversary.eps, p.adversary.step, p.adversary.steps)
    x = torch.rand(2, 3, side, side, device="meta")
    counter = FlopCount()
    with counter:
        x_adv = adversary.perturb(model, x, torch.zeros(2, dtype=torch.long, device="meta"))
        with torch.no_grad():
            model(x), model(x_adv)
    return counter.flops / 2 * p.train.eval_n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflops", type=float, nargs=2, default=(80.0, 150.0),
                    help="assumed sustained TFLOP/s, low and high (default: 80 150, an H100 in TF32)")
    ap.add_argument("--cpu-check", action="store_true", help="also time one step per preset model on this CPU")
    args = ap.parse_args()
    lo, hi = args.tflops
    print(f"| preset | method | GFLOP / train image | PFLOP / run | hours at {hi:g} TFLOP/s | hours at {lo:g} TFLOP/s |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets.names():
            p = load_params(presets.apply(name, Path(tmp) / "params.yaml"))
            dataset = p.datasets[0]
            images = int(TRAIN_IMAGES[dataset] * (1 - p.data.val_fraction))
            monitor = monitor_flops(p)
            total = 0.0
            for method in METHODS.names():
                per_image = step_flops(p, method)
                run = (per_image * images + monitor) * p.train.epochs
                total += run
                print(f"| {name} | {method} | {per_image / 1e9:.1f} | {run / 1e15:.0f} | "
                      f"{run / hi / 1e12 / 3600:.1f} | {run / lo / 1e12 / 3600:.1f} |")
            print(f"| {name} | **all {len(METHODS.names())} (dvc repro)** | | {total / 1e15:.0f} | "
                  f"**{total / hi / 1e12 / 3600:.1f}** | **{total / lo / 1e12 / 3600:.1f}** |")
            if args.cpu_check:
                method = "pgd_at"
                flops = step_flops(p, method, device="cpu", batch=4)
                tic = time.perf_counter()
                step_flops(p, method, device="cpu", batch=4)
                seconds = time.perf_counter() - tic
                print(f"<!-- cpu check {name} {method}: {flops * 4 / seconds / 1e9:.1f} GFLOP/s counted-per-second "
                      f"({seconds:.2f} s for 4 images, {torch.get_num_threads()} threads) -->")


if __name__ == "__main__":
    main()
