"""params.yaml validation: typed objects, and one clear line naming the key for bad input."""

from __future__ import annotations

import re

import pytest

from conftest import write_params
from pipeline.core.errors import UserError
from pipeline.config import load_params


def test_repo_params_are_valid_and_typed(project):
    p = load_params()
    assert p.datasets == ("digits",)
    assert "otjr" in p.runs
    otjr = p.for_method("otjr")
    assert isinstance(otjr.lambda_j, float) and isinstance(otjr.num_projections, int)
    assert p.adversary.steps >= 1 and p.adversary.eps > 0


def test_fraction_budgets_and_dvc_style_floats(project):
    # `dvc exp run -S lambda_j=1e-05` writes 1e-05, a float under YAML 1.2
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(re.sub(r"(?m)^lambda_j: .*$", "lambda_j: 1e-05", text))
    p = load_params()
    assert p.for_method("otjr").lambda_j == pytest.approx(1e-5)
    write_params(project, {"adversary.eps": "8/255", "adversary.step": "2/255"})
    p = load_params()
    assert p.adversary.eps == pytest.approx(8 / 255) and p.adversary.step == pytest.approx(2 / 255)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"runs": ["xe", "nonesuch"]}, "unknown method 'nonesuch'"),
        ({"datasets": ["mnist9"]}, "unknown dataset 'mnist9'"),
        ({"adversary.eps": 0}, "'adversary.eps'"),
        ({"adversary.eps": -0.1}, "'adversary.eps'"),
        ({"num_projections": 0}, "'num_projections'"),
        ({"lambda_j": "abc"}, "'lambda_j'"),
        ({"train.epochs": "ten"}, "'train.epochs'"),
        ({"train.epochs": 2.5}, "'train.epochs'"),
        ({"attack.suite": ["fgsm", "laser"]}, "unknown attack 'laser'"),
        ({"attack.pgd20.eps": "8/0"}, "'attack.pgd20.eps'"),
        ({"lr_typo": 0.1}, "unknown key 'lr_typo'"),
        ({"train.lr_schedule.milestones": [75, 90]}, "milestones"),
        ({"train.batch_size": True}, "'train.batch_size'"),
        ({"attack.workers": 0}, "'attack.workers': expected auto or a whole number of worker processes"),
        ({"attack.workers": -1}, "'attack.workers'"),
        ({"attack.workers": "many"}, "'attack.workers'"),
        ({"attack.workers": 2.0}, "'attack.workers'"),
        ({"attack.workers": True}, "'attack.workers'"),
    ],
)
def test_bad_values_name_the_key(project, overrides, fragment):
    write_params(project, overrides)
    with pytest.raises(UserError) as err:
        load_params()
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message and message.startswith(str(project / "params.yaml"))


def test_attack_workers_default_auto_or_a_count(project):
    assert load_params().attack.workers == "auto"
    write_params(project, {"attack.workers": 3})
    assert load_params().attack.workers == 3


@pytest.mark.parametrize("key", ["lambda_sw", "train", "attack", "seed", "adversary"])
def test_missing_key_is_named(project, key):
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((project / "params.yaml").read_text())
    del data[key]
    with open(project / "params.yaml", "w") as f:
        yaml.dump(data, f)
    with pytest.raises(UserError, match=f"missing key '{key}"):
        load_params()


def test_malformed_yaml_and_missing_file(project):
    (project / "params.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML at line"):
        load_params()
    (project / "params.yaml").unlink()
    with pytest.raises(UserError, match="params file not found"):
        load_params()


def test_a_bad_fraction_names_its_value_once(project):
    write_params(project, {"adversary.eps": "8/0"})
    with pytest.raises(UserError) as err:
        load_params(project / "params.yaml")
    assert str(err.value).endswith("'adversary.eps': expected a number or a fraction like '8/255', got '8/0'")


def test_a_duplicate_key_is_named_and_a_linked_params_file_refused_unread(project):
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text + "seed: 3\n")
    with pytest.raises(UserError, match=r"params.yaml: duplicate key 'seed' at line \d+$"):
        load_params(project / "params.yaml")
    other = project / "elsewhere.yaml"
    other.write_text("secret_first_line: 1\n" + text)
    (project / "params.yaml").unlink()
    (project / "params.yaml").symlink_to(other)
    with pytest.raises(UserError, match="params.yaml: a symbolic link; params.yaml must be a regular file") as err:
        load_params(project / "params.yaml")
    assert "secret" not in str(err.value)
