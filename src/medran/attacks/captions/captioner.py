"""``captioner``: a black-box model captions the adversarial image (the paper's Fig. 5;
docs/architecture.md, "Attacks").

Two modes, from ``attack_captions.captioner.model``:

- ``"retrieval"`` (the embedded default): the adversarial image is embedded by the captioner
  CLIP (``data/surrogate/captioner``, a model other than the attack surrogate) and the
  nearest caption of a pool of clean captions is returned. Nothing is excluded from the pool:
  a black-box captioner knows nothing about the attack, so it may return the clean caption.
- anything else: a transformers image-to-text model (local folder or hub id). Models that take
  a prompt (LLaVA-Med, BLIP, ...) get ``captioner.prompt``; a ``VisionEncoderDecoderModel``
  captions without one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medran.attacks.captions import hf
from medran.attacks.captions.base import (
    CaptionJob,
    Resources,
    Rewrite,
    batches,
    word_changes,
)
from medran.attacks.captions.llm import clean_output
from medran.data.errors import DataError
from medran.errors import InputError
from medran.params import AttackCaptionsParams, CaptionerParams

log = logging.getLogger(__name__)

RETRIEVAL = "retrieval"
BATCH_SIZE = 16
BICUBIC = Image.Resampling.BICUBIC


def load_images(jobs: list[CaptionJob]) -> list[Image.Image]:
    """The adversarial PNGs of ``jobs`` as RGB images; a missing file names the row."""
    images = []
    for job in jobs:
        if job.adv_image_path is None or not Path(job.adv_image_path).is_file():
            raise DataError(f"row {job.id}: adversarial image {job.adv_image_path} does not exist")
        with Image.open(job.adv_image_path) as img:
            images.append(img.convert("RGB"))
    return images


class RetrievalCaptioner:
    """Nearest pool caption to the adversarial image under the captioner CLIP."""

    name = "captioner"

    def __init__(self, clip: Any, pool: tuple[str, ...]):
        from medran.models.wrappers import ImageEncoder

        self.clip, self.pool, self.device = clip, pool, hf.device()
        clip.model.to(self.device)
        self.encoder = ImageEncoder(clip).to(self.device).eval()
        self.text_features = self._embed_texts(pool)

    def _embed_texts(self, texts: tuple[str, ...]) -> Any:
        import torch

        tokenizer = self.clip.tokenizer()
        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                tokens = tokenizer(list(texts[start : start + 256])).to(self.device)
                parts.append(self.clip.model.encode_text(tokens, normalize=True))
        return torch.cat(parts)

    def _to_tensor(self, images: list[Image.Image]) -> Any:
        import torch

        size = self.clip.image_size
        # Prepared images may be smaller or larger than the captioner's input size.
        arrays = [
            np.asarray(img if img.size == (size, size) else img.resize((size, size), BICUBIC))
            for img in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return batch.to(self.device).float().div(255.0)

    def rewrite(self, jobs: list[CaptionJob]) -> list[Rewrite]:
        import torch

        results = []
        for chunk in batches(jobs, BATCH_SIZE, "retrieval"):
            with torch.inference_mode():
                features = self.encoder(self._to_tensor(load_images(chunk)))
            # argmax keeps the first of equal scores, and the pool is sorted: deterministic.
            best = (features @ self.text_features.T).argmax(dim=1).tolist()
            for job, index in zip(chunk, best, strict=True):
                caption = self.pool[index]
                results.append(Rewrite(caption, word_changes(job.clean_caption, caption)))
        return results


class ImageToTextCaptioner:
    """A transformers image-to-text model, prompted with the paper's question when it can be."""

    name = "captioner"

    def __init__(self, params: CaptionerParams, model: Any, processor: Any, tokenizer: Any):
        self.params, self.model = params, model
        self.processor, self.tokenizer = processor, tokenizer
        # A VisionEncoderDecoderModel has no text input; everything else is asked the prompt.
        self.prompted = model.config.model_type != "vision-encoder-decoder"

    def _inputs(self, images: list[Image.Image]) -> tuple[Any, str]:
        if not self.prompted:
            return self.processor(images=images, return_tensors="pt"), ""
        prompt = self.params.prompt
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"}, {"type": "text", "text": prompt}]
            prompt = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True
            )
        texts = [prompt] * len(images)
        return self.processor(images=images, text=texts, return_tensors="pt", padding=True), prompt

    def caption(self, images: list[Image.Image]) -> list[str]:
        import torch

        inputs, prompt = self._inputs(images)
        # Pixel values follow the model's dtype (released VLMs often load in half precision).
        inputs = inputs.to(self.model.device).to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, do_sample=False, max_new_tokens=self.params.max_new_tokens
            )
        if self.prompted and not self.model.config.is_encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1] :]  # decoder-only: drop the prompt
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        # Some encoder-decoder models (BLIP) repeat a text prompt as the caption's prefix.
        return [clean_output(t.removeprefix(prompt) if prompt else t) for t in texts]

    def rewrite(self, jobs: list[CaptionJob]) -> list[Rewrite]:
        results = []
        for chunk in batches(jobs, BATCH_SIZE, "captioner"):
            for job, text in zip(chunk, self.caption(load_images(chunk)), strict=True):
                results.append(Rewrite(text, word_changes(job.clean_caption, text)))
        return results


def load_image_to_text(params: CaptionerParams) -> ImageToTextCaptioner:
    key = "attack_captions.captioner.model"
    source = hf.resolve_model(params.model, key)
    import transformers as tf

    model = hf.load(
        "an image-to-text model",
        source,
        key,
        lambda: tf.AutoModelForImageTextToText.from_pretrained(source),
    )
    if model.config.model_type == "vision-encoder-decoder":
        if model.config.decoder_start_token_id is None:
            raise InputError(f"{key} = {params.model!r}: config has no decoder_start_token_id")
        processor = hf.load(
            "an image processor", source, key, lambda: tf.AutoImageProcessor.from_pretrained(source)
        )
        tokenizer = hf.load(
            "a tokenizer", source, key, lambda: tf.AutoTokenizer.from_pretrained(source)
        )
    else:
        processor = hf.load(
            "a processor", source, key, lambda: tf.AutoProcessor.from_pretrained(source)
        )
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # generation continues from the right end
    return ImageToTextCaptioner(params, model.to(hf.device()).eval(), processor, tokenizer)


def load_retrieval(captioner_dir: Path | None, pool: tuple[str, ...]) -> RetrievalCaptioner:
    if captioner_dir is None or not Path(captioner_dir).is_dir():
        raise InputError(
            f"captioner model folder {captioner_dir} does not exist; the retrieval captioner "
            "needs the black-box CLIP written by train_surrogate (data/surrogate/captioner)"
        )
    if not pool:
        raise DataError("the retrieval captioner's caption pool is empty")
    from medran.models.factory import load_local_dir

    clip = load_local_dir(Path(captioner_dir))
    clip.model.eval()
    return RetrievalCaptioner(clip, tuple(sorted(set(pool))))


def create(
    params: AttackCaptionsParams, resources: Resources
) -> RetrievalCaptioner | ImageToTextCaptioner:
    if params.captioner.model == RETRIEVAL:
        return load_retrieval(resources.captioner_dir, resources.caption_pool)
    return load_image_to_text(params.captioner)
