"""``train_surrogate``: the attack's encoder f_phi and the retrieval captioner's encoder.

Real use names released models (``ViT-B-32`` + ``openai``, ``hf-hub:...``, ``local-dir:...``)
and this stage exports them as they are. The embedded default trains two small CLIPs with
different seeds on the target pool (MediCaT layout), which is disjoint from the upstream
corpus that gets attacked, so the attack is a transfer attack as in the paper. Both are
written as open_clip ``local-dir`` folders: ``<out>/attack`` and ``<out>/captioner``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from medran import layout
from medran.data.manifest import read_manifest
from medran.models.factory import ClipModel, create_clip, save_local_dir
from medran.params import TrainSurrogateParams
from medran.tracking import stage_run
from medran.training.clip_objective import ClipObjective
from medran.training.data import image_text_tensors
from medran.training.loop import LoopConfig, make_accelerator, train

log = logging.getLogger(__name__)
ROLES = {"attack": 0, "captioner": 1}  # role -> seed offset


def train_clip(
    clip: ClipModel,
    params: TrainSurrogateParams,
    data_root: Path,
    seed: int,
    accelerator: Accelerator,
    on_step=None,
) -> ClipModel:
    """Contrastive training of ``clip`` on the target pool (all of it: it is never attacked)."""
    targets = read_manifest(data_root / layout.PREPARED, "targets")
    paths = [data_root / layout.PREPARED / p for p in targets["image_path"]]
    dataset = image_text_tensors(paths, targets["caption"], clip.tokenizer(), clip.image_size)
    cfg = LoopConfig(
        epochs=params.epochs,
        batch_size=min(params.batch_size, len(dataset)),
        lr=params.lr,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_steps,
        seed=seed,
    )
    objective = ClipObjective(
        clip.mean, clip.std, accelerator.process_index, accelerator.num_processes
    )
    clip.model = train(accelerator, clip.model, dataset, objective, cfg, on_step=on_step)
    clip.model.eval()
    return clip


def run(
    params: TrainSurrogateParams, data_root: Path, out_dir: Path, experiment: str
) -> dict[str, float]:
    specs = {
        "attack": (params.model, params.pretrained),
        "captioner": (params.captioner_model, params.captioner_pretrained),
    }
    accelerator = make_accelerator()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    metrics: dict[str, float] = {}
    inputs = {"prepared": data_root / layout.PREPARED} if params.mode == "train" else {}
    with stage_run(
        "train_surrogate", experiment, params, inputs, enabled=accelerator.is_main_process
    ) as tracker:
        for role, (name, pretrained) in specs.items():
            seed = params.seed + ROLES[role]
            clip = create_clip(name, pretrained or None, seed=seed)
            if params.mode == "train":

                def log_step(step: int, values: dict[str, float], role: str = role) -> None:
                    tracker.log_metrics({f"{role}.{k}": v for k, v in values.items()}, step=step)
                    metrics[f"{role}.final_loss"] = values["loss"]

                clip = train_clip(clip, params, data_root, seed, accelerator, log_step)
            if accelerator.is_main_process:
                save_local_dir(clip, tmp / role, extra={"role": role, "source": name})
            metrics[f"{role}.parameters"] = sum(p.numel() for p in clip.model.parameters())
        tracker.log_artifact(tmp / "attack" / "open_clip_config.json", "attack")
    if accelerator.is_main_process:
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    return metrics
