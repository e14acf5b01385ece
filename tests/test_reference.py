"""docs/reference.md is the render of the live typed params, params.yaml's comments and the registries."""

from __future__ import annotations

import shutil
from typing import Annotated, Literal, Optional

import pytest
from pydantic import Field

from conftest import REPO, run_cli
from pipeline import reference
from pipeline.attacks import ATTACKS
from pipeline.core.errors import UserError
from pipeline.core.schema import Strict
from pipeline.data import DATASETS
from pipeline.methods import ADDONS, METHODS
from pipeline.models import MODELS
from pipeline.params import read_yaml
from pipeline.sanity.rules import RULES


def test_committed_reference_is_the_render():
    assert (REPO / reference.OUT).read_text() == reference.render(REPO / "params.yaml"), \
        "docs/reference.md is stale: run `otjr docs render`"


def test_check_fails_on_a_stale_file_and_render_fixes_it(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "docs").mkdir()
    (tmp_path / reference.OUT).write_text("# Reference\n")
    with pytest.raises(UserError, match="docs/reference.md is stale"):
        reference.write(tmp_path, check=True)
    assert (tmp_path / reference.OUT).read_text() == "# Reference\n"  # --check writes nothing
    assert reference.write(tmp_path) is False and reference.write(tmp_path, check=True) is True


def test_check_command_is_one_line_and_exit_0_on_the_committed_file(tmp_path):
    proc = run_cli("docs", "render", "--check", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "docs/reference.md is up to date", proc.stderr


def leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from leaves(value, dotted)
        else:
            yield dotted


def test_every_key_of_params_yaml_and_every_registered_name_is_listed():
    text = reference.render(REPO / "params.yaml")
    documented = {key for _, prefix, model in reference.params_blocks() for key, _ in reference.fields(model, prefix)}
    for leaf in leaves(read_yaml(REPO / "params.yaml")):
        parts = leaf.split(".")
        # a key inside a mapping-valued field (data.resolution.digits) is data: its field is the documented key
        assert any(".".join(parts[:i]) in documented for i in range(len(parts), 0, -1)), leaf
        assert any(f"| `{'.'.join(parts[:i])}` |" in text for i in range(len(parts), 0, -1)), leaf
    for registry in (DATASETS, MODELS, METHODS, ADDONS, ATTACKS):
        for name in registry.names():
            assert f"| `{name}` |" in text, name
    for number, name, _ in RULES:
        assert f"| {number} | {name} |" in text


def test_params_yaml_comments_are_read_with_their_continuation_lines(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "seed: 0        # first line\n"
        "               # continued\n"
        "# a heading above the next key\n"
        "train:         # the block\n"
        "  lr: 0.1      # step size\n"
        "  epochs: 3\n")
    assert reference.yaml_comments(tmp_path / "p.yaml") == {"seed": "first line continued", "train": "the block",
                                                             "train.lr": "step size"}


class _Toy(Strict):
    size: Annotated[int, Field(ge=1)]
    rule: Literal["crop", "stretch"] = "crop"
    file: Optional[str] = Field(default=None, description="a file")
    share: float = Field(default=0.1, ge=0, lt=0.5)


def test_types_defaults_and_constraints_are_shown_as_written():
    rows = {key: field for key, field in reference.fields(_Toy, "toy")}
    assert list(rows) == ["toy.size", "toy.rule", "toy.file", "toy.share"]
    assert [reference.field_type(f) for f in rows.values()] == ["int (>= 1)", '"crop" | "stretch"', "str | null",
                                                                "float (>= 0, < 0.5)"]
    assert reference.type_name(Optional[list[Annotated[int, Field(gt=0)]]]) == "list[int (> 0)] | null"
    assert [reference._default(rows[k]) for k in rows] == ["required", '`"crop"`', "`null`", "`0.1`"]


def test_every_key_the_attack_stage_writes_into_a_record_is_described():
    keys = reference.record_keys()
    assert {"dataset", "run", "n", "subset", "seed", "versions", "external"} <= set(keys)
    assert set(keys) <= set(reference.RECORD_KEYS), set(keys) - set(reference.RECORD_KEYS)
