"""Models from elsewhere: state dicts in every accepted wrapping evaluate to the pipeline's own records,
pickled payloads are refused without running, timm architectures train and are attacked, RobustBench's
zoo loads from a local model_dir, and results export in RobustBench's model-info format."""

from __future__ import annotations

import importlib.util
import pickle

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli, write_params
from pipeline import api
from pipeline.core import paths
from pipeline.core.errors import UserError
from pipeline.core.io import load_tensors, read_json

#: the attack, sanity and analysis budgets of these tests: seconds per model on a CPU
SMALL = {
    "runs": ["xe"],
    "attack.n": 16,
    "attack.suite": ["fgsm", "pgd20", "autoattack"],
    "sanity.n": 16,
    "sanity.eps_sweep": [0, 0.4, 1.0],
    "sanity.steps_sweep": [1, 5],
    "sanity.noise_samples": 2,
    "analysis.n": 16,
    "analysis.grad_steps": [0, 2],
    "analysis.adv_steps": 2,
    "analysis.ratio_n": 4,
    "analysis.cross_section.images": 1,
    "analysis.cross_section.resolution": 5,
    "model.args.width": 8,
}
#: record entries that legitimately differ between two evaluations of the same weights
VOLATILE = {"run", "checkpoint", "external", "training", "seconds"}


def without_volatile(obj):
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


def quick_model(meta: dict):
    """A small CNN trained for one epoch by a plain loop (weights only need to be non-trivial)."""
    from pipeline.data import load_split
    from pipeline.models import build, model_spec

    torch.manual_seed(0)
    spec = model_spec("small_cnn", {"width": 8}, meta["num_classes"], meta["shape"][0], meta["mean"], meta["std"])
    model = build(spec)
    x, y = load_split("digits", "train")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for idx in torch.randperm(len(y)).split(64):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), spec


@pytest.fixture
def reference(digits):
    """A pipeline run `xe` (checkpoint in our format), attacked and sanity-checked by the stages."""
    from pipeline.data import load_meta
    from pipeline.models import save_checkpoint

    write_params(digits, SMALL)
    meta = load_meta("digits")
    model, spec = quick_model(meta)
    save_checkpoint(paths.checkpoint("digits", "xe"), model, spec, {"dataset": "digits", "run": "xe"})
    api.attack("digits", "xe")
    api.sanity("digits", "xe")
    return model, meta


def write_variants(model, folder) -> dict[str, object]:
    """The same weights as a plain, a wrapped and a DataParallel-prefixed .pt, and a safetensors state dict."""
    from safetensors.torch import save_file

    net = {k: v.clone() for k, v in model.net.state_dict().items()}
    files = {
        "plain": (folder / "plain.pt", net),
        "wrapped": (folder / "wrapped.pth", {"state_dict": net, "epoch": 3, "optimizer": {"lr": 0.1}}),
        "dataparallel": (folder / "dp.pt", {"model": {f"module.{k}": v for k, v in net.items()}}),
    }
    for path, obj in files.values():
        torch.save(obj, path)
    save_file(net, str(folder / "plain.safetensors"))
    return {**{k: p for k, (p, _) in files.items()}, "safetensors": folder / "plain.safetensors"}


def test_state_dicts_evaluate_to_the_same_records_as_our_format(reference, tmp_path):
    model, meta = reference
    ours = read_json(paths.attack_result("digits", "xe"))
    our_flags, _ = load_tensors(paths.attack_flags("digits", "xe"))
    our_sanity = read_json(paths.sanity_result("digits", "xe"))
    variants = write_variants(model, tmp_path)
    variants["ours"] = paths.checkpoint("digits", "xe")
    for kind, path in variants.items():
        name = f"ext-{kind}"
        extra = {} if kind == "ours" else {"arch": "small_cnn", "arch_args": {"width": 8}, "mean": meta["mean"],
                                           "std": meta["std"]}
        out = api.evaluate("digits", path, name=name, **extra)
        record = read_json(out["attack"])
        assert record["run"] == name and record["external"]["source"] == ("checkpoint" if kind == "ours" else "state_dict")
        assert without_volatile(record) == without_volatile(ours), kind
        flags, _ = load_tensors(paths.attack_flags("digits", name))
        assert flags.keys() == our_flags.keys() and all(torch.equal(flags[k], our_flags[k]) for k in flags), kind
        assert without_volatile(read_json(out["sanity"])) == without_volatile(our_sanity), kind
        analysis = read_json(out["analysis"])
        assert out["analysis"] == paths.external_analysis("digits", name) and set(analysis["runs"]) == {name}

    # the report lists every model evaluated from elsewhere beside the pipeline's runs
    report = api.report().read_text()
    assert all(f"| ext-{kind} |" in report for kind in variants)
    assert "training log: ext-" not in report


def test_readme_example_plain_pytorch_script_then_otjr_evaluate(digits):
    """docs/examples/train_plain_pytorch.py's checkpoint (DataParallel keys under 'state_dict') evaluates."""
    import subprocess
    import sys

    from conftest import REPO

    write_params(digits, {**SMALL, "model.args.width": 16, "attack.suite": ["fgsm", "pgd20"]})
    script = REPO / "docs" / "examples" / "train_plain_pytorch.py"
    trained = subprocess.run([sys.executable, str(script), "plain.pt", "--epochs", "2"], cwd=digits,
                             capture_output=True, text=True, check=True)
    assert "-> plain.pt" in trained.stdout
    proc = run_cli("evaluate", "plain.pt", "--dataset", "digits", "--arch", "small_cnn", "--arch-args",
                   '{"width": 16}', "--mean", "0.306", "--std", "0.376", cwd=digits, check=True)
    record = read_json(paths.attack_result("digits", "plain"))
    assert f"evaluated plain@digits (n = 16): clean {record['clean']['accuracy']:.1f}" in proc.stdout
    assert record["clean"]["accuracy"] > 50  # two epochs on clean digits: far above chance
    assert record["external"]["architecture"]["mean"] == [0.306]
    assert paths.sanity_result("digits", "plain").is_file() and paths.external_analysis("digits", "plain").is_file()


def test_export_robustbench_model_info_validates(reference):
    from pipeline.external.export import FIELDS, validate

    path, notes = api.export_robustbench("digits", "xe")
    info = read_json(path)
    record = read_json(paths.attack_result("digits", "xe"))
    assert path == paths.robustbench_export("digits", "Linf", "xe")
    assert info["clean_acc"] == f"{record['clean']['accuracy']:.2f}"
    assert info["autoattack_acc"] == f"{record['autoattack']['accuracy']:.2f}"
    assert info["eps"] == "51/255" and info["dataset"] == "digits" and "n = 16" in info["footnote"]
    assert all(info[k] == "" for k in ("link", "name", "authors", "venue", "reported"))
    assert set(info) == set(FIELDS) and any("fill in" in n for n in notes)
    validate(info)
    with pytest.raises(UserError, match="unknown"):
        validate({**info, "n": 16})
    if importlib.util.find_spec("robustbench") is not None:  # RobustBench's own schema: its ModelInfo dataclass
        import dataclasses

        from pipeline.external.robustbench import import_robustbench

        model_info = import_robustbench().ModelInfo
        assert set(info) <= {f.name for f in dataclasses.fields(model_info)}
        assert dataclasses.asdict(model_info(**info)) == {**{f.name: None for f in dataclasses.fields(model_info)},
                                                          **info}


def test_export_needs_autoattack(digits):
    from fake_results import attack_record, write

    write(paths.attack_result("digits", "xe"), attack_record("digits", "xe", "small_cnn", {"clean": 90.0}))
    with pytest.raises(UserError, match="no AutoAttack result"):
        api.export_robustbench("digits", "xe")


class _CreatesFile:
    """Unpickling this calls open(marker, 'w'): proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickled_payload_is_refused_and_never_run(digits, tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"state_dict": _CreatesFile(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    proc = run_cli("evaluate", str(evil), "--dataset", "digits", cwd=digits)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused" in lines[0] and "unpickling" in lines[0]
    assert not marker.exists()
    assert not paths.attack_result("digits", "evil").exists()
    # the payload is live: a full unpickle (what we never do) creates the file
    control = tmp_path / "control.pt"
    if writer == "torch.save":
        torch.save({"state_dict": _CreatesFile(tmp_path / "control")}, control)
        torch.load(control, weights_only=False)
    else:
        pickle.loads(pickle.dumps({"state_dict": _CreatesFile(tmp_path / "control")}))
    assert (tmp_path / "control").exists()


def test_missing_and_unexpected_keys_are_one_line(digits, tmp_path):
    from pipeline.models import create

    net = create("small_cnn", num_classes=10, in_channels=1, width=8).net.state_dict()
    net.pop("6.weight")
    net["head.bias"] = torch.zeros(3)
    torch.save({"state_dict": net}, tmp_path / "partial.pt")
    proc = run_cli("evaluate", str(tmp_path / "partial.pt"), "--dataset", "digits", "--arch", "small_cnn",
                   "--arch-args", '{"width": 8}', cwd=digits)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "missing 1 key(s): 6.weight" in lines[0] and "unexpected 1 key(s): head.bias" in lines[0]
    assert not paths.attack_result("digits", "partial").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--name", "otjr"], "would overwrite a pipeline run's records"),
    (["--mean", "0.1,0.2"], "--mean: 2 values for a 1-channel dataset"),
    (["--arch", "nonesuch"], "unknown model 'nonesuch'"),
    (["--robustbench", "Wong2020Fast"], "either a checkpoint PATH or --robustbench NAME, not both"),
    (["--arch-args", "[16]"], "--arch-args: expected a JSON object"),
])
def test_bad_evaluate_arguments_stop_before_any_work(digits, tmp_path, args, fragment):
    from pipeline.models import create

    torch.save(create("small_cnn", num_classes=10, in_channels=1, width=8).net.state_dict(), tmp_path / "w.pt")
    proc = run_cli("evaluate", str(tmp_path / "w.pt"), "--dataset", "digits", *args, cwd=digits)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert not (digits / "metrics").exists()


def test_evaluate_needs_a_model(digits):
    proc = run_cli("evaluate", "--dataset", "digits", cwd=digits)
    assert proc.returncode == 2 and "give a checkpoint PATH (or --robustbench NAME)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_pipeline_checkpoint_refuses_architecture_flags(reference):
    with pytest.raises(UserError, match="names its architecture and normalisation; drop --arch"):
        api.evaluate("digits", paths.checkpoint("digits", "xe"), arch="small_cnn", name="again")


# ------------------------------------------------------------------------------------- timm
def test_timm_model_trains_with_otjr_and_is_attacked(digits):
    pytest.importorskip("timm")
    from pipeline.models import load_checkpoint

    write_params(digits, {**SMALL, "model.name": "timm/test_efficientnet", "model.args": {"drop_rate": 0.1},
                          "train.epochs": 1, "train.batch_size": 256, "train.eval_n": 0,
                          "attack.suite": ["fgsm", "pgd20"]})
    checkpoint = api.train("digits", "otjr")
    model = load_checkpoint(checkpoint)
    assert model.checkpoint_info["model"]["name"] == "timm/test_efficientnet"
    assert type(model.net).__module__.startswith("timm.")
    record = read_json(api.attack("digits", "otjr"))
    trained = record["training"]["model"]
    assert (trained["name"], trained["args"]) == ("timm/test_efficientnet", {"drop_rate": 0.1})
    assert 0 <= record["pgd20"]["accuracy"] <= record["fgsm"]["accuracy"] + 100 / 16 and record["n"] == 16


def test_timm_names_are_checked(monkeypatch):
    from pipeline.models import create

    pytest.importorskip("timm")
    with pytest.raises(UserError, match="timm has no architecture 'no_such_net'"):
        create("timm/no_such_net", num_classes=10)
    monkeypatch.setitem(__import__("sys").modules, "timm", None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[timm\]'"):
        create("timm/resnet18", num_classes=10)


# ------------------------------------------------------------------------------- RobustBench
ZOO_MODEL = "Ding2020MMA"  # a WRN-28-4 (5.8M parameters): one of the zoo's smallest CIFAR-10 L-inf models

needs_robustbench = pytest.mark.skipif(importlib.util.find_spec("robustbench") is None,
                                       reason="the robustbench extra is not installed")


def zoo_weights(model_dir):
    """The zoo constructor's own state dict, its parameters perturbed, saved where RobustBench's loader looks."""
    from pipeline.external.robustbench import import_robustbench, weights_path, zoo_entry

    torch.manual_seed(1)
    net = zoo_entry(import_robustbench(), ZOO_MODEL, "cifar10", "Linf")["model"]()
    params = dict(net.named_parameters())
    state = {k: (v + 0.01 * torch.randn_like(v) if k in params else v) for k, v in net.state_dict().items()}
    path = weights_path(model_dir, ZOO_MODEL, "cifar10", "Linf")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return state, path


@needs_robustbench
def test_robustbench_loader_reads_a_local_model_dir(tmp_path):
    from pipeline.external.robustbench import load_zoo_model

    state, _ = zoo_weights(tmp_path)
    model = load_zoo_model(ZOO_MODEL, "cifar10", "Linf", tmp_path)
    loaded = model.state_dict()
    assert not model.training and loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@needs_robustbench
def test_robustbench_pickled_payload_is_refused(tmp_path):
    from pipeline.external.robustbench import load_zoo_model, weights_path

    path = weights_path(tmp_path, ZOO_MODEL, "cifar10", "Linf")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": _CreatesFile(tmp_path / "pwned")}, path)
    with pytest.raises(UserError, match="refused"):
        load_zoo_model(ZOO_MODEL, "cifar10", "Linf", tmp_path)
    assert not (tmp_path / "pwned").exists()


@needs_robustbench
def test_evaluate_robustbench_model_on_cifar10(project, tmp_path, monkeypatch):
    from formats import FakeTorchvisionCifar, tar_gz, write_cifar
    from pipeline.data import cifar

    folder, _ = write_cifar(tmp_path / "src", "cifar10", per_class_train=1, per_class_test=1)
    archive = tar_gz(folder, tmp_path / "c.tar.gz")
    monkeypatch.setitem(cifar.TORCHVISION, "cifar10", FakeTorchvisionCifar.for_folder(folder, archive, "http://127.0.0.1:9/"))
    write_params(project, {**SMALL, "datasets": ["cifar10"], "data.sources": {"cifar10": str(archive)},
                           "data.val_fraction": 0.0, "attack.n": 2, "attack.suite": ["fgsm"], "sanity.n": 2,
                           "sanity.steps_sweep": [1, 2], "sanity.sweep_steps": 1, "sanity.noise_samples": 1,
                           "analysis.n": 2, "analysis.grad_steps": [0], "analysis.adv_steps": 1, "analysis.ratio_n": 1,
                           "analysis.cross_section.resolution": 3})
    api.download("cifar10")
    api.preprocess("cifar10")
    zoo_weights(tmp_path / "zoo")
    out = api.evaluate("cifar10", robustbench=ZOO_MODEL, model_dir=tmp_path / "zoo")
    record = read_json(out["attack"])
    assert out["run"] == ZOO_MODEL and record["external"]["source"] == "robustbench"
    assert record["training"]["model"]["name"] == f"robustbench/{ZOO_MODEL}" and record["n"] == 2
    assert read_json(out["sanity"])["run"] == ZOO_MODEL


def test_robustbench_without_the_extra_names_it(digits, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "robustbench", None)
    monkeypatch.setitem(__import__("sys").modules, "robustbench.utils", None)
    with pytest.raises(UserError, match=r"--robustbench needs the robustbench extra: pip install -e '\.\[robustbench\]'"):
        api.evaluate("digits", robustbench="Wong2020Fast")
