"""Format readers: tiny fixtures in each dataset's real layout, read back through READERS."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medran.data.errors import DataError
from medran.data.readers import READERS, get_reader
from medran.data.readers.base import COMMON_COLUMNS, KIND_COLUMNS

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def image(path: Path, color: tuple[int, int, int] = RED) -> Path:
    """Write a tiny image (format from the suffix) and return its resolved path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)
    return path.resolve()


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def read(name: str, root: Path, **options: object) -> list[dict]:
    """The reader's rows as dicts; a missing value is None (pandas 3 may hold it as NaN)."""
    frame = READERS[name].read(root, **options)
    return [
        {k: None if not isinstance(v, list | bytes) and pd.isna(v) else v for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


# --- fixtures: one per layout -------------------------------------------------------------


@pytest.fixture
def rocov2_csv_root(tmp_path: Path) -> Path:
    (tmp_path / "train_captions.csv").write_text(
        'ID,Caption\nROCO_1,"CT of the chest, axial. "\nROCO_2,MRI brain\n', encoding="utf-8"
    )
    (tmp_path / "valid_captions.csv").write_text("ID,Caption\nROCO_3,NA\n", encoding="utf-8")
    image(tmp_path / "train" / "ROCO_1.jpg")
    image(tmp_path / "train" / "ROCO_2.png")  # no jpg: the png is accepted
    image(tmp_path / "valid" / "ROCO_3.jpg")
    return tmp_path


@pytest.fixture
def rocov2_parquet_root(tmp_path: Path) -> Path:
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    shards = {
        "train-00000-of-00001.parquet": [("ROCO_1", "chest CT", RED), ("ROCO_2", "knee", GREEN)],
        "validation-00000-of-00001.parquet": [("ROCO_3", "hand X-ray", BLUE)],
    }
    for name, items in shards.items():
        table = pa.table(
            {
                "image": pa.array(
                    [{"bytes": png_bytes(c), "path": f"{i}.png"} for i, _, c in items], image_type
                ),
                "image_id": [i for i, _, _ in items],
                "caption": [caption for _, caption, _ in items],
                "cui": pa.array([["C0040405"] for _ in items], pa.list_(pa.string())),
            }
        )
        (tmp_path / "data").mkdir(exist_ok=True)
        pq.write_table(table, tmp_path / "data" / name)
    return tmp_path


@pytest.fixture
def medicat_root(tmp_path: Path) -> Path:
    records = [
        {"pdf_hash": "abc", "fig_uri": "1-Figure1-1.png", "s2_caption": " Chest CT. "},
        {"pdf_hash": "abc", "fig_uri": "2-Figure2-1.png", "s2_caption": "Brain MRI"},
    ]
    lines = "\n".join(json.dumps(r) for r in records) + "\n\n"  # a trailing blank line
    (tmp_path / "medicat.jsonl").write_text(lines, encoding="utf-8")
    for r in records:
        image(tmp_path / "figures" / f"{r['pdf_hash']}_{r['fig_uri']}")
    return tmp_path


@pytest.fixture
def chestxray14_root(tmp_path: Path) -> Path:
    # The real header, trailing comma included.
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
        "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143\n"
        "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143\n"
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171\n",
        encoding="utf-8",
    )
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (tmp_path / "test_list.txt").write_text("00000002_000.png\n")
    for name in ("00000001_000.png", "00000001_001.png", "00000002_000.png"):
        image(tmp_path / "images" / name)
    return tmp_path


@pytest.fixture
def imagefolder_root(tmp_path: Path) -> Path:
    image(tmp_path / "normal" / "a.png")
    image(tmp_path / "pneumonia" / "b.jpg")
    image(tmp_path / "pneumonia" / "sub" / "c.PNG")
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def vqarad_root(tmp_path: Path) -> Path:
    write_json(
        tmp_path / "VQA_RAD Dataset Public.json",
        [
            {
                "qid": 1,
                "image_name": "synpic1.jpg",
                "question": "How many lesions? ",
                "answer": 2,
                "answer_type": "CLOSED ",
                "phrase_type": "test_freeform",
            },
            {
                "qid": 2,
                "image_name": "synpic1.jpg",
                "question": "What organ?",
                "answer": " Liver",
                "answer_type": "open",
                "phrase_type": "freeform",
            },
            {
                "qid": 3,
                "image_name": "synpic2.jpg",
                "question": "Is it normal?",
                "answer": "No",
                "answer_type": "CLOSED",
            },
        ],
    )
    image(tmp_path / "VQA_RAD Image Folder" / "synpic1.jpg")
    image(tmp_path / "VQA_RAD Image Folder" / "synpic2.jpg")
    return tmp_path


def slake_record(qid: int, img_id: int, lang: str = "en", answer: str = "Yes") -> dict:
    return {
        "qid": qid,
        "img_id": img_id,
        "img_name": f"xmlab{img_id}/source.jpg",
        "question": f"Question {qid}?",
        "answer": answer,
        "answer_type": "CLOSED",
        "q_lang": lang,
    }


@pytest.fixture
def slake_root(tmp_path: Path) -> Path:
    write_json(tmp_path / "train.json", [slake_record(0, 0), slake_record(1, 0, lang="zh")])
    write_json(tmp_path / "validate.json", [slake_record(5, 1, answer="Lung")])
    write_json(tmp_path / "test.json", [slake_record(0, 2)])  # qid 0 also in train.json
    for img_id in range(3):
        image(tmp_path / "imgs" / f"xmlab{img_id}" / "source.jpg")
    return tmp_path


FIXTURES = {
    "rocov2_csv": ("rocov2_csv_root", {}),
    "rocov2_parquet": ("rocov2_parquet_root", {}),
    "medicat_jsonl": ("medicat_root", {"jsonl": "medicat.jsonl"}),
    "chestxray14_csv": ("chestxray14_root", {}),
    "imagefolder": ("imagefolder_root", {}),
    "vqarad_json": ("vqarad_root", {}),
    "slake_json": ("slake_root", {}),
}


# --- contract: every registered reader ----------------------------------------------------


def test_every_reader_has_a_fixture() -> None:
    assert set(FIXTURES) == set(READERS)


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_contract(name: str, request: pytest.FixtureRequest) -> None:
    fixture, options = FIXTURES[name]
    reader = READERS[name]
    frame = reader.read(request.getfixturevalue(fixture), **options)
    assert tuple(frame.columns) == (*COMMON_COLUMNS, *KIND_COLUMNS[reader.kind])
    assert len(frame) > 0 and frame["source_id"].is_unique
    for row in read(name, request.getfixturevalue(fixture), **options):
        assert isinstance(row["source_id"], str) and isinstance(row["group_id"], str)
        assert row["source_split"] in ("train", "val", "test", None)
        img = row["image"]
        assert isinstance(img, bytes) or (img.is_absolute() and img.is_file())


@pytest.mark.parametrize("name", sorted(READERS))
def test_unknown_option_is_a_type_error(name: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(FIXTURES[name][0])
    with pytest.raises(TypeError, match="no_such_option"):
        READERS[name].read(root, no_such_option=1)


def test_get_reader_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'roco'.*'imagefolder'.*'slake_json'"):
        get_reader("roco")


# --- each layout, exact rows --------------------------------------------------------------


def test_rocov2_csv(rocov2_csv_root: Path) -> None:
    root = rocov2_csv_root.resolve()
    assert read("rocov2_csv", rocov2_csv_root) == [
        {
            "source_id": "ROCO_1",
            "image": root / "train" / "ROCO_1.jpg",
            "group_id": "ROCO_1",
            "source_split": "train",
            "caption": "CT of the chest, axial.",
        },
        {
            "source_id": "ROCO_2",
            "image": root / "train" / "ROCO_2.png",
            "group_id": "ROCO_2",
            "source_split": "train",
            "caption": "MRI brain",
        },
        {  # "NA" is a caption, not a missing value
            "source_id": "ROCO_3",
            "image": root / "valid" / "ROCO_3.jpg",
            "group_id": "ROCO_3",
            "source_split": "val",
            "caption": "NA",
        },
    ]


def test_rocov2_parquet(rocov2_parquet_root: Path) -> None:
    rows = read("rocov2_parquet", rocov2_parquet_root)
    assert [(r["source_id"], r["group_id"], r["source_split"], r["caption"]) for r in rows] == [
        ("ROCO_1", "ROCO_1", "train", "chest CT"),
        ("ROCO_2", "ROCO_2", "train", "knee"),
        ("ROCO_3", "ROCO_3", "val", "hand X-ray"),
    ]
    assert [r["image"] for r in rows] == [png_bytes(RED), png_bytes(GREEN), png_bytes(BLUE)]


def test_medicat(medicat_root: Path) -> None:
    figures = medicat_root.resolve() / "figures"
    assert read("medicat_jsonl", medicat_root, jsonl="medicat.jsonl") == [
        {
            "source_id": "abc_1-Figure1-1.png",
            "image": figures / "abc_1-Figure1-1.png",
            "group_id": "abc",
            "source_split": None,
            "caption": "Chest CT.",
        },
        {
            "source_id": "abc_2-Figure2-1.png",
            "image": figures / "abc_2-Figure2-1.png",
            "group_id": "abc",
            "source_split": None,
            "caption": "Brain MRI",
        },
    ]


def test_chestxray14(chestxray14_root: Path) -> None:
    images = chestxray14_root.resolve() / "images"
    assert read("chestxray14_csv", chestxray14_root) == [
        {
            "source_id": "00000001_000.png",
            "image": images / "00000001_000.png",
            "group_id": "1",
            "source_split": "train",
            "labels": ["Cardiomegaly"],
        },
        {
            "source_id": "00000001_001.png",
            "image": images / "00000001_001.png",
            "group_id": "1",
            "source_split": "train",
            "labels": ["Cardiomegaly", "Emphysema"],
        },
        {
            "source_id": "00000002_000.png",
            "image": images / "00000002_000.png",
            "group_id": "2",
            "source_split": "test",
            "labels": ["No Finding"],
        },
    ]


def test_chestxray14_without_split_lists(chestxray14_root: Path) -> None:
    (chestxray14_root / "train_val_list.txt").unlink()
    (chestxray14_root / "test_list.txt").unlink()
    rows = read("chestxray14_csv", chestxray14_root)
    assert [r["source_split"] for r in rows] == [None, None, None]


def test_imagefolder(imagefolder_root: Path) -> None:
    root = imagefolder_root.resolve()
    assert read("imagefolder", imagefolder_root) == [
        {
            "source_id": "normal/a.png",
            "image": root / "normal" / "a.png",
            "group_id": "normal/a.png",
            "source_split": None,
            "labels": ["normal"],
        },
        {
            "source_id": "pneumonia/b.jpg",
            "image": root / "pneumonia" / "b.jpg",
            "group_id": "pneumonia/b.jpg",
            "source_split": None,
            "labels": ["pneumonia"],
        },
        {
            "source_id": "pneumonia/sub/c.PNG",
            "image": root / "pneumonia" / "sub" / "c.PNG",
            "group_id": "pneumonia/sub/c.PNG",
            "source_split": None,
            "labels": ["pneumonia"],
        },
    ]


def test_imagefolder_split_folders_and_extensions(tmp_path: Path) -> None:
    image(tmp_path / "train" / "normal" / "a.png")
    image(tmp_path / "train" / "pneumonia" / "b.jpg")
    image(tmp_path / "valid" / "normal" / "c.png")
    image(tmp_path / "test" / "pneumonia" / "d.png")
    rows = read("imagefolder", tmp_path, extensions=["png"])
    assert [(r["source_id"], r["source_split"], r["labels"]) for r in rows] == [
        ("test/pneumonia/d.png", "test", ["pneumonia"]),
        ("train/normal/a.png", "train", ["normal"]),
        ("valid/normal/c.png", "val", ["normal"]),
    ]


def test_vqarad(vqarad_root: Path) -> None:
    folder = vqarad_root.resolve() / "VQA_RAD Image Folder"
    assert read("vqarad_json", vqarad_root) == [
        {
            "source_id": "1",
            "image": folder / "synpic1.jpg",
            "group_id": "synpic1.jpg",
            "source_split": "test",
            "question": "How many lesions?",
            "answer": "2",
            "answer_type": "closed",
        },
        {
            "source_id": "2",
            "image": folder / "synpic1.jpg",
            "group_id": "synpic1.jpg",
            "source_split": "train",
            "question": "What organ?",
            "answer": "liver",
            "answer_type": "open",
        },
        {
            "source_id": "3",
            "image": folder / "synpic2.jpg",
            "group_id": "synpic2.jpg",
            "source_split": None,
            "question": "Is it normal?",
            "answer": "no",
            "answer_type": "closed",
        },
    ]


def test_slake(slake_root: Path) -> None:
    imgs = slake_root.resolve() / "imgs"
    assert read("slake_json", slake_root) == [
        {
            "source_id": "train:0",
            "image": imgs / "xmlab0" / "source.jpg",
            "group_id": "0",
            "source_split": "train",
            "question": "Question 0?",
            "answer": "yes",
            "answer_type": "closed",
        },
        {
            "source_id": "5",
            "image": imgs / "xmlab1" / "source.jpg",
            "group_id": "1",
            "source_split": "val",
            "question": "Question 5?",
            "answer": "lung",
            "answer_type": "closed",
        },
        {
            "source_id": "test:0",
            "image": imgs / "xmlab2" / "source.jpg",
            "group_id": "2",
            "source_split": "test",
            "question": "Question 0?",
            "answer": "yes",
            "answer_type": "closed",
        },
    ]


def test_slake_all_languages(slake_root: Path) -> None:
    rows = read("slake_json", slake_root, english_only=False)
    assert [r["source_id"] for r in rows] == ["train:0", "1", "5", "test:0"]


# --- bad input: the message names the file, the row and the value --------------------------


def test_csv_missing_column(rocov2_csv_root: Path) -> None:
    (rocov2_csv_root / "valid_captions.csv").write_text("ID,Text\nROCO_3,x\n")
    with pytest.raises(DataError, match=r"valid_captions\.csv: missing required column.*'Caption'"):
        read("rocov2_csv", rocov2_csv_root)


def test_rocov2_csv_no_captions_file_lists_the_expected_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_captions\.csv.*valid_captions.*test_captions"):
        read("rocov2_csv", tmp_path)


def test_json_missing_field(vqarad_root: Path) -> None:
    path = vqarad_root / "VQA_RAD Dataset Public.json"
    records = json.loads(path.read_text())
    del records[1]["question"]
    write_json(path, records)
    with pytest.raises(
        DataError, match=r"Public\.json record 1: missing or empty field 'question'"
    ):
        read("vqarad_json", vqarad_root)


def test_missing_image_file(chestxray14_root: Path) -> None:
    (chestxray14_root / "images" / "00000001_001.png").unlink()
    with pytest.raises(DataError, match=r"Data_Entry_2017\.csv row 2: image file '00000001_001"):
        read("chestxray14_csv", chestxray14_root)


def test_image_path_escaping_the_root(slake_root: Path) -> None:
    image(slake_root / "x.png")  # exists, but outside imgs/
    write_json(slake_root / "test.json", [{**slake_record(9, 2), "img_name": "../x.png"}])
    with pytest.raises(DataError, match=r"test\.json record 0: image path '\.\./x\.png' escapes"):
        read("slake_json", slake_root)


def test_rocov2_id_escaping_the_root(rocov2_csv_root: Path) -> None:
    (rocov2_csv_root / "valid_captions.csv").write_text("ID,Caption\n../../evil,x\n")
    with pytest.raises(DataError, match=r"valid_captions\.csv row 1: image path '\.\./\.\./evil"):
        read("rocov2_csv", rocov2_csv_root)


def test_duplicate_id(rocov2_csv_root: Path) -> None:
    (rocov2_csv_root / "valid_captions.csv").write_text("ID,Caption\nROCO_3,a\nROCO_3,b\n")
    with pytest.raises(DataError, match=r"duplicate id\(s\) \['ROCO_3'\]"):
        read("rocov2_csv", rocov2_csv_root)


def test_empty_dataset(medicat_root: Path) -> None:
    (medicat_root / "medicat.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"medicat\.jsonl \(MediCaT\): dataset is empty"):
        read("medicat_jsonl", medicat_root, jsonl="medicat.jsonl")


def test_slake_with_no_english_question_is_empty(slake_root: Path) -> None:
    for name in ("train.json", "validate.json", "test.json"):
        write_json(slake_root / name, [slake_record(1, 0, lang="zh")])
    with pytest.raises(DataError, match=r"english_only=True\): dataset is empty"):
        read("slake_json", slake_root)


def test_unknown_answer_type(vqarad_root: Path) -> None:
    path = vqarad_root / "VQA_RAD Dataset Public.json"
    records = json.loads(path.read_text())
    records[2]["answer_type"] = "MAYBE"
    write_json(path, records)
    with pytest.raises(DataError, match=r"record 2: answer_type 'MAYBE' is not one of"):
        read("vqarad_json", vqarad_root)


def test_malformed_jsonl_line(medicat_root: Path) -> None:
    path = medicat_root / "medicat.jsonl"
    path.write_text(path.read_text().replace("}\n", "\n", 1))
    with pytest.raises(DataError, match=r"medicat\.jsonl line 1: malformed JSON"):
        read("medicat_jsonl", medicat_root, jsonl="medicat.jsonl")


def test_parquet_row_without_image_bytes(rocov2_parquet_root: Path) -> None:
    path = rocov2_parquet_root / "data" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    image_type = table.schema.field("image").type
    null = pa.array([{"bytes": None, "path": "ROCO_3.png"}], image_type)
    pq.write_table(table.set_column(0, "image", null), path)
    with pytest.raises(DataError, match=r"validation-.*row 1 \(image_id 'ROCO_3'\): image bytes"):
        read("rocov2_parquet", rocov2_parquet_root)


def test_parquet_image_column_of_strings(rocov2_parquet_root: Path) -> None:
    """A column of file names or base64 text where the encoded bytes belong."""
    path = rocov2_parquet_root / "data" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(0, "image", pa.array(["images/ROCO_3.png"])), path)
    expected = r"row 1 \(image_id 'ROCO_3'\): 'image' must hold the encoded image bytes .*got str"
    with pytest.raises(DataError, match=expected):
        read("rocov2_parquet", rocov2_parquet_root)


@pytest.mark.parametrize("missing", ["NaN", "nan", "N/A", "null"])
def test_chestxray14_missing_label_is_no_class(chestxray14_root: Path, missing: str) -> None:
    path = chestxray14_root / "Data_Entry_2017.csv"
    path.write_text(path.read_text().replace("No Finding", missing))
    with pytest.raises(DataError, match=rf"item '00000002_000\.png'.*missing label.*{missing}"):
        read("chestxray14_csv", chestxray14_root)


@pytest.mark.parametrize("name", ["Data_Entry_2017.csv", "test_list.txt"])
def test_chestxray14_file_not_in_utf8(chestxray14_root: Path, name: str) -> None:
    path = chestxray14_root / name
    path.write_bytes(
        path.read_bytes().replace(b"00000002_000.png", "00000002_000é.png".encode("latin-1"))
    )
    with pytest.raises(DataError, match=rf"{name}: not UTF-8 text \(byte b'\\xe9' at offset"):
        read("chestxray14_csv", chestxray14_root)


def test_chestxray14_empty_label(chestxray14_root: Path) -> None:
    path = chestxray14_root / "Data_Entry_2017.csv"
    path.write_text(path.read_text().replace("Cardiomegaly|Emphysema", "Cardiomegaly||Emphysema"))
    with pytest.raises(DataError, match=r"row 2: empty label in 'Finding Labels'"):
        read("chestxray14_csv", chestxray14_root)


def test_chestxray14_image_in_both_split_lists(chestxray14_root: Path) -> None:
    (chestxray14_root / "test_list.txt").write_text("00000002_000.png\n00000001_000.png\n")
    with pytest.raises(DataError, match=r"test_list\.txt line 2: '00000001_000\.png' is also"):
        read("chestxray14_csv", chestxray14_root)


def test_imagefolder_needs_two_classes(tmp_path: Path) -> None:
    image(tmp_path / "normal" / "a.png")
    with pytest.raises(DataError, match=r"at least 2 class folders.*\['normal'\]"):
        read("imagefolder", tmp_path)


def test_imagefolder_mixed_split_and_class_folders(tmp_path: Path) -> None:
    image(tmp_path / "train" / "normal" / "a.png")
    image(tmp_path / "pneumonia" / "b.png")
    with pytest.raises(DataError, match=r"mixes split folders \['train'\].*\['pneumonia'\]"):
        read("imagefolder", tmp_path)


def test_missing_images_dir_option(vqarad_root: Path) -> None:
    with pytest.raises(DataError, match=r"option images_dir='scans'\) does not exist"):
        read("vqarad_json", vqarad_root, images_dir="scans")
