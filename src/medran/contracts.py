"""The contracts between stages, each defined once: stage names, the paths a stage is given,
where metrics go, metric keys the report reads, and the run-id file beside every model.

A producer and its consumers both use these, so a name cannot drift between them.
``dvc.yaml`` spells the same names and paths; ``tests/pipeline/test_dvc_consistency.py``
checks that it does. Torch-free: stage scripts read it before any heavy import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializeAsAny, model_validator

from medran.errors import InputError
from medran.layout import level_name
from medran.names import GATES, HEADS, METHODS, NOISY_GATE, TASKS
from medran.params import FinetuneParams, MethodParams

# The DVC stages, in pipeline order; each is stages/<name>.py -> medran.pipeline.<name>.run.
STAGES = (
    "synthesize",
    "prepare_data",
    "validate_data",
    "train_surrogate",
    "attack_images",
    "attack_captions",
    "build_noisy",
    "validate_noisy",
    "pretrain",
    "eval_upstream",
    "finetune",
    "eval_robust",
    "calibrate_robust",
    "report",
)
REPORTS = Path("reports")  # the root every stage writes its metrics under


def stage_id(
    stage: str,
    level: float | None = None,
    task: str | None = None,
    method: str | None = None,
) -> str:
    """The DVC stage name, which is also its MLflow run name: ``finetune@0.5-vqa-ran``."""
    if level is None:
        return stage
    key = level_name(level)
    return f"{stage}@{key}-{task}-{method}" if task else f"{stage}@{key}"


def registered_model_name(level: float, task: str | None = None, method: str | None = None) -> str:
    """The MLflow model registry name of a level's pre-trained CLIP (``medran-clip-level0.5``)
    or of one fine-tuned task x method on it (``medran-vqa-ran-level0.5``). Not the stage id:
    ``@`` marks an alias in ``models:/`` URIs."""
    what = f"{task}-{method}" if task else "clip"
    return f"medran-{what}-level{level_name(level)}"


def item_folder(task: str, method: str) -> str:
    """The folder of one task x method inside a level's folder (models, metrics): ``vqa-ran``."""
    return f"{task}-{method}"


def gate_id(gate: str, level: float | None = None) -> str:
    """The DVC stage of a data-quality gate: ``validate_data@clean``, or for the noisy gate of
    one level ``validate_noisy@0.5``."""
    return stage_id("validate_noisy", level) if gate == NOISY_GATE else f"validate_data@{gate}"


def gates(levels: list[float] | tuple[float, ...]) -> list[tuple[str, float | None]]:
    """Every (gate, level) of a run, in pipeline order; the level is None for level-free gates."""
    *before, nesting = GATES
    return [(g, None) for g in before] + [(NOISY_GATE, p) for p in levels] + [(nesting, None)]


def metrics_path(
    stage: str,
    level: float | None = None,
    task: str | None = None,
    method: str | None = None,
    reports: Path = REPORTS,
) -> Path:
    """``reports/<stage>[/<level>[/<task>-<method>]]/metrics.json``, as ``dvc.yaml`` names it."""
    folder = Path(reports) / stage
    if level is not None:
        folder /= level_name(level)
    if task is not None:
        folder /= item_folder(task, method)
    return folder / "metrics.json"


OUTCOMES_FILE = "outcomes.npz"


def outcomes_path(
    stage: str,
    level: float,
    task: str | None = None,
    method: str | None = None,
    reports: Path = REPORTS,
) -> Path:
    """Per-example outcomes beside a stage's metrics (``finetune``, ``eval_robust``)."""
    return metrics_path(stage, level, task, method, reports).with_name(OUTCOMES_FILE)


def gate_result_path(gate: str, level: float | None = None, reports: Path = REPORTS) -> Path:
    """A gate's ``result.json`` (its DVC metric), ``reports/data_quality/<gate>[/<level>]/``;
    its Data Docs go beside it in ``docs/``."""
    folder = Path(reports) / "data_quality" / gate
    return (folder if level is None else folder / level_name(level)) / "result.json"


# Metric keys that one stage writes and another (the report) reads.
FINAL_LOSS = "final_loss"
TEST_ACCURACY = "test.accuracy"
CLEAN_ACCURACY = "clean_accuracy"
ZERO_SHOT_ACCURACY = "zero_shot_accuracy"
PROBE_AUROC = "probe_auroc"  # linear probe of the frozen image features, chest X-ray test split
PIXEL_PROBE_AUROC = "pixel_probe_auroc"  # the same probe on raw pixels: the bar to clear
GRADIENT_MASKING = "gradient_masking_suspected"
# Fraction of attacked examples whose logits have an exactly zero gradient in their image.
ZERO_GRADIENT = "zero_gradient_fraction"
# VQA: right with another example's image, i.e. from the question alone; the image's worth is
# the clean accuracy minus this.
BLIND_ACCURACY = "blind_accuracy"
# The trivial baseline on the test split: majority label set (cls), per-question majority
# answer (vqa).
PRIOR_ACCURACY = "prior_accuracy"


def robust_accuracy_key(eps: float) -> str:
    """Robust accuracy under PGD at ``eps`` (1/255 units): ``robust_accuracy_eps8``."""
    return f"robust_accuracy_eps{eps:g}"


def recall_key(direction: str, k: int) -> str:
    """Retrieval recall at ``k`` for ``direction`` ``i2t`` or ``t2i``: ``i2t_r5``."""
    return f"{direction}_r{k}"


def seed_key(seed: int, key: str) -> str:
    """One seed's own value of ``key`` in a stage's metrics: ``seed-1.test.accuracy``."""
    return f"seed-{seed}.{key}"


def model_key(task: str, method: str, key: str) -> str:
    """A model's value of ``key`` in its level's ``eval_robust`` metrics: ``cls.ran.<key>``."""
    return f"{task}.{method}.{key}"


# The MLflow run id of the run that made a model, saved beside it (pre-trained or fine-tuned),
# so the next stage's run can point back to it (``upstream_run_id``).
RUN_FILE = "run.json"


def write_run_id(folder: Path, run_id: str | None) -> None:
    (Path(folder) / RUN_FILE).write_text(json.dumps({"run_id": run_id}) + "\n")


def read_run_id(folder: Path) -> str | None:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist: the model in {folder} has no MLflow run id")
    return json.loads(path.read_text())["run_id"]


class FinetunedConfig(BaseModel):
    """``config.json`` of a released fine-tuned model (one seed of a ``finetune`` stage):
    everything ``eval_robust`` needs to rebuild it on its pre-trained encoder, and the hash
    of that encoder's weights, so loading it against another pre-trained model fails. For a
    method that tunes the encoder (``fare``, ``tecoa``) it is still the hash of the
    pre-trained encoder it started from; the tuned weights are saved with the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    stage: str
    level: float
    task: Literal[TASKS]  # type: ignore[valid-type]
    task_options: dict[str, Any]  # keyword options of the task's class
    method: Literal[METHODS]  # type: ignore[valid-type]
    method_config: SerializeAsAny[MethodParams]  # the method's finetune.<method> section
    head: Literal[HEADS]  # type: ignore[valid-type]
    head_options: dict[str, Any]  # keyword options of the task's build_head
    classes: list[str]  # the class (or answer) vocabulary the head predicts
    upstream_run_id: str | None  # the pretrain run of the encoder
    seed: int
    encoder_hash: str  # of the pre-trained encoder, before any fine-tuning

    @model_validator(mode="before")
    @classmethod
    def _method_section(cls, values: Any) -> Any:
        """Read ``method_config`` back as the method's own section class."""
        if isinstance(values, dict) and isinstance(values.get("method_config"), dict):
            section = FinetuneParams.method_section(values.get("method", ""))
            values = values | {"method_config": section.model_validate(values["method_config"])}
        return values


# The paths each stage is given on its command line (``dvc.yaml`` passes them as
# ``--<field>``); ``medran.runner.stage_main`` builds the object and hands it to ``run``.
# ``metrics`` is the flat JSON the runner writes from what ``run`` returns.


@dataclass(frozen=True)
class SynthesizePaths:
    out: Path
    metrics: Path


@dataclass(frozen=True)
class PrepareDataPaths:
    out: Path
    metrics: Path


@dataclass(frozen=True)
class ValidateDataPaths:
    data: Path  # the data root (data/)
    docs: Path  # the gate's GX Data Docs
    metrics: Path  # result.json: the gate's findings, written whether or not it passes


@dataclass(frozen=True)
class TrainSurrogatePaths:
    data: Path
    out: Path
    metrics: Path


@dataclass(frozen=True)
class AttackImagesPaths:
    data: Path
    surrogate: Path  # the attack's encoder, an open_clip local-dir folder
    out: Path
    metrics: Path
    figure: Path  # examples.png


@dataclass(frozen=True)
class AttackCaptionsPaths:
    data: Path
    out: Path
    metrics: Path
    captioner: Path | None = None  # the retrieval captioner's encoder (backend captioner)


@dataclass(frozen=True)
class BuildNoisyPaths:
    data: Path
    out: Path
    metrics: Path


@dataclass(frozen=True)
class PretrainPaths:
    data: Path
    model: Path  # the released model, an open_clip local-dir folder
    checkpoints: Path  # resumable training state (a DVC persist output)
    metrics: Path
    curve: Path  # per-step loss CSV for dvc plots


@dataclass(frozen=True)
class EvalUpstreamPaths:
    data: Path
    model: Path  # pretrain@<level>'s model
    metrics: Path


@dataclass(frozen=True)
class FinetunePaths:
    data: Path
    pretrain: Path  # pretrain@<level>'s model
    out: Path  # one seed-<seed>/ folder per seed
    cache: Path  # content-addressed encoder features, shared by the stages
    metrics: Path
    outcomes: Path  # per test example and seed (npz): the report's confidence intervals


@dataclass(frozen=True)
class EvalRobustPaths:
    data: Path
    pretrain: Path  # pretrain@<level>'s model
    finetune: Path  # the level's fine-tuned models, <task>-<method>/seed-<seed>/
    metrics: Path
    outcomes: Path  # per attacked example, model and seed (npz): the report's intervals


@dataclass(frozen=True)
class CalibrateRobustPaths:
    data: Path
    pretrain: Path  # pretrain@<calibrate_robust.level>'s model
    finetune: Path  # that level's fine-tuned models, <task>-<method>/seed-<seed>/
    metrics: Path


@dataclass(frozen=True)
class ReportPaths:
    reports: Path  # the root the stages write metrics under (reports/)
    data: Path  # the data root: the attack manifest and the images it names
    summary: Path  # summary.md
    figures: Path  # folder of PNGs
    plots: Path  # folder of plot data for dvc plots
    metrics: Path
    claims: Path  # the paper's claims with their verdicts (a DVC metric)
    benchmarks: Path | None = None  # the run-budget file, read when it exists
    lock: Path = Path("dvc.lock")  # its md5 tags the MLflow run


STAGE_PATHS: dict[str, type] = {
    "synthesize": SynthesizePaths,
    "prepare_data": PrepareDataPaths,
    "validate_data": ValidateDataPaths,
    "validate_noisy": ValidateDataPaths,
    "train_surrogate": TrainSurrogatePaths,
    "attack_images": AttackImagesPaths,
    "attack_captions": AttackCaptionsPaths,
    "build_noisy": BuildNoisyPaths,
    "pretrain": PretrainPaths,
    "eval_upstream": EvalUpstreamPaths,
    "finetune": FinetunePaths,
    "eval_robust": EvalRobustPaths,
    "calibrate_robust": CalibrateRobustPaths,
    "report": ReportPaths,
}
# The positional arguments that name a stage's item (its DVC foreach/matrix key).
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "validate_data": ("gate",),
    "build_noisy": ("level",),
    "validate_noisy": ("level",),
    "pretrain": ("level",),
    "eval_upstream": ("level",),
    "finetune": ("level", "task", "method"),
    "eval_robust": ("level",),
}
