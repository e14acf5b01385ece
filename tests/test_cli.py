"""The command line: stages listed, and bad input as one line with a non-zero exit, nothing written."""

from __future__ import annotations

import pytest
import torch

from conftest import run_cli, write_params
from pipeline.core import paths

STAGES = ["download", "preprocess", "train", "attack", "sanity", "aggregate"]


def test_help_lists_every_stage(project):
    top = run_cli("--help", cwd=project, check=True).stdout
    assert "stage" in top
    out = run_cli("stage", "--help", cwd=project, check=True).stdout
    for name in STAGES:
        assert name in out


def test_help_is_plain_text_wrapped_to_the_terminal_with_whole_defaults(project):
    out = run_cli("stage", "train", "--help", cwd=project, env={"COLUMNS": "80"}, check=True).stdout
    assert "<bool>" not in out and "<str>" not in out and "╭" not in out  # rich's metavars and boxes
    assert "--resume / --no-resume" in out and "[default: resume]" in out and "--seed SEED" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["stage", "train", "--dataset", "digits", "--method", "nonesuch"], ["--method", "unknown method 'nonesuch'"]),
        (["stage", "train", "--dataset", "cifar9", "--method", "xe"], ["--dataset", "unknown dataset 'cifar9'"]),
        (["stage", "train", "--dataset", "digits", "--method", "xe"], ["prepared split not found", "preprocess"]),
        (["stage", "attack", "--dataset", "digits", "--method", "xe"], ["not found"]),
    ],
)
def test_bad_identity_arguments(project, args, fragments):
    assert_one_line_error(run_cli(*args, cwd=project), *fragments)


def test_invalid_params_stop_before_any_work(project):
    write_params(project, {"train.epochs": 0})  # every stage reads the top-level keys
    proc = run_cli("stage", "download", "--dataset", "digits", cwd=project)
    assert_one_line_error(proc, "train.epochs")
    assert not paths.raw_dir("digits").exists()
    write_params(project, {"num_projections": 0})  # OTJR's block: its trainings read it (and no other stage)
    proc = run_cli("stage", "train", "--dataset", "digits", "--method", "otjr", cwd=project)
    assert_one_line_error(proc, "num_projections")


def _checkpoint_case(project, kind: str):
    from pipeline.core.io import save_tensors

    path = paths.checkpoint("digits", "xe")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "corrupt":
        path.write_bytes(b"\x00\x01 definitely not safetensors" * 10)
    elif kind == "foreign":
        from safetensors.torch import save_file

        save_file({"weight": torch.zeros(3)}, str(path))
    elif kind == "truncated":
        save_tensors(path, {"weight": torch.zeros(1000)}, {"format": "otjr-checkpoint-1"})
        path.write_bytes(path.read_bytes()[:-500])
    elif kind == "mismatched":
        save_tensors(path, {"weight": torch.zeros(3)}, {"format": "otjr-checkpoint-1", "model": {
            "name": "small_cnn", "args": {}, "num_classes": 10, "in_channels": 1, "mean": [0.0], "std": [1.0]}})
    return path


@pytest.mark.parametrize("kind, fragment", [
    ("corrupt", "not a readable safetensors checkpoint"),
    ("truncated", "not a readable safetensors checkpoint"),
    ("foreign", "not a checkpoint of this pipeline"),
    ("mismatched", "weights do not match"),
])
def test_bad_checkpoints_give_one_line(digits, kind, fragment):
    _checkpoint_case(digits, kind)
    proc = run_cli("stage", "attack", "--dataset", "digits", "--method", "xe", cwd=digits)
    assert_one_line_error(proc, fragment)
    assert not paths.attack_result("digits", "xe").exists()


def test_top_level_handler_turns_any_user_error_into_one_line_and_exit_2(capsys, monkeypatch):
    """A `UserError` from a command without the per-command wrapper still ends as one line, exit 2."""
    import typer

    from pipeline.core.errors import UserError
    from stages._cli import run

    app = typer.Typer()

    @app.command()
    def fail() -> None:
        raise UserError("params.yaml: first\nsecond")

    @app.command()
    def other() -> None:  # two commands, so `fail` is a sub-command as the real ones are
        pass

    monkeypatch.setattr("sys.argv", ["otjr", "fail"])
    with pytest.raises(SystemExit) as exit_:
        run(app)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: params.yaml: first second\n"
