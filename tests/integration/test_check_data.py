"""``medran check-data`` on the synthetic ChestX-ray14 layout and on broken copies of it: the
real reader, image conversion and clean gate, through the console script's entry point."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml

from medran.cli import main
from medran.params import deep_merge, parse_params, read_yaml
from tests.helpers import ROOT
from tests.integration.conftest import FRACTIONS


@pytest.fixture
def project(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the working directory) with params.yaml and a copy of the data."""
    params = deep_merge(
        read_yaml(ROOT / "params.yaml"), {"prepare_data": {"split_fractions": FRACTIONS}}
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(data_root / "raw" / "chestxray14", tmp_path / "data" / "raw" / "nih")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check_data(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["check-data", "--format", "chestxray14_csv", *args])
    return exited.value.code, capsys.readouterr().out


def rewrite(csv_path: Path, change) -> list[list[str]]:
    rows = list(csv.reader(csv_path.open()))
    change(rows)
    with csv_path.open("w", newline="") as out:
        csv.writer(out).writerows(rows)
    return rows


def test_a_clean_dataset_gets_its_source_entry(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check_data("data/raw/nih", capsys=capsys)
    assert code == 0, out
    assert "the clean gate passed" in out
    entry = yaml.safe_load(out.split("source entry:")[1])
    source = {"format": "chestxray14_csv", "path": "data/raw/nih", "options": {}}
    assert entry == {"prepare_data": {"sources": {"cls": source}}}
    merged = parse_params(deep_merge(read_yaml(project / "params.yaml"), entry))
    assert merged.prepare_data.sources["cls"].path == "data/raw/nih"


def test_a_broken_copy_lists_every_gate_problem_by_row_and_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project / "data" / "raw" / "nih"

    def damage(rows: list[list[str]]) -> None:
        name, labels = rows[0].index("Image Index"), rows[0].index("Finding Labels")
        rows[1][labels] = "No Finding|Effusion"
        shutil.copy(folder / "images" / rows[2][name], folder / "images" / rows[3][name])

    rows = rewrite(folder / "Data_Entry_2017.csv", damage)
    code, out = check_data("data/raw/nih", capsys=capsys)
    assert code == 1 and "source entry" not in out
    assert "2 problem(s)" in out
    assert "no_finding_combined" in out and "sha256_n_images" in out
    for row in (rows[1], rows[2], rows[3]):
        assert f"row {row[0]} ({folder / 'images' / row[0]})" in out


def test_a_reader_error_names_the_file_and_row(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project / "data" / "raw" / "nih"
    rows = list(csv.reader((folder / "Data_Entry_2017.csv").open()))
    (folder / "images" / rows[2][0]).unlink()
    code, out = check_data("data/raw/nih", capsys=capsys)
    assert code == 1
    assert f"{folder / 'Data_Entry_2017.csv'} row 2: image file {rows[2][0]!r} not found" in out


def test_a_dataset_outside_the_project_is_linked_in(
    project: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "nih"
    shutil.move(project / "data" / "raw" / "nih", outside)
    code, out = check_data(str(outside), capsys=capsys)
    assert code == 0, out
    assert f"ln -s {outside} data/raw/nih" in out
    assert yaml.safe_load(out.split("source entry:")[1])["prepare_data"]["sources"]["cls"] == {
        "format": "chestxray14_csv",
        "path": "data/raw/nih",
        "options": {},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--format", "nih_csv", "data"],
            "unknown --format 'nih_csv'; allowed: ['chestxray14_csv'",
        ),
        (["--format", "vqarad_json", "--role", "cls", "data"], "allowed: ['vqa']"),
        (["--format", "chestxray14_csv", "missing"], "missing is not a directory"),
        (["--format", "chestxray14_csv", "--option", "csv", "data"], "expected KEY=VALUE"),
    ],
)
def test_bad_arguments_fail_before_any_work(
    project: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check-data", *args])
    assert exited.value.code == 2 and message in capsys.readouterr().err
