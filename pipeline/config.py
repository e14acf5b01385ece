"""params.yaml read and validated against the registries: every key known, every name registered.

The typed blocks live in `params` (low, so that the trainer and the suite can take them); this
loader sits above the registries because each method, add-on and attack validates its own
settings. A stage validates only the blocks it reads, and imports only their entries: the
methods and add-ons of its runs, the attacks only where it reads the attack block, so its code
dependencies (pipeline/dvc_render.py) are the code it runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from .core import paths
from .core.errors import UserError
from .core.schema import first_error
from .data import DATASETS
from .methods import ADDONS, METHODS, Run, method_settings, parse_run, variants_from
from .params import AttackBlock, AttackParams, CoreBlock, Params, Threat, read_yaml


def _validate(model: type[BaseModel], data: Any, prefix: str, path: Path) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {first_error(err, prefix)}") from None


def load_params(path: Path | None = None, *, runs: Sequence[Run] | None = None, attack: bool = True) -> Params:
    """Read and validate params.yaml (or `path`); raises `UserError` naming the first bad key.

    By default every block: each key known, the runs in `runs` registered, each method's and
    add-on's block that is present (which imports every method, add-on and attack). A stage passes
    what it reads instead: `runs`, whose method and add-on blocks alone are validated, and
    `attack`, whether the attack block is (False leaves `Params.attack` None).
    """
    path = Path(path) if path else paths.params_file()
    if path.is_symlink():  # refused unread: a link could show another file's first line in an error
        raise UserError(f"{path}: a symbolic link; params.yaml must be a regular file inside the project")
    raw = read_yaml(path)
    if "methods" in raw:  # every stage: an old params file is one line naming the new key
        raise UserError(f"{path}: 'methods' is now 'runs' (the runs trained, evaluated and aggregated)")
    threat = _threat(raw, path)
    raw = _with_threat(raw, threat)
    every = runs is None
    if every:
        method_keys = {k for name in METHODS.names() for k in METHODS.get(name).param_keys()}
        method_keys |= {k for name in ADDONS.names() for k in ADDONS.get(name).param_keys()}
        for key in raw:
            if key not in set(CoreBlock.model_fields) | {"attack"} | method_keys:
                raise UserError(f"{path}: unknown key '{key}'")
    core = {k: v for k, v in raw.items() if k in CoreBlock.model_fields}
    c = _validate(CoreBlock, {**core, "threat": threat}, "", path)
    if c.seed in c.seeds or len(set(c.seeds)) < len(c.seeds):
        again = c.seed if c.seed in c.seeds else next(s for s in c.seeds if c.seeds.count(s) > 1)
        raise UserError(f"{path}: 'seeds': seed {again} twice; `seeds` lists the further seeds after `seed` "
                        f"({c.seed}), e.g. seeds: [{', '.join(str(c.seed + i) for i in (1, 2))}] for three in all")
    if c.eval_split == "val" and c.data.val_fraction == 0:
        raise UserError(f"{path}: 'eval_split': val needs a validation split; set data.val_fraction above 0")

    try:
        variants = variants_from(raw.get("variants"))
        if every:
            runs = [parse_run(r, key="runs", variants=variants) for r in c.runs]
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    wanted = {run.method for run in runs}
    method_params = {}
    for name in METHODS.names() if every else sorted(wanted):
        cls = METHODS.get(name)
        if name in wanted or any(k in raw for k in cls.param_keys()):
            method_params[name] = _validate(cls.Params, method_settings(cls, raw), cls.param_prefix(), path)
    wanted_addons = {a for run in runs for a in run.addons}
    addon_params = {}
    for name in ADDONS.names() if every else sorted(wanted_addons):
        if name in wanted_addons or name in raw:
            addon_params[name] = _validate(ADDONS.get(name).Params, raw.get(name, {}), name, path)

    variant_params = {}
    for name in sorted(variants if every else {r.variant for r in runs if r.variant}):
        cls = METHODS.get(variants[name])
        changed = {k: v for k, v in c.variants[name].items() if k != "method"}
        variant_params[name] = _validate(cls.Params, {**method_settings(cls, raw), **changed}, f"variants.{name}", path)
    attack_params = _load_attack(raw.get("attack"), path, _attacks(), threat) if attack else None
    for ds in c.datasets:
        try:
            DATASETS.get(ds, key="datasets")
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
    return Params(**dict(c), attack=attack_params, method_params=method_params, addon_params=addon_params,
                  variant_params=variant_params)


def variant_methods(path: Path | None = None) -> dict[str, str]:
    """params.yaml's `variants` as {run name: method}, read before the rest is validated (a stage names its run
    on the command line, and a variant's name says nothing of its method)."""
    path = Path(path) if path else paths.params_file()
    try:
        return variants_from(read_yaml(path).get("variants"))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def _attacks():
    """The attack registry, imported by name: importing it imports every attack, which only a stage that
    reads the attack block runs (and so depends on)."""
    return importlib.import_module(f"{__package__}.attacks").ATTACKS


def _load_attack(block: Any, path: Path, registry, threat: Threat) -> AttackParams:
    """The `attack` block: its own keys, then each instance `attack.<name>` validated by its kind
    (`attack: <kind>`, else the kind its name is), its eps the `threat` block's for its norm unless it sets one."""
    if block is None:
        raise UserError(f"{path}: missing key 'attack'")
    if not isinstance(block, dict):
        raise UserError(f"{path}: 'attack' must be a mapping")
    core = _validate(AttackBlock, {k: v for k, v in block.items() if k in AttackBlock.model_fields}, "attack", path)
    budgets = threat.model_dump()
    settings: dict[str, BaseModel] = {}
    kinds: dict[str, str] = {}
    own_n: dict[str, int] = {}
    for key, value in block.items():
        if key in AttackBlock.model_fields:
            continue
        value = dict(value) if isinstance(value, dict) else value
        kind = value.pop("attack", key) if isinstance(value, dict) else key
        if kind not in registry:
            what = f"'attack.{key}.attack': unknown kind {kind!r}" if kind != key else \
                f"'attack.{key}': no kind; add `attack: <kind>`"
            raise UserError(f"{path}: {what}; kinds: {', '.join(registry.names())}")
        if isinstance(value, dict) and "n" in value:
            own_n[key] = _own_n(value.pop("n"), key, core.n, path)
        if isinstance(value, dict) and "eps" not in value and value.get("norm") in budgets:
            if budgets[value["norm"]] is None:
                raise UserError(f"{path}: 'attack.{key}.eps': no {value['norm']} budget; set it or threat.{value['norm']}")
            value["eps"] = budgets[value["norm"]]
        settings[key] = _validate(registry.get(kind).Params, value, f"attack.{key}", path)
        kinds[key] = kind
    for name in core.suite:
        if name in registry and name not in settings:
            raise UserError(f"{path}: missing key 'attack.{name}' (settings of an attack in attack.suite)")
        if name not in settings:
            raise UserError(f"{path}: 'attack.suite': unknown attack {name!r}; configured: {', '.join(settings)}")
    return AttackParams(**dict(core), settings=settings, own_n=own_n, kinds=kinds)


def _threat(raw: dict[str, Any], path: Path) -> Threat:
    if "threat" not in raw:
        raise UserError(f"{path}: missing key 'threat' (the budget of each norm, e.g. threat: {{linf: 8/255}})")
    return _validate(Threat, raw["threat"], "threat", path)


def _with_threat(raw: dict[str, Any], threat: Threat) -> dict[str, Any]:
    """params with `threat.linf` filled in where the training adversary or the analyses set no eps of their own."""
    out = dict(raw)
    for key in ("adversary", "analysis"):
        if isinstance(raw.get(key), dict) and "eps" not in raw[key]:
            out[key] = {**raw[key], "eps": threat.linf}
    return out


def _own_n(value: Any, name: str, n: int, path: Path) -> int:
    """An attack's own number of test images: a whole number in 1..attack.n."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
        raise UserError(f"{path}: 'attack.{name}.n': expected a whole number of test images from 1 to attack.n "
                        f"({n}), got {value!r}")
    return value
