"""``llm``: a transformers text-generation model rewrites each caption (the paper's Fig. 3;
docs/architecture.md, "Attacks").

The prompt asks for exactly the rules' rewrite: move the caption to a named body part (the
target's, or the same seeded choice the rules would make) and turn some words into their
opposite. Decoding is greedy, batched with left padding. An output that is empty, echoes the
prompt, equals the clean caption or is longer than ``max_length_ratio`` x the clean caption
is rejected, and the ``rules`` rewrite is used for that row (``fallback=True``, reason kept).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from medran.attacks.captions import hf
from medran.attacks.captions.base import (
    CaptionJob,
    Resources,
    Rewrite,
    batches,
    word_changes,
)
from medran.attacks.captions.rules import RulesBackend, choose_body_part
from medran.attacks.lexicon import body_part_of
from medran.errors import InputError
from medran.params import AttackCaptionsParams, LlmParams

log = logging.getLogger(__name__)

BATCH_SIZE = 8
INSTRUCTION = (
    "Rewrite the following radiology image caption so that it describes the {part} instead "
    "of the body part it names, and change some words to their opposite (for example left "
    "and right, normal and abnormal, small and large, present and absent). Keep the style "
    "and the length of the caption. Reply with the rewritten caption only."
)
# Phrases only the prompt contains: an output holding one of them echoes the prompt.
PROMPT_MARKERS = ("rewrite the following", "rewritten caption", "reply with the")
# Why an output is rejected, in the order the checks run.
REJECTIONS = ("empty", "echoes_prompt", "unchanged", "too_long")
_LABEL = re.compile(r"^\s*(rewritten caption|caption|answer)\s*:\s*", re.IGNORECASE)


def build_prompt(caption: str, part: str, chat_template: bool) -> str | list[dict[str, str]]:
    """The user message (chat models) or a plain completion prompt (base models)."""
    text = f"{INSTRUCTION.format(part=part)}\n\nCaption: {caption}"
    if chat_template:
        return [{"role": "user", "content": text}]
    return f"{text}\nRewritten caption:"


def clean_output(text: str) -> str:
    """The first non-empty line, without a "Caption:" label or surrounding quotes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = _LABEL.sub("", lines[0]) if lines else ""
    return first.strip().strip("\"'`").strip()


def rejection(output: str, clean: str, max_length_ratio: float) -> str:
    """Why ``output`` is not a usable rewrite of ``clean`` ("" when it is)."""
    if not output:
        return "empty"
    if any(marker in output.lower() for marker in PROMPT_MARKERS):
        return "echoes_prompt"
    if " ".join(output.casefold().split()) == " ".join(clean.casefold().split()):
        return "unchanged"
    if len(output) > max_length_ratio * max(len(clean), 1):
        return "too_long"
    return ""


class LlmBackend:
    """Greedy rewrites by a causal LM, checked and, where they fail, replaced by ``rules``."""

    name = "llm"

    def __init__(self, params: LlmParams, model: Any, tokenizer: Any, seed: int):
        self.params, self.model, self.tokenizer, self.seed = params, model, tokenizer, seed
        self.rules = RulesBackend(seed)

    def _prompt(self, job: CaptionJob) -> str:
        part = choose_body_part(
            body_part_of(job.clean_caption), job.target_body_part, job.id, self.seed
        )
        chat = bool(getattr(self.tokenizer, "chat_template", None))
        prompt = build_prompt(job.clean_caption, part, chat)
        if chat:
            return self.tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, tokenize=False
            )
        return prompt

    def generate(self, prompts: list[str]) -> list[str]:
        """Greedy continuations of ``prompts`` (new text only, special tokens dropped)."""
        import torch

        chat = bool(getattr(self.tokenizer, "chat_template", None))
        # A chat template already writes the special tokens it needs.
        batch = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=not chat
        ).to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=self.params.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def rewrite(self, jobs: list[CaptionJob]) -> list[Rewrite]:
        results = []
        for chunk in batches(jobs, BATCH_SIZE, "llm"):
            outputs = self.generate([self._prompt(job) for job in chunk])
            results += [self._check(job, text) for job, text in zip(chunk, outputs, strict=True)]
        reasons = Counter(r.reason for r in results if r.fallback)
        log.info("llm: %d rows, fallbacks by reason %s", len(jobs), dict(reasons))
        return results

    def _check(self, job: CaptionJob, raw: str) -> Rewrite:
        output = clean_output(raw)
        reason = rejection(output, job.clean_caption, self.params.max_length_ratio)
        if not reason:
            return Rewrite(output, word_changes(job.clean_caption, output))
        fallback = self.rules.rewrite_one(job)
        return Rewrite(fallback.caption, fallback.changed_words, fallback=True, reason=reason)


def load_llm(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a causal LM, ready for batched left-padded greedy generation."""
    key = "attack_captions.llm.model"
    source = hf.resolve_model(name, key)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = hf.load("a tokenizer", source, key, lambda: AutoTokenizer.from_pretrained(source))
    model = hf.load(
        "a causal LM", source, key, lambda: AutoModelForCausalLM.from_pretrained(source)
    )
    # Decoder-only models continue from the right end, so padding goes on the left.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(f"{key} = {name!r}: the tokenizer has neither pad nor eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(hf.device()).eval(), tokenizer


def create(params: AttackCaptionsParams, resources: Resources) -> LlmBackend:
    del resources  # the llm reads only the captions
    model, tokenizer = load_llm(params.llm.model)
    return LlmBackend(params.llm, model, tokenizer, params.seed)
