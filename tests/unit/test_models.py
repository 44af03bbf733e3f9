"""The open_clip factory: names checked up front, local-dir export and load, the wrapper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medran.errors import InputError
from medran.models.factory import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_model_name,
    create_clip,
    load_local_dir,
    save_local_dir,
)
from medran.models.names import known_model_names
from medran.models.wrappers import ImageEncoder


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(InputError, match=r"unknown open_clip model 'ViT-B-23'.*ViT-B-32"):
        check_model_name("ViT-B-23")


def test_names_known_without_importing_open_clip_are_open_clips_own() -> None:
    import open_clip

    assert known_model_names() == sorted(open_clip.list_models())  # after the factory's import
    assert "medran-tiny" in known_model_names()


def test_local_dir_without_weights_is_rejected(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(InputError, match=r"no weights \(\*\.safetensors\)"):
        check_model_name(f"local-dir:{tmp_path}")
    with pytest.raises(InputError, match="does not exist"):
        check_model_name(f"local-dir:{tmp_path / 'missing'}")


@pytest.mark.parametrize("name", ["medran-tiny", "medran-rn32"])
def test_shipped_configs_are_registered_and_round_trip(tmp_path: Path, name: str) -> None:
    clip = create_clip(name, seed=0)
    assert clip.image_size == 64 and clip.context_length == 32
    save_local_dir(clip, tmp_path / "m", extra={"role": "test"})
    assert (tmp_path / "m" / WEIGHTS_FILE).is_file()
    loaded = load_local_dir(tmp_path / "m")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = ImageEncoder(clip).eval()(images)
        b = ImageEncoder(loaded).eval()(images)
    torch.testing.assert_close(a, b)
    tokens = loaded.tokenizer()(["chest x-ray"])
    assert tokens.shape == (1, 32)


def test_conv_towers_are_channels_last_and_compute_the_same() -> None:
    clip = create_clip("medran-rn32", seed=0)
    assert clip.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    contiguous = create_clip("medran-rn32", seed=0)
    contiguous.model.visual.to(memory_format=torch.contiguous_format)
    assert not contiguous.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        a = ImageEncoder(clip).eval()(images)
        b = ImageEncoder(contiguous).eval()(images)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not create_clip("medran-tiny", seed=0).model.visual.conv1.weight.is_contiguous(
        memory_format=torch.channels_last
    )


def test_image_encoder_normalises_and_resizes_inside() -> None:
    encoder = ImageEncoder(create_clip("medran-tiny", seed=0)).eval()
    features = encoder(torch.rand(3, 3, 48, 48, requires_grad=True))
    assert features.shape == (3, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3))
