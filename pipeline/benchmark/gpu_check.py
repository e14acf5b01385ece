"""`bench/gpu_check.sh OUTDIR`: prove the pipeline on a GPU in one short command (<= 8 min on one H100/H200).

Four sections, each timed; a failing one is recorded and the others still run:

- `tests`: `pytest -m gpu tests/test_gpu.py` (speed options against fp32 on CUDA, the two
  feeders' crop/flip, the attack suite in fp32 and bf16, torchrun with NCCL);
- `bench`: `otjr bench` of WRN-34-10 at batch 128: the fast path (bf16, channels_last, cuDNN
  autotuning) with the exact and the finite-difference Jacobian, and the reference, in one
  run, with the OTJR / PGD-AT ratios and the speed-up over the reference;
- `training`: the trainer itself (`pipeline.api.train`) for PGD-AT and OTJR on CIFAR-shaped
  random images kept in device memory, at the cifar10-wrn34 preset's settings with the fast
  path; the second epoch's time gives seconds per CIFAR-10 epoch (49,000 images), with the
  peak memory;
- `attacks`: the cifar10 suite's throughput on WRN-34-10 (forward-equivalents per second
  per attack, in fp32 with TF32 and on the bf16 evaluation path) at a fraction of every
  budget, on a model no attack can fool (so no example stops early), projected to one full
  Table 2 row on 10,000 images at the full budgets (`attack_cost.robust_example_cost`).

Writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md; exits 1 if a section failed. Without
a GPU (or with --tiny) every section runs at toy size in well under a minute, so the
command is tested on every CPU run (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ruamel.yaml import YAML

from .. import api, presets
from ..attacks import ATTACKS
from ..attacks.evaluate import evaluate
from ..attacks.run import evaluation_precision
from ..core import paths, timing
from ..core.device import resolve_device
from ..core.io import save_tensors, write_json
from ..core.versions import library_versions
from ..data.shards import FORMAT
from ..models import create
from ..config import load_params
from ..params import Params, SpeedParams, read_yaml
from .attack_cost import robust_example_cost
from .run import ModelChoice, bench, describe_device

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_TRAIN_IMAGES = 49_000  # CIFAR-10's 50,000 less the presets' 2% validation hold-out
TABLE2_IMAGES = 10_000
PRESET = "cifar10-wrn34"
FAST = SpeedParams(precision="bf16", channels_last=True, cudnn_benchmark=True)
BUDGET_FIELDS = ("steps", "queries", "max_iters", "square_queries")


@dataclass(frozen=True)
class Size:
    """How big each section runs: the real thing on a GPU, a toy on a CPU."""

    model: str
    model_args: dict
    shape: tuple[int, int, int]
    bench_batch: int
    bench_steps: int
    bench_warmup: int
    train_images: int
    train_batch: int
    attack_images: int
    budget_fraction: float


FULL = Size("wrn34_10", {}, (3, 32, 32), 128, 10, 3, 128 * 40, 128, 256, 0.05)
TINY = Size("small_cnn", {"width": 4}, (3, 32, 32), 4, 2, 1, 16, 4, 4, 0.01)


def preset_params(name: str = PRESET) -> Params:
    """The validated params of a preset (its attack budgets, adversary and method settings)."""
    with tempfile.TemporaryDirectory() as tmp:
        return load_params(presets.apply(name, Path(tmp) / "params.yaml"))


# --- tests --------------------------------------------------------------------------------------

def gpu_tests(out: Path, size: Size, device: torch.device) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess; counts from its JUnit XML."""
    report = out / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={report}",
           str(REPO_ROOT / "tests" / "test_gpu.py")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])})
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest -m gpu exited {proc.returncode}: failed {failed}\n{proc.stdout[-2000:]}")
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "junit": report.name}


# --- otjr bench ---------------------------------------------------------------------------------

def training_step_bench(out: Path, size: Size, device: torch.device) -> dict[str, Any]:
    result = bench([ModelChoice(size.model, size.model_args, size.shape)], ["pgd_at", "otjr"], ["fast", "reference"],
                   ["exact", "finite_difference"], FAST, preset_params(), device, batch_size=size.bench_batch,
                   steps=size.bench_steps, warmup=size.bench_warmup)
    write_json(out / "bench.json", result)
    return {"rows": [{k: r[k] for k in ("method", "path", "jacobian", "median_ms", "images_per_s", "peak_memory_mib")}
                     for r in result["rows"]],
            "ratios": next(iter(result["ratios"].values())), "json": "bench.json"}


# --- the trainer --------------------------------------------------------------------------------

def write_random_dataset(dataset: str, n: int, shape: tuple[int, int, int], classes: int = 10) -> None:
    """A prepared `dataset` of `n` random uint8 training images, as preprocess writes it (under OTJR_ROOT)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g, device="cpu")
    labels = torch.randint(0, classes, (n,), generator=g, device="cpu")
    meta = {"format": FORMAT, "dataset": dataset, "classes": [str(c) for c in range(classes)], "num_classes": classes,
            "shape": list(shape), "mean": [0.5] * shape[0], "std": [0.29] * shape[0],
            "sources": {"random": "uint8 noise for timing (pipeline/benchmark/gpu_check.py)"},
            "sizes": {"train": n}, "val_fraction": 0.0}
    paths.prepared_dir(dataset).mkdir(parents=True, exist_ok=True)
    save_tensors(paths.prepared_split(dataset, "train"), {"images": images, "labels": labels},
                 {"meta": meta, "split": "train"})


def trainer_epochs(out: Path, size: Size, device: torch.device) -> dict[str, Any]:
    """Two epochs of the trainer per method; the second epoch's time, scaled to CIFAR-10's training split."""
    result: dict[str, Any] = {"images": size.train_images, "batch_size": size.train_batch, "speed": FAST.model_dump()}
    with tempfile.TemporaryDirectory() as tmp, _project_root(Path(tmp)):
        root = Path(tmp)
        raw = read_yaml(presets.apply(PRESET, root / "params.yaml"))
        raw.update(device=str(device), datasets=["cifar10"], runs=["pgd_at", "otjr"], speed=FAST.model_dump())
        raw["model"] = {"name": size.model, "args": size.model_args}
        raw["train"].update(epochs=2, batch_size=size.train_batch, eval_n=0)
        raw["data"].update(loader="device", val_fraction=0.0)
        with open(root / "params.yaml", "w") as f:
            YAML(typ="safe", pure=True).dump(raw, f)
        params = load_params(root / "params.yaml")
        write_random_dataset("cifar10", size.train_images, size.shape)
        for method in ("pgd_at", "otjr"):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            tic = time.perf_counter()
            api.train("cifar10", method, params, resume=False)
            seconds = timing.read("train", "cifar10", method)["epoch_seconds"][-1]  # wall times: beside the checkpoint
            result[method] = {
                "second_epoch_seconds": round(seconds, 3),
                "seconds_per_cifar_epoch": round(seconds * CIFAR_TRAIN_IMAGES / size.train_images, 1),
                "stage_seconds": round(time.perf_counter() - tic, 1),
                "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
            }
    return result


class _project_root:
    """OTJR_ROOT pointed at `root` for the block (the trainer reads and writes under it)."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self):
        self.saved = os.environ.get("OTJR_ROOT")
        os.environ["OTJR_ROOT"] = str(self.root)

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("OTJR_ROOT", None)
        else:
            os.environ["OTJR_ROOT"] = self.saved


# --- the attack suite ---------------------------------------------------------------------------

class Unfoolable(nn.Module):
    """`model`'s logits scaled down, plus a large margin for class 0: every attack runs its full budget.

    The forward and backward passes cost what `model`'s do, so the throughput is the real one.
    """

    def __init__(self, model: nn.Module, margin: float = 30.0, scale: float = 0.01):
        super().__init__()
        self.model, self.margin, self.scale = model, margin, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.scale * self.model(x)
        return torch.cat([logits[:, :1] + self.margin, logits[:, 1:]], dim=1)


def reduced(settings, fraction: float):
    """An attack's settings with every iteration budget cut to `fraction` (at least 1)."""
    cut = {k: max(1, round(getattr(settings, k) * fraction)) for k in BUDGET_FIELDS if hasattr(settings, k)}
    return settings.model_copy(update=cut)


def suite_throughput(out: Path, size: Size, device: torch.device) -> dict[str, Any]:
    params = preset_params()
    torch.manual_seed(0)
    model = Unfoolable(create(size.model, num_classes=10, in_channels=size.shape[0], **size.model_args)).to(device)
    x = torch.rand(size.attack_images, *size.shape, device=device)
    y = torch.zeros(size.attack_images, dtype=torch.long, device=device)
    attacks = [ATTACKS.get(params.attack.kinds[n])(reduced(params.attack.settings[n], size.budget_fraction), 10,
                                                   params.seed, name=n) for n in params.attack.suite]
    full_cost = robust_example_cost(params, 10, x[0].numel())
    evaluation_precision(device)
    result: dict[str, Any] = {"images": size.attack_images, "budget_fraction": size.budget_fraction,
                              "batch_size": params.attack.batch_size, "suite": list(params.attack.suite)}
    for precision in ("fp32", "bf16"):
        evaluation = evaluate(model, x, y, attacks, params.attack.batch_size, params.seed, precision=precision)
        per_attack, row_seconds = {}, 0.0
        for name, outcome in evaluation.outcomes.items():
            rate = outcome.passes.forward_equivalents / max(outcome.seconds, 1e-9)
            projected = full_cost.get(name, 0) * TABLE2_IMAGES / rate
            row_seconds += projected
            per_attack[name] = {"forward_equivalents_per_s": round(rate), "seconds": round(outcome.seconds, 2),
                                "robust_fraction": round(float(outcome.robust.float().mean()), 3),
                                "projected_seconds_all_robust": round(projected, 1)}
        result[precision] = {"attacks": per_attack, "table2_row_minutes_all_robust": round(row_seconds / 60, 1),
                             "table2_row_minutes_half_robust": round(row_seconds / 120, 1)}
    return result


# --- the command --------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Path, Size, torch.device], dict[str, Any]]] = {
    "tests": gpu_tests, "bench": training_step_bench, "training": trainer_epochs, "attacks": suite_throughput}


def check(out: Path, tiny: bool | None = None, sections: list[str] | None = None) -> dict[str, Any]:
    """Run the sections into `out`; returns the JSON-able result (also written with its markdown)."""
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device("auto")
    tiny = device.type != "cuda" if tiny is None else tiny
    size = TINY if tiny else FULL
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": "tiny" if tiny else "full",
                              "device": describe_device(device), "gpus": torch.cuda.device_count(),
                              "versions": library_versions(), "sections": {}}
    start = time.perf_counter()
    for name in sections or list(SECTIONS):
        tic = time.perf_counter()
        try:
            entry = {"ok": True, **SECTIONS[name](out, size, device)}
        except Exception as err:  # recorded; the other sections still run
            entry = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        entry["seconds"] = round(time.perf_counter() - tic, 1)
        result["sections"][name] = entry
        print(f"gpu_check: {name} {'ok' if entry['ok'] else 'FAILED'} in {entry['seconds']} s", file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["ok"] = all(s["ok"] for s in result["sections"].values())
    result["targets"] = targets(result["sections"])
    write_json(out / "gpu_check.json", result)
    (out / "gpu_check.md").write_text(markdown(result))
    return result


#: The issue's GPU targets (H100/H200, WRN-34-10): (what, limit, "max" or "min").
TARGETS = {
    "PGD-AT s per CIFAR-10 epoch": (45.0, "max"),
    "OTJR s per CIFAR-10 epoch": (55.0, "max"),
    "fast / reference, PGD-AT step": (3.0, "min"),
    "fast / reference, OTJR step": (3.0, "min"),
    "Table 2 row minutes, bf16 path, half robust": (20.0, "max"),
}


def targets(sections: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met (None where its section failed or did not run)."""
    def get(name, *keys):
        entry = sections.get(name)
        if not entry or not entry.get("ok"):
            return None
        for k in keys:
            entry = entry.get(k) if isinstance(entry, dict) else None
        return entry

    values = {
        "PGD-AT s per CIFAR-10 epoch": get("training", "pgd_at", "seconds_per_cifar_epoch"),
        "OTJR s per CIFAR-10 epoch": get("training", "otjr", "seconds_per_cifar_epoch"),
        "fast / reference, PGD-AT step": get("bench", "ratios", "reference/fast pgd_at (wall)"),
        "fast / reference, OTJR step": get("bench", "ratios", "reference/fast otjr (wall)"),
        "Table 2 row minutes, bf16 path, half robust": get("attacks", "bf16", "table2_row_minutes_half_robust"),
    }
    out = {}
    for name, (limit, kind) in TARGETS.items():
        v = values[name]
        met = None if v is None else (v <= limit if kind == "max" else v >= limit)
        out[name] = {"value": v, "limit": limit, "kind": kind, "met": met}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The summary a person reads (and pastes into docs/benchmarks.md)."""
    d, s = result["device"], result["sections"]
    lines = [f"# gpu_check ({result['mode']}) {result['date']}", "",
             f"{d['name']} ({d['type']}, {result['gpus']} GPU(s)) · torch {result['versions'].get('torch', '?')} · "
             f"{result['seconds']} s · {'all sections ok' if result['ok'] else 'FAILED'}", ""]
    for name, entry in s.items():
        lines.append(f"## {name}: {'ok' if entry['ok'] else 'FAILED'} ({entry['seconds']} s)")
        lines.append("")
        if not entry["ok"]:
            lines += ["```", entry["error"][:2000], "```", ""]
            continue
        if name == "tests":
            lines.append(f"{entry['passed']} passed, {entry['skipped']} skipped, {entry['failures']} failed, "
                         f"{entry['errors']} errors of {entry['tests']}")
        elif name == "bench":
            lines += ["| method | path | jacobian | step (ms) | images/s | peak MiB |", "|---|---|---|---:|---:|---:|"]
            lines += [f"| {r['method']} | {r['path']} | {r['jacobian']} | {r['median_ms']:.1f} | {r['images_per_s']:.0f} | "
                      f"{r['peak_memory_mib'] if r['peak_memory_mib'] is not None else '-'} |" for r in entry["rows"]]
            lines += [""] + [f"- {k} = {v:.2f}" for k, v in entry["ratios"].items()]
        elif name == "training":
            lines += ["| method | s per CIFAR-10 epoch | peak MiB |", "|---|---:|---:|"]
            lines += [f"| {m} | {entry[m]['seconds_per_cifar_epoch']} | {entry[m]['peak_memory_mib'] or '-'} |"
                      for m in ("pgd_at", "otjr")]
        elif name == "attacks":
            lines += ["| attack | fp32 fwd-eq/s | bf16 fwd-eq/s | fp32 projected s | bf16 projected s |",
                      "|---|---:|---:|---:|---:|"]
            for a in entry["suite"]:
                f, b = entry["fp32"]["attacks"][a], entry["bf16"]["attacks"][a]
                lines.append(f"| {a} | {f['forward_equivalents_per_s']} | {b['forward_equivalents_per_s']} | "
                             f"{f['projected_seconds_all_robust']} | {b['projected_seconds_all_robust']} |")
            lines += ["", f"Table 2 row on {TABLE2_IMAGES:,} images, every example robust (upper bound): "
                          f"fp32 {entry['fp32']['table2_row_minutes_all_robust']} min, "
                          f"bf16 {entry['bf16']['table2_row_minutes_all_robust']} min; half robust: "
                          f"fp32 {entry['fp32']['table2_row_minutes_half_robust']} min, "
                          f"bf16 {entry['bf16']['table2_row_minutes_half_robust']} min"]
        lines.append("")
    lines += ["## targets (meaningful in full mode only)", "", "| target | limit | measured | met |", "|---|---:|---:|---|"]
    for name, t in result["targets"].items():
        bound = f"{'<=' if t['kind'] == 'max' else '>='} {t['limit']:g}"
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {name} | {bound} | {t['value'] if t['value'] is not None else '-'} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--tiny", action="store_true", help="toy sizes even on a GPU (default on a CPU)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"error: --sections: unknown {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    result = check(args.outdir, tiny=True if args.tiny else None, sections=names)
    print((args.outdir / "gpu_check.md").read_text())
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
