"""``train_surrogate``: the attack's encoder f_phi and the retrieval captioner's encoder.

Real use names released models (``ViT-B-32`` + ``openai``, ``hf-hub:...``, ``local-dir:...``)
and this stage exports them as they are. The embedded default trains two small CLIPs with
different seeds on the target pool (MediCaT layout), which is disjoint from the upstream
corpus that gets attacked, so the attack is a transfer attack as in the paper. Both are
written as open_clip ``local-dir`` folders: ``<out>/attack`` and ``<out>/captioner``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from accelerate import Accelerator

from medran import layout, startup
from medran.contracts import FINAL_LOSS, TrainSurrogatePaths
from medran.data.manifest import read_manifest
from medran.data.paths import resolve_all
from medran.fsutil import replace_dir
from medran.models.factory import ClipModel, create_clip, save_local_dir
from medran.params import Params, TrainSurrogateParams
from medran.tracking import StageRun, stage_run
from medran.training.clip_objective import train_clip
from medran.training.data import image_text_tensors
from medran.training.loop import LoopConfig, LoopHooks, StepCallback, make_accelerator

log = logging.getLogger(__name__)
ROLES = {"attack": 0, "captioner": 1}  # role -> seed offset


def train_on_targets(
    clip: ClipModel,
    params: TrainSurrogateParams,
    data_root: Path,
    seed: int,
    accelerator: Accelerator,
    on_step: StepCallback | None = None,
) -> ClipModel:
    """Contrastive training of ``clip`` on the target pool (all of it: it is never attacked)."""
    targets = read_manifest(data_root / layout.PREPARED, "targets")
    prepared = data_root / layout.PREPARED
    paths = resolve_all(prepared, targets["image_path"], f"{prepared} targets manifest")
    dataset = image_text_tensors(paths, targets["caption"], clip.tokenizer(), clip.image_size)
    cfg = LoopConfig(
        epochs=params.epochs,
        batch_size=min(params.batch_size, len(dataset)),
        lr=params.lr,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_steps,
        seed=seed,
        label=f"train_surrogate seed{seed}",
    )
    return train_clip(accelerator, clip, dataset, cfg, LoopHooks(on_step=on_step))


def run(params: Params, *, paths: TrainSurrogatePaths) -> dict[str, float]:
    """Export (or train) both encoders into ``<out>/attack`` and ``<out>/captioner``."""
    p = params.train_surrogate
    accelerator = make_accelerator()
    main = accelerator.is_main_process
    metrics: dict[str, float] = {}
    inputs = {"prepared": paths.data / layout.PREPARED} if p.mode == "train" else {}
    with (
        stage_run("train_surrogate", params.experiment, p, inputs, enabled=main) as tracker,
        replace_dir(paths.out, enabled=main) as tmp,
    ):
        for role in ROLES:
            clip = make_encoder(
                p, role, paths.data, accelerator, _step_logger(tracker, role, metrics)
            )
            if main:
                extra = {"role": role, "source": _spec(p, role)[0]}
                save_local_dir(clip, tmp / role, extra=extra)
            metrics[f"{role}.parameters"] = sum(x.numel() for x in clip.model.parameters())
        tracker.log_artifact(tmp / "attack" / "open_clip_config.json", "attack")
    return metrics


def _spec(params: TrainSurrogateParams, role: str) -> tuple[str, str]:
    """The model name and pretrained tag of ``role``."""
    if role == "attack":
        return params.model, params.pretrained
    return params.captioner_model, params.captioner_pretrained


def make_encoder(
    params: TrainSurrogateParams,
    role: str,
    data_root: Path,
    accelerator: Accelerator,
    on_step: StepCallback,
) -> ClipModel:
    """The ``role`` encoder: created (its own seed), then trained unless it is released."""
    name, pretrained = _spec(params, role)
    seed = params.seed + ROLES[role]
    clip = create_clip(name, pretrained or None, seed=seed)
    startup.ready()  # the model is loaded: work starts
    if params.mode == "train":
        clip = train_on_targets(clip, params, data_root, seed, accelerator, on_step)
    return clip


def _step_logger(tracker: StageRun, role: str, metrics: dict[str, float]) -> StepCallback:
    """Log ``role``'s step losses under ``<role>.``, keeping the last as its final loss."""

    def log_step(step: int, values: dict[str, float]) -> None:
        tracker.log_metrics({f"{role}.{k}": v for k, v in values.items()}, step=step)
        metrics[f"{role}.{FINAL_LOSS}"] = values["loss"]

    return log_step
