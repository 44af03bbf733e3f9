"""medran's models as MLflow Models (``mlflow.pyfunc``), logged and registered by their stages.

- A **pre-trained CLIP** (:class:`ClipEmbedder`, here) takes ``image`` (the bytes of a PNG or
  JPEG file) or ``text`` per row and returns ``embedding``: the L2-normalised CLIP embedding,
  so image-text similarity is a dot product.
- A **fine-tuned model** (``medran.models.pyfunc_finetuned``) takes ``image`` and, for VQA,
  ``question``, and returns ``prediction``: the label set or the answer.

Each is self-contained: its artifacts hold the pre-trained model in open_clip's ``local-dir``
layout (and, for a fine-tuned one, the seed's folder). Images are decoded and resized exactly
as the stages decode them, so a loaded model predicts what its stage did. Loading needs medran
installed (the ``pip_requirements`` list its dependencies).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from medran.errors import InputError
from medran.models.factory import load_local_dir
from medran.models.wrappers import ImageEncoder
from medran.training.data import decode_image, to_tensor

PRETRAINED = "pretrained"  # the artifact key of the pre-trained model's folder
MODEL = "model"  # the logged model's name in its run
BATCH = 64
BAR_SWITCH = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
REQUIREMENTS = ("torch", "open_clip_torch", "safetensors", "pillow", "pandas", "mlflow")


CLIP_SIGNATURE = ModelSignature(
    Schema(
        [
            ColSpec(DataType.binary, "image", required=False),
            ColSpec(DataType.string, "text", required=False),
        ]
    ),
    Schema([ColSpec(Array(DataType.float), "embedding")]),
)


def decode_column(images: pd.Series, size: int) -> torch.Tensor:
    """Encoded image files (bytes) as one uint8 tensor (N, 3, size, size)."""
    bad = [i for i, b in enumerate(images) if not isinstance(b, bytes | bytearray)]
    if bad:
        raise InputError(
            f"column 'image' must hold the bytes of image files; rows {bad[:5]} hold "
            f"{type(images.iloc[bad[0]]).__name__}"
        )
    return to_tensor([decode_image(io.BytesIO(b), size) for b in images])


class ClipEmbedder(PythonModel):
    """A pre-trained CLIP: each row's ``image`` (bytes) or ``text`` -> its unit embedding."""

    def load_context(self, context: PythonModelContext) -> None:
        self.clip = load_local_dir(Path(context.artifacts[PRETRAINED]))
        self.clip.model.eval()
        self.encode_image = ImageEncoder(self.clip).eval()  # normalises [0, 1] pixels inside
        self.tokenize = self.clip.tokenizer()

    @torch.no_grad()
    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        image = frame["image"] if "image" in frame else pd.Series(None, frame.index)
        text = frame["text"] if "text" in frame else pd.Series(None, frame.index)
        ambiguous = image.notna() == text.notna()
        if ambiguous.any():
            raise InputError(
                f"each row needs an 'image' or a 'text', not both or neither "
                f"(rows {list(frame.index[ambiguous])[:5]})"
            )
        embeddings = pd.Series(None, frame.index, dtype=object)
        for column, encode in ((image.dropna(), self._images), (text.dropna(), self._texts)):
            for start in range(0, len(column), BATCH):
                part = column.iloc[start : start + BATCH]
                vectors = torch.nn.functional.normalize(encode(part).float(), dim=-1)
                embeddings[part.index] = pd.Series(vectors.tolist(), part.index)
        return pd.DataFrame({"embedding": embeddings})

    def _images(self, images: pd.Series) -> torch.Tensor:
        return self.encode_image(decode_column(images, self.clip.image_size).float().div(255.0))

    def _texts(self, texts: pd.Series) -> torch.Tensor:
        return self.clip.model.encode_text(self.tokenize([str(t) for t in texts]))


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


@contextmanager
def quiet_logging() -> Iterator[None]:
    """Keep a stage's log to its own lines while a model is logged. MLflow warns that the
    model object is pickled (ours are stateless: the pickle names an importable class and
    ``load_context`` builds the rest from the artifacts) and that no input example was given
    (the signature is given; an example would add image bytes to every model), and draws a
    bar while it copies the artifacts, a local copy of a few MB."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    bar = os.environ.get(BAR_SWITCH)
    logger.setLevel(logging.ERROR)
    os.environ[BAR_SWITCH] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            yield
    finally:
        logger.setLevel(level)
        if bar is None:
            del os.environ[BAR_SWITCH]
        else:
            os.environ[BAR_SWITCH] = bar


def log_model(
    python_model: PythonModel,
    artifacts: dict[str, Path],
    signature: ModelSignature,
    registered_name: str,
) -> str:
    """Log ``python_model`` as the active run's ``model`` and register it as
    ``registered_name``; returns the model's URI."""
    with quiet_logging(), tempfile.TemporaryDirectory(prefix="medran-model-") as tmp:
        # Plain copies: MLflow refuses files that resolve outside the folder it copies, as a
        # DVC checkout with symlink or hardlink links to the cache does.
        copies = {}
        for key, folder in artifacts.items():
            copies[key] = str(shutil.copytree(folder, Path(tmp) / key / Path(folder).name))
        info = mlflow.pyfunc.log_model(
            name=MODEL,
            python_model=python_model,
            artifacts=copies,
            signature=signature,
            pip_requirements=requirements(),
            registered_model_name=registered_name,
        )
    return info.model_uri


def log_clip(pretrained: Path, registered_name: str) -> str:
    """Log the pre-trained model in ``pretrained`` to the active run and register it."""
    return log_model(ClipEmbedder(), {PRETRAINED: pretrained}, CLIP_SIGNATURE, registered_name)
