"""The analyze stage: every analysis of the paper for every run on one dataset, in one JSON file.

One process per dataset (not per model) keeps the stage cheap, and the cross-sections need
all models side by side anyway: their images are the first test images every run classifies
correctly, and the random direction of each slice is shared by all runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..core import paths
from ..core.passes import predict
from ..core.device import resolve_device
from ..core.io import check_writable, write_json
from ..core.progress import progress
from ..core.versions import library_versions
from ..models.subject import Subject, pipeline_subject, test_subset
from ..params import Params
from .activations import channel_magnitudes
from .cross_section import decision_grid, grid_coordinates, plane
from .gradients import PGD, input_gradient_magnitude, layer_gradient_ratios


def training_summary(info: dict[str, Any]) -> dict[str, Any]:
    """Model, epochs and device of a checkpoint, from its metadata (its wall times are in `core.timing`)."""
    settings = info.get("settings", {})
    return {
        "model": info.get("model", {}).get("name"),
        "model_args": info.get("model", {}).get("args", {}),
        "method": info.get("method"),
        "epochs": settings.get("train", {}).get("epochs"),
        "device": info.get("device"),
    }


def pick_images(predictions: list[torch.Tensor], y: torch.Tensor, k: int) -> list[int]:
    """The first `k` indices every model classifies correctly (topped up in order if too few)."""
    correct = torch.stack([p == y for p in predictions]).all(0)
    chosen = torch.nonzero(correct).flatten().tolist()[:k]
    rest = [i for i in range(len(y)) if i not in chosen]
    return sorted(chosen + rest[: k - len(chosen)])


def mean_ignoring_nan(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def median_ignoring_nan(values: list[float]) -> float | None:
    finite = sorted(v for v in values if not math.isnan(v))
    return float(torch.tensor(finite, dtype=torch.float64, device="cpu").median()) if finite else None


def analyze_run(model, x, y, images: list[int], params: Params) -> dict[str, Any]:
    """Every analysis for one model on the subset (x, y)."""
    a = params.analysis
    pgd = PGD(a.eps, a.step, a.random_start)
    bs = a.batch_size
    grads = input_gradient_magnitude(model, x, y, pgd, list(a.grad_steps), bs, params.seed)
    x_adv = pgd(model, x, y, a.adv_steps, bs, params.seed)
    ratios = layer_gradient_ratios(model, x[: a.ratio_n], x_adv[: a.ratio_n], y[: a.ratio_n])
    cs = a.cross_section
    coords = grid_coordinates(cs.radius * a.eps * math.sqrt(x[0].numel()), cs.resolution)
    sections = []
    for i in images:
        generator = torch.Generator().manual_seed(params.seed * 100003 + i)
        delta = (x_adv[i] - x[i]).cpu()
        u, v = plane(delta, generator)
        grid = decision_grid(model, x[i], u.to(x.device), v.to(x.device), coords.to(x.device), bs)
        own = int(grid[cs.resolution // 2, cs.resolution // 2])
        sections.append({
            "image": i,
            "label": int(y[i]),
            "prediction": own,
            "adversarial_prediction": int(predict(model, x_adv[i : i + 1], 1)[0]),
            "adversarial_offset": float(delta.double().norm()),
            "own_class_fraction": float((grid == own).double().mean()),
            "grid": grid.tolist(),
        })
    return {
        "input_gradient": {"steps": list(a.grad_steps), "mean_abs": grads},
        "activations": channel_magnitudes(model, x, x_adv, bs),
        "layer_ratios": {
            "layers": list(ratios),
            "mean": [mean_ignoring_nan(r) for r in ratios.values()],
            "median": [median_ignoring_nan(r) for r in ratios.values()],
            "n": min(a.ratio_n, len(y)),
        },
        "cross_sections": sections,
    }


def analyze_dataset(dataset: str, params: Params, show_progress: bool | None = None) -> Path:
    """Analyse every run of `params.runs` on `dataset`; writes metrics/analysis/<dataset>.json."""
    subjects = [pipeline_subject(dataset, run) for run in params.runs]  # load (and validate) all before any work
    return analyze_subjects(subjects, params, paths.analysis_result(dataset), show_progress)


def analyze_subjects(subjects: list[Subject], params: Params, out: Path, show_progress: bool | None = None) -> Path:
    """Analyse models of one dataset side by side (shared cross-section images and directions); writes `out`."""
    a = params.analysis
    check_writable(out)
    dataset, meta = subjects[0].dataset, subjects[0].meta
    device = resolve_device(params.device)
    loaded = {s.run: (s.model.to(device), s.info) for s in subjects}
    x, y, subset = test_subset(dataset, a.n, device, params.eval_split)
    predictions = [predict(m, x, a.batch_size) for m, _ in loaded.values()]
    images = pick_images(predictions, y, min(a.cross_section.images, len(y)))
    coords = grid_coordinates(a.cross_section.radius * a.eps * math.sqrt(x[0].numel()), a.cross_section.resolution)
    runs = {}
    with progress(show_progress) as bar:
        task = bar.add_task(f"analyze {dataset}", total=len(loaded), info="")
        for run, (model, info) in loaded.items():
            runs[run] = {"training": training_summary(info), **analyze_run(model, x, y, images, params)}
            bar.advance(task)
    write_json(out, {
        "dataset": dataset,
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "device": str(device),
        "num_classes": meta["num_classes"],
        "settings": a.model_dump(),
        "cross_section_coordinates": coords.tolist(),
        "versions": library_versions(),
        "runs": runs,
    })
    return out
