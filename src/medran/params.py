"""Typed view of ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a typo, a wrong type or an
out-of-range value fails before any work starts, with a message that names the key, the bad
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medran.errors import InputError

ROLES = ("upstream", "targets", "cls", "vqa")
ROLE_KIND = {"upstream": "captions", "targets": "captions", "cls": "labels", "vqa": "vqa"}
# The registries' names (medran.tasks.TASKS, medran.methods.METHODS, models.finetune.HEADS),
# spelled out so validating params imports no torch; a test keeps them equal.
TASK_NAMES = ("cls", "vqa")
METHOD_NAMES = ("lp", "mlp", "nmtune", "ran", "advft")
HEAD_NAMES = ("linear", "mlp")


class ParamsError(InputError):
    """A value in params.yaml is missing, unknown or out of range."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthesizeParams(Section):
    """Sizes and knobs of the embedded synthetic corpus (DESIGN §3)."""

    seed: int = Field(0, ge=0)
    image_size: int = Field(64, ge=32, le=512)
    n_upstream: int = Field(800, ge=10)
    n_targets: int = Field(200, ge=10)
    n_cls_patients: int = Field(200, ge=10)
    max_followups: int = Field(3, ge=1, le=10)
    n_vqa_images: int = Field(150, ge=10)
    questions_per_image: int = Field(5, ge=1, le=7)
    multi_label_fraction: float = Field(0.2, ge=0.0, le=1.0)
    pixel_noise: float = Field(0.06, ge=0.0, le=1.0)
    # Downstream sets are rendered with a shifted distribution so transfer is really measured.
    downstream_contrast: float = Field(0.8, gt=0.0, le=2.0)
    downstream_scale: float = Field(1.1, gt=0.5, le=2.0)


class SourceSpec(Section):
    """One dataset on disk, in a real dataset's layout, read by a named format reader."""

    format: str
    path: str
    options: dict[str, str | bool | int | float] = Field(default_factory=dict)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from medran.data.readers import READERS

        if value not in READERS:
            raise ValueError(f"unknown format {value!r}; allowed: {sorted(READERS)}")
        return value

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if not value or Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(
                f"path {value!r} must be relative to the project root and stay inside it"
            )
        return value


class SplitFractions(Section):
    train: float = Field(0.8, gt=0.0, lt=1.0)
    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class PrepareDataParams(Section):
    image_size: int = Field(64, ge=16, le=1024)
    # "group": hash group ids into splits; "source": keep the splits the source ships with.
    split_strategy: Literal["group", "source"] = "group"
    split_fractions: SplitFractions = SplitFractions()
    sources: dict[str, SourceSpec]

    @field_validator("sources")
    @classmethod
    def _roles(cls, value: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        from medran.data.readers import READERS

        missing = sorted(set(ROLES) - set(value))
        unknown = sorted(set(value) - set(ROLES))
        if missing or unknown:
            raise ValueError(
                f"sources must name exactly {list(ROLES)}; missing {missing}, unknown {unknown}"
            )
        for role, spec in value.items():
            kind = READERS[spec.format].kind
            if kind != ROLE_KIND[role]:
                fits = sorted(n for n, r in READERS.items() if r.kind == ROLE_KIND[role])
                raise ValueError(
                    f"sources.{role}.format {spec.format!r} reads {kind} data; "
                    f"{role} needs one of {fits}"
                )
        return value


def _check_model(value: str) -> str:
    """An open_clip name, ``hf-hub:`` id or ``local-dir:`` folder that can be resolved."""
    from medran.models.names import check_model_name

    check_model_name(value)
    return value


class TrainSurrogateParams(Section):
    """The attack's encoder f_phi, and the black-box encoder of the retrieval captioner."""

    # "train": train ``model`` (a config name) on the target pool, disjoint from the corpus
    # that is attacked; "pretrained": load ``model`` (+ ``pretrained`` tag) as released.
    mode: Literal["train", "pretrained"] = "train"
    model: str = "medran-tiny"
    pretrained: str = ""
    captioner_model: str = "medran-tiny"
    captioner_pretrained: str = ""
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(50, ge=2)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.1, ge=0.0)
    warmup_steps: int = Field(10, ge=0)
    seed: int = Field(0, ge=0)

    _known_model = field_validator("model", "captioner_model")(_check_model)


PAIRING_RULES = ("different_body_part", "random")


class AttackImagesParams(Section):
    """MF-ii: PGD on cos(f(x + delta), f(x_target)) in an L-inf ball (DESIGN §4)."""

    eps: int = Field(8, gt=0, le=255, description="L-inf budget in 1/255 units")
    step_size: float = Field(1.0, gt=0.0, le=255.0, description="1/255 units")
    steps: int = Field(100, ge=1)
    random_start: bool = False
    pairing: Literal[PAIRING_RULES] = "different_body_part"  # type: ignore[valid-type]
    # Attack enough training pairs for every noise level up to this fraction.
    max_fraction: float = Field(0.5, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1)
    shard_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)


class LlmParams(Section):
    model: str = ""  # a local folder or hub id of a transformers text-generation model
    max_new_tokens: int = Field(64, ge=1)
    max_length_ratio: float = Field(2.0, gt=1.0)


class CaptionerParams(Section):
    # "retrieval": nearest clean caption under the black-box captioner encoder (embedded
    # default); anything else: a transformers image-to-text model (local folder or hub id).
    model: str = "retrieval"
    prompt: str = "what is the content of this radiology image?"
    max_new_tokens: int = Field(48, ge=1)


class AttackCaptionsParams(Section):
    backend: Literal["rules", "llm", "captioner"] = "rules"
    llm: LlmParams = LlmParams()
    captioner: CaptionerParams = CaptionerParams()
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _llm_named(self) -> AttackCaptionsParams:
        if self.backend == "llm" and not self.llm.model:
            raise ValueError("backend 'llm' needs attack_captions.llm.model (a folder or hub id)")
        return self


CAPTION_CHOICES = ("clean", "rewrite", "target", "captioner")


class BuildNoisyParams(Section):
    # Which caption goes with x_adv; "rewrite" is the caption backend's output.
    caption: Literal[CAPTION_CHOICES] = "rewrite"  # type: ignore[valid-type]


class ValidateDataParams(Section):
    min_rows: int = Field(1, ge=1)
    image_mode: Literal["RGB"] = "RGB"
    # How many offending row ids/values a failed expectation lists in result.json and the error.
    max_examples: int = Field(10, ge=1, le=1000)
    # Adversarial gate: the fraction of saved attacks closer to the target than to the clean image.
    min_attack_success: float = Field(0.5, ge=0.0, le=1.0)
    # Noisy gate: |adversarial fraction of training rows - level| allowed for each noise level.
    level_tolerance: float = Field(0.01, ge=0.0, le=1.0)


class PretrainParams(Section):
    """CLIP contrastive pre-training on one noisy corpus (DESIGN §2, §10)."""

    model: str = "medran-tiny"  # a config name trained from scratch, or a released model
    pretrained: str = ""  # tag or file for continued pre-training (e.g. openai)
    epochs: int = Field(10, ge=1)
    global_batch_size: int = Field(64, ge=2)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(5e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(0.1, ge=0.0)
    warmup_steps: int = Field(20, ge=0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    num_processes: int = Field(1, ge=1)
    device: Literal["auto", "cpu"] = "auto"  # auto: GPUs when present
    checkpoint_every_steps: int = Field(0, ge=0)  # 0: checkpoint at each epoch end only
    seed: int = Field(0, ge=0)

    _known_model = field_validator("model")(_check_model)

    @model_validator(mode="after")
    def _divisible_batch(self) -> PretrainParams:
        per_step = self.num_processes * self.grad_accum_steps
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} must divide by num_processes x "
                f"grad_accum_steps = {self.num_processes} x {self.grad_accum_steps}"
            )
        return self

    @property
    def batch_size(self) -> int:
        """Per process, per micro-step."""
        return self.global_batch_size // (self.num_processes * self.grad_accum_steps)


class EvalUpstreamParams(Section):
    batch_size: int = Field(128, ge=1)
    recall_at: list[int] = Field(default_factory=lambda: [1, 5, 10])
    # Zero-shot prompts on the chest X-ray set; {} is the lower-cased label.
    prompts: list[str] = Field(
        default_factory=lambda: ["a chest x-ray showing {}.", "chest radiograph: {}."]
    )

    @field_validator("prompts")
    @classmethod
    def _placeholder(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if "{}" not in p]
        if bad or not value:
            raise ValueError(f"each prompt needs a '{{}}' for the label; bad: {bad}")
        return value


def _distinct(key: str, value: list[Any]) -> list[Any]:
    if len(set(value)) != len(value):
        raise ValueError(f"{key} must be distinct, got {value}")
    return value


class MethodParams(Section):
    """Optimiser settings of every method (``medran.methods.MethodConfig``, NMTune's)."""

    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_steps: int = Field(0, ge=0)


class NMTuneParams(MethodParams):
    """``medran.methods.NMTuneConfig`` without ``head`` (shared: ``finetune.head``)."""

    hidden_ratio: int = Field(4, ge=1)
    scale_init: float = Field(0.1, ge=0.0)
    w_mse: float = Field(1.0, ge=0.0)
    w_cov: float = Field(0.04, ge=0.0)
    w_svd: float = Field(0.001, ge=0.0)
    k: int = Field(5, ge=1)


class AttackParams(MethodParams):
    """The training-time PGD of adversarial methods, in 1/255 pixel units."""

    eps: float = Field(4.0, gt=0.0, le=255.0)
    step_size: float = Field(2.0, gt=0.0, le=255.0)
    steps: int = Field(5, ge=1)


class RANParams(NMTuneParams, AttackParams):
    """``medran.methods.RANConfig`` without ``head``; w_adv = w_rect = 0 is NMTune."""

    w_adv: float = Field(1.0, ge=0.0)
    w_rect: float = Field(1.0, ge=0.0)


class AdvFTParams(AttackParams):
    """``medran.methods.AdvFTConfig`` without ``head``."""

    w_clean: float = Field(0.0, ge=0.0)


class ClsTaskParams(Section):
    """Options of the classification task (``medran.tasks.ClsTask``)."""

    multi_label: Literal["auto"] | bool = "auto"
    normalize_features: bool = True


class CoAttentionParams(Section):
    """The VQA co-attention head (``medran.models.coattention.CoAttentionHead``)."""

    depth: int = Field(2, ge=1)
    width: int = Field(256, ge=1)
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0.0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _divisible(self) -> CoAttentionParams:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide by heads {self.heads}")
        return self


class MlpHeadParams(Section):
    """The ``mlp`` head (``medran.models.finetune.MLPHead``), alone or as VQA's classifier."""

    hidden: int = Field(512, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class FinetuneParams(Section):
    """Downstream fine-tuning (DESIGN §6): one DVC stage per level x task x method."""

    tasks: list[str] = Field(default_factory=lambda: ["cls", "vqa"])
    methods: list[str] = Field(default_factory=lambda: ["lp", "mlp", "nmtune", "ran", "advft"])
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=2)  # >= 2: the rectifier's BatchNorm needs a batch
    eval_batch_size: int = Field(256, ge=1)  # feature encoding and clean evaluation
    max_grad_norm: float = Field(1.0, ge=0.0)  # 0: no clipping
    # The head of nmtune, ran and advft (lp is linear and mlp is mlp by definition).
    head: str = "linear"
    device: Literal["auto", "cpu"] = "auto"  # auto: a GPU when present
    cls: ClsTaskParams = ClsTaskParams()
    vqa: CoAttentionParams = CoAttentionParams()
    mlp_head: MlpHeadParams = MlpHeadParams()
    lp: MethodParams = MethodParams()
    mlp: MethodParams = MethodParams()
    nmtune: NMTuneParams = NMTuneParams()
    ran: RANParams = RANParams()
    advft: AdvFTParams = AdvFTParams()

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        check_choices("task", value, TASK_NAMES)
        return _distinct("tasks", value)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        check_choices("method", value, METHOD_NAMES)
        return _distinct("methods", value)

    @field_validator("head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        if value not in HEAD_NAMES:
            raise ValueError(f"unknown head {value!r}; valid heads: {sorted(HEAD_NAMES)}")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 0:
            raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {value}")
        return _distinct("seeds", value)

    def method_config(self, method: str) -> dict[str, Any]:
        """The overrides of ``method``'s config: its section, plus ``head`` where it has one."""
        from medran.methods import METHODS

        values = getattr(self, method).model_dump()
        fields = {f.name for f in dataclasses.fields(METHODS[method].config_class)}
        if "head" in fields:
            values["head"] = self.head
        return values


class EvalRobustParams(Section):
    """White-box PGD against each fine-tuned model (DESIGN §7); budgets in 1/255 units."""

    eps: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    # Gradient-masking check: robust accuracy must be near zero at this budget.
    large_eps: float = Field(32.0, gt=0.0, le=255.0)
    steps: int = Field(5, ge=1)
    step_fraction: float = Field(0.5, gt=0.0)  # PGD step = step_fraction x eps
    restarts: int = Field(1, ge=1)
    near_zero: float = Field(0.1, ge=0.0, le=1.0)
    tolerance: float = Field(0.05, ge=0.0, le=1.0)
    max_examples: int = Field(32, ge=1)  # test examples (rows) attacked per model
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu"] = "auto"
    seed: int = Field(0, ge=0)

    @field_validator("eps")
    @classmethod
    def _eps(cls, value: list[float]) -> list[float]:
        bad = [e for e in value if not 0.0 < e <= 255.0]
        if bad or not value:
            raise ValueError(
                f"eps must be a non-empty list of budgets in (0, 255] (1/255 units); bad: {bad}"
            )
        return _distinct("eps", value)

    @model_validator(mode="after")
    def _budgets(self) -> EvalRobustParams:
        if self.large_eps < max(self.eps):
            raise ValueError(
                f"large_eps {self.large_eps} must be >= the largest eps {max(self.eps)}"
            )
        if self.step_fraction * self.large_eps > 255.0:
            raise ValueError(
                f"step_fraction {self.step_fraction} x large_eps {self.large_eps} exceeds 255"
            )
        return self


class ReportParams(Section):
    """The summary report of the whole pipeline (DESIGN §9)."""

    # true: a missing metrics file or a failed run fails the stage (exit 2) after the report
    # is written; false: they are listed in the report and the stage succeeds.
    strict: bool = False
    decimals: int = Field(3, ge=0, le=6)  # digits after the point in summary.md
    example_rows: int = Field(4, ge=1, le=16)  # attacked images in the example grid
    budget_stages: int = Field(10, ge=1)  # slowest stages listed in the run-budget section
    dpi: int = Field(100, ge=50, le=400)


class Params(Section):
    seed: int = 0
    experiment: str = Field("medran", min_length=1)
    noise_levels: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5])
    synthesize: SynthesizeParams = SynthesizeParams()
    prepare_data: PrepareDataParams
    validate_data: ValidateDataParams = ValidateDataParams()
    train_surrogate: TrainSurrogateParams = TrainSurrogateParams()
    attack_images: AttackImagesParams = AttackImagesParams()
    attack_captions: AttackCaptionsParams = AttackCaptionsParams()
    build_noisy: BuildNoisyParams = BuildNoisyParams()
    pretrain: PretrainParams = PretrainParams()
    eval_upstream: EvalUpstreamParams = EvalUpstreamParams()
    finetune: FinetuneParams = FinetuneParams()
    eval_robust: EvalRobustParams = EvalRobustParams()
    report: ReportParams = ReportParams()

    @field_validator("noise_levels")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not 0.0 <= v <= 1.0]
        if bad or not value:
            raise ValueError(f"noise levels must be a non-empty list in [0, 1]; bad: {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"noise levels must be distinct, got {value}")
        return value

    def check_level(self, level: float) -> float:
        """A level named on a stage's command line must be one of ``noise_levels``."""
        if level not in self.noise_levels:
            raise ParamsError(f"noise level {level} is not in noise_levels {self.noise_levels}")
        return level

    @model_validator(mode="after")
    def _levels_attacked(self) -> Params:
        top = max(self.noise_levels)
        if top > self.attack_images.max_fraction:
            raise ValueError(
                f"noise level {top} exceeds attack_images.max_fraction "
                f"{self.attack_images.max_fraction}: raise max_fraction to at least {top}"
            )
        caption, backend = self.build_noisy.caption, self.attack_captions.backend
        # "rewrite" is the output of a rewriting backend (rules, llm); "captioner" of the captioner.
        if caption in ("rewrite", "captioner") and (caption == "captioner") != (
            backend == "captioner"
        ):
            raise ValueError(
                f"build_noisy.caption {caption!r} needs attack_captions.backend "
                f"{'captioner' if caption == 'captioner' else 'rules or llm'}, got {backend!r}"
            )
        return self


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s values, section by section (a preset over params.yaml)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_choices(kind: str, values: Sequence[str], registry: Iterable[str]) -> None:
    """Raise :class:`ParamsError` unless ``values`` is a non-empty list of names from
    ``registry`` (e.g. a stage's task and method arguments), listing the valid names."""
    valid = sorted(registry)
    unknown = [v for v in values if v not in valid]
    if unknown or not values:
        raise ParamsError(f"unknown {kind} {unknown or values}; valid {kind}s: {valid}")


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {error['input']!r})"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {error['input']!r}: {message}"


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` listing every bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = "\n  ".join(_describe(err) for err in e.errors())
        raise ParamsError(f"{source}: invalid parameters:\n  {lines}") from e


def read_yaml(path: Path) -> Any:
    """Parse a params file as DVC does (ruamel, YAML 1.2), so both read the same values: YAML
    1.1 (PyYAML) reads an unquoted ``no`` as false and ``5e-4`` as a string, and
    ``dvc exp run -S`` writes values unquoted."""
    from ruamel.yaml import YAML, YAMLError

    try:
        return YAML(typ="safe", pure=True).load(path.read_text())
    except YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {str(path)!r} does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return parse_params(raw, source=str(path))
