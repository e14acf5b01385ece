"""`otjr export robustbench`: a run's results in RobustBench's model-info JSON format.

RobustBench keeps one JSON file per model in `model_info/<dataset>/<threat model>/<name>.json`
(the fields of `robustbench.utils.ModelInfo`; its leaderboard sorts on `autoattack_acc`).
We fill what the evaluation measured — clean and AutoAttack accuracy, eps, threat model,
dataset, architecture — state the evaluation's n and subset in `footnote`, and leave the
paper fields (`link`, `name`, `authors`, `venue`, `reported`) empty for the user. The result
is checked against the installed package's `ModelInfo` where robustbench is installed, and
against the documented fields below in any case.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.errors import UserError
from ..core.io import read_json, write_json
from .robustbench import DATASETS, import_robustbench

#: the fields of a model_info JSON (RobustBench's leaderboard template and ModelInfo) and their JSON types
FIELDS: dict[str, tuple[type, ...]] = {
    "link": (str,), "name": (str,), "authors": (str,), "additional_data": (bool, type(None)),
    "number_forward_passes": (int,), "dataset": (str,), "venue": (str,), "architecture": (str,),
    "eps": (str,), "clean_acc": (str,), "reported": (str,), "autoattack_acc": (str,), "footnote": (str,),
}
#: filled in by the user from the paper
FOR_THE_USER = ("link", "name", "authors", "venue", "reported")
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def eps_text(eps: float, threat_model: str) -> str:
    """RobustBench's style: L-inf budgets as k/255 ("8/255"), L2 ones as decimals ("0.5")."""
    k = Fraction(eps).limit_denominator(255 * 16) * 255
    if threat_model == "Linf" and k.denominator == 1:
        return f"{k.numerator}/255"
    return f"{eps:g}"


def model_info(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(model-info dict, threat model) from an attack record holding clean and AutoAttack accuracy."""
    where = f"metrics/attacks/{record.get('dataset')}/{record.get('run')}.json"
    if "autoattack" not in record or "clean" not in record:
        raise UserError(f"{where}: no AutoAttack result (add autoattack to attack.suite and attack the run)")
    aa = record["autoattack"]
    settings = aa.get("params", {})
    threat_model = THREAT_MODELS.get(str(aa.get("norm")))
    if threat_model is None:
        raise UserError(f"{where}: AutoAttack norm {aa.get('norm')!r} has no RobustBench threat model (linf, l2)")
    external = record.get("external")
    model = (record.get("training") or {}).get("model") or {}
    arch = model.get("name", "")
    if model.get("args"):
        arch += " (" + ", ".join(f"{k}={v}" for k, v in sorted(model["args"].items())) + ")"
    info = {
        "link": "", "name": "", "authors": "",
        "additional_data": None if external else False,
        "number_forward_passes": 1,
        "dataset": record["dataset"],
        "venue": "",
        "architecture": arch,
        "eps": eps_text(float(settings["eps"]), threat_model),
        "clean_acc": f"{record['clean']['accuracy']:.2f}",
        "reported": "",
        "autoattack_acc": f"{aa['accuracy']:.2f}",
        "footnote": (f"AutoAttack ({settings.get('version', 'standard')} version) by otjr-pipeline on the {record['subset']} "
                     f"(n = {record['n']}, seed {record['seed']})."),
    }
    return info, threat_model


def validate(info: dict[str, Any]) -> None:
    """The documented fields with their types, and the installed package's ModelInfo where there is one."""
    unknown = sorted(set(info) - set(FIELDS))
    missing = sorted(set(FIELDS) - set(info))
    wrong = sorted(k for k, types in FIELDS.items() if k in info and not isinstance(info[k], types))
    for k in ("clean_acc", "autoattack_acc"):
        try:
            float(info.get(k, ""))
        except ValueError:
            wrong.append(k)
    if unknown or missing or wrong:
        raise UserError(f"RobustBench model info: unknown {unknown}, missing {missing}, wrong type {wrong}")
    model_info_class = installed_model_info()
    if model_info_class is not None:
        fields = {f.name for f in dataclasses.fields(model_info_class)}
        if set(info) - fields:
            raise UserError(f"RobustBench model info: robustbench's ModelInfo lacks {sorted(set(info) - fields)}")
        model_info_class(**info)


def installed_model_info():
    """`robustbench.utils.ModelInfo` if robustbench is installed and importable, else None."""
    try:
        return import_robustbench().ModelInfo
    except (UserError, ImportError, AttributeError):
        return None


def export_robustbench(dataset: str, run: str, out: Path | None = None) -> tuple[Path, list[str]]:
    """Write `run`'s results on `dataset` as RobustBench model info; returns (path, notes for the user)."""
    record = read_json(paths.attack_result(dataset, run), what="attack result (run the attack stage or otjr evaluate)")
    info, threat_model = model_info(record)
    validate(info)
    path = Path(out) if out else paths.robustbench_export(dataset, threat_model, run)
    write_json(path, info)
    notes = [f"fill in {', '.join(FOR_THE_USER)}" + (" and additional_data" if info["additional_data"] is None else "")]
    if dataset not in DATASETS:
        notes.append(f"RobustBench's leaderboards cover {', '.join(DATASETS)}, not {dataset}")
    if record["n"] < 10000 and dataset in ("cifar10", "cifar100"):
        notes.append(f"RobustBench evaluates on the full test set (10,000 images); this evaluation used n = {record['n']}")
    return path, notes
