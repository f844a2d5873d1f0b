"""A user's text files as registered data sets: txt and jsonl."""

from __future__ import annotations

import json

import pytest

from mialens.data.catalog import dataset_info, load_dataset
from mialens.data.registry import DatasetConfig
from mialens.errors import ConfigError


def test_txt_and_jsonl_are_text_data_sets(tmp_path):
    (tmp_path / "a.txt").write_text("In the beginning\n\nGod created\n", encoding="utf-8")
    records = [{"text": "Let there be light", "key": "v9"}, {"text": "and there was", "key": "v3"}]
    (tmp_path / "b.jsonl").write_text("\n".join(map(json.dumps, records)), encoding="utf-8")
    assert dataset_info("txt").modality == dataset_info("jsonl").modality == "text"
    lines = load_dataset(DatasetConfig(name="txt", path=tmp_path / "a.txt"))
    assert lines.texts == ("In the beginning", "God created")
    assert lines.ids.tolist() == ["a.txt:1", "a.txt:3"]
    rows = load_dataset(DatasetConfig(name="jsonl", path=tmp_path / "b.jsonl", id_column="key"))
    assert rows.ids.tolist() == ["v9", "v3"] and rows.texts[1] == "and there was"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "txt"}, "give dataset.path"),
        ({"name": "txt", "path": "x.txt", "id_column": "id"}, "no id column"),
        ({"name": "jsonl", "path": "x.jsonl", "label_column": "y"}, "drop label_column"),
        ({"name": "jsonl", "path": "x.jsonl", "id_column": 2}, "names a field"),
    ],
)
def test_text_files_refuse_options_they_do_not_have(config, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(DatasetConfig(**config))
