"""The clean gate passes a valid prepared folder and names the offending rows of a broken one."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medran.data.manifest import read_manifest, write_manifest
from medran.errors import InputError
from medran.names import ROLE_KIND
from medran.params import Params
from medran.quality.gx import Expect, QualityGateError, TableCheck, validate_tables
from tests.helpers import project_params
from tests.integration.conftest import run_gate

SIZE = 16
# (id, group, split, kind payload); every image gets a distinct colour so hashes are unique.
CAPTIONS = {
    "upstream": [(f"u{i}", f"gu{i}", s, f"caption {i}") for i, s in enumerate("TTTTVE")],
    "targets": [(f"t{i}", f"gt{i}", s, f"finding {i}") for i, s in enumerate("TTVE")],
}
CLS = [
    ("c0", "p0", "T", ["Effusion"]),
    ("c1", "p0", "T", ["No Finding"]),
    ("c2", "p1", "T", ["Effusion", "Mass"]),
    ("c3", "p2", "V", ["Mass"]),
    ("c4", "p3", "E", ["No Finding"]),
    ("c5", "p4", "T", ["Mass"]),
]
SPLIT = {"T": "train", "V": "val", "E": "test"}
SOURCES = {
    "upstream": {"format": "rocov2_csv", "path": "raw/rocov2"},
    "targets": {"format": "medicat_jsonl", "path": "raw/medicat"},
    "cls": {"format": "chestxray14_csv", "path": "raw/chestxray14"},
    "vqa": {"format": "vqarad_json", "path": "raw/vqarad"},
}


def gate_params(**validate_data: object) -> Params:
    """Params whose prepared images are ``SIZE`` wide; ``validate_data`` overrides that section."""
    return project_params(
        prepare_data={"image_size": SIZE, "sources": SOURCES},
        validate_data={"min_rows": 2, **validate_data},
    )


def _write_png(path, value, size=SIZE):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size, 3), value, dtype=np.uint8)
    pixels[0, 0] = (value * 7) % 256  # two colours per image, still unique per value
    Image.fromarray(pixels).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _base(root, role, name, group, split, value):
    path = f"images/{role}/{name}.png"
    sha = _write_png(root / path, value)
    return {"id": name, "image_path": path, "split": split, "group_id": group, "sha256": sha,
            "source": "test", "source_id": name}  # fmt: skip


def make_prepared(root):
    """~20 images over the four roles, valid under the clean suite."""
    colour = iter(range(10, 250, 9))
    for role, rows in CAPTIONS.items():
        frame = pd.DataFrame(
            [
                {**_base(root, role, n, g, SPLIT[s], next(colour)), "caption": c}
                for n, g, s, c in rows
            ]
        )
        write_manifest(frame, root, role, "captions")
    rows = [
        {**_base(root, "cls", n, g, SPLIT[s], next(colour)), "labels": lab} for n, g, s, lab in CLS
    ]
    write_manifest(pd.DataFrame(rows), root, "cls", "labels")
    rows = []
    for i, split in enumerate(SPLIT.values()):
        base = _base(root, "vqa", f"img{i}", f"gv{i}", split, next(colour))
        rows.append({**base, "id": f"q{i}a", "question": "Is it normal?", "answer": "yes",
                     "answer_type": "closed"})  # fmt: skip
        rows.append({**base, "id": f"q{i}b", "question": "Which organ?", "answer": "lung",
                     "answer_type": "open"})  # fmt: skip
    write_manifest(pd.DataFrame(rows), root, "vqa", "vqa")
    return root


def _edit(root, role, ids, **values):
    frame = read_manifest(root, role)
    for column, value in values.items():
        for index in frame.index[frame["id"].isin(ids)]:
            frame.at[index, column] = value
    write_manifest(frame, root, role, ROLE_KIND[role])


def _run(prepared, out):
    # The gate takes the data root; the clean suite reads its prepared/ folder.
    return run_gate("clean", prepared.parent, out, gate_params())


@pytest.fixture
def prepared(tmp_path):
    return make_prepared(tmp_path / "prepared")


def test_valid_folder_passes_and_writes_report_and_docs(prepared, tmp_path):
    out = tmp_path / "report"
    metrics = _run(prepared, out)
    result = json.loads((out / "result.json").read_text())
    assert result["success"] is True and result["n_failed"] == 0, result["failures"]
    assert set(result["roles"]) == {"upstream", "targets", "cls", "vqa"}
    assert result["roles"]["vqa"]["n_rows"] == 6
    assert metrics["success"] is True and metrics["n_expectations"] == result["n_expectations"]
    assert metrics["roles"]["cls"]["n_rows"] == len(CLS)
    assert result["roles"]["cls"]["observed"] == {"table_row_count": len(CLS)}
    assert (out / "docs" / "index.html").is_file()


def _truncate(root):
    path = root / "images/cls/c3.png"
    path.write_bytes(path.read_bytes()[:60])


def _wrong_size(root):
    sha = _write_png(root / "images/upstream/u2.png", 200, size=SIZE + 1)
    _edit(root, "upstream", ["u2"], sha256=sha)


def _escape(root):
    _edit(root, "targets", ["t1"], image_path="../outside.png")


def _set(role, row_id, **values):
    return lambda root: _edit(root, role, [row_id], **values)


def _delete(relative):
    return lambda root: (root / relative).unlink()


# case -> (how to break the valid folder, texts the error message must contain)
BROKEN = {
    "corrupt image": (_truncate, ["cls: expect_column_values_to_be_in_set(image_decodes)", "c3"]),
    "duplicate id": (_set("targets", "t1", id="t0"), ["be_unique(id): 2 unexpected", "['t0']"]),
    "group in two splits": (_set("cls", "c1", split="val"), ["(group_n_splits)", "c0", "c1"]),
    "wrong size": (
        _wrong_size,
        ["upstream: expect_column_values_to_be_between(image_width)", "u2"],
    ),
    "missing image": (_delete("images/vqa/img1.png"), ["(image_exists)", "q1a", "q1b"]),
    "label not in train": (
        _set("cls", "c4", labels=["Hernia"]),
        ["(labels_unseen_in_train)", "c4"],
    ),
    "unknown answer type": (_set("vqa", "q2b", answer_type="maybe"), ["(answer_type)", "q2b"]),
    "path escapes root": (_escape, ["targets: expect_column_values_to_be_in_set(path_confined)"]),
    "no finding combined": (_set("cls", "c1", labels=["No Finding", "Mass"]), ["finding_combined"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_folder_fails_naming_the_rows(prepared, tmp_path, case):
    mutate, expected = BROKEN[case]
    mutate(prepared)
    out = tmp_path / "report"
    with pytest.raises(QualityGateError) as error:
        _run(prepared, out)
    message = str(error.value)
    for text in expected:
        assert text in message, message
    # The report and the docs are written before the gate fails.
    result = json.loads((out / "result.json").read_text())
    assert result["success"] is False and result["n_failed"] >= 1
    assert all(f["role"] in result["roles"] for f in result["failures"])
    assert (out / "docs" / "index.html").is_file()


def test_unknown_suite_lists_the_known_ones(prepared, tmp_path):
    with pytest.raises(InputError, match=r"allowed: \['adversarial', 'clean', 'nesting'\]"):
        run_gate("nope", prepared.parent, tmp_path / "out", gate_params())


def test_adapter_keeps_spec_order_and_names_rows(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "x": [1, 50, 50, 2]})
    check = TableCheck(
        "demo",
        frame,
        [
            Expect("expect_column_values_to_be_between", {"column": "x", "max_value": 10}),
            Expect("expect_table_row_count_to_be_between", {"min_value": 1}),
        ],
    )
    (result,) = validate_tables([check], docs_dir=None, max_examples=1)
    between, count = result.outcomes
    assert not result.success and result.n_rows == 4
    assert (between.unexpected_count, between.example_ids, between.example_values) == (
        2,
        ["b"],
        [50],
    )
    assert count.success and count.observed_value == 4
    with pytest.raises(ValueError, match="expect_nothing"):
        validate_tables([TableCheck("bad", frame, [Expect("expect_nothing")])])
