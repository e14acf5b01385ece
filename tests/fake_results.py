"""A small set of fake pipeline results (attack records, sanity verdicts, analyses, training logs)
for building the report without training anything. Values are made up but shaped like the real files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.core import paths, timing

VERSIONS = {"python": "3.11", "torch": "2.x"}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def attack_record(dataset: str, run: str, model: str, accuracies: dict[str, float], epochs: int = 100,
                  n: int = 500) -> dict:
    record = {"dataset": dataset, "run": run, "n": n, "subset": f"first {n} images of the {dataset} test split",
              "seed": 0, "device": "cpu", "versions": VERSIONS,
              "training": {"model": {"name": model, "args": {}}, "train": {"epochs": epochs}}}
    for key, acc in accuracies.items():
        record[key] = {"accuracy": acc, "n_correct": round(acc * n / 100)}
    return record


def with_passes(record: dict, passes: dict[str, tuple[int, int]], clean_forward: int) -> dict:
    """`record` with each attack's image-passes (forward, backward) over its own n, and the suite's with the clean
    pass under `worst_case`, shaped as the attack stage writes them (a backward counts as two forwards)."""
    def entry(forward: int, backward: int, n: int) -> dict:
        total = forward + 2 * backward
        return {"forward": forward, "backward": backward, "forward_equivalents": total, "per_image": round(total / n, 2)}

    for attack, (forward, backward) in passes.items():
        record[attack]["passes"] = entry(forward, backward, record[attack].get("n", record["n"]))
    record["worst_case"]["passes"] = entry(clean_forward + sum(f for f, _ in passes.values()),
                                           sum(b for _, b in passes.values()), record["n"])
    return record


def sanity_record(dataset: str, run: str, eps_accuracy: list[float], fail: bool = False,
                  steps_accuracy: list[float] | None = None) -> dict:
    rules = [
        {"id": 1, "name": "adversarial examples are valid", "verdict": "pass", "detail": "ok", "figures": {}},
        {"id": 3, "name": "iterative attacks are at least as strong as FGSM", "verdict": "fail" if fail else "pass",
         "detail": "weaker than FGSM: pgd20" if fail else "ok", "figures": {}},
        {"id": 5, "name": "accuracy falls with eps", "verdict": "pass", "detail": "ok",
         "figures": {"eps": [0.0, 8 / 255, 16 / 255, 64 / 255, 128 / 255], "accuracy": eps_accuracy,
                     "clean": eps_accuracy[0], "steps": 20, "n": 200, "chance": 10.0}},
    ]
    if steps_accuracy:
        rules.append({"id": 4, "name": "PGD-100 is not weaker than PGD-20", "verdict": "warn", "detail": "check",
                      "figures": {"steps": [1, 10, 20, 40, 50], "accuracy": steps_accuracy}})
    verdict = "fail" if fail else ("warn" if steps_accuracy else "pass")
    return {"dataset": dataset, "run": run, "verdict": verdict, "n": 200, "rules": rules}


def analysis_run(scale: float, cell: float, channels: int = 16, layers: int = 5, resolution: int = 11) -> dict:
    """One run's analyses: gradients grow with `scale`, the own-class cell has radius `cell` (grid units)."""
    half = resolution // 2
    grid = [[3 if math.hypot(i - half, j - half) <= cell else (1 if j > half else 7) for j in range(resolution)]
            for i in range(resolution)]
    return {
        "training": {"model": "wrn34_10", "epochs": 100, "device": "cuda"},
        "input_gradient": {"steps": [0, 1, 5, 10, 15, 20],
                           "mean_abs": [scale * 1e-3 * (1 + k / 10) for k in (0, 1, 5, 10, 15, 20)]},
        "activations": {"layer": "net.linear", "channels": channels, "order": list(range(channels)),
                        "clean": [1.0 - c / channels for c in range(channels)],
                        "adversarial": [scale * (1.0 - c / channels) for c in range(channels)]},
        "layer_ratios": {"layers": [f"net.conv{i}.weight" for i in range(layers)],
                         "mean": [scale * (1 + i / 10) for i in range(layers)], "median": [None] * layers, "n": 8},
        "cross_sections": [{"image": i, "label": 3, "prediction": 3, "adversarial_prediction": 3 if cell > 3 else 1,
                            "adversarial_offset": 1.5, "own_class_fraction": 0.3, "grid": grid} for i in range(2)],
    }


def analysis_record(dataset: str, runs: dict[str, dict]) -> dict:
    return {"dataset": dataset, "n": 64, "subset": f"first 64 images of the {dataset} test split", "seed": 0,
            "device": "cuda", "num_classes": 10,
            "settings": {"eps": 8 / 255, "step": 2 / 255, "random_start": True, "adv_steps": 20, "ratio_n": 8},
            "cross_section_coordinates": [(k - 5) * 0.6 for k in range(11)], "versions": VERSIONS, "runs": runs}


def training_log(dataset: str, run: str, epochs: int, adversarial: bool) -> None:
    root = paths.train_log_dir(dataset, run) / "plots" / "metrics"
    series = {"train/loss": lambda e: 2.0 / e, "val/clean_acc": lambda e: 50 + 3 * e, "val/pgd_acc": lambda e: 10 + e}
    if adversarial:
        series["train/ce_adv"] = lambda e: 2.2 / e
    for name, f in series.items():
        path = root / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        leaf = name.split("/")[-1]
        path.write_text(f"step\t{leaf}\n" + "".join(f"{e - 1}\t{f(e)}\n" for e in range(1, epochs + 1)))


#: cifar10 + wrn34_10 matches the paper's Table 2 for pgd_at and otjr; xe has no Table 2 row.
CIFAR10 = {
    "xe": {"clean": 94.0, "pgd20": 0.0, "fgsm": 10.0, "autoattack": 0.0, "fab_t": 0.0, "worst_case": 0.0},
    "pgd_at": {"clean": 86.0, "pgd20": 47.0, "fgsm": 56.0, "autoattack": 45.0, "fab_t": 46.0, "worst_case": 44.5},
    "otjr": {"clean": 84.53, "pgd20": 56.07, "fgsm": 61.0, "autoattack": 52.0, "worst_case": 51.5},
}


def build_fake_world(with_digits: bool = True) -> dict:
    """Write fake results for cifar10 (xe, pgd_at, otjr evaluated; sw trained but not evaluated) and, optionally,
    digits with a small_cnn (no paper match, no analysis). Returns what was written, for assertions."""
    for run, acc in CIFAR10.items():
        write(paths.attack_result("cifar10", run), attack_record("cifar10", run, "wrn34_10", acc))
        write(paths.sanity_result("cifar10", run), sanity_record(
            "cifar10", run, [acc["clean"], acc["pgd20"], acc["pgd20"] / 2, 1.0, 0.0], fail=(run == "xe"),
            steps_accuracy=[70.0, 57.0, 56.07, 55.9, 55.9] if run == "otjr" else None))
    write(paths.analysis_result("cifar10"), analysis_record("cifar10", {
        "xe": analysis_run(10.0, 2), "pgd_at": analysis_run(2.0, 3.5), "otjr": analysis_run(1.0, 4.5),
        "sw": analysis_run(1.2, 4)}))
    for run, scale in (("xe", 10.0), ("pgd_at", 2.0), ("otjr", 1.0), ("sw", 1.2)):
        training_log("cifar10", run, 5, adversarial=run != "xe")
        timing.write("train", "cifar10", run, device="cuda", train_seconds=100 * 60 * scale,
                     epoch_seconds=[60 * scale] * 100)
    if with_digits:
        for run, acc in {"xe": {"clean": 98.0, "pgd20": 0.0, "worst_case": 0.0},
                         "pgd_at": {"clean": 96.0, "pgd20": 58.0, "worst_case": 57.0},
                         "otjr": {"clean": 84.0, "pgd20": 54.0, "worst_case": 53.0},
                         "sw": {"clean": 90.0, "pgd20": 50.0, "worst_case": 49.0}}.items():
            write(paths.attack_result("digits", run), attack_record("digits", run, "small_cnn", acc, epochs=12))
            write(paths.sanity_result("digits", run), sanity_record("digits", run, [acc["clean"], 50, 20, 1, 0]))
    return {"cifar10": CIFAR10}


# ---------------------------------------------------------------------------- claims (paired flags)
#: Per run and measure, the accuracy (fraction) of nested per-image flags: image i is robust when u_i < accuracy,
#: with one shared difficulty u_i, so two runs differ only on the images between their accuracies.
CLAIMS_N = 400
CLAIMS_ACC = {
    "otjr": {"clean": 0.80, "fgsm": 0.60, "pgd20": 0.55, "autoattack": 0.50},
    "trades": {"clean": 0.82, "fgsm": 0.55, "pgd20": 0.45, "autoattack": 0.40},  # otjr clearly above: supported
    "pgd_at": {"clean": 0.85, "fgsm": 0.70, "pgd20": 0.62, "autoattack": 0.60},  # otjr clearly below: contradicted
    "alp": {"clean": 0.84, "fgsm": 0.58, "pgd20": 0.54, "autoattack": 0.49},  # 4 images apart: inconclusive
    "opt_jr": {"clean": 0.90, "fgsm": 0.40, "pgd20": 0.30, "autoattack": 0.15},
    "rand_jr": {"clean": 0.95, "fgsm": 0.45, "pgd20": 0.20, "autoattack": 0.10},
}
#: sat is trained (curves) but not evaluated; sw is trained and evaluated.
CLAIMS_CURVES = {"sw": [10, 30, 40, 44, 45], "otjr": [10, 20, 30, 35, 50], "sat": [5, 10, 20, 35, 40]}


def claims_flags(accuracies: dict[str, float], n: int = CLAIMS_N, seed: int = 0) -> dict:
    import numpy as np
    import torch

    u = np.random.default_rng(seed).permutation(n) / n  # shared difficulty: exact counts k = round(acc * n)
    flags = {k: torch.from_numpy(u < acc) for k, acc in accuracies.items()}
    flags["worst_case"] = torch.stack([flags[k] for k in accuracies]).all(0)
    return flags


def build_claims_world(dataset: str = "fashion_mnist") -> dict:
    """Attack records + flags for CLAIMS_ACC's runs, training curves for CLAIMS_CURVES, input gradients in which
    otjr is smallest at every step; sat has curves but no attack results. Returns the flags written."""
    from pipeline.core.io import save_tensors

    written = {}
    for run, acc in CLAIMS_ACC.items():
        flags = claims_flags(acc)
        written[run] = flags
        pct = {k: 100.0 * int(v.sum()) / CLAIMS_N for k, v in flags.items()}
        write(paths.attack_result(dataset, run), attack_record(dataset, run, "small_cnn", pct, epochs=5, n=CLAIMS_N))
        save_tensors(paths.attack_flags(dataset, run), flags, {"n": CLAIMS_N})
        write(paths.sanity_result(dataset, run), sanity_record(dataset, run, [pct["clean"], 40, 20, 1, 0]))
    for run, curve in CLAIMS_CURVES.items():
        root = paths.train_log_dir(dataset, run) / "plots" / "metrics" / "val"
        root.mkdir(parents=True, exist_ok=True)
        (root / "pgd_acc.tsv").write_text("step\tpgd_acc\n" + "".join(f"{e}\t{v}\n" for e, v in enumerate(curve)))
    scales = {"pgd_at": 5.0, "alp": 4.0, "trades": 2.0, "sat": 1.5, "otjr": 1.0, "opt_jr": 0.5}
    write(paths.analysis_result(dataset), analysis_record(dataset, {r: analysis_run(s, 3) for r, s in scales.items()}))
    return written
