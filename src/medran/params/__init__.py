"""Typed view of ``params.yaml``, one section class per stage.

Every stage loads the params through :func:`load_params`, so a typo, a wrong type, a missing
key or an out-of-range value fails before any work starts, with a message that names the
key, the bad value and what is allowed. Sections have no defaults: ``params.yaml`` spells out
every value the code reads, so DVC tracks all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from medran.params.base import ParamsError, Section, check_choices
from medran.params.data import (
    PAIRING_RULES,
    AttackCaptionsParams,
    AttackImagesParams,
    BuildNoisyParams,
    CaptionerParams,
    LlmParams,
    PrepareDataParams,
    SourceSpec,
    SplitFractions,
    SynthesizeParams,
    TrainSurrogateParams,
    ValidateDataParams,
)
from medran.params.evaluation import (
    APGDParams,
    BootstrapParams,
    CalibrateRobustParams,
    ClaimsParams,
    EvalRobustParams,
    PGDParams,
    PresetParams,
    ReportParams,
)
from medran.params.finetune import (
    AdvFTParams,
    AttackParams,
    ClsTaskParams,
    CoAttentionParams,
    EncoderTuningParams,
    FAREParams,
    FinetuneParams,
    MethodParams,
    MlpHeadParams,
    NMTuneParams,
    RANParams,
    TeCoAParams,
)
from medran.params.training import EvalUpstreamParams, PretrainParams, ProbeParams


class Params(Section):
    seed: int
    experiment: str = Field(min_length=1)
    noise_levels: list[float]
    synthesize: SynthesizeParams
    prepare_data: PrepareDataParams
    validate_data: ValidateDataParams
    train_surrogate: TrainSurrogateParams
    attack_images: AttackImagesParams
    attack_captions: AttackCaptionsParams
    build_noisy: BuildNoisyParams
    pretrain: PretrainParams
    eval_upstream: EvalUpstreamParams
    finetune: FinetuneParams
    eval_robust: EvalRobustParams
    calibrate_robust: CalibrateRobustParams
    report: ReportParams

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
        if self.calibrate_robust.level not in self.noise_levels:
            raise ValueError(
                f"calibrate_robust.level {self.calibrate_robust.level} is not in noise_levels "
                f"{self.noise_levels}"
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
        return YAML(typ="safe", pure=True).load(Path(path).read_text())
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


__all__ = [
    "PAIRING_RULES",
    "APGDParams",
    "AdvFTParams",
    "AttackCaptionsParams",
    "AttackImagesParams",
    "AttackParams",
    "BootstrapParams",
    "BuildNoisyParams",
    "CalibrateRobustParams",
    "CaptionerParams",
    "ClaimsParams",
    "ClsTaskParams",
    "CoAttentionParams",
    "EncoderTuningParams",
    "EvalRobustParams",
    "EvalUpstreamParams",
    "FAREParams",
    "FinetuneParams",
    "LlmParams",
    "MethodParams",
    "MlpHeadParams",
    "NMTuneParams",
    "PGDParams",
    "Params",
    "ParamsError",
    "PrepareDataParams",
    "PresetParams",
    "ProbeParams",
    "RANParams",
    "ReportParams",
    "Section",
    "SourceSpec",
    "SplitFractions",
    "SynthesizeParams",
    "TeCoAParams",
    "TrainSurrogateParams",
    "ValidateDataParams",
    "check_choices",
    "deep_merge",
    "load_params",
    "parse_params",
    "read_yaml",
]
