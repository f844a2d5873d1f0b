"""Text data sets: validation, .txt and .jsonl loaders, fixed-length windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mialens.data.text import TextDataset, load_jsonl, load_txt, text_windows
from mialens.errors import DataError


def _dataset() -> TextDataset:
    ids = np.array(["v17", "v3", "v42", "v8"])  # shuffled, non-contiguous
    return TextDataset("tiny", ("alpha beta", "gamma", "delta epsilon", "zeta"), ids, [0, 1, 2, 1])


def test_text_dataset_validates_its_fields() -> None:
    with pytest.raises(DataError, match="at least one sample"):
        TextDataset("t", (), np.array([]), np.array([]))
    with pytest.raises(DataError, match="sample 1 is empty"):
        TextDataset("t", ("a", "  "), np.array([1, 2]), [0, 1])
    with pytest.raises(DataError, match="unique"):
        TextDataset("t", ("a", "b"), np.array([7, 7]), [0, 1])
    with pytest.raises(DataError, match="groups must be 2 integers"):
        TextDataset("t", ("a", "b"), np.array([1, 2]), [0.5, 1.0])
    with pytest.raises(DataError, match="not text"):
        TextDataset("t", ("a", 3), np.array([1, 2]), [0, 1])


def test_subset_keeps_ids_and_groups() -> None:
    data = _dataset()
    part = data.subset(np.array([3, 1]))
    assert part.texts == ("zeta", "gamma")
    assert part.ids.tolist() == ["v8", "v3"]
    assert part.groups.tolist() == [1, 1]
    assert part.fingerprint != data.fingerprint
    assert data.subset(np.arange(4)).fingerprint == data.fingerprint


def test_txt_one_sample_per_nonempty_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(
        "first line\n\nfor his mercy endureth for ever\nFor his mercy endureth for ever!\n"
    )
    data = load_txt(path)
    assert data.name == "notes"
    assert data.ids.tolist() == ["notes.txt:1", "notes.txt:3", "notes.txt:4"]
    assert data.groups.tolist() == [0, 1, 1]


def test_txt_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_txt(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(DataError, match="every line is empty"):
        load_txt(tmp_path / "blank.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_txt(tmp_path / "latin1.txt")


def test_jsonl_text_field_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    rows = [{"body": "some text", "uid": 41}, {"body": "more text here", "uid": 7}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_jsonl(path, field="body", id_field="uid")
    assert data.texts == ("some text", "more text here")
    assert data.ids.tolist() == [41, 7]
    assert load_jsonl(path, field="body").ids.tolist() == ["docs.jsonl:1", "docs.jsonl:2"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1 is not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ('{"other": "x"}', "has no field 'text'"),
        ('{"text": 5}', "field 'text' is int, not a string"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        load_jsonl(path)


def test_windows_have_fixed_length_and_stable_ids() -> None:
    data = TextDataset("t", ("abcdef", "ghij", "klmnopq"), np.array(["x9", "x2", "x5"]), [0, 1, 2])
    windows = text_windows(data, 4)  # corpus "abcdef ghij klmnopq" (19 characters)
    assert windows.texts == ("abcd", "ef g", "hij ", "klmn")
    assert windows.ids.tolist() == ["x9+0", "x9+4", "x2+1", "x5+0"]
    assert len(set(windows.groups.tolist())) == 4
    with pytest.raises(DataError, match="fewer than one window"):
        text_windows(data, 100)
    with pytest.raises(DataError, match="at least 1"):
        text_windows(data, 0)
