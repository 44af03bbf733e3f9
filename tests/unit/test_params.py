"""params.yaml is validated at the boundary: every bad value is named with what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from medran.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value: object) -> dict:
    raw = copy.deepcopy(RAW)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def test_project_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.prepare_data.sources["cls"].format == "chestxray14_csv"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "synthesize.n_upstream",
            -5,
            r"synthesize\.n_upstream = -5: .*greater than or equal to 10",
        ),
        ("synthesize.image_size", "big", r"synthesize\.image_size = 'big'"),
        ("synthesize.colour", 3, r"synthesize\.colour: unknown key"),
        ("prepare_data.split_strategy", "random", r"split_strategy = 'random'.*'group'.*'source'"),
        (
            "prepare_data.sources.cls.format",
            "dicom_zip",
            r"sources\.cls\.format = 'dicom_zip'.*allowed: \[.*'chestxray14_csv'",
        ),
        (
            "prepare_data.sources.vqa.format",
            "rocov2_csv",
            r"rocov2_csv' reads captions data; vqa needs one of \['slake_json', 'vqarad_json'\]",
        ),
        ("prepare_data.sources.upstream.path", "../elsewhere", r"must be relative .* inside it"),
        (
            "prepare_data.split_fractions.cls",
            {"train": 0.9, "val": 0.1, "test": 0.3},
            r"split_fractions\.cls = .*must be 1\.0, got 1\.3",
        ),
        ("eval_upstream.recall_at", [], r"eval_upstream\.recall_at = \[\].*at least 1 item"),
        ("eval_upstream.recall_at", [0, 5], r"recall_at = \[0, 5\].*each k must be at least 1"),
        ("eval_upstream.recall_at", [5, 5], r"recall_at must be distinct"),
        ("prepare_data.max_image_pixels", 0, r"max_image_pixels = 0.*greater than or equal to 1"),
        ("prepare_data.decode_threads", 0, r"decode_threads = 0.*greater than or equal to 1"),
        (
            "prepare_data.split_fractions.atlas",
            {"train": 0.8, "val": 0.1, "test": 0.1},
            r"split_fractions must name exactly .*unknown \['atlas'\]",
        ),
    ],
)
def test_bad_values_are_named(path: str, value: object, expected: str) -> None:
    with pytest.raises(ParamsError, match=expected):
        parse_params(with_change(path, value))


def test_missing_role_is_named() -> None:
    raw = copy.deepcopy(RAW)
    del raw["prepare_data"]["sources"]["targets"]
    with pytest.raises(ParamsError, match=r"missing \['targets'\]"):
        parse_params(raw)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="must be a mapping, got list"):
        load_params(tmp_path / "list.yaml")


def test_params_read_as_dvc_writes_them(tmp_path: Path) -> None:
    """``dvc exp run -S`` rewrites params.yaml with YAML 1.2 (unquoted ``no``, ``5e-4``)."""
    text = (ROOT / "params.yaml").read_text()
    text = text.replace('mixed_precision: "no"', "mixed_precision: no")
    text = text.replace("lr: 0.0005", "lr: 5e-4")
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml")
    assert params.pretrain.mixed_precision == "no"
    assert params.pretrain.lr == 5e-4
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ParamsError, match=r"broken\.yaml: not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_a_stage_level_must_be_a_declared_noise_level() -> None:
    params = parse_params(RAW)
    assert params.check_level(0.1) == 0.1
    with pytest.raises(ParamsError, match=r"noise level 0\.4 is not in noise_levels \[0\.0, 0\.1"):
        params.check_level(0.4)


def test_the_names_params_accept_are_the_registries() -> None:
    from medran import names
    from medran.methods import METHODS
    from medran.models.finetune import HEADS
    from medran.tasks import TASKS

    assert set(names.TASKS) == set(TASKS)
    assert set(names.METHODS) == set(METHODS)
    assert set(names.HEADS) == set(HEADS)


def test_a_missing_value_is_named_not_defaulted() -> None:
    """Sections have no defaults: params.yaml must spell out what the code reads."""
    raw = copy.deepcopy(RAW)
    del raw["finetune"]["ran"]["w_adv"]
    del raw["eval_robust"]["presets"]["default"]["apgd"]["steps"]
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert "finetune.ran.w_adv: required key is missing" in str(error.value)
    assert "eval_robust.presets.default.apgd.steps: required key is missing" in str(error.value)
