"""Measure training steps: every (model, method, path) case on random data, interleaved, in one process.

The fast path is the trainer's own step (`pipeline.train.step`) with the given speed
options; the reference is `reference.ReferenceStep`. Cases are timed in rounds (one step
of each case per round, after warm-up steps that also absorb torch.compile), so a change
in machine load hits every case alike; each step is synchronised with the device before
and after (the benchmark's own waits, not the trainer's). Reported per case: the median
wall time of a step, images per second from it, the median CPU time of the process (on
a CPU device: less sensitive to other load than wall time), and on CUDA the peak memory
allocated by the step.
"""

from __future__ import annotations

import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from ..core.errors import UserError
from ..core.versions import library_versions
from ..methods import METHODS, Setup
from ..methods.jacobian import jacobian_mode
from ..models import create
from ..params import Params, SpeedParams
from ..core.pgd import Adversary
from ..train.speed import prepare, resolve
from ..train.step import Step
from . import reference
from .flops import FlopCount


@dataclass(frozen=True)
class ModelChoice:
    """A registered model with arguments and the input shape it is benchmarked at."""

    name: str
    args: dict[str, Any]
    shape: tuple[int, int, int]

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}{f'({args})' if args else ''} {'x'.join(map(str, self.shape))}"


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--shape: expected CxHxW such as 3x32x32, got {text!r}") from None
    return c, h, w


def parse_model(text: str, shape: tuple[int, int, int]) -> ModelChoice:
    """'NAME[:k=v,...][@CxHxW]', e.g. 'wrn34_10:depth=16,widen=4@3x32x32' (the shape defaults to `shape`)."""
    spec, _, at = text.partition("@")
    name, _, arg_text = spec.partition(":")
    args = {}
    for item in filter(None, arg_text.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--model: expected NAME:key=value,... got {text!r}")
        args[key.strip()] = _value(value.strip())
    return ModelChoice(name.strip(), args, parse_shape(at) if at else shape)


@dataclass
class Case:
    model: ModelChoice
    method: str
    path: str  # "fast" or "reference"
    jacobian: str  # "exact" / "finite_difference" for Jacobian methods, "-" otherwise
    run: Callable[[], Any]
    gflop_per_image: float
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_bytes: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(case: Case, device: torch.device, record: bool) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    case.run()
    _sync(device)
    if record:
        case.wall.append(time.perf_counter() - wall)
        case.cpu.append(time.process_time() - cpu)
        if device.type == "cuda":
            case.peak_bytes = max(case.peak_bytes, torch.cuda.max_memory_allocated(device))


def _cases(choice: ModelChoice, methods: list[str], paths: list[str], jacobians: list[str], speed: SpeedParams,
           params: Params, classes: int, batch_size: int, device: torch.device, seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, *choice.shape, generator=g, device="cpu").to(device)  # the same data on any device
    y = torch.randint(0, classes, (batch_size,), generator=g, device="cpu").to(device)
    adv = params.adversary
    adversary = Adversary(adv.eps, adv.step, adv.steps)
    t = params.train

    def new_model(where: torch.device | str = device) -> torch.nn.Module:
        torch.manual_seed(seed)
        return create(choice.name, num_classes=classes, in_channels=choice.shape[0], **choice.args).to(where)

    def gflop(loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
        """Counted GFLOPs per image of one step (loss and its backward) on the meta device: nothing runs."""
        counter, n = FlopCount(), 2
        with counter:
            model = new_model("meta").train()
            loss(model, torch.rand(n, *choice.shape, device="meta"),
                 torch.zeros(n, dtype=torch.long, device="meta")).backward()
        return counter.flops / n / 1e9

    cases = []
    for method in methods:
        cls = METHODS.get(method, key="--methods")
        if "fast" in paths:
            for jac in jacobians if cls.uses_jacobian else ["exact"]:
                options = speed.model_copy(update={"jacobian": jac})
                fast = resolve(options, device)
                model = prepare(new_model(), fast)
                instance = cls(params.for_method(method), Setup(adversary, classes, jacobian_mode(jac, options.fd_step)))
                optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
                step = Step(model, optimizer, instance, speed=fast, device=device)
                step.start_epoch(0, t.lr)
                flops = gflop(lambda mm, xx, yy, m=instance: m.loss(mm, xx, yy).total)
                cases.append(Case(choice, method, "fast", jac if cls.uses_jacobian else "-", lambda s=step: s(x, y),
                                  flops))
        if "reference" in paths and method in reference.METHODS:
            otjr = params.method_params.get("otjr")
            settings = otjr.model_dump() if otjr is not None else None
            ref = reference.ReferenceStep(new_model(), method, adversary, t.lr, t.momentum, t.weight_decay, settings)
            flops = gflop(lambda mm, xx, yy: reference.ReferenceStep(mm, method, adversary, t.lr, t.momentum,
                                                                     t.weight_decay, settings).loss(xx, yy))
            cases.append(Case(choice, method, "reference", "exact" if cls.uses_jacobian else "-",
                              lambda r=ref: r(x, y), flops))
    return cases


def describe_device(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads(),
                            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu": _cpu_name(),
                            "cpu_count": os.cpu_count(), "load_average_before": list(os.getloadavg())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version()})
    else:
        info["name"] = info["cpu"]
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def bench(models: list[ModelChoice], methods: list[str], paths: list[str], jacobians: list[str], speed: SpeedParams,
          params: Params, device: torch.device, *, classes: int = 10, batch_size: int | None = None, steps: int = 10,
          warmup: int = 2, seed: int = 0, on_case: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every case; returns the JSON-able result (header, one row per case, and the ratios)."""
    batch_size = batch_size or params.train.batch_size
    for path in paths:
        if path not in ("fast", "reference"):
            raise UserError(f"--paths: unknown path {path!r}; choose from: fast, reference")
    header = {
        "command": shlex.join(["otjr", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(device),
        "versions": {**library_versions(), "torch_build": torch.__version__},
        "settings": {"batch_size": batch_size, "classes": classes, "steps": steps, "warmup": warmup, "seed": seed,
                     "adversary": params.adversary.model_dump(), "speed": speed.model_dump(),
                     "jacobians": jacobians, "train": {"lr": params.train.lr, "momentum": params.train.momentum,
                                                       "weight_decay": params.train.weight_decay}},
    }
    rows, ratios = [], {}
    for choice in models:
        cases = _cases(choice, methods, paths, jacobians, speed, params, classes, batch_size, device, seed)
        for case in cases:
            if on_case:
                on_case(f"warm-up {choice.label} {case.method} {case.path} {case.jacobian}")
            for _ in range(warmup):
                _time(case, device, record=False)
        for _ in range(steps):
            for case in cases:
                _time(case, device, record=True)
        model_rows = [_row(case, batch_size, device) for case in cases]
        rows += model_rows
        ratios[choice.label] = _ratios(model_rows, device)
    header["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {**header, "rows": rows, "ratios": ratios}


def _row(case: Case, batch_size: int, device: torch.device) -> dict[str, Any]:
    wall = _median_ms(case.wall)
    return {
        "model": case.model.label,
        "method": case.method,
        "path": case.path,
        "jacobian": case.jacobian,
        "median_ms": round(wall, 3),
        "median_cpu_ms": round(_median_ms(case.cpu), 3),
        "images_per_s": round(1e3 * batch_size / wall, 1),
        "gflop_per_image": round(case.gflop_per_image, 6),
        "peak_memory_mib": round(case.peak_bytes / 2**20, 1) if device.type == "cuda" else None,
        "steps_ms": [round(1e3 * s, 3) for s in case.wall],
    }


def _ratios(rows: list[dict[str, Any]], device: torch.device) -> dict[str, float]:
    """OTJR / PGD-AT per path (and Jacobian form), and reference / fast per method, from medians."""
    key = "median_cpu_ms" if device.type == "cpu" else "median_ms"
    by = {(r["method"], r["path"], r["jacobian"]): r for r in rows}
    out = {}
    for (method, path, jac), row in by.items():
        if method == "otjr" and ("pgd_at", path, "-") in by:
            pgd = by[("pgd_at", path, "-")]
            name = f"otjr/pgd_at {path}{'' if jac == 'exact' else ' ' + jac}"
            out[f"{name} (counted FLOPs)"] = round(row["gflop_per_image"] / pgd["gflop_per_image"], 3)
            out[f"{name} (wall)"] = round(row["median_ms"] / pgd["median_ms"], 3)
            if device.type == "cpu":
                out[f"{name} (cpu)"] = round(row[key] / pgd[key], 3)
        if path == "reference" and (method, "fast", jac) in by:
            fast = by[(method, "fast", jac)]
            out[f"reference/fast {method} (wall)"] = round(row["median_ms"] / fast["median_ms"], 3)
            if device.type == "cpu":
                out[f"reference/fast {method} (cpu)"] = round(row[key] / fast[key], 3)
    return out


def table(result: dict[str, Any]) -> str:
    """The result as markdown: a line on the device, the rows, then the ratios."""
    d = result["device"]
    s = result["settings"]
    lines = [
        f"{result['date']} · {d['name']} ({d['type']}, torch threads {d['torch_threads']}, load "
        f"{d['load_average_before'][0]:.2f}) · torch {result['versions'].get('torch', '?')} · batch {s['batch_size']}, "
        f"PGD-{s['adversary']['steps']} · speed {_speed_text(s['speed'])}",
        f"`{result['command']}`",
        "",
        "| model | method | path | jacobian | step (ms) | CPU (ms) | images/s | GFLOP/image | peak mem (MiB) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        mem = "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        lines.append(f"| {r['model']} | {r['method']} | {r['path']} | {r['jacobian']} | {r['median_ms']:.1f} | "
                     f"{r['median_cpu_ms']:.1f} | {r['images_per_s']:.0f} | {r['gflop_per_image']:.4g} | {mem} |")
    lines.append("")
    for model, ratios in result["ratios"].items():
        for name, value in ratios.items():
            lines.append(f"- {model}: {name} = {value:.2f}")
    return "\n".join(lines)


def _speed_text(speed: dict[str, Any]) -> str:
    on = [speed["precision"]]
    on += [k for k in ("channels_last", "cudnn_benchmark", "compile") if speed[k]]
    return ", ".join(on)
