"""Building blocks for typed params: strict models and the value types params.yaml uses."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


class Strict(BaseModel):
    """A params block: unknown keys are errors, types are not coerced (a string is not a number), and
    infinities and NaN are refused wherever a number goes (they would run as nonsense and write invalid JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _budget(value: Any) -> Any:
    """Accept 0.031, 8, or the string '8/255' (users write budgets as fractions of 255)."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"expected a number or a fraction like '8/255', got {value!r}") from None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return float(value)
    return value


#: Perturbation budgets and steps: a float, an int, or a fraction string such as "8/255".
PositiveBudget = Annotated[float, BeforeValidator(_budget), Field(gt=0)]
#: An L-inf budget in pixel units: images live in [0, 1], so more than 1 is no constraint at all.
LinfBudget = Annotated[float, BeforeValidator(_budget), Field(gt=0, le=1)]
NonNegativeBudget = Annotated[float, BeforeValidator(_budget), Field(ge=0)]
NonNegativeLinfBudget = Annotated[float, BeforeValidator(_budget), Field(ge=0, le=1)]
#: A float that also accepts an integer literal (YAML writes `64` for 64.0).
Real = Annotated[float, BeforeValidator(lambda v: float(v) if type(v) is int else v)]
PositiveReal = Annotated[Real, Field(gt=0)]
NonNegativeReal = Annotated[Real, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def budget_limit(norm: str, shape: tuple[int, ...]) -> float:
    """The largest meaningful budget of a threat model on images of `shape` (C, H, W) in [0, 1]:
    1 for L-inf, the image diameter sqrt(C*H*W) for L2."""
    if norm == "linf":
        return 1.0
    size = 1
    for side in shape:
        size *= side
    return float(size) ** 0.5


def first_error(err: ValidationError, prefix: str = "") -> str:
    """One line naming the first invalid key of a pydantic error and what is allowed."""
    errors = err.errors()
    e = next((x for x in errors if x["type"] == "finite_number"), errors[0])  # inf in a union: say so
    branches = {"int", "float", "str", "bool"} if len(errors) > 1 else set()  # a union's member tags
    loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-") and p not in branches)
    key = ".".join(p for p in (prefix, loc) if p)
    if e["type"] == "missing":
        return f"missing key '{key}'"
    if e["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    got = e.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    msg = e["msg"].removeprefix("Value error, ")
    if msg.endswith(f"got {shown}"):  # our validators name the value themselves
        return f"'{key}': {msg}"
    return f"'{key}': {msg} (got {shown})"
