"""Benchmark: per-example verdicts of the attack suite on the bf16 evaluation path against fp32.

`attack.precision: bf16` runs the model's forward passes under bf16 autocast (fp32 logits,
fp32 attack arithmetic). For each model, the whole suite of params.yaml runs twice on the
same test images with the same seeds, once per precision; printed per attack: robust
accuracy in each, and the examples whose verdict differs (robust in fp32 only / in bf16
only), with the exact McNemar p-value of the discordant pairs. Models (trained here, on the
embedded digits, in seconds to minutes): the default small_cnn (width 16) by PGD-AT and by
XE (tests/trained_models.py's loop), and a WRN at reduced width (WRN-10-2) by PGD-AT.

    OMP_NUM_THREADS=1 python bench/eval_precision.py [--n 360] [--models pgd_at xe wrn]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.attacks.evaluate import evaluate  # noqa: E402
from pipeline.attacks.run import build_suite  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from trained_models import EPS, digits, trained  # noqa: E402


def train_wrn(epochs: int = 15, seed: int = 0) -> torch.nn.Module:
    """WRN-10-2 by PGD-AT on the digits, the loop of tests/trained_models.py."""
    from pipeline.models import create
    from pipeline.core.pgd import Adversary

    data = digits()
    torch.manual_seed(seed)
    model = create("wrn34_10", num_classes=10, in_channels=1, depth=10, widen=2,
                   mean=[data.x_train.mean().item()], std=[data.x_train.std().item()])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=2e-4)
    adversary = Adversary(EPS, EPS / 4, 10)
    for _ in range(epochs):
        for idx in torch.randperm(len(data.y_train)).split(64):
            x = adversary.perturb(model, data.x_train[idx], data.y_train[idx])
            model.train()
            loss = F.cross_entropy(model(x), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def mcnemar_p(b: int, c: int) -> float:
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def compare(model, n: int, params) -> list[dict]:
    data = digits()
    x, y = data.x_test[:n], data.y_test[:n]
    attacks = build_suite(params, 10)
    runs, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        tic = time.perf_counter()
        runs[precision] = evaluate(model, x, y, attacks, params.attack.batch_size, params.seed, precision=precision)
        seconds[precision] = time.perf_counter() - tic
    rows = []
    flags = {p: {"clean": r.clean, **{k: o.robust for k, o in r.outcomes.items()}, "worst_case": r.worst_case()}
             for p, r in runs.items()}
    for name in flags["fp32"]:
        a, b = flags["fp32"][name], flags["bf16"][name]
        only32, only16 = int((a & ~b).sum()), int((~a & b).sum())
        rows.append({"row": name, "fp32": 100 * a.float().mean().item(), "bf16": 100 * b.float().mean().item(),
                     "fp32_only": only32, "bf16_only": only16, "p": mcnemar_p(only32, only16)})
    rows.append({"row": "seconds", "fp32": seconds["fp32"], "bf16": seconds["bf16"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=360, help="first test images")
    ap.add_argument("--models", nargs="+", default=["pgd_at", "xe", "wrn"])
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    builders = {"pgd_at": lambda: trained("pgd_at"), "xe": lambda: trained("xe"), "wrn": train_wrn}
    labels = {"pgd_at": "small_cnn (width 16) PGD-AT", "xe": "small_cnn (width 16) XE", "wrn": "WRN-10-2 PGD-AT"}
    print(f"# bf16 against fp32 evaluation, digits, first {args.n} test images, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)\n")
    for key in args.models:
        tic = time.perf_counter()
        model = builders[key]()
        print(f"## {labels[key]} (trained in {time.perf_counter() - tic:.0f} s)\n")
        print("| row | fp32 % | bf16 % | robust in fp32 only | robust in bf16 only | McNemar p |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in compare(model, args.n, params):
            if r["row"] == "seconds":
                print(f"\nsuite time: fp32 {r['fp32']:.1f} s, bf16 {r['bf16']:.1f} s\n")
            else:
                print(f"| {r['row']} | {r['fp32']:.1f} | {r['bf16']:.1f} | {r['fp32_only']} | {r['bf16_only']} | "
                      f"{r['p']:.3g} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
