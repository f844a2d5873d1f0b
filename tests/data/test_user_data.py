"""User data (npz and csv): which column is the label, sparse labels, unreadable files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mialens.data.catalog import load_dataset
from mialens.data.dataset import encode_labels
from mialens.data.registry import DatasetConfig
from mialens.errors import ConfigError, DataError

SPARSE = np.array([1000, 0, 2, 1, 1000, 2, 0, 1, 2, 1000, 0, 1])


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _float_feature_last(tmp_path: Path) -> Path:
    rows = [f"{i % 3},{0.37 * i:.3f}" for i in range(12)]  # 12 distinct floats last
    return _csv(tmp_path / "t.csv", "kind,score", rows)


def test_csv_without_a_label_column_is_refused_not_guessed(tmp_path):
    path = _float_feature_last(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_dataset(DatasetConfig(name="csv", path=path))
    assert "which column is the label? no column is named label, target or y" in str(info.value)
    assert "--set dataset.label_column=score" in str(info.value)
    ds = load_dataset(DatasetConfig(name="csv", path=path, label_column="kind"))
    assert ds.num_classes == 3


def test_csv_label_column_found_by_name_case_insensitively(tmp_path):
    path = _csv(tmp_path / "t.csv", "Target,a", [f"{i % 2},{i}" for i in range(6)])
    ds = load_dataset(DatasetConfig(name="csv", path=path))
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 1, 0, 1])
    assert ds.x[:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_csv_with_two_label_like_columns_asks(tmp_path):
    path = _csv(tmp_path / "t.csv", "label,y,a", [f"{i % 2},{i % 2},{i}" for i in range(6)])
    with pytest.raises(ConfigError, match="several columns are named label, target or y"):
        load_dataset(DatasetConfig(name="csv", path=path))


def test_a_label_with_more_values_than_half_the_rows_is_refused(tmp_path):
    path = _float_feature_last(tmp_path)
    config = DatasetConfig(name="csv", path=path, label_column="score")
    with pytest.raises(DataError) as info:
        load_dataset(config)
    assert "label column 'score' has 12 distinct values in 12 samples (more than half)" in str(
        info.value
    )
    assert "dataset.allow_many_classes: true" in str(info.value)
    config = config.model_copy(update={"allow_many_classes": True})
    assert load_dataset(config).num_classes == 12


def test_encode_labels_by_hand(caplog):
    y, values = encode_labels(np.array([2, 0, 1, 1, 0, 2]), "y")
    assert y.tolist() == [2, 0, 1, 1, 0, 2] and values is None
    with pytest.raises(DataError, match="y has 3 distinct values in 4 samples"):
        encode_labels(np.array([2, 0, 1, 1]), "y")
    assert encode_labels(np.array([2, 0, 1, 1]), "y", allow_many_classes=True)[1] is None
    with caplog.at_level(logging.WARNING, logger="mialens.data.dataset"):
        y, values = encode_labels(SPARSE, "y")
    assert y.tolist() == [3, 0, 2, 1, 3, 2, 0, 1, 2, 3, 0, 1]
    assert values == ("0", "1", "2", "1000")
    assert "4 distinct labels between 0 and 1000: they become classes 0..3" in caplog.text
    y, values = encode_labels(np.array(["dog", "cat", "dog", "cat"]), "y")
    assert y.tolist() == [1, 0, 1, 0] and values == ("cat", "dog")


def test_sparse_npz_labels_become_contiguous_classes(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(24.0).reshape(12, 2), y=SPARSE, ids=np.arange(100, 112)[::-1])
    ds = load_dataset(DatasetConfig(name="npz", path=path))
    assert ds.num_classes == 4
    assert ds.label_values == ("0", "1", "2", "1000")
    np.testing.assert_array_equal(np.array(ds.label_values)[ds.y], SPARSE.astype(str))
    assert ds.subset(np.array([0, 1, 4])).label_values == ds.label_values


def test_sparse_csv_labels_become_contiguous_classes(tmp_path):
    rows = [f"{v},{i}" for i, v in enumerate(SPARSE)]
    ds = load_dataset(DatasetConfig(name="csv", path=_csv(tmp_path / "t.csv", "y,a", rows)))
    assert ds.num_classes == 4 and ds.label_values == ("0", "1", "2", "1000")


def test_csv_path_that_is_a_folder(tmp_path):
    with pytest.raises(DataError, match=f"csv path {tmp_path} is a folder, not a file"):
        load_dataset(DatasetConfig(name="csv", path=tmp_path))


@pytest.mark.parametrize("content", [b"a,b\n1,2\n", b"\x80\x03}q\x00.", b""])
def test_a_file_that_is_not_npz_never_suggests_allow_pickle(tmp_path, content):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="npz", path=path))
    assert f"{path} is not an .npz file (not a zip archive)" in str(info.value)
    assert "allow_pickle" not in str(info.value)


def test_a_pickled_npy_array_never_suggests_allow_pickle(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="npz", path=path))
    assert "holds a pickled object array, and mialens never loads pickles" in str(info.value)
    assert "allow_pickle" not in str(info.value)


def test_npz_path_that_is_a_folder(tmp_path):
    with pytest.raises(DataError, match=f"npz path {tmp_path} is a folder, not a file"):
        load_dataset(DatasetConfig(name="npz", path=tmp_path))
