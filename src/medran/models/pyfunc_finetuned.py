"""A fine-tuned model as an MLflow Model: encoded images (and questions) in, predictions out.

Input: ``image`` (the bytes of a PNG or JPEG file) and, for VQA, ``question``. Output:
``prediction``, the label set (``"A|B"``; ``"No Finding"`` for none, multi-label) or the
answer. Its artifacts are the pre-trained model's folder and the seed's folder (weights and
``config.json``); loading goes through :func:`~medran.models.finetuned.load_finetuned`, which
checks that the two fit each other. Kept apart from ``medran.models.pyfunc`` so that
pre-training does not depend on the downstream tasks and methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema

from medran.models.factory import load_local_dir
from medran.models.finetuned import load_finetuned, read_config
from medran.models.pyfunc import BATCH, PRETRAINED, decode_column, log_model
from medran.tasks import TASKS, Split

FINETUNED = "finetuned"  # the artifact key of the seed's folder


def finetuned_signature(task: str) -> ModelSignature:
    inputs = [ColSpec(DataType.binary, "image")]
    if task == "vqa":
        inputs.append(ColSpec(DataType.string, "question"))
    return ModelSignature(Schema(inputs), Schema([ColSpec(DataType.string, "prediction")]))


class FinetunedModel(PythonModel):
    """A fine-tuned classifier or VQA model: encoded images (and questions) -> predictions."""

    def load_context(self, context: PythonModelContext) -> None:
        folder = Path(context.artifacts[FINETUNED])
        config = read_config(folder)
        self.clip = load_local_dir(Path(context.artifacts[PRETRAINED]))
        self.task = TASKS[config.task].from_vocabulary(config.classes, **config.task_options)
        self.model = load_finetuned(folder, self.clip, self.task)

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        predictions = []
        for start in range(0, len(frame), BATCH):
            chunk = frame.iloc[start : start + BATCH]
            predictions += self.task.decode(self.task.predict(self._logits(chunk)))
        return pd.DataFrame({"prediction": predictions})

    @torch.no_grad()
    def _logits(self, rows: pd.DataFrame) -> torch.Tensor:
        images = decode_column(rows["image"], self.clip.image_size)
        split = Split(
            task=self.task.name,
            name="input",
            rows=rows.reset_index(drop=True),
            images=images,
            image_index=torch.arange(len(rows)),
            targets=torch.zeros(len(rows)),
        )
        split = self.task.with_context(split, self.clip)
        batch = torch.utils.data.default_collate([split[i] for i in range(len(split))])
        return self.model(batch["images"], batch.get("context")).float()


def log_finetuned(folder: Path, pretrained: Path, registered_name: str) -> str:
    """Log the model in ``folder`` (on the pre-trained model in ``pretrained``) to the active
    run and register it as ``registered_name``; returns its URI."""
    artifacts = {PRETRAINED: pretrained, FINETUNED: folder}
    signature = finetuned_signature(read_config(folder).task)
    return log_model(FinetunedModel(), artifacts, signature, registered_name)
