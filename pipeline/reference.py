"""docs/reference.md, generated from the typed params, params.yaml's comments and the registries.

`otjr docs render` writes it, `otjr docs render --check` only compares (exit 2 when stale). Every
list in it is read from the live code: the pydantic models' fields (type, constraints, default,
`Field(description=...)`), the comment beside each key in params.yaml, the registries of
datasets, models, methods, add-ons and attacks, the sanity rules, and the keys the attack stage
writes into a record (read from its source). Only `params_blocks` knows how params.yaml is split
into typed blocks, and `RECORD_KEYS` says what each record key means.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, Field, PositiveInt, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from ruamel.yaml import YAML

from .attacks import ATTACKS
from .attacks import run as attack_run
from .core.errors import UserError
from .core.io import write_text
from .data import DATASETS
from .methods import ADDONS, METHODS
from .models import MODELS
from .params import AttackBlock, CoreBlock, read_yaml
from .sanity.rules import RULES

REPO = Path(__file__).resolve().parents[1]
OUT = Path("docs") / "reference.md"

#: What each key of an attack record (metrics/attacks/<dataset>/<run>.json) means; the keys themselves are
#: read from `pipeline/attacks/run.py`, and a test fails when one is written there but not described here.
RECORD_KEYS = {
    "dataset": "the dataset evaluated",
    "run": "the run (method or method-addon) or, for `otjr evaluate`, the --name",
    "checkpoint": "where the weights came from",
    "external": "`otjr evaluate` only: the model's origin (file or RobustBench entry)",
    "n": "test images evaluated (the first n of the test split)",
    "subset": "which test images, in words",
    "seed": "the attacks' seed",
    "device": "where the evaluation ran (each rank's device, once, under torchrun)",
    "evaluation": "precision, batch size, images per block, torchrun ranks, torch threads and a note on the protocol",
    "versions": "library versions (python, torch, torchattacks, ...)",
    "training": "the training settings recorded in the checkpoint",
}
#: The entries after those keys, one per attack of the suite plus two (from `pipeline.attacks.evaluate.summarise`).
RECORD_ENTRIES = {
    "clean": "accuracy, n_correct, n on the clean images",
    "<attack>": "accuracy, n_correct, n, the attack's params, implementation and version, its results "
                "(e.g. median_l2), validity of its examples, passes (forward / backward / forward-equivalents; "
                "its seconds: metrics/timing/attack/)",
    "worst_case": "per image, robust to every attack of the suite: accuracy, n_correct, n, images, attacks, passes",
}


# ------------------------------------------------------------------ params
def params_blocks(params_file: Path = REPO / "params.yaml") -> Iterator[tuple[str, str, type[BaseModel]]]:
    """(title, key prefix, model) for every typed block of params.yaml, in the file's order of concerns: the
    attack instances are those `params_file` configures, each typed by its kind's settings (docs/attacks.md)."""
    yield "Top level and shared blocks", "", CoreBlock
    yield "attack", "attack", AttackBlock
    for name, kind in attack_instances(params_file).items():
        yield f"attack.{name} (an instance of attack kind `{kind}`)", f"attack.{name}", _instance_model(kind)
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.Params.model_fields:
            yield f"method `{name}`", cls.param_prefix(), cls.Params
    for name in ADDONS.names():
        yield f"add-on `{name}`", name, ADDONS.get(name).Params


def attack_instances(params_file: Path) -> dict[str, str]:
    """Instance name -> attack kind of each `attack.<name>` block of `params_file` (`attack: <kind>`, else its name)."""
    block = read_yaml(params_file).get("attack") if params_file.is_file() else None
    if not isinstance(block, dict):
        return {}
    return {name: (value.get("attack", name) if isinstance(value, dict) else name) for name, value in block.items()
            if name not in AttackBlock.model_fields and (value.get("attack", name) if isinstance(value, dict) else name)
            in ATTACKS}


class _InstanceKeys(BaseModel):
    """The keys every attack instance may set besides its kind's settings."""

    attack: Optional[str] = Field(None, description="the attack kind (`otjr list`); unset: the instance's name")
    n: Optional[PositiveInt] = Field(None, description="its own first n test images (at most `attack.n`)")


def _instance_model(kind: str) -> type[BaseModel]:
    """An instance's keys: `attack` (its kind), `n`, then its kind's settings."""
    return create_model(f"{kind}_instance", __base__=(_InstanceKeys, ATTACKS.get(kind).Params),
                        __doc__=f"Attack kind `{kind}`; `eps` unset: the `threat` budget of its norm. {summary(ATTACKS.get(kind))}")


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}


def _constraints(metadata: list) -> str:
    """`>= 0, < 0.5` from annotated-types bounds, also those inside a `Field(...)` used as metadata."""
    flat = [c for m in metadata for c in (m.metadata if isinstance(m, FieldInfo) else [m])]
    return ", ".join(f"{_BOUNDS[k]} {getattr(m, k)}" for m in flat for k in _BOUNDS if getattr(m, k, None) is not None)


def type_name(annotation: Any) -> str:
    """A short, readable name of a field's type, constraints included: `int (>= 1)`, `'crop' | 'stretch'`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        bounds = _constraints(list(args[1:]))
        return type_name(args[0]) + (f" ({bounds})" if bounds else "")
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def field_type(field) -> str:
    """A field's type with its constraints, from the annotation and from `Field(ge=..., ...)`."""
    bounds = _constraints(field.metadata)
    return type_name(field.annotation) + (f" ({bounds})" if bounds else "")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return f"`{json.dumps(value, default=str)}`"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (also when optional), or None for a plain value."""
    for a in (annotation, *get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, pydantic FieldInfo) of every leaf of `model`, nested blocks flattened, in declaration order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        nested = _nested_model(field.annotation)
        if nested is not None and nested.model_fields:
            yield from fields(nested, key)
        else:
            yield key, field


def yaml_comments(path: Path) -> dict[str, str]:
    """Dotted key -> the comment beside it in params.yaml (with its aligned continuation lines)."""
    doc = YAML().load(path.read_text())
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            tokens = (node.ca.items.get(key) or [None] * 4)[2:3]
            if hasattr(value, "ca") and value.ca.comment:  # a block's comment sits on its mapping
                tokens += [t for t in value.ca.comment[:1] if t is not None]
            text = _comment_text([t for t in tokens if t is not None])
            if text:
                out[dotted] = text
            if hasattr(value, "items"):
                walk(value, dotted)

    walk(doc, "")
    return out


def _comment_text(tokens: list) -> str:
    for token in tokens:
        lines = token.value.splitlines()
        column = token.start_mark.column
        kept = [lines[0]] + [ln for ln in _aligned(lines[1:], column)]
        text = " ".join(ln.strip().lstrip("#").strip() for ln in kept if ln.strip().startswith("#"))
        if text:
            return text
    return ""


def _aligned(lines: list[str], column: int) -> Iterator[str]:
    """The continuation lines of a comment: comment lines starting at its column, up to the first other line."""
    for ln in lines:
        if not ln.strip().startswith("#") or len(ln) - len(ln.lstrip()) != column:
            return
        yield ln


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def params_section(comments: dict[str, str], params_file: Path) -> list[str]:
    out = ["## params.yaml", "",
           "Every key of the typed blocks, nested blocks flattened to dotted keys; the comment is the one beside",
           "the key in params.yaml. A key of a mapping-valued field (`data.resolution`, ...) names a dataset.", ""]
    for title, prefix, model in params_blocks(params_file):
        doc = (model.__doc__ or "").strip().splitlines()
        out += [f"### {title}", ""] + ([doc[0], ""] if doc and not doc[0].startswith(model.__name__ + "(") else [])
        out += [f"params.yaml: {comments[prefix]}", ""] if prefix in comments else []
        out += ["| key | type | default | description | params.yaml comment |", "|---|---|---|---|---|"]
        for key, field in fields(model, prefix):
            out.append(f"| `{key}` | {_cell(field_type(field))} | {_cell(_default(field))} | {_cell(field.description or '')} "
                       f"| {_cell(comments.get(key, ''))} |")
        out.append("")
    return out


# ------------------------------------------------------------------ registries, rules, records
def summary(obj: Any) -> str:
    """The first line of an object's own docstring, else of its module's."""
    own = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    text = own or sys.modules[obj.__module__].__doc__ or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def registries_section() -> list[str]:
    out = ["## Datasets", "", "| name | classes | channels | augmentation | description |", "|---|---:|---:|---|---|"]
    for name in DATASETS.names():
        d = DATASETS.get(name)
        out.append(f"| `{name}` | {d.num_classes} | {d.channels} | {d.augment} | {_cell(d.description)} |")
    out += ["", "## Models", "", "`timm/<architecture>` takes any timm model (the `timm` extra).", "",
            "| name | description |", "|---|---|"]
    out += [f"| `{n}` | {_cell(summary(MODELS.get(n)))} |" for n in MODELS.names()]
    for title, reg in (("Methods", METHODS), ("Add-ons", ADDONS)):
        out += ["", f"## {title}", "", "| name | description | params.yaml keys |", "|---|---|---|"]
        for n in reg.names():
            cls = reg.get(n)
            keys = ", ".join(f"`{k}`" for k in cls.param_keys()) or "-"
            out.append(f"| `{n}` | {_cell(summary(cls))} | {keys} |")
    out += ["", "## Attack kinds", "", "An instance `attack.<name>` names its kind with `attack: <kind>` (docs/attacks.md).", "",
            "| kind | access | iterative | settings (`attack.<name>.*`) | description |",
            "|---|---|---|---|---|"]
    for n in ATTACKS.names():
        cls = ATTACKS.get(n)
        settings = ", ".join(f"`{k}`" for k in cls.Params.model_fields) or "-"
        out.append(f"| `{n}` | {cls.access} | {'yes' if cls.iterative else 'no'} | {settings} | {_cell(summary(cls))} |")
    out += ["", "## Sanity rules", "", "| # | rule | checked by |", "|---:|---|---|"]
    out += [f"| {number} | {_cell(name)} | `{fn.__name__}` |" for number, name, fn in RULES]
    return out + [""]


def record_keys() -> list[str]:
    """The keys of the record dict that `pipeline/attacks/run.py` writes (read from its source)."""
    tree = ast.parse(Path(attack_run.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["record"] \
                and isinstance(node.value, ast.Dict):
            keys = []
            for k, v in zip(node.value.keys, node.value.values):
                if isinstance(k, ast.Constant):
                    keys.append(k.value)
                elif k is None:  # `**({...} if ... else {})`: the optional keys
                    keys += [c.value for d in ast.walk(v) if isinstance(d, ast.Dict) for c in d.keys
                             if isinstance(c, ast.Constant)]
            return keys
    raise UserError(f"{attack_run.__file__}: no `record = {{...}}` found")


def records_section() -> list[str]:
    out = ["## Attack records", "",
           "`metrics/attacks/<dataset>/<run>.json` (per further seed under `<dataset>.seed<s>/`), beside the",
           "per-example flags `<run>.flags.safetensors`:", "", "| key | meaning |", "|---|---|"]
    out += [f"| `{k}` | {_cell(RECORD_KEYS.get(k, '(not described in pipeline/reference.py)'))} |" for k in record_keys()]
    out += [f"| `{k}` | {_cell(v)} |" for k, v in RECORD_ENTRIES.items()]
    return out + [""]


# ------------------------------------------------------------------ the file
def render(params_file: Path) -> str:
    head = ["# Reference", "",
            "Generated by `otjr docs render` from the typed params, params.yaml's comments and the registries",
            "(`pipeline/reference.py`); do not edit by hand. `otjr docs render --check` fails when it is stale.", ""]
    body = params_section(yaml_comments(params_file), params_file) + registries_section() + records_section()
    return "\n".join(head + body).rstrip() + "\n"


def write(root: Path | None = None, check: bool = False) -> bool:
    """Render docs/reference.md under `root`; True if it was already current. With `check`, raise if stale."""
    root = Path(root) if root else REPO
    out = root / OUT
    text = render(root / "params.yaml")
    current = out.is_file() and out.read_text() == text
    if check and not current:
        raise UserError(f"{OUT} is stale: run `otjr docs render`")
    if not current and not check:
        write_text(out, text)
    return current
