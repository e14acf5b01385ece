"""The data behind `dvc plots show` / `dvc plots diff`: small CSV files in metrics/plots/.

Long format with a `model` column ('run@dataset'), so any set of runs plots without
editing dvc.yaml; the templates in dvc_templates/ colour by `model` and dash by revision.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..core import paths
from ..core.io import write_text
from .collect import Results, sanity_sweeps

#: file stem -> training-log metric plotted per epoch
TRAINING = {"train_loss": "train/loss", "train_clean_acc": "val/clean_acc", "train_pgd_acc": "val/pgd_acc"}
ROBUSTNESS_FIELDS = ("clean", "pgd20", "autoattack", "worst_case")


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    write_text(path, buf.getvalue())
    return path


def write_plot_data(results: Results) -> list[Path]:
    """One CSV per plot (dvc.yaml declares each with its template, x and y): training curves,
    the sanity eps sweep, and clean vs robust accuracy."""
    out = paths.report_plots_dir()
    training: dict[str, list[list]] = {stem: [] for stem in TRAINING}
    sweeps, robustness = [], []
    for (ds, run), r in results.by_key.items():
        model = f"{run}@{ds}"
        for stem, key in TRAINING.items():
            training[stem] += [[model, ds, run, epoch, value] for epoch, value in r.curves.get(key, [])]
        eps = sanity_sweeps(r.sanity).get("eps")
        if eps:
            sweeps += [[model, ds, run, x, a] for x, a in zip(eps["x"], eps["accuracy"])]
        if r.record:
            robustness.append([model, ds, run] + [r.accuracy.get(k) for k in ROBUSTNESS_FIELDS])
    written = [write_csv(out / f"{stem}.csv", ["model", "dataset", "run", "epoch", stem.removeprefix("train_")], rows)
               for stem, rows in training.items()]
    written.append(write_csv(out / "eps_sweep.csv", ["model", "dataset", "run", "eps", "accuracy"], sweeps))
    written.append(write_csv(out / "clean_vs_robust.csv", ["model", "dataset", "run", *ROBUSTNESS_FIELDS], robustness))
    return written
