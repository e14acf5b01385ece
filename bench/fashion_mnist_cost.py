"""Cost of the two Fashion-MNIST tiers: counted FLOPs per training image and per run, and (--cpu) the
single-thread CPU seconds of real training steps of the CPU tier's methods.

FLOPs are counted as in bench/preset_cost.py (one real step of each method on torch's `meta`
device under torch's per-operator formulas: matmuls and convolutions; element-wise work is not
counted) on 1x28x28 images, times the tier's training images and epochs, plus the per-epoch PGD
monitoring on eval_n held-out images and PGD-20 on the test images. `--cpu` times a few real
steps (batch = the tier's) with one torch thread, by the thread's CPU time, so that other jobs
on the machine inflate it little; an idle 2-core machine runs one stage at most 2x faster.

    python bench/fashion_mnist_cost.py [--tflops 80 150] [--cpu] [--steps 3]
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

TRAIN_IMAGES, TEST_IMAGES, SHAPE, CLASSES = 60_000, 10_000, (1, 28, 28), 10
TIERS = ("fashion-mnist", "fashion-mnist-full")


def _load(name: str, tmp: Path):
    """(params, seeds) of preset `name`; while `seeds` is not yet a params key, it is read here and dropped."""
    merged = presets.resolve(name)
    seeds = [int(s) for s in merged.pop("seeds", None) or []]
    path = tmp / f"{name}.yaml"
    with open(path, "w") as f:
        presets._yaml().dump(merged, f)
    p = load_params(path)
    return p, seeds or [p.seed]


def _setup(p, device: str, train: bool = True):
    model = create(p.model.name, num_classes=CLASSES, in_channels=SHAPE[0], **p.model.args).to(device)
    a = p.adversary
    return model.train(train), Adversary(a.eps, a.step, a.steps, a.start, a.start_std)


def _method(p, name: str, adversary):
    return METHODS.get(name)(p.for_method(name), Setup(adversary=adversary, num_classes=CLASSES))


def step_flops(p, name: str, batch: int = 2) -> float:
    """FLOPs per image of one training step of method `name`."""
    model, adversary = _setup(p, "meta")
    x, y = torch.rand(batch, *SHAPE, device="meta"), torch.zeros(batch, dtype=torch.long, device="meta")
    counter = FlopCount()
    with counter:
        _method(p, name, adversary).loss(model, x, y).total.backward()
    return counter.flops / batch


def pgd_flops(p, steps: int) -> float:
    """FLOPs per image of an L-inf PGD of `steps` steps in eval mode plus the final forward."""
    model, _ = _setup(p, "meta", train=False)
    for q in model.parameters():
        q.requires_grad_(False)
    x = torch.rand(2, *SHAPE, device="meta")
    counter = FlopCount()
    with counter:
        for _ in range(steps):
            d = x.clone().requires_grad_()
            torch.autograd.grad(model(d).sum(), d)
        with torch.no_grad():
            model(x)
    return counter.flops / 2


def cpu_step_seconds(p, name: str, steps: int) -> float:
    """Single-thread CPU seconds of one training step (forward, attack, backward, SGD) of a full batch."""
    torch.manual_seed(0)
    model, adversary = _setup(p, "cpu")
    method = _method(p, name, adversary)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    b = p.train.batch_size
    x, y = torch.rand(b, *SHAPE), torch.randint(0, CLASSES, (b,))

    def step():
        opt.zero_grad(set_to_none=True)
        method.loss(model, x, y).total.backward()
        opt.step()

    step()
    tic = time.thread_time()
    for _ in range(steps):
        step()
    return (time.thread_time() - tic) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflops", type=float, nargs=2, default=(80.0, 150.0), help="assumed sustained TFLOP/s (low high)")
    ap.add_argument("--cpu", action="store_true", help="time real steps of the CPU tier's methods, one thread")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method with --cpu")
    args = ap.parse_args()
    lo, hi = args.tflops
    with tempfile.TemporaryDirectory() as tmp:
        for name in TIERS:
            p, seed_list = _load(name, Path(tmp))
            seeds = len(seed_list)
            images = p.data.train_n.get("fashion_mnist") or round(TRAIN_IMAGES * (1 - p.data.val_fraction))
            monitor = pgd_flops(p, p.adversary.steps) * p.train.eval_n
            pgd20 = pgd_flops(p, 20) * TEST_IMAGES  # PGD-20 on the whole test split in both tiers
            print(f"\n{name}: {p.model.name} {dict(p.model.args)}, {images} training images, {p.train.epochs} epochs, "
                  f"PGD-{p.adversary.steps} training; PGD-20 on {TEST_IMAGES} test images "
                  f"= {pgd20 / 1e12:.2f} TFLOP per run")
            print(f"| method | GFLOP / train image | TFLOP / run (train + monitoring + PGD-20) | "
                  f"GPU hours at {hi:g} TFLOP/s | at {lo:g} |")
            print("|---|---:|---:|---:|---:|")
            total = 0.0
            for method in p.runs:
                per_image = step_flops(p, method)
                run = (per_image * images + monitor) * p.train.epochs + pgd20
                total += run
                print(f"| {method} | {per_image / 1e9:.3f} | {run / 1e12:.0f} | {run / hi / 1e12 / 3600:.2f} | "
                      f"{run / lo / 1e12 / 3600:.2f} |")
            print(f"| all {len(p.runs)} methods, one seed | | {total / 1e12:.0f} | {total / hi / 1e12 / 3600:.1f} | "
                  f"{total / lo / 1e12 / 3600:.1f} |")
            if seeds > 1:
                print(f"| x {seeds} seeds | | {seeds * total / 1e12:.0f} | **{seeds * total / hi / 1e12 / 3600:.1f}** | "
                      f"**{seeds * total / lo / 1e12 / 3600:.1f}** |")
            if args.cpu and not name.endswith("full"):
                torch.set_num_threads(1)
                batches = -(-images // p.train.batch_size)
                print(f"\nsingle-thread CPU seconds ({args.steps} steps of {p.train.batch_size} images after one warm-up):")
                for method in p.runs:
                    s = cpu_step_seconds(p, method, args.steps)
                    print(f"  {method}: {s:.2f} s / step -> {s * batches:.0f} s / epoch ({batches} steps), "
                          f"{s * batches * p.train.epochs:.0f} s / run", flush=True)


if __name__ == "__main__":
    main()
