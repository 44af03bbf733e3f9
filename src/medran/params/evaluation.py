"""Params of the robust evaluation and the report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medran.names import ATTACKS, FULL_PRESET
from medran.params.base import Section, check_choices, distinct


class APGDParams(Section):
    """APGD-CE and APGD-T (AutoAttack: 100 steps, 1 restart, 9 targets)."""

    steps: int = Field(ge=1)
    restarts: int = Field(ge=1)
    targets: int = Field(ge=1)  # APGD-T's target classes per example


class PGDParams(Section):
    """PGD with random starts; step = step_fraction x eps."""

    steps: int = Field(ge=1)
    restarts: int = Field(ge=1)
    step_fraction: float = Field(gt=0.0)


class PresetParams(Section):
    """One robust-evaluation protocol (docs/study.md, "Robust protocol")."""

    attacks: list[str]  # from ATTACKS, run in this order on what the earlier ones left right
    max_examples: int = Field(ge=0)  # test rows attacked per model; 0: the whole test split
    apgd: APGDParams
    pgd: PGDParams

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, value: list[str]) -> list[str]:
        check_choices("attack", value, ATTACKS)
        return distinct("attacks", value)

    def describe(self, name: str) -> str:
        """One sentence for the report: the attacks, iterations, restarts and examples."""
        apgd, pgd = self.apgd, self.pgd
        runs = {
            "apgd-ce": f"APGD-CE ({apgd.steps} steps, {apgd.restarts} restart(s))",
            "apgd-t": f"APGD-T ({apgd.steps} steps, {apgd.targets} target classes, "
            f"{apgd.restarts} restart(s))",
            "pgd": f"PGD ({pgd.steps} steps of {pgd.step_fraction:g} x eps from a random start, "
            f"{pgd.restarts} restart(s))",
        }
        where = (
            f"up to {self.max_examples} test examples per model"
            if self.max_examples
            else "the whole test split"
        )
        attacks = ", then ".join(runs[a] for a in self.attacks)
        return (
            f"preset `{name}`, white-box L∞ on the whole model: {attacks}, each on the "
            f"examples the earlier attacks and smaller budgets left right, on {where}"
        )


class EvalRobustParams(Section):
    """White-box attacks on each fine-tuned model (docs/study.md, "Robust protocol");
    budgets in 1/255 units."""

    eps: list[float]
    # Gradient-masking check: robust accuracy must be near zero at this budget.
    large_eps: float = Field(gt=0.0, le=255.0)
    preset: str  # the protocol every model is evaluated with, a key of presets
    presets: dict[str, PresetParams]
    near_zero: float = Field(ge=0.0, le=1.0)
    tolerance: float = Field(ge=0.0, le=1.0)
    batch_size: int = Field(ge=1)
    device: Literal["auto", "cpu"]
    seed: int = Field(ge=0)

    @field_validator("eps")
    @classmethod
    def _eps(cls, value: list[float]) -> list[float]:
        bad = [e for e in value if not 0.0 < e <= 255.0]
        if bad or not value:
            raise ValueError(
                f"eps must be a non-empty list of budgets in (0, 255] (1/255 units); bad: {bad}"
            )
        return distinct("eps", value)

    @model_validator(mode="after")
    def _budgets(self) -> EvalRobustParams:
        if self.large_eps < max(self.eps):
            raise ValueError(
                f"large_eps {self.large_eps} must be >= the largest eps {max(self.eps)}"
            )
        for name in (self.preset, FULL_PRESET):
            if name not in self.presets:
                raise ValueError(f"preset {name!r} is not defined; presets: {sorted(self.presets)}")
        for name, preset in self.presets.items():
            if preset.pgd.step_fraction * self.large_eps > 255.0:
                raise ValueError(
                    f"presets.{name}.pgd.step_fraction {preset.pgd.step_fraction} x large_eps "
                    f"{self.large_eps} exceeds 255"
                )
        return self

    @property
    def protocol(self) -> PresetParams:
        """The preset every model is evaluated with."""
        return self.presets[self.preset]


class CalibrateRobustParams(Section):
    """How far the evaluation's preset is from the full one (docs/study.md, "Robust
    protocol"): both on a sample, for the first seed of every model of one level."""

    level: float = Field(ge=0.0, le=1.0)  # one of noise_levels
    examples: int = Field(ge=1)
    max_gap: float = Field(ge=0.0, le=1.0)  # a larger overestimate is flagged in the report


class BootstrapParams(Section):
    """Confidence intervals: percentile bootstrap over test examples and seeds (docs/study.md)."""

    samples: int = Field(ge=100)
    seed: int = Field(ge=0)


class ClaimsParams(Section):
    """How the paper's claims are checked (docs/study.md, "Claims")."""

    eps: float = Field(gt=0.0, le=255.0)  # robust accuracy is compared at this budget (1/255)
    max_clean_loss: float = Field(ge=0.0, le=1.0)  # claim (c): clean accuracy RAN may lose


class ReportParams(Section):
    """The summary report of the whole pipeline (docs/architecture.md, "Report")."""

    # true: a missing metrics file or a failed run fails the stage (exit 2) after the report
    # is written; false: they are listed in the report and the stage succeeds.
    strict: bool
    decimals: int = Field(ge=0, le=6)  # digits after the point in summary.md
    example_rows: int = Field(ge=1, le=16)  # attacked images in the example grid
    budget_stages: int = Field(ge=1)  # slowest stages listed in the run-budget section
    dpi: int = Field(ge=50, le=400)
    bootstrap: BootstrapParams
    claims: ClaimsParams
