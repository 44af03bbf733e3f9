"""Params of the robust evaluation and the report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medran.params.base import Section, distinct


class EvalRobustParams(Section):
    """White-box PGD against each fine-tuned model (docs/architecture.md, "Evaluation");
    budgets in 1/255 units."""

    eps: list[float]
    # Gradient-masking check: robust accuracy must be near zero at this budget.
    large_eps: float = Field(gt=0.0, le=255.0)
    steps: int = Field(ge=1)
    step_fraction: float = Field(gt=0.0)  # PGD step = step_fraction x eps
    restarts: int = Field(ge=1)
    near_zero: float = Field(ge=0.0, le=1.0)
    tolerance: float = Field(ge=0.0, le=1.0)
    max_examples: int = Field(ge=1)  # test examples (rows) attacked per model
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
        if self.step_fraction * self.large_eps > 255.0:
            raise ValueError(
                f"step_fraction {self.step_fraction} x large_eps {self.large_eps} exceeds 255"
            )
        return self


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
