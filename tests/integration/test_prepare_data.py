"""``prepare_data`` on a real-layout corpus written by ``synthesize`` (small sizes)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medran.contracts import PrepareDataPaths, SynthesizePaths
from medran.data.errors import DataError
from medran.data.manifest import columns_for
from medran.names import ROLE_KIND
from medran.params import Params
from medran.pipeline import prepare_data, synthesize
from tests.helpers import project_params, section
from tests.integration.conftest import SOURCES

SMALL = section(
    "synthesize", n_upstream=40, n_targets=20, n_cls_patients=20, max_followups=2, n_vqa_images=15
)


def write_raw(root: Path) -> None:
    params = project_params(synthesize=SMALL.model_dump())
    synthesize.run(params, paths=SynthesizePaths(out=root / "raw", metrics=root / "s.json"))


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    write_raw(root)
    return root


def params(**changes: object) -> Params:
    return project_params(seed=0, prepare_data={"image_size": 32, "sources": SOURCES, **changes})


def prepare(params: Params, project: Path, out: Path) -> dict:
    """The stage as DVC runs it: sources are read relative to the working directory."""
    with contextlib.chdir(project):
        return prepare_data.run(params, paths=PrepareDataPaths(out=out, metrics=out / "m.json"))


@pytest.fixture(scope="module")
def prepared(raw_root: Path) -> Path:
    out = raw_root / "prepared"
    prepare(params(), raw_root, out)
    return out


@pytest.mark.parametrize("role", sorted(ROLE_KIND))
def test_manifest_schema_and_images(prepared: Path, role: str) -> None:
    frame = pd.read_parquet(prepared / f"{role}.parquet")
    assert tuple(frame.columns) == columns_for(ROLE_KIND[role])
    assert frame["id"].is_unique and frame["id"].str.startswith(f"{role}-").all()
    assert set(frame["split"]) == {"train", "val", "test"}
    assert (frame.groupby("group_id")["split"].nunique() == 1).all()
    for _, row in frame.drop_duplicates("image_path").head(5).iterrows():
        data = (prepared / row["image_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        with Image.open(io.BytesIO(data)) as img:
            assert (img.mode, img.size, img.format) == ("RGB", (32, 32), "PNG")


def test_vqa_rows_share_one_file_per_image(prepared: Path) -> None:
    frame = pd.read_parquet(prepared / "vqa.parquet")
    assert frame["image_path"].nunique() == SMALL.n_vqa_images
    assert len(frame) == SMALL.n_vqa_images * SMALL.questions_per_image
    assert set(frame["answer_type"]) == {"closed", "open"}


def test_multi_label_rows_keep_every_label(prepared: Path) -> None:
    labels = pd.read_parquet(prepared / "cls.parquet")["labels"]
    assert labels.map(len).max() >= 2
    assert not labels.map(lambda ls: "No Finding" in ls and len(ls) > 1).any()


def test_source_split_strategy_keeps_official_splits(raw_root: Path, tmp_path: Path) -> None:
    prepare(params(split_strategy="source"), raw_root, tmp_path / "out")
    cls = pd.read_parquet(tmp_path / "out" / "cls.parquet")
    test_list = (raw_root / "raw/chestxray14/test_list.txt").read_text().split()
    assert set(cls.loc[cls["split"] == "test", "source_id"]) == set(test_list)
    targets = pd.read_parquet(tmp_path / "out" / "targets.parquet")
    assert set(targets["split"]) == {"train", "val", "test"}  # MediCaT ships no splits


def test_corrupt_source_image_is_named_and_nothing_is_lost(raw_root: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_raw(project)
    victim = sorted((project / "raw/chestxray14/images").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:30])
    out = project / "prepared"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result")

    with pytest.raises(DataError, match=rf"cls row cls-{victim.name}.*{victim}.*cannot be decoded"):
        prepare(params(), project, out)
    assert (out / "earlier.txt").read_text() == "an earlier result"
    assert sorted(p.name for p in project.iterdir()) == ["prepared", "raw"]


def test_unknown_reader_option_is_named(raw_root: Path, tmp_path: Path) -> None:
    sources = {**SOURCES, "vqa": {**SOURCES["vqa"], "options": {"english_only": True}}}
    with pytest.raises(DataError, match=r"sources\.vqa\.options .*english_only"):
        prepare(params(sources=sources), raw_root, tmp_path / "out")


def test_missing_source_folder_is_named(raw_root: Path, tmp_path: Path) -> None:
    sources = {**SOURCES, "cls": {"format": "imagefolder", "path": "raw/nowhere"}}
    with pytest.raises(DataError, match=r"sources\.cls\.path: .*raw/nowhere is not a directory"):
        prepare(params(sources=sources), raw_root, tmp_path / "out")


def test_sixteen_bit_and_non_square_images_become_square_rgb(tmp_path: Path) -> None:
    ramp = (np.arange(40 * 60).reshape(40, 60) * 20).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "x.png")
    with Image.open(io.BytesIO(prepare_data.to_rgb_png(tmp_path / "x.png", 16, "t", 10**6))) as img:
        pixels = np.asarray(img)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert pixels.min() < 40 and pixels.max() > 200  # stretched, not clipped to white


def png_pixels(source: Path | bytes, size: int = 16, max_pixels: int = 10**6) -> np.ndarray:
    with Image.open(io.BytesIO(prepare_data.to_rgb_png(source, size, "t", max_pixels))) as img:
        return np.asarray(img)


def test_a_decompression_bomb_is_refused_before_decoding(raw_root: Path, tmp_path: Path) -> None:
    """A PNG whose header claims 20000 x 20000 pixels, in 60 kB: refused by the pixel limit,
    named by row and param, with nothing written."""
    project = tmp_path / "project"
    write_raw(project)
    victim = sorted((project / "raw/chestxray14/images").iterdir())[1]
    Image.new("L", (20000, 20000)).save(victim)
    assert victim.stat().st_size < 10**6
    limit = r"image too large \(20000 x 20000 pixels\); prepare_data.max_image_pixels is 1000000"
    with pytest.raises(DataError, match=rf"cls row cls-{victim.name}.*{limit}"):
        prepare(params(max_image_pixels=10**6), project, project / "prepared")
    assert not (project / "prepared").exists()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A camera photo stored sideways with orientation 6 (rotate 90° clockwise to view)."""
    stored = np.zeros((32, 64), np.uint8)
    stored[:, 32:] = 255  # right half white as stored; upright, the bottom half is white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif.tobytes())
    upright = png_pixels(tmp_path / "photo.png", size=32)[..., 0]
    assert upright[:8].max() == 0 and upright[-8:].min() == 255


def test_palette_images_keep_their_colours(tmp_path: Path) -> None:
    palette = Image.new("P", (20, 20))
    palette.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)
    palette.paste(1, (0, 0, 20, 20))
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "pt.png", transparency=0)
    for name in ("p.png", "pt.png"):
        assert png_pixels(tmp_path / name)[8, 8].tolist() == [200, 30, 10], name


def test_group_splits_are_exact_and_seeded() -> None:
    groups = pd.Series([f"p{i // 2}" for i in range(200)])
    fractions = params().prepare_data.split_fractions["upstream"]
    first = prepare_data.assign_splits(groups, fractions, seed=0)
    assert first.value_counts().to_dict() == {"train": 160, "val": 20, "test": 20}
    assert first.equals(prepare_data.assign_splits(groups, fractions, seed=0))
    assert not first.equals(prepare_data.assign_splits(groups, fractions, seed=1))
