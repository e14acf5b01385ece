"""params.yaml, validated once into one tree of typed (pydantic) models: `Params`.

Every science setting lives in params.yaml and has no hidden default here, so a run is
fully described by that file. Method- and attack-specific settings are validated by the
registered method or attack that owns them (pipeline/config.py). Read with a YAML 1.2
loader so that values DVC writes (`-S lambda_j=1e-05`) stay numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SerializeAsAny, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import YAMLError

from .analysis.params import AnalysisParams
from .core.errors import UserError
from .core.io import read_text
from .core.schema import (
    LinfBudget,
    NonNegativeLinfBudget,
    NonNegativeInt,
    NonNegativeReal,
    PositiveBudget,
    PositiveInt,
    PositiveReal,
    Real,
    Strict,
)


class Resize(Strict):
    """A resolution with its resize rule: `crop` (shorter side, then centre crop) or `stretch` (the whole image)."""

    size: PositiveInt
    rule: Literal["crop", "stretch"] = "crop"


class DataParams(Strict):
    """How raw data becomes prepared tensors, where user-supplied data lives, and how batches are fed."""

    val_fraction: float = Field(ge=0, lt=0.5, description="share of train split held out for monitoring")
    resolution: dict[str, PositiveInt | Resize] = Field(
        description="dataset -> image side after resize + centre crop, or {size, rule: crop | stretch}; "
        "a dataset not listed keeps its native size"
    )
    sources: dict[str, str | None] = Field(
        default_factory=dict, description="dataset -> local archive/folder (else $OTJR_<NAME>_SOURCE)"
    )
    loader: Literal["auto", "device", "stream"] = Field(
        default="auto", description="training batches: kept on the device, streamed by workers, or auto (fits?)"
    )
    workers: NonNegativeInt = Field(default=4, description="data-loader worker processes when streaming")
    train_n: dict[str, PositiveInt] = Field(
        default_factory=dict, description="dataset -> training images kept after the validation hold-out "
        "(a class-stratified, fixed subset); a dataset not listed keeps all"
    )

    def resize(self, dataset: str) -> tuple[int | None, str]:
        """(image side or None for the native size, resize rule) of `dataset`."""
        value = self.resolution.get(dataset)
        return (value.size, value.rule) if isinstance(value, Resize) else (value, "crop")

    @field_validator("resolution", "sources", "train_n")
    @classmethod
    def _known_datasets(cls, value: dict) -> dict:
        from .data import DATASETS  # imports torch: `otjr dvc render` reads params.yaml without it

        for name in value:
            if name not in DATASETS:
                raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS.names())}")
        return value


class PretrainedParams(Strict):
    """Start from ImageNet weights (torchvision's naming), the classifier head replaced for the dataset's classes."""

    weights: str = Field(description="torchvision weights name of the architecture, e.g. IMAGENET1K_V1")
    file: str | None = Field(default=None, description="local copy of the weights file; else torchvision's "
                             "download (hash-checked, cached under $TORCH_HOME)")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of `file` (required with it)")

    @model_validator(mode="after")
    def _hash_with_file(self) -> "PretrainedParams":
        if self.file is not None and self.sha256 is None:
            raise ValueError("a local weights file needs its sha256 (model.pretrained.sha256)")
        return self


class ModelParams(Strict):
    """The architecture, its arguments, and how its weights start (pipeline/models/init.py)."""

    name: str
    args: dict[str, int | float | str | bool] = Field(default_factory=dict)
    init: Literal["default", "he_fan_out"] = Field(
        default="default", description="default: the architecture's own; he_fan_out: TRADES' WideResNet init")
    normalize: bool = Field(default=True, description="standardise inputs by the training split's mean/std inside "
                            "the model; false feeds raw [0, 1] images (the OTJR authors, TRADES)")
    pretrained: PretrainedParams | None = None


class LRSchedule(Strict):
    """Piecewise: x gamma at each milestone (fractions of the epochs); step: x gamma every `every` epochs."""

    kind: Literal["piecewise", "step"]
    milestones: list[float] = Field(default_factory=list)
    every: NonNegativeInt = 0
    gamma: PositiveReal
    first_epoch: Literal[0, 1] = Field(
        default=0, description="number of the first epoch in the schedule's count: 0, or 1 as TRADES-style loops "
        "(milestone 75 of 100 then means 74 / 15 / 11 epochs at the three rates)")

    @model_validator(mode="after")
    def _consistent(self) -> "LRSchedule":
        if self.kind == "step" and self.every < 1:
            raise ValueError("lr_schedule.every must be >= 1 for kind 'step'")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError("lr_schedule.milestones are fractions of the epochs, each in (0, 1)")
        return self


class TrainParams(Strict):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveReal
    momentum: float = Field(ge=0, lt=1)
    weight_decay: NonNegativeReal
    nesterov: bool
    lr_schedule: LRSchedule
    eval_n: NonNegativeInt = Field(description="held-out images for per-epoch clean/PGD accuracy")
    augment: Literal["dataset", "none", "crop_flip", "rotate_flip"] = Field(
        default="dataset", description="training augmentation: the dataset's own, or one named (pipeline/train/augment.py)")


class AdversaryParams(Strict):
    """The L-inf PGD adversary used during training."""

    eps: LinfBudget
    step: PositiveBudget
    steps: PositiveInt
    start: Literal["uniform", "gaussian"] = Field(
        default="uniform", description="random start: uniform in the eps-ball, or x + start_std * N(0, I)")
    start_std: PositiveReal = Field(default=0.001, description="std of the gaussian start (the OTJR and TRADES code: 0.001)")


Percent = Annotated[Real, Field(ge=0, le=100)]


class SanityParams(Strict):
    n: PositiveInt = Field(description="test images used by the sweeps")
    eps_sweep: list[NonNegativeLinfBudget] = Field(min_length=2, description="rule 5: PGD budgets, the largest near 1")
    sweep_steps: PositiveInt = Field(description="rule 5: PGD steps at each eps (step 2.5*eps/steps)")
    steps_sweep: list[PositiveInt] = Field(min_length=2, description="rule 4: PGD step counts at attack.pgd20's eps")
    noise_samples: PositiveInt = Field(description="rule 9: uniform draws in the eps-ball per image")
    undefended: str = Field(description="rule 10: the run whose PGD-20 accuracy must fall to the bound")
    undefended_max_accuracy: Percent = Field(description="rule 10: bound in percent")


class SpeedParams(Strict):
    """How fast the trainer runs; every default is the plain fp32 eager path (pipeline/train/speed.py).

    These change rounding, not the maths (bf16 autocast, memory layout, kernels), except
    `jacobian: finite_difference`, an O(fd_step) approximation of the Jacobian penalty, and
    `sync_batchnorm`, which normalises over the global batch when training on several GPUs.
    """

    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: forward passes of training and its attack under bf16 autocast"
    )
    channels_last: bool = Field(default=False, description="NHWC memory layout for weights and inputs")
    cudnn_benchmark: bool = Field(default=False, description="cuDNN autotuning of convolutions (CUDA only)")
    compile: bool = Field(default=False, description="torch.compile the model (not the exact Jacobian's clean pass)")
    jacobian: Literal["exact", "finite_difference"] = Field(
        default="exact", description="Jacobian penalty of otjr, opt_jr, rand_jr, sat_jr: double backward or finite difference"
    )
    fd_step: PositiveReal = Field(default=0.1, description="finite-difference step (L2 move per sample, in [0, 1] pixel units)")
    sync_batchnorm: bool = Field(default=False, description="batch-norm statistics over all GPUs (multi-GPU CUDA runs)")


class Threat(Strict):
    """The threat model, stated once: the budget of each norm. The training adversary and the analyses take
    `linf` unless they set their own `eps`; each attack instance takes its norm's unless it sets one."""

    linf: LinfBudget
    l2: PositiveBudget | None = None


def _tuple(value: Any) -> Any:
    """A YAML list as a tuple (params are immutable); anything else is left for the type check."""
    return tuple(value) if isinstance(value, list) else value


class CoreBlock(Strict):
    """params.yaml's top-level keys other than `attack` and the method / add-on blocks."""

    seed: NonNegativeInt
    seeds: Annotated[tuple[NonNegativeInt, ...], BeforeValidator(_tuple)] = Field(
        default=(), description="further seeds: each trains and evaluates every run once more")
    device: str = "auto"  # where to run; not a science setting, so no stage depends on it
    threads: NonNegativeInt = 1  # torch's CPU threads per stage process (0: torch's default); results depend on it
    eval_split: Literal["test", "val"] = Field(
        "test", description="the images the attack, sanity and analysis stages read: test, or val (the held-out "
        "data.val_fraction of the training split) to choose hyper-parameters without looking at the test split")
    datasets: Annotated[tuple[str, ...], BeforeValidator(_tuple)] = Field(min_length=1)
    #: the runs trained, evaluated and aggregated: a method (`otjr`) or method-addon (`trades-awp`)
    runs: Annotated[tuple[str, ...], BeforeValidator(_tuple)] = Field(
        min_length=1, description="the runs trained, evaluated and aggregated: a method or method-addon")
    #: further runs: a method under a name of its own with some of its settings changed (listed in `runs`)
    variants: dict[str, dict[str, Any]] = Field(
        default={}, description="further runs, each a method under a name of its own with some of its settings "
        "changed, e.g. otjr_tuned: {method: otjr, lambda_j: 0.01}; list the name in `runs`")
    threat: Threat
    data: DataParams
    model: ModelParams
    train: TrainParams
    adversary: AdversaryParams
    sanity: SanityParams
    analysis: AnalysisParams
    speed: SpeedParams = Field(default_factory=SpeedParams)


def _workers(value: Any) -> Any:
    """`auto` or a whole number of processes, at least 1."""
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise ValueError("expected auto or a whole number of worker processes, at least 1")


#: Worker processes: `auto` (the CPUs this process may use) or a whole number, at least 1.
Workers = Annotated[Literal["auto"] | int, BeforeValidator(_workers)]


class AttackBlock(Strict):
    """The `attack` block's own keys; each attack's settings are validated by the attack."""

    n: PositiveInt  # first n images of `eval_split`: the clean row, and every attack that sets no n of its own
    batch_size: PositiveInt
    suite: Annotated[tuple[str, ...], BeforeValidator(_tuple)] = Field(min_length=1)
    precision: Literal["fp32", "bf16"] = Field("fp32", description="fp32 (the paper's protocol) or bf16 autocast")
    block: PositiveInt = Field(8, description="images per block: each block of an attack has its own seeded RNG, "
                               "torchrun ranks take whole blocks, a killed run resumes at a block")
    workers: Workers = Field("auto", description="processes the attacks are spread over on a CPU with one torch "
                             "thread; auto: the CPUs this process may use (not a science setting)")


class AttackParams(AttackBlock):
    """The validated `attack` block: its own keys and each attack instance's settings (pipeline/config.py)."""

    settings: dict[str, SerializeAsAny[BaseModel]] = {}  # instance name -> its validated hyper-parameters (eps from `threat` if unset)
    own_n: dict[str, int] = {}  # instance name -> its own first n (attack.<name>.n)
    kinds: dict[str, str] = {}  # instance name -> its attack kind (`attack.<name>.attack`)

    def n_of(self, name: str) -> int:
        """How many of the first test images attack `name` sees."""
        return self.own_n.get(name, self.n)


class Params(CoreBlock):
    """params.yaml validated: its top-level keys, the attack block and the method and add-on blocks a stage reads.

    pipeline/config.py builds it; a stage that does not read a block leaves it out (`attack` None, a method
    or add-on absent from `method_params` / `addon_params`) and imports none of its registry.
    """

    attack: AttackParams | None = None
    method_params: dict[str, SerializeAsAny[BaseModel]] = {}  # method name -> its validated settings
    addon_params: dict[str, SerializeAsAny[BaseModel]] = {}  # add-on name -> its validated block
    variant_params: dict[str, SerializeAsAny[BaseModel]] = {}  # variant name -> its method's settings, changed

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """`seed` (every run's first seed, the plain file layout), then the further `seeds`."""
        return (self.seed, *self.seeds)

    def for_method(self, name: str) -> BaseModel:
        """The validated settings of method `name` (an empty model for methods without settings)."""
        from .methods import METHODS  # imports torch: `otjr dvc render` reads params.yaml without it

        if name in self.method_params:
            return self.method_params[name]
        cls = METHODS.get(name, key="method")
        if not cls.param_keys():
            return cls.Params()
        raise UserError(f"params.yaml: missing key '{cls.param_keys()[0]}' (settings of method '{name}')")

    def for_run(self, run: Any) -> BaseModel:
        """The method settings run `run` (a `Run`) trains with: a variant's own, else its method's."""
        if run.variant is None:
            return self.for_method(run.method)
        if run.variant not in self.variant_params:
            raise UserError(f"params.yaml: missing key 'variants.{run.variant}' (settings of run '{run.variant}')")
        return self.variant_params[run.variant]

    def for_addon(self, name: str) -> BaseModel:
        """The validated settings of add-on `name`."""
        from .methods import ADDONS  # imports torch: `otjr dvc render` reads params.yaml without it

        if name in self.addon_params:
            return self.addon_params[name]
        raise UserError(f"params.yaml: missing key '{ADDONS.get(name, key='method').param_keys()[0]}' "
                        f"(settings of add-on '{name}')")


def as_written(block: BaseModel) -> dict[str, Any]:
    """A validated block's settings as params.yaml states them: the keys set, whole numbers as integers.

    What a checkpoint records of a method's and an add-on's settings (and the resume state fingerprints):
    `beta: 6` stays 6 where the model holds 6.0, so `-S trades.beta=6.0` trains and records alike.
    """
    def plain(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(block.model_dump(exclude_unset=True))


def read_yaml(path: Path) -> dict[str, Any]:
    """Load a YAML 1.2 mapping; a missing or malformed file is one clear line."""
    text = read_text(Path(path), what="params file")
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        if isinstance(err, DuplicateKeyError):  # its problem names the key, never a value
            key = str(err.problem).split('"')[1]
            raise UserError(f"{path}: duplicate key {key!r}{where}") from None
        raise UserError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level")
    return data
