"""The report's figures (matplotlib, PNG): one function per figure, each returning the file it wrote.

Every figure takes plain data (lists and dicts from the result files), labels its axes,
keeps one colour per run across all figures, and puts legends outside the data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..core.io import atomic_path  # noqa: E402

DPI = 110
MAX_CLASS_PATCHES = 20
MAX_SIDE_BY_SIDE = 7


def run_colors(runs: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    return {run: cmap(i % cmap.N) for i, run in enumerate(runs)}


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def legend_right(ax_or_fig, **kwargs) -> None:
    ax_or_fig.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8, **kwargs)


def finish_log_plot(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Log y axis, labels, grid, the legend outside on the right, then save."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    legend_right(ax)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def panel_grid(n: int, max_cols: int, width: float, height: float, **kwargs):
    """A figure with `n` panels in rows of at most `max_cols`; unused panels hidden."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 0.4, height * rows + 0.4), squeeze=False, **kwargs)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def finish_panels(fig, axes, path: Path, title: str) -> Path:
    """One legend for all panels (top right), the title top left, then save."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, frameon=False, fontsize=8)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return save(fig, path)


def training_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path, title: str) -> Path | None:
    """Paper Fig. 7: per epoch, each run's objective, adversarial CE, and held-out clean / PGD accuracy."""
    panels = [("train/loss", "training objective"), ("train/ce_adv", "cross-entropy on PGD examples"),
              ("val/clean_acc", "held-out clean accuracy (%)"), ("val/pgd_acc", "held-out PGD accuracy (%)")]
    panels = [(k, label) for k, label in panels if any(k in c for c in curves.values())]
    if not panels:
        return None
    colors = run_colors(list(curves))
    fig, axes = panel_grid(len(panels), 2, 4.4, 3.0)
    for ax, (key, label) in zip(axes.flat, panels):
        for run, c in curves.items():
            if key in c:
                xs, ys = zip(*c[key])
                ax.plot(xs, ys, marker="o", ms=3, lw=1.4, color=colors[run], label=run)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        absent = [run for run, c in curves.items() if key not in c]
        if absent:  # say who is missing (a run without PGD examples has no such curve), never drop them silently
            ax.set_title(f"{len(curves) - len(absent)} of {len(curves)} runs; none for: {', '.join(absent)}",
                         fontsize=7, wrap=True)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def accuracy_sweeps(sweeps: dict[str, dict[str, dict[str, Any]]], path: Path, title: str,
                    paper: dict[str, dict[float, float]] | None = None) -> Path | None:
    """Sanity sweeps (paper Table 10): PGD accuracy against eps (and against steps when run), one line per run."""
    axes_present = [a for a in ("eps", "steps") if any(a in s for s in sweeps.values())]
    if not axes_present:
        return None
    colors = run_colors(list(sweeps))
    fig, axes = plt.subplots(1, len(axes_present), figsize=(4.6 * len(axes_present) + 1.4, 3.4), squeeze=False)
    for ax, axis in zip(axes[0], axes_present):
        chance = None
        for run, s in sweeps.items():
            if axis in s:
                ax.plot(s[axis]["x"], s[axis]["accuracy"], marker="o", ms=4, color=colors[run], label=run)
                chance = s[axis].get("chance") if chance is None else chance
        if paper and axis in paper:
            xs = sorted(paper[axis])
            ax.plot(xs, [paper[axis][x] for x in xs], ls="--", marker="x", color="black", label="paper (OTJR, Table 10)")
        if chance is not None and axis == "eps":
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel("L-inf budget eps" if axis == "eps" else "PGD steps")
        ax.set_ylabel("PGD accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        legend_right(ax)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def clean_vs_robust(points: dict[str, tuple[float, float]], path: Path, title: str, robust_label: str,
                    paper: dict[str, tuple[float, float]] | None = None) -> Path | None:
    """Clean accuracy against robust accuracy, one point per run (paper points hollow when settings match)."""
    if not points:
        return None
    colors = run_colors(list(points))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for run, (clean, robust) in points.items():
        ax.scatter(clean, robust, s=45, color=colors[run], zorder=3)
        ax.annotate(run, (clean, robust), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if paper and run in paper:
            pc, pr = paper[run]
            ax.scatter(pc, pr, s=45, facecolors="none", edgecolors=colors[run], zorder=3)
            ax.plot([clean, pc], [robust, pr], color=colors[run], lw=0.8, ls=":")
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{robust_label} accuracy (%)")
    xs = [p[0] for p in points.values()] + [p[0] for p in (paper or {}).values()]
    ys = [p[1] for p in points.values()] + [p[1] for p in (paper or {}).values()]
    ax.set_xlim(max(-3, min(xs) - 8), min(103, max(xs) + 8))
    ax.set_ylim(max(-3, min(ys) - 8), min(103, max(ys) + 8))
    ax.grid(alpha=0.3)
    if paper:
        ax.scatter([], [], s=45, color="grey", label="ours")
        ax.scatter([], [], s=45, facecolors="none", edgecolors="grey", label="paper")
        ax.legend(loc="best", frameon=False, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def input_gradients(series: dict[str, tuple[list[int], list[float]]], path: Path, title: str,
                    paper: dict[str, tuple[list[int], list[float]]] | None = None) -> Path | None:
    """Paper Tables 5 and 12 as a figure: E|grad_x CE| per pixel after PGD-k (log scale)."""
    if not series:
        return None
    colors = run_colors(list(series))
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    for run, (steps, values) in series.items():
        ax.plot(steps, values, marker="o", ms=4, color=colors[run], label=run)
        if paper and run in paper:
            ax.plot(*paper[run], ls="--", marker="x", ms=4, color=colors[run], label=f"{run} (paper)")
    ax.set_xticks(sorted({k for steps, _ in series.values() for k in steps}))
    return finish_log_plot(fig, ax, path, title, "PGD iterations k (0 = clean input)", "mean |d CE / d x| per pixel")


def activations(data: dict[str, dict[str, Any]], path: Path, title: str) -> Path | None:
    """Paper Figs. 2 and 8: mean |penultimate activation| per channel, clean vs PGD, sorted by the clean value."""
    if not data:
        return None
    fig, axes = panel_grid(len(data), 4, 3.3, 2.6)  # each run its own scale: one run's spike flattens no other
    for ax, (run, a) in zip(axes.flat, data.items()):
        xs = range(1, len(a["clean"]) + 1)
        ax.bar(xs, a["clean"], width=1.0, color="tab:blue", alpha=0.55, label="clean")
        ax.plot(xs, a["adversarial"], color="tab:red", lw=0.9, label="PGD adversarial")
        ax.set_title(run, fontsize=10)
        ax.set_xlabel("channel (sorted by clean magnitude)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean |activation|", fontsize=8)
    return finish_panels(fig, axes, path, title)


def layer_ratios(data: dict[str, tuple[list[str], list[float | None]]], path: Path, title: str) -> Path | None:
    """Paper Figs. 4 and 6: E(||grad_theta_i L(x_adv)|| / ||grad_theta_i L(x)||) per layer, input to output."""
    if not data:
        return None
    colors = run_colors(list(data))
    width = max(6.0, 0.25 * max(len(layers) for layers, _ in data.values()) + 3)
    fig, ax = plt.subplots(figsize=(width, 3.8))
    for run, (layers, means) in data.items():
        pts = [(i + 1, m) for i, m in enumerate(means) if m is not None and m > 0]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=colors[run], label=run)
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    names = max((layers for layers, _ in data.values()), key=len)
    if len(names) <= 16:
        ax.set_xticks(range(1, len(names) + 1), [n.removesuffix(".weight") for n in names], rotation=45, ha="right",
                      fontsize=7)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish_log_plot(fig, ax, path, title, "layer (conv / linear weights, input to output)",
                           "mean gradient-norm ratio adv / clean")


def cross_sections(sections: dict[str, list[dict[str, Any]]], coords: list[float], num_classes: int, path: Path,
                   title: str) -> Path | None:
    """Paper Fig. 9: predicted class on the plane (adversarial direction, random orthogonal direction).

    The image's own predicted class is black; every other class keeps one colour. Runs side by
    side (at most 7 per block of rows), one row per image.
    """
    if not sections:
        return None
    runs = list(sections)
    n_images = max(len(s) for s in sections.values())
    blocks = math.ceil(len(runs) / MAX_SIDE_BY_SIDE)
    cols = math.ceil(len(runs) / blocks)  # blocks as even as they go: 10 runs are two rows of 5, not 7 and 3
    palette = plt.get_cmap("tab20")
    extent = [coords[0], coords[-1], coords[0], coords[-1]]
    fig, axes = plt.subplots(blocks * n_images, cols, figsize=(1.9 * cols + 1.6, 1.9 * blocks * n_images + 0.9),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for r_i, run in enumerate(runs):
        block, col = divmod(r_i, cols)
        for i_i, s in enumerate(sections[run]):
            ax = axes[block * n_images + i_i, col]
            ax.set_frame_on(True)
            own = s["prediction"]
            colours = [(0, 0, 0, 1) if c == own else palette(c % 20) for c in range(num_classes)]
            ax.imshow(s["grid"], origin="lower", extent=extent, cmap=ListedColormap(colours), vmin=-0.5,
                      vmax=num_classes - 0.5, interpolation="nearest")
            ax.plot(0, 0, marker="o", ms=4, color="white", mec="black")
            if s["adversarial_offset"] <= coords[-1]:
                ax.plot(s["adversarial_offset"], 0, marker="x", ms=6, color="white", mew=1.8)
            if i_i == 0:
                ax.set_title(run, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"image {s['image']} (y={s['label']})", fontsize=8)
    shown = sorted({c for s in sections.values() for sec in s for row in sec["grid"] for c in row})
    patches = [Patch(color="black", label="own class")] + [Patch(color=palette(c % 20), label=f"class {c}")
                                                            for c in shown[:MAX_CLASS_PATCHES]]
    fig.legend(handles=patches, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, "horizontal: the run's own PGD direction (x: its adversarial example); vertical: a random "
             "orthogonal direction;\nblack: the image's own class; o: the image", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    return save(fig, path)


def training_time(seconds: dict[str, float], path: Path, title: str, device: str) -> Path | None:
    """Paper Table 11 as a bar chart: mean training seconds per epoch, with the ratio to XE when XE ran."""
    if not seconds:
        return None
    colors = run_colors(list(seconds))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(seconds) + 2), 3.4))
    runs = list(seconds)
    bars = ax.bar(runs, [seconds[r] for r in runs], color=[colors[r] for r in runs])
    if "xe" in seconds and seconds["xe"] > 0:
        for bar, run in zip(bars, runs):
            ax.annotate(f"x{seconds[run] / seconds['xe']:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(f"seconds per epoch ({device})")
    ax.set_xlabel("run (label: time relative to xe)" if "xe" in seconds else "run")
    ax.tick_params(axis="x", rotation=30 if len(runs) > 5 else 0, labelsize=8)
    ax.margins(y=0.15)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def paper_comparison(rows: dict[str, tuple[list[str], list[float], list[float]]], path: Path, title: str
                     ) -> Path | None:
    """Ours (filled) vs the paper (hollow) per attack, one panel per matching run."""
    if not rows:
        return None
    longest = max(len(r[0]) for r in rows.values())
    fig, axes = panel_grid(len(rows), 3, 4.2, 0.32 * longest + 1.2)
    for ax, (run, (labels, ours, theirs)) in zip(axes.flat, rows.items()):
        ys = range(len(labels))
        for y, o, t in zip(ys, ours, theirs):
            ax.plot([o, t], [y, y], color="grey", lw=1)
        ax.scatter(ours, ys, color="tab:blue", zorder=3, label="ours")
        ax.scatter(theirs, ys, facecolors="none", edgecolors="black", zorder=3, label="paper")
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("accuracy (%)")
        ax.set_title(run, fontsize=10)
        ax.grid(alpha=0.3)
    return finish_panels(fig, axes, path, title)
