"""Presets: each paper experiment resolves to a valid params.yaml holding the paper's settings,
is written by one command, and fails at the download stage with one line when its data is absent."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from conftest import REPO, run_cli
from pipeline import presets
from pipeline.config import load_params
from pipeline.params import read_yaml

EXPERIMENTS = {
    # preset: (dataset, model, epochs, K, lambda_J)  -- paper §4.1 / §4.3, docs/design.md §3
    "cifar10-wrn34": ("cifar10", "wrn34_10", 100, 32, 0.002),
    "cifar10-wrn28": ("cifar10", "wrn28_10", 100, 32, 0.002),
    "cifar100-wrn34": ("cifar100", "wrn34_10", 100, 128, 0.001),
    "cifar100-wrn28": ("cifar100", "wrn28_10", 100, 128, 0.001),
    "imagenet100-preactresnet18": ("imagenet100", "preact_resnet18", 100, 128, 0.001),
    "intel-resnet50": ("intel", "resnet50", 50, 32, 0.002),
}
TABLE2 = ["trades", "alp", "pgd_at", "sat", "rand_jr", "sw", "otjr"]  # CIFAR WRN-34-10 rows (Table 2)
TABLE9 = ["trades", "alp", "pgd_at", "sat", "otjr"]  # CIFAR WRN-28-10 rows (Table 9)
TABLE4 = ["trades", "sat", "otjr"]  # ImageNet100 and Intel rows
PAPER_ATTACKS = ["fgsm", "pgd20", "pgd100", "l2_pgd", "mim", "cw_inf", "fab", "fab_t", "square", "simba",
                 "autoattack", "deepfool"]


def _params(tmp_path, name):
    return load_params(presets.apply(name, tmp_path / "params.yaml"))


def test_every_experiment_has_a_preset():
    tiers = ["fashion-mnist", "fashion-mnist-full", "fashion-mnist-sweep"]  # tests/test_presets_fashion_mnist.py
    assert presets.names() == sorted(["default", *EXPERIMENTS, *tiers])


def test_params_yaml_is_the_default_preset():
    """The defaults are written once, in presets/default.yaml; params.yaml is its render (`otjr preset default`)."""
    assert (REPO / "params.yaml").read_text() == presets.render("default")


def _leaves(tree: dict, prefix: str = "") -> dict:
    """dotted key -> value of every leaf (a non-mapping or an empty mapping)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_the_papers_shared_settings_state_only_what_differs_from_the_default():
    yaml = YAML(typ="safe", pure=True)
    default = _leaves(yaml.load((presets.PRESET_DIR / "default.yaml").read_text()))
    paper = yaml.load((presets.PRESET_DIR / "paper.yaml").read_text())
    assert paper.pop("extends") == "default.yaml"
    repeated = [k for k, v in _leaves(paper).items() if k in default and default[k] == v]
    assert not repeated, f"presets/paper.yaml repeats the default's {repeated}"


def test_an_empty_mapping_clears_the_base_ones(tmp_path):
    """The default's model.args (width 16 for small_cnn) must not reach a WideResNet: paper.yaml sets args: {}."""
    assert presets._merge({"args": {"width": 16}, "name": "a"}, {"args": {}}) == {"args": {}, "name": "a"}
    assert presets._merge({"args": {"width": 16}}, {"args": {"depth": 2}}) == {"args": {"width": 16, "depth": 2}}
    assert _params(tmp_path, "cifar10-wrn34").model.args == {}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_preset_holds_the_papers_settings(tmp_path, name):
    dataset, model, epochs, k, lambda_j = EXPERIMENTS[name]
    p = _params(tmp_path, name)
    assert p.datasets == (dataset,) and p.model.name == model
    assert p.train.epochs == epochs and p.train.batch_size == (512 if dataset == "intel" else 128)
    assert p.train.momentum == 0.9 and p.train.weight_decay == 2e-4
    # the authors' training PGD (configs/*.yaml, losses/*.py): 0.031 / 0.007, start x + 0.001 * N(0, I)
    assert (p.adversary.eps, p.adversary.step, p.adversary.steps) == pytest.approx((0.031, 0.007, 10))
    assert (p.adversary.start, p.adversary.start_std) == ("gaussian", 0.001)
    assert p.model.normalize is False  # raw [0, 1] inputs
    assert p.model.init == ("he_fan_out" if model.startswith("wrn") else "default")
    assert p.train.lr_schedule.first_epoch == 1  # epochs counted from 1: 74 / 15 / 11
    assert p.for_method("alp").lambda_pair == 0  # the authors' ALP: mixed CE only
    otjr = p.for_method("otjr")
    assert (otjr.num_projections, otjr.lambda_j, otjr.lambda_sw) == (k, pytest.approx(lambda_j), 64)
    s = p.train.lr_schedule
    if dataset == "intel":  # lr 1e-3, x0.1 every 7 epochs, 50 epochs; images resized to 32x32
        assert p.train.lr == 1e-3 and (s.kind, s.every, s.gamma) == ("step", 7, 0.1)
    else:  # lr 0.1, /10 at epochs 75 and 90 of 100
        assert p.train.lr == 0.1 and s.kind == "piecewise" and s.milestones == [0.75, 0.9] and s.gamma == 0.1
    if dataset in ("intel", "imagenet100"):  # 32x32; Intel squashed whole as the authors' Resize((32, 32))
        assert p.data.resize(dataset) == (32, "stretch" if dataset == "intel" else "crop")
        assert dataset in p.data.sources
    if dataset == "intel":  # torchvision's ImageNet ResNet-50, head replaced; rotation + flip
        assert p.model.args.get("imagenet_stem") is True and p.model.pretrained.weights == "IMAGENET1K_V1"
        assert p.train.augment == "rotate_flip"
    else:
        assert p.model.pretrained is None and p.train.augment == "dataset"
        assert not p.model.args.get("imagenet_stem")
    assert p.attack.settings["pgd20"].eps == pytest.approx(8 / 255)
    sat_epochs = 400 if dataset in ("cifar100", "imagenet100") and model != "wrn28_10" else None
    assert p.for_method("sat").epochs == sat_epochs  # the paper's SAT_400 (Tables 2, 4)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_registered_method_and_attack_has_paper_settings(tmp_path, name):
    """Fails when a method or attack is registered without its paper settings in presets/."""
    from pipeline.attacks import ATTACKS
    from pipeline.methods import METHODS

    p = _params(tmp_path, name)
    written = read_yaml(tmp_path / "params.yaml")
    for method in METHODS.names():
        for key in METHODS.get(method).param_keys():
            assert key in written, f"presets: no setting {key!r} of method {method!r}"
    dataset, model = EXPERIMENTS[name][:2]
    table = TABLE4 if dataset in ("intel", "imagenet100") else TABLE9 if model == "wrn28_10" else TABLE2
    missing = [m for m in table if m in METHODS and m not in p.runs]
    assert not missing, f"presets/{name}.yaml: methods lacks {missing} (paper table rows)"
    missing = [a for a in PAPER_ATTACKS if a not in p.attack.suite]
    assert not missing, f"presets: attack.suite lacks {missing}"
    kinds = set(ATTACKS.names()) - {p.attack.kinds[a] for a in p.attack.suite}
    assert not kinds, f"presets: attack.suite runs no instance of {sorted(kinds)}"


def test_one_command_writes_params_yaml(project):
    proc = run_cli("preset", cwd=project, check=True)
    assert all(name in proc.stdout for name in EXPERIMENTS)
    run_cli("preset", "cifar100-wrn34", cwd=project, check=True)
    written = (project / "params.yaml").read_text()
    assert written == presets.render("cifar100-wrn34") and written.startswith("# Written by")
    data = YAML(typ="safe", pure=True).load(written)
    assert data["num_projections"] == 128 and "extends" not in data and "description" not in data
    bad = run_cli("preset", "cifar7", cwd=project)
    assert bad.returncode == 2 and "unknown preset 'cifar7'" in bad.stderr


def test_preset_without_local_data_fails_at_download_with_one_line(project, monkeypatch):
    monkeypatch.delenv("OTJR_INTEL_SOURCE", raising=False)
    run_cli("preset", "intel-resnet50", cwd=project, check=True)
    proc = run_cli("stage", "download", "--dataset", "intel", cwd=project)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "archive.zip" in lines[0] and "kaggle.com" in lines[0] and "data.sources.intel" in lines[0]
