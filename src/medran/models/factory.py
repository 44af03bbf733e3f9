"""Create, load and export open_clip CLIP models.

A model is named the way open_clip names it: a built-in architecture (``ViT-B-32``) with an
optional ``pretrained`` tag or file, ``hf-hub:org/repo``, or ``local-dir:/path`` (a folder
with ``open_clip_config.json`` and ``open_clip_model.safetensors``). The shipped configs in
``configs/`` (e.g. ``medran-tiny``) are registered with ``open_clip.add_model_config`` so
they are ordinary built-in names. Released models are written in the ``local-dir`` layout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import get_model_preprocess_cfg
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file

from medran.errors import InputError
from medran.models.names import CONFIG_DIR, CONFIG_FILE, HUB, LOCAL, check_model_name

WEIGHTS_FILE = "open_clip_model.safetensors"

open_clip.add_model_config(CONFIG_DIR)


@dataclass
class ClipModel:
    """An open_clip CLIP with the config needed to rebuild it and its tokenizer."""

    model: open_clip.CLIP
    model_cfg: dict[str, Any]
    name: str
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.preprocess_cfg["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.preprocess_cfg["std"])

    @property
    def image_size(self) -> int:
        size = self.preprocess_cfg["size"]
        return int(size if isinstance(size, int) else size[0])

    @property
    def context_length(self) -> int:
        return int(self.model_cfg["text_cfg"]["context_length"])

    def tokenizer(self) -> Any:
        return open_clip.get_tokenizer(self.name if self.name.startswith(LOCAL) else _arch(self))


def _arch(clip: ClipModel) -> str:
    return clip.name.split("@")[0]


def model_config(name: str) -> dict[str, Any]:
    if name.startswith(LOCAL):
        path = Path(name.removeprefix(LOCAL)) / CONFIG_FILE
        return json.loads(path.read_text())["model_cfg"]
    config = open_clip.get_model_config(name.removeprefix(HUB))
    if config is None:
        raise InputError(f"no model config found for {name!r}")
    return config


def create_clip(
    name: str,
    pretrained: str | None = None,
    seed: int | None = None,
    image_size: int | None = None,
) -> ClipModel:
    """Build the CLIP ``name`` (random init unless ``pretrained`` or a schema gives weights),
    at its own input resolution or at ``image_size`` (open_clip's ``force_image_size``)."""
    check_model_name(name)
    if seed is not None:
        torch.manual_seed(seed)
    # open_clip warns "No pretrained weights loaded" for every deliberate random init.
    random_init = not pretrained and not name.startswith((LOCAL, HUB))
    with _root_level(logging.ERROR if random_init else logging.getLogger().level):
        model = open_clip.create_model(
            name, pretrained=pretrained or None, output_dict=True, force_image_size=image_size
        )
    if isinstance(model.visual, ModifiedResNet):
        # oneDNN's convolutions run forward and backward faster channels-last (medran-rn32 on
        # a CPU: x1.2); the first convolution converts each input batch itself.
        model.visual.to(memory_format=torch.channels_last)
    cfg = model_config(name) if not name.startswith(HUB) else _hub_config(name)
    if image_size:
        cfg = cfg | {"vision_cfg": cfg["vision_cfg"] | {"image_size": image_size}}
    return ClipModel(model, cfg, name, dict(get_model_preprocess_cfg(model)))


@contextmanager
def _root_level(level: int) -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(previous)


def _hub_config(name: str) -> dict[str, Any]:
    from open_clip.factory import _get_hf_config

    return _get_hf_config(name.removeprefix(HUB))["model_cfg"]


def save_local_dir(clip: ClipModel, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder`` in open_clip's ``local-dir`` layout (config + safetensors weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": clip.model_cfg, "preprocess_cfg": _plain(clip.preprocess_cfg)}
    if extra:
        config["medran"] = extra
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in clip.model.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE)
    return folder


def load_local_dir(folder: Path) -> ClipModel:
    """Load a model exported by :func:`save_local_dir` (or any open_clip local-dir folder)."""
    return create_clip(f"{LOCAL}{Path(folder).resolve()}")


def _plain(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
