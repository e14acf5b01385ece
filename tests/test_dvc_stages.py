"""dvc.yaml against the registries: each training stage lists exactly the params its run reads,
so changing one method's settings re-runs only that method's training."""

from __future__ import annotations

import functools
import re

import pytest
from ruamel.yaml import YAML

from conftest import REPO
from pipeline.methods import ADDONS, METHODS, parse_run
from pipeline.config import load_params
from pipeline.dvc_render import SANITY_ATTACK_KEYS, fingerprint, registered_runs

BASE = ["seed", "threads", "model", "train", "adversary", "threat.linf", "speed"]  # what the shared trainer reads for every run


def stages() -> dict:
    return YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())["stages"]


def expected_params(run_name: str) -> list[str]:
    run = parse_run(run_name)
    keys = BASE + list(METHODS.get(run.method).param_keys())
    for addon in run.addons:
        keys += list(ADDONS.get(addon).param_keys())
    return keys


@functools.cache
def every_run_stages() -> dict:
    """dvc.yaml as rendered with every registered run in `runs` (the default leaves the add-on runs out)."""
    from pipeline.dvc_render import stages as rendered

    return rendered(listed=registered_runs())


def train_runs() -> list[str]:
    return [name.removeprefix("train-") for name in stages() if name.startswith("train-") and not name.endswith("-seeds")]


def test_every_registered_method_and_every_listed_run_has_a_train_stage():
    runs = set(train_runs())
    assert set(METHODS.names()) <= runs
    assert set(load_params(REPO / "params.yaml").runs) <= runs
    assert runs == set(load_params(REPO / "params.yaml").runs)  # no stage trains what is never evaluated


@pytest.mark.parametrize("run", registered_runs())
def test_train_stage_lists_exactly_the_params_its_run_reads(run):
    stage = every_run_stages()[f"train-{run}"]
    do = stage["do"]
    assert stage["foreach"] == "${datasets}"
    assert sorted(do["params"]) == sorted(expected_params(run))
    assert do["cmd"] == f"python -m pipeline stage train --dataset ${{item}} --method {run}"
    assert do["outs"] == [f"models/${{item}}/{run}.safetensors",
                          {f"metrics/train/${{item}}/{run}/metrics.json": {"cache": False}}]
    # the code: through its run's fingerprint, the trainer's and its own method's and add-on's modules
    assert do["deps"] == ["metrics/params.ok", "data/prepared/${item}", f"metrics/code/train-{run}.md5"]
    files = {line.split("  ", 1)[1] for line in fingerprint(f"train-{run}").splitlines()}
    assert {"pipeline/losses", "pipeline/train", "pipeline/models", "pipeline/core",
            "pipeline/data"} <= {f.rsplit("/", 1)[0] for f in files} and "pipeline/params.py" in files
    own = {f"pipeline/methods/{part}.py" for part in run.split("-")}
    assert own <= files and not {f for f in files if f.startswith("pipeline/attacks")}
    assert {f for f in files if f.startswith("pipeline/methods/")} - own <= {
        f"pipeline/methods/{m}.py" for m in ("__init__", "base", "addons", "runs", "jacobian", "sat", "rand_jr")}
    # the same run's further seeds: the same keys but `seed` (the seed comes with the command)
    further = every_run_stages()[f"train-{run}-seeds"]
    assert further["matrix"] == {"dataset": "${datasets}", "seed": "${seeds}"}
    assert sorted(further["params"]) == sorted(k for k in expected_params(run) if k != "seed")
    assert further["cmd"].endswith(f"--method {run} --seed ${{item.seed}}")
    assert further["outs"] == [f"models/${{item.dataset}}.seed${{item.seed}}/{run}.safetensors",
                               {f"metrics/train/${{item.dataset}}.seed${{item.seed}}/{run}/metrics.json": {"cache": False}}]


def test_a_method_setting_is_listed_by_its_own_stage_only():
    """`-S lambda_j=...` (OTJR's key) re-runs OTJR's trainings; `trades.beta` TRADES' ones; and so on."""
    owners: dict[str, set[str]] = {}
    for name, stage in every_run_stages().items():
        for key in set(stage.get("do", stage).get("params", [])) - set(BASE):
            owners.setdefault(key, set()).add(name.removesuffix("-seeds"))
    assert owners["lambda_j"] == {"train-otjr", "train-otjr-awp", "train-otjr-lbgat"}
    assert owners["trades"] == {"train-trades", "train-trades-awp", "train-trades-lbgat"}
    assert owners["awp"] == {"train-trades-awp", "train-otjr-awp"}
    assert owners["sat"] == {"train-sat"} and owners["sat_jr"] == {"train-sat_jr"}


def test_no_stage_of_a_further_seed_reads_seed_and_only_summaries_read_seeds():
    """`-S seed=...` re-runs the first seed's stages only; `-S 'seeds=[...]'` adds stages and re-runs none."""
    for name, stage in stages().items():
        keys = stage.get("do", stage).get("params", [])
        if name.endswith("-seeds"):
            assert "seed" not in keys and "seeds" not in keys, name
        elif "seeds" in keys:
            assert name in ("aggregate", "report"), name


def test_methods_page_documents_every_method_and_addon():
    page = (REPO / "docs" / "methods.md").read_text()
    for name in METHODS.names() + ADDONS.names():
        assert f"| `{name}` |" in page, f"docs/methods.md lacks {name}"


def test_sanity_stages_list_the_attack_keys_the_checks_read():
    """The checks read `attack.batch_size` and `attack.pgd20` from params.yaml, the rest (the instances' kinds
    included) through the attack record (a dependency): the stage lists those two keys, not the whole block
    (which would double dvc.lock)."""
    source = "\n".join(p.read_text() for p in sorted((REPO / "pipeline" / "sanity").glob("*.py")))
    read = set(re.findall(r"params\.attack\.(\w+)", source))
    blocks = set(re.findall(r"params\.attack\.settings(?:\.get\(|\[)\"(\w+)\"", source))
    assert read == {"batch_size", "settings", "kinds"} and blocks == {"pgd20"}
    assert "params.attack" not in source.replace("params.attack.batch_size", "").replace(
        'params.attack.settings.get("pgd20")', "").replace("params.attack.kinds.get(", "")
    assert SANITY_ATTACK_KEYS == ("attack.batch_size", "attack.pgd20", "threat.linf")
    for name in ("sanity", "sanity-seeds"):
        keys = stages()[name]["params"]
        assert [k for k in keys if k.startswith(("attack", "threat"))] == list(SANITY_ATTACK_KEYS), name
