"""A released fine-tuned model: its trainable weights and the config that rebuilds the rest.

A fine-tuning run saves only what it trained (``trainable.safetensors``): rectifier and head,
plus the encoder for a method that tunes it (``fare``, ``tecoa``); a frozen encoder comes from
the pre-trained model it started from. ``config.json`` (:class:`medran.contracts.FinetunedConfig`)
carries everything else needed to rebuild the model and a hash of the pre-trained encoder's
weights (for a tuned encoder, those it started from), so loading against another pre-trained
model, or against data whose vocabulary changed, fails with a clear message instead of
silently mixing versions. The MLflow run id goes beside them (``contracts.RUN_FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from medran.contracts import FinetunedConfig, write_run_id
from medran.data.errors import DataError
from medran.errors import InputError
from medran.methods import Method, get_method
from medran.models.factory import ClipModel
from medran.models.finetune import FineTuneModel
from medran.tasks.base import Task

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "trainable.safetensors"
FORMAT = 1


def seed_dir(model_dir: Path, seed: int) -> Path:
    """Where the model of ``seed`` lives inside a fine-tuning stage's output folder."""
    return Path(model_dir) / f"seed-{seed}"


def build_model(
    task: Task, clip: ClipModel, method: Method, head_options: dict[str, Any]
) -> FineTuneModel:
    """The task's encoder (frozen, or a copy to tune when the method tunes it), the method's
    rectifier and a new head (``method.build_head``).

    Parameters are drawn from torch's global RNG: seed it first for a reproducible model.
    """
    encoder = task.build_encoder(clip)
    head = method.build_head(task, encoder, clip, dict(head_options))
    rectifier = method.build_rectifier(encoder.out_dim)
    return FineTuneModel(encoder, head, rectifier, tune_encoder=method.tunes_encoder)


def save_finetuned(
    folder: Path, model: FineTuneModel, config: dict[str, Any], run_id: str | None
) -> FinetunedConfig:
    """Write ``trainable.safetensors``, ``config.json`` (``config`` plus the format and the
    pre-trained encoder's hash) and the run id; return the config as saved."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE)
    saved = FinetunedConfig.model_validate(
        config | {"format": FORMAT, "encoder_hash": model.encoder_hash}
    )
    text = json.dumps(saved.model_dump(mode="json"), indent=2, sort_keys=True)
    (folder / CONFIG_FILE).write_text(text + "\n")
    write_run_id(folder, run_id)
    return saved


def read_config(folder: Path) -> FinetunedConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file() or not (Path(folder) / WEIGHTS_FILE).is_file():
        raise InputError(
            f"no fine-tuned model in {folder} (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "run the finetune stage that writes it first"
        )
    raw = json.loads(path.read_text())
    if raw.get("format") != FORMAT:
        raise InputError(f"{path}: format {raw.get('format')!r}, expected {FORMAT}")
    try:
        return FinetunedConfig.model_validate(raw)
    except ValidationError as e:
        raise InputError(f"{path}: not a fine-tuned model config: {e}") from e


def load_finetuned(folder: Path, clip: ClipModel, task: Task) -> FineTuneModel:
    """Rebuild the model saved in ``folder`` on ``clip`` (its pre-trained model) for ``task``,
    in eval mode. ``task`` must be made with the options in the folder's config."""
    config = read_config(folder)
    if config.task != task.name:
        raise InputError(f"{folder} holds a {config.task!r} model, not {task.name!r}")
    if config.classes != task.classes:
        raise DataError(
            f"{folder}: the model was trained on {len(config.classes)} classes "
            f"{config.classes[:5]}..., the prepared data now gives {len(task.classes)} "
            f"{task.classes[:5]}...; rerun fine-tuning on the current data"
        )
    method = get_method(config.method, config.method_config)
    model = build_model(task, clip, method, config.head_options)
    if model.encoder_hash != config.encoder_hash:
        raise InputError(
            f"{folder} was fine-tuned from another pre-trained model (encoder hash "
            f"{config.encoder_hash}, this one {model.encoder_hash})"
        )
    state = load_file(folder / WEIGHTS_FILE)
    unknown = sorted({k.split(".", 1)[0] for k in state} - set(model.trained_parts))
    if unknown:
        raise InputError(
            f"{folder / WEIGHTS_FILE} holds {unknown} weights, which a {config.method!r} model "
            f"does not train (it saves {list(model.trained_parts)})"
        )
    for prefix in model.trained_parts:
        part = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{prefix}.")}
        try:
            getattr(model, prefix).load_state_dict(part, strict=True)
        except RuntimeError as e:  # missing, unexpected or misshapen weights
            raise InputError(
                f"{folder / WEIGHTS_FILE}: its {prefix} weights do not fit the "
                f"{config.method!r} model its config describes: {e}"
            ) from e
    return model.eval()
