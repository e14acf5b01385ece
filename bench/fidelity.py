"""The measurements behind docs/fidelity.md: what each difference from the authors' setup changes.

    python bench/fidelity.py train [--seeds 0 1 2]   # rows 1, 4, 5, 7: pgd_at on digits, one setting changed
    python bench/fidelity.py counting                 # row 16: any-iterate vs last-iterate PGD-20 / MIM-20
    python bench/fidelity.py sinkhorn                 # row 14: dual value vs the SAT code's transport cost
    python bench/fidelity.py authors-load             # row 8: what a strict load with another head copies

`train` prepares digits in a temporary project and trains the embedded default's `pgd_at`
once per setting and seed (about 10 s each on one thread); `counting` attacks the default
`pgd_at` and `xe` models it leaves there (run `train` first, same --root). One CPU thread,
so results do not depend on the machine's core count.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: setting name -> params.yaml overrides (nested) against the embedded default
VARIANTS = {
    "default": {},
    "init: he_fan_out": {"model": {"init": "he_fan_out"}},
    "normalize: false": {"model": {"normalize": False}},
    "start: gaussian 0.001": {"adversary": {"start": "gaussian", "start_std": 0.001}},
    "first_epoch: 1": {"train": {"lr_schedule": {"first_epoch": 1}}},
}


def _merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _write(root: Path, params: dict) -> Path:
    from ruamel.yaml import YAML

    path = root / "params.yaml"
    with open(path, "w") as f:
        YAML(typ="safe", pure=True).dump(params, f)
    return path


def train(root: Path, seeds: list[int], method: str = "pgd_at") -> None:
    from ruamel.yaml import YAML

    os.environ["OTJR_ROOT"] = str(root)
    from pipeline import api
    from pipeline.methods import parse_run
    from pipeline.config import load_params
    from pipeline.train.loop import fit

    base = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
    if not (root / "data" / "prepared" / "digits").is_dir():
        _write(root, base)
        api.download("digits")
        api.preprocess("digits")
    results = {}
    for name, overlay in VARIANTS.items():
        for seed in seeds:
            params = load_params(_write(root, _merge(base, {**overlay, "seed": seed})))
            fit("digits", parse_run(method, key="runs"), params, resume=False, show_progress=False)
            val = json.loads((root / f"metrics/train/digits/{method}/metrics.json").read_text())["val"]
            results.setdefault(name, []).append((val["clean_acc"], val["pgd_acc"]))
            print(f"{name:24s} seed {seed}: clean {val['clean_acc']:.2f}  PGD-10 {val['pgd_acc']:.2f}", flush=True)
    for name, pairs in results.items():
        clean, pgd = (sum(v) / len(v) for v in zip(*pairs))
        print(f"{name:24s} mean over seeds {seeds}: clean {clean:.2f}  PGD-10 {pgd:.2f}")
    # leave the default's pgd_at and xe models of seed 0 for `counting`
    params = load_params(_write(root, base))
    for run in ("xe", "pgd_at"):
        fit("digits", parse_run(run, key="runs"), params, resume=False, show_progress=False)


def counting(root: Path, seeds: list[int]) -> None:
    import torchattacks

    os.environ["OTJR_ROOT"] = str(root)
    from pipeline.attacks.iterative import cross_entropy, on_labels
    from pipeline.core.pgd import ascend
    from pipeline.data.prepare import load_split_uint8
    from pipeline.models import load_checkpoint

    x, y = load_split_uint8("digits", "test")
    x = x.float() / 255
    for run in ("pgd_at", "xe"):
        model = load_checkpoint(root / "models" / "digits" / f"{run}.safetensors").eval()
        for p in model.parameters():
            p.requires_grad_(False)
        attacks = {
            "PGD-20": ({"start": "uniform"}, torchattacks.PGD(model, eps=0.2, alpha=0.05, steps=20, random_start=True)),
            "MIM-20": ({"start": None, "decay": 1.0}, torchattacks.MIFGSM(model, eps=0.2, alpha=0.05, steps=20, decay=1.0)),
        }
        for name, (ours_kw, theirs) in attacks.items():
            ours, last = [], []
            for seed in seeds:
                torch.manual_seed(seed)
                a = ascend(model, x, on_labels(cross_entropy, y), eps=0.2, step=0.05, steps=20, labels=y, **ours_kw)
                ours.append(100 * (a.fooled_at > 20).float().mean().item())
                torch.manual_seed(seed)
                x_last = theirs(x, y)
                with torch.no_grad():
                    last.append(100 * (model(x_last).argmax(1) == y).float().mean().item())
            print(f"{run} {name} (n = {len(y)}): any-iterate {[round(v, 2) for v in ours]}, "
                  f"last iterate {[round(v, 2) for v in last]}")


def _transport_cost_early_stop(x, y, eps, max_iter=50, thresh=0.1):
    """The SAT code's convention: <plan, C> after log-domain Sinkhorn, stopped once sum |f - f_old| < thresh."""
    from pipeline.losses.sinkhorn import squared_distances

    cost = squared_distances(x, y)
    n, m = cost.shape
    log_a, log_b = math.log(1 / n + 1e-8), math.log(1 / m + 1e-8)
    f, g, iterations = cost.new_zeros(n), cost.new_zeros(m), 0
    for _ in range(max_iter):
        previous = f
        f = eps * (log_a - torch.logsumexp((f[:, None] + g[None, :] - cost) / eps, 1)) + f
        g = eps * (log_b - torch.logsumexp((f[:, None] + g[None, :] - cost) / eps, 0)) + g
        iterations += 1
        if (f - previous).abs().sum() < thresh:
            break
    return (torch.exp((f[:, None] + g[None, :] - cost) / eps) * cost).sum(), iterations


def sinkhorn(draws: int = 20) -> None:
    from pipeline.losses.sinkhorn import sinkhorn_divergence

    torch.manual_seed(0)
    for scale, shift in ((1.0, 0.1), (3.0, 0.5), (3.0, 1.5)):
        ratios, stops = [], []
        for _ in range(draws):
            clean = scale * torch.randn(128, 10, dtype=torch.float64)
            adv = clean + shift * scale * torch.randn(128, 10, dtype=torch.float64)
            ours = sinkhorn_divergence(adv, clean, 1.0, 50).item()
            (xy, stop), (xx, _), (yy, _) = (_transport_cost_early_stop(a, b, 1.0)
                                             for a, b in ((clean, adv), (adv, adv), (clean, clean)))
            ratios.append((xy - 0.5 * (xx + yy)).item() / ours)
            stops.append(stop)
        print(f"logit std {scale}, adversarial shift {shift}: SAT-code value / ours = {sum(ratios) / draws:.3f}, "
              f"stopped after {min(stops)}-{max(stops)} iterations")


def authors_load() -> None:
    import torchvision

    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet50(num_classes=1000).state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    model = torchvision.models.resnet50(num_classes=6)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        print("strict load raised:", str(err).splitlines()[0])
    own = model.state_dict()
    equal = [k for k in state if own[k].shape == state[k].shape and torch.equal(own[k], state[k])]
    print(f"{len(equal)} of {len(state)} tensors equal the file's afterwards; the others: "
          f"{sorted(set(state) - set(equal))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["train", "counting", "sinkhorn", "authors-load"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "otjr-fidelity")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.root.mkdir(parents=True, exist_ok=True)
    if args.what == "train":
        train(args.root, args.seeds)
    elif args.what == "counting":
        counting(args.root, args.seeds)
    elif args.what == "sinkhorn":
        sinkhorn()
    else:
        authors_load()


if __name__ == "__main__":
    main()
