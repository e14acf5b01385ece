"""The typed function API behind every stage: what `otjr stage ...` and `dvc repro` call.

Each function validates its inputs (params, names, files) before doing any work. Each imports
what it runs inside its body, so a stage process loads only its own part of the pipeline (and
`otjr dvc render` gives each stage exactly those files as code dependencies).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

from .config import load_params
from .core import paths
from .core.device import use_threads
from .core.errors import UserError
from .methods.runs import Run
from .params import Params


def _params(params: Params | None, runs: Sequence[Run] = (), attack: bool = False) -> Params:
    """`params` (or params.yaml's: its top-level keys, the blocks of `runs`, the attack block where `attack`),
    with torch's CPU threads set to its `threads`."""
    p = params if params is not None else load_params(runs=runs, attack=attack)
    use_threads(p.threads)
    return p


def _variants(params: Params | None) -> dict[str, str]:
    """{variant run: method}, from `params` or params.yaml."""
    from .config import variant_methods
    from .methods import variants_from

    return variants_from(params.variants) if params is not None else variant_methods()


@contextlib.contextmanager
def _seeded(p: Params, seed: int | None) -> Iterator[Params]:
    """`p` for one seed of a run: `seed` (None or equal) keeps the plain layout; a further seed trains and
    evaluates with that seed, its files under `<dataset>.seed<seed>/` (`paths.seed_scope`)."""
    if seed is None or seed == p.seed:
        yield p
        return
    if seed < 0:
        raise UserError(f"--seed: expected a non-negative integer, got {seed}")
    with paths.seed_scope(seed):
        yield p.model_copy(update={"seed": seed, "seeds": ()})


def _dataset(name: str) -> str:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .data import DATASETS

    DATASETS.get(name, key="--dataset")
    return name


def check_params() -> Path:
    """params.yaml read as the stages read it: `load_params`, and each attack's budget against every dataset
    already prepared. dvc.yaml's first stage, on which every other depends: under `dvc repro` and `dvc exp run -S`
    bad params stop here, before DVC deletes any stage's outputs. Writes `paths.params_check()`, whose text
    never changes, so valid params invalidate nothing."""
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .attacks.run import checked_suite
    from .core.io import write_text
    from .data import has_split, load_meta

    p = load_params()
    for dataset in p.datasets:
        if has_split(dataset, "train"):
            checked_suite(p, load_meta(dataset))
    out = paths.params_check()
    text = "params.yaml: valid (checked by `otjr stage params` before every other stage)\n"
    if not out.is_file() or out.read_text() != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, text)
    return out


def download(dataset: str, params: Params | None = None) -> Path:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .data import download as fetch

    p = _params(params)
    return fetch(_dataset(dataset), p.data.sources.get(dataset))


def preprocess(dataset: str, params: Params | None = None) -> Path:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .data import preprocess as prepare

    p = _params(params)
    size, rule = p.data.resize(dataset)
    return prepare(_dataset(dataset), p.data.val_fraction, size, resize=rule, train_n=p.data.train_n.get(dataset))


def train(dataset: str, method: str, params: Params | None = None, resume: bool = True,
          seed: int | None = None) -> Path:
    """Train run `method` (a method, optionally with an add-on) on `dataset`, with `seed` (default: `seed`)."""
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .methods import parse_run
    from .train.loop import fit

    run = parse_run(method, key="--method", variants=_variants(params))
    p = _params(params, runs=[run])
    with _seeded(p, seed) as p:
        p.for_run(run)
        return fit(_dataset(dataset), run, p, resume=resume)


def attack(dataset: str, method: str, params: Params | None = None, seed: int | None = None) -> Path:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .attacks.run import attack_run
    from .methods import parse_run

    p = _params(params, attack=True)
    with _seeded(p, seed) as p:
        return attack_run(_dataset(dataset), parse_run(method, key="--method", variants=_variants(p)).name, p)


def sanity(dataset: str, method: str, params: Params | None = None, strict: bool = False,
           seed: int | None = None) -> tuple[Path, str]:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .methods import parse_run
    from .sanity.run import sanity_run

    p = _params(params, attack=True)
    with _seeded(p, seed) as p:
        out, verdict = sanity_run(_dataset(dataset), parse_run(method, key="--method", variants=_variants(p)).name, p)
    if strict and verdict == "fail":
        raise UserError(f"{out}: a sanity rule failed (strict mode)")
    return out, verdict


def aggregate(params: Params | None = None) -> str:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .report import aggregate as agg

    # the attack block: its kinds say which instances are white-box (the claims' worst case); a change to it
    # reaches this stage through the attack records it depends on
    return agg(_params(params, attack=True))


def analyze(dataset: str, params: Params | None = None) -> Path:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .analysis.run import analyze_dataset

    p = _params(params)
    return analyze_dataset(_dataset(dataset), p)


def report(params: Params | None = None) -> Path:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .report.build import build_report

    return build_report(_params(params, attack=True))  # the attack kinds, as in `aggregate`


def sensitivity(exp_json: Path | None = None) -> str:
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .report.sensitivity import sensitivity_report

    return sensitivity_report(exp_json)


def evaluate(dataset: str, path: Path | None = None, *, arch: str | None = None, arch_args: dict | None = None,
             mean: list[float] | None = None, std: list[float] | None = None, robustbench: str | None = None,
             threat_model: str = "Linf", model_dir: Path | None = None, name: str | None = None,
             params: Params | None = None) -> dict | None:
    """Attack suite, sanity checks and analyses on a model from elsewhere, written as a pipeline run's records."""
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .external import Source, evaluate_external

    p = _params(params, attack=True)
    source = Source(path=Path(path) if path else None, arch=arch, arch_args=arch_args, mean=mean, std=std,
                    robustbench=robustbench, threat_model=threat_model, model_dir=model_dir)
    return evaluate_external(_dataset(dataset), source, p, name)


def export_robustbench(dataset: str, run: str, out: Path | None = None) -> tuple[Path, list[str]]:
    """A run's clean and AutoAttack accuracy as RobustBench model info (JSON)."""
    # this stage's part of the pipeline only (start-up time, code dependencies)
    from .external import export_robustbench as export

    return export(_dataset(dataset), run, out)
