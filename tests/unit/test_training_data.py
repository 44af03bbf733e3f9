from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medran.data.errors import DataError
from medran.training.data import decode_image, load_images


def test_load_images_puts_each_decoded_image_in_its_slot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(24, 24, 3), (30, 20, 3), (24, 24, 3)] * 3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    images = load_images(paths, 24)
    assert images.shape == (9, 3, 24, 24) and images.dtype == torch.uint8
    assert images.is_contiguous()
    for path, image in zip(paths, images, strict=True):
        assert np.array_equal(image.permute(1, 2, 0).numpy(), decode_image(path, 24))
    assert load_images([], 8).shape == (0, 3, 8, 8)


def test_load_images_names_the_file_it_cannot_decode(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8)).save(good)
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png cannot be decoded"):
        load_images([good, bad], 8)
