"""`otjr bench`: median training-step time of methods on this device, fast path against a straightforward reference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._cli import one_line_errors


@one_line_errors
def bench(
    model: list[str] = typer.Option(
        ["small_cnn:width=16@1x8x8"], "--model",
        help="NAME[:key=value,...][@CxHxW], repeatable, e.g. wrn34_10 or wrn34_10:depth=16,widen=4@3x32x32"),
    methods: str = typer.Option("pgd_at,otjr", help="comma-separated methods (the reference has pgd_at and otjr)"),
    paths: str = typer.Option("fast,reference", help="fast (the trainer's step) and/or reference (straightforward)"),
    batch_size: Optional[int] = typer.Option(None, help="images per step (default: train.batch_size)"),
    shape: str = typer.Option("3x32x32", help="input shape of models given without @CxHxW"),
    classes: int = typer.Option(10, help="number of classes"),
    steps: int = typer.Option(10, min=1, help="timed steps per case (interleaved rounds)"),
    warmup: int = typer.Option(2, min=0, help="untimed steps per case first (absorbs torch.compile)"),
    precision: Optional[str] = typer.Option(None, help="fast path: fp32 or bf16 (default: speed.precision)"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="fast path (default: speed.channels_last)"),
    cudnn_benchmark: Optional[bool] = typer.Option(None, "--cudnn-benchmark/--no-cudnn-benchmark",
                                                   help="fast path, CUDA (default: speed.cudnn_benchmark)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="fast path (default: speed.compile)"),
    jacobian: str = typer.Option("exact", help="comma-separated: exact and/or finite_difference (Jacobian methods)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N (default: the device param)"),
    out: Path = typer.Option(Path("bench.json"), help="where to write the JSON result"),
) -> None:
    """Time training steps of METHODS for each --model on this device, print a table, write JSON.

    The fast path is the trainer's step with params.yaml's `speed:` options, overridden by
    the flags; settings of methods and the training adversary come from params.yaml.
    """
    from pipeline.benchmark.run import bench as run_bench
    from pipeline.benchmark.run import parse_model, parse_shape, table
    from pipeline.config import load_params
    from pipeline.core.device import resolve_device
    from pipeline.core.io import write_json
    from pipeline.core.progress import progress
    from pipeline.params import SpeedParams

    params = load_params()
    overrides = {"precision": precision, "channels_last": channels_last, "cudnn_benchmark": cudnn_benchmark,
                 "compile": compile}
    speed = SpeedParams.model_validate({**params.speed.model_dump(),
                                        **{k: v for k, v in overrides.items() if v is not None}})
    default_shape = parse_shape(shape)
    choices = [parse_model(m, default_shape) for m in model]
    with progress(None) as bar:
        task = bar.add_task("bench", total=None, info="")
        result = run_bench(choices, _list(methods), _list(paths), _list(jacobian), speed, params,
                           resolve_device(device or params.device), classes=classes, batch_size=batch_size,
                           steps=steps, warmup=warmup, on_case=lambda text: bar.update(task, info=text))
    print(table(result))
    write_json(out, result)
    print(f"\nwrote {out}")


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
