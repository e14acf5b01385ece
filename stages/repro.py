"""`otjr repro [TARGETS] -j N`: `dvc repro`, with independent stages at once (on this machine's cores and GPUs,
or on a Dask cluster); each stage still runs through DVC, which writes dvc.lock as `dvc repro` does."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from ._cli import one_line_errors


@one_line_errors
def repro(
    targets: Optional[List[str]] = typer.Argument(None, help="stages or dvc.yaml files (default: every stage)"),
    jobs: Optional[str] = typer.Option(None, "--jobs", "-j", help="stages at once: a count, or `auto` (one per "
                                       "GPU, else one per core); default 1 (on a cluster: as many as it takes)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU ids to lend, e.g. 0,1,2,3 (default: every GPU "
                                       "CUDA sees; `OTJR_GPUS` overrides the detection)"),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="a Dask scheduler (tcp://host:8786) or a YAML "
                                          "file naming a dask-jobqueue cluster; see docs/scale-out.md"),
) -> None:
    """Reproduce the pipeline like `dvc repro`, running independent stages at once."""
    from pipeline.core.errors import UserError
    from pipeline.parallel import devices, repro as run

    ids = devices.parse(gpus) if gpus is not None else None
    if jobs is None:
        count = None
    elif jobs == "auto":  # on a cluster: as many as its workers take
        count = None if cluster else len(ids if ids is not None else devices.detect()) or os.cpu_count() or 1
    elif jobs.isdigit() and int(jobs) > 0:
        count = int(jobs)
    else:
        raise UserError(f"-j {jobs}: give a count of stages at once (1 or more) or `auto`")
    if cluster and gpus is not None:
        raise UserError("--gpus lends this machine's GPUs; on a cluster each worker declares its own (see docs)")
    raise typer.Exit(run(targets=targets or None, jobs=count, gpus=ids, cluster=cluster))
