"""What to run, from DVC itself: the stage graph, the stages `dvc status` calls changed, what they need."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError

#: `otjr stage` commands that compute on a device (a GPU when there is one); the rest need none.
DEVICE_COMMANDS = ("train", "attack", "sanity", "analyze", "sensitivity")
_DEVICE = re.compile(r"\bstage\s+(" + "|".join(DEVICE_COMMANDS) + r")\b")
_RANKS = re.compile(r"--nproc[-_]per[-_]node[= ](\d+)")


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's name for it (`train-xe@digits`), what `dvc repro --single-item` takes
    upstream: frozenset[str]  # the stages to run first (those of the plan that it depends on)
    ranks: int  # processes it starts: torchrun's --nproc_per_node, else 1
    device: bool  # computes on a device: gets `ranks` GPUs of its own when there are GPUs


def needs(cmd: str | list[str]) -> tuple[int, bool]:
    """(ranks, device) of a stage command: torchrun's processes, and whether it is a device command."""
    text = " ".join(cmd) if isinstance(cmd, list) else (cmd or "")
    ranks = _RANKS.search(text)
    return (int(ranks.group(1)) if ranks else 1), bool(_DEVICE.search(text))


def plan(where: Path, targets: list[str] | None = None) -> tuple[Path, list[Stage], int]:
    """The DVC project's root, the stages `dvc repro [targets]` would consider running (upstream first) and how
    many chosen stages are up to date: a stage runs when `dvc status` calls it changed or an upstream one runs."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(where)) as repo:
            root = Path(repo.root_dir)
            graph = repo.index.graph  # edges point from a stage to the stages it depends on
            if targets:
                chosen = {s for t in targets for s in repo.stage.collect(t, with_deps=True)}
            else:
                chosen = set(graph.nodes)
            chosen = {s for s in chosen if not s.is_data_source}
            changed = set(repo.status(targets=[s.addressing for s in chosen]) if chosen else ())
            order = [s for s in reversed(list(nx.topological_sort(graph))) if s in chosen]
    except DvcException as err:
        raise UserError(f"dvc: {err}") from None
    run: dict[str, Stage] = {}
    for s in order:
        up = frozenset(d.addressing for d in graph.successors(s) if d.addressing in run)
        if s.addressing in changed or up:
            run[s.addressing] = Stage(s.addressing, up, *needs(s.cmd))
    return root, list(run.values()), len(order) - len(run)
