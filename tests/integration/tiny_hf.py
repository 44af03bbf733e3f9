"""Tiny random-init transformers models saved with ``save_pretrained`` (no hub access).

They load through the same ``from_pretrained`` code paths as released models. Their text is
random words from :data:`WORDS`, which is enough to exercise generation, decoding, sanity
checks and fallbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
# The vocabulary: caption words, so the random models write caption-like text.
WORDS = (  # noqa: SIM905 (a word list reads best as one string)
    "ct x-ray mri of the chest brain abdomen knee hand pelvis showing a an small large left "
    "right nodule mass effusion fracture cyst lung hemisphere joint finger no normal "
    "abnormality with without acute . , :"
).split()
# One layer, width 32: models of a few hundred kB that run in milliseconds on a CPU.
VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1,
          "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip


def tiny_tokenizer(folder: Path) -> Any:
    """A word-level tokenizer with pad/unk/bos/eos tokens, saved to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate([*SPECIALS, *dict.fromkeys(WORDS)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _ids(tokenizer: Any) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_causal_lm(folder: Path, seed: int = 0) -> Path:
    """A one-layer GPT-2 and its tokenizer: a text-generation model for the llm backend."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=1,
                        n_head=2, **_ids(tokenizer))  # fmt: skip
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def save_vision_encoder_decoder(folder: Path, seed: int = 0) -> Path:
    """A ViT + GPT-2 ``VisionEncoderDecoderModel`` with its image processor and tokenizer."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    tokenizer = tiny_tokenizer(folder)
    torch.manual_seed(seed)
    decoder_config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1,
                                n_head=2, add_cross_attention=True, is_decoder=True,
                                **_ids(tokenizer))  # fmt: skip
    decoder = GPT2LMHeadModel(decoder_config)
    # Special tokens get zero output weights, so the random decoder writes words, not EOS.
    with torch.no_grad():
        decoder.get_output_embeddings().weight[: len(SPECIALS)] = 0.0
    model = VisionEncoderDecoderModel(encoder=ViTModel(ViTConfig(**VISION)), decoder=decoder)
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.bos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_blip(folder: Path, seed: int = 0) -> Path:
    """A BLIP captioner (takes a text prompt) with its ``BlipProcessor``."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = tiny_tokenizer(folder)
    text = {**VISION, "vocab_size": len(tokenizer), "encoder_hidden_size": 32,
            "max_position_embeddings": 64, "sep_token_id": tokenizer.eos_token_id,
            **_ids(tokenizer)}  # fmt: skip
    for key in ("image_size", "patch_size"):
        text.pop(key)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=VISION, projection_dim=32)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
