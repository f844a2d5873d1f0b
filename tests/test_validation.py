"""Tests of array validation (mialens.validation), atomic files (mialens.io) and seeding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mialens.errors import ConfigError, DataError
from mialens.io import atomic_open, load_npy, save_npy, to_json, write_json, write_text
from mialens.seeding import int_seed, rng, seed_sequence
from mialens.validation import (
    check_features,
    check_finite,
    check_fpr_levels,
    check_ids,
    check_labels,
    check_logits,
    check_member_mask,
    check_multiclass,
)

# --- check_finite / check_features ---------------------------------------------------------


def test_check_finite_passes_finite_arrays_through():
    x = np.arange(6.0).reshape(2, 3)
    assert check_finite(x, "x") is x
    assert check_finite(np.zeros((0, 3)), "x").shape == (0, 3)
    assert check_finite(np.arange(3), "ints") is not None


def test_check_finite_counts_nan_and_inf():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, np.nan, -np.inf]])
    with pytest.raises(DataError) as info:
        check_finite(x, "scores")
    message = str(info.value)
    assert "scores contains 2 NaN and 2 infinite values" in message
    assert "first at index (0, 1)" in message


def test_check_features_returns_float32():
    out = check_features([[1, 2], [3, 4]])
    assert out.dtype == np.float32
    assert out.shape == (2, 2)
    images = check_features(np.zeros((3, 1, 2, 2), np.float64))
    assert images.dtype == np.float32
    assert images.shape == (3, 1, 2, 2)


def test_check_features_rejects_nan_with_counts():
    x = np.ones((4, 3))
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(DataError, match=r"features contains 1 NaN and 1 infinite values"):
        check_features(x, "features")


def test_check_features_rejects_one_dimensional_input():
    with pytest.raises(DataError, match=r"reshape\(-1, 1\)"):
        check_features(np.arange(5.0))
    with pytest.raises(DataError, match="shape"):
        check_features(3.0)


def test_check_features_rejects_empty_input():
    with pytest.raises(DataError, match="empty"):
        check_features(np.zeros((0, 4)))


def test_check_features_rejects_non_numeric_input():
    with pytest.raises(DataError, match="numeric"):
        check_features([["a", "b"]])


# --- check_labels ----------------------------------------------------------------------------


def test_check_labels_accepts_ints_integral_floats_and_bools():
    np.testing.assert_array_equal(check_labels([0, 2, 1], 3), [0, 2, 1])
    out = check_labels(np.array([0.0, 1.0, 2.0]), 3)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [0, 1, 2])
    np.testing.assert_array_equal(check_labels(np.array([True, False])), [1, 0])
    assert check_labels(np.array([1, 0], np.uint8)).dtype == np.int64


def test_check_labels_rejects_fractional_floats():
    with pytest.raises(DataError, match="fractional"):
        check_labels(np.array([0.0, 1.5]))


def test_check_labels_rejects_nan():
    with pytest.raises(DataError, match="1 NaN"):
        check_labels(np.array([0.0, np.nan]))


def test_check_labels_rejects_strings():
    with pytest.raises(DataError, match="LabelEncoder"):
        check_labels(np.array(["cat", "dog"]))


def test_check_labels_rejects_negative_labels():
    with pytest.raises(DataError, match=r"negative labels \(min -1\)"):
        check_labels([0, -1, 2])


def test_check_labels_rejects_labels_beyond_num_classes():
    with pytest.raises(
        DataError, match=r"label 3 but there are only 3 classes \(valid labels are 0..2\)"
    ):
        check_labels([0, 3, 1], num_classes=3)


def test_check_labels_rejects_wrong_shape_length_and_empty():
    with pytest.raises(DataError, match="1-D"):
        check_labels(np.zeros((2, 2), np.int64))
    with pytest.raises(DataError, match="3 entries but there are 4 samples"):
        check_labels([0, 1, 0], n=4)
    with pytest.raises(DataError, match="empty"):
        check_labels(np.array([], np.int64))


def test_check_multiclass():
    check_multiclass(np.array([0, 1, 1]))
    with pytest.raises(DataError, match=r"single class \(\[2\]\)"):
        check_multiclass(np.array([2, 2, 2]))


# --- check_ids -------------------------------------------------------------------------------


def test_check_ids_accepts_unique_ints_and_strings():
    assert check_ids(np.array([3, 1, 2], np.int32), 3).dtype == np.int64
    out = check_ids(["a", "b"], 2)
    assert out.dtype.kind == "U"
    assert check_ids(np.array(["x", "y"], dtype=object), 2).dtype.kind == "U"


def test_check_ids_rejects_duplicates():
    with pytest.raises(DataError, match=r"duplicated ids include \[1, 4\]"):
        check_ids([1, 4, 1, 4, 2], 5)
    with pytest.raises(DataError, match="unique"):
        check_ids(["a", "a"], 2)


def test_check_ids_rejects_wrong_length_and_type():
    with pytest.raises(DataError, match="vector of 3 sample ids"):
        check_ids([1, 2], 3)
    with pytest.raises(DataError, match="vector of 2 sample ids"):
        check_ids([[1, 2]], 2)
    with pytest.raises(DataError, match="integers or strings"):
        check_ids([0.5, 1.5], 2)


# --- check_logits ----------------------------------------------------------------------------


def test_check_logits_accepts_two_and_three_dimensions():
    assert check_logits(np.zeros((4, 3), np.float64)).dtype == np.float32
    assert check_logits(np.zeros((4, 2, 3)), n=4, num_classes=3).shape == (4, 2, 3)


def test_check_logits_rejects_bad_shapes():
    with pytest.raises(DataError, match="n_samples, n_classes"):
        check_logits(np.zeros(5))
    with pytest.raises(DataError, match="5 rows but there are 4 samples"):
        check_logits(np.zeros((5, 3)), n=4)
    with pytest.raises(DataError, match="3 columns but the data has 10 classes"):
        check_logits(np.zeros((5, 3)), num_classes=10)
    with pytest.raises(DataError, match="at least 2"):
        check_logits(np.zeros((5, 1)))


def test_check_logits_rejects_nan_and_non_numeric():
    logits = np.zeros((3, 2))
    logits[2, 1] = np.nan
    with pytest.raises(DataError, match=r"logits contains 1 NaN and 0 infinite values"):
        check_logits(logits)
    with pytest.raises(DataError, match="numeric"):
        check_logits([["a", "b"]])


# --- check_member_mask -----------------------------------------------------------------------


def test_check_member_mask_accepts_bools_and_zero_one():
    mask = np.array([[True, False]])
    assert check_member_mask(mask, (1, 2)) is mask
    out = check_member_mask(np.array([[1, 0]]), (1, 2))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, [[True, False]])
    np.testing.assert_array_equal(check_member_mask(np.array([0.0, 1.0]), (2,)), [False, True])


def test_check_member_mask_rejects_wrong_shape():
    with pytest.raises(DataError, match=r"shape \(2, 3\); got \(3, 2\)"):
        check_member_mask(np.zeros((3, 2), bool), (2, 3))


@pytest.mark.parametrize(
    "mask", [np.array([0, 2]), np.array([-1, 1]), np.array([0.5, 1.0]), np.array(["1", "0"])]
)
def test_check_member_mask_rejects_non_binary(mask):
    with pytest.raises(DataError, match="boolean"):
        check_member_mask(mask, (2,))


def test_check_member_mask_hints_at_indices_but_reads_zero_one_as_a_mask():
    with pytest.raises(DataError, match=r"looks like 3 sample indices.*np.zeros\(10, bool\)"):
        check_member_mask(np.array([7, 2, 5]), (10,))
    with pytest.raises(DataError, match="looks like 10 sample indices"):
        check_member_mask(np.random.default_rng(0).permutation(10), (10,))
    with pytest.raises(DataError, match=r"got \(3,\)\.$"):  # a short 0/1 mask: no hint
        check_member_mask(np.array([0, 1, 1]), (10,))
    np.testing.assert_array_equal(check_member_mask([0, 1], (2,)), [False, True])


@pytest.mark.parametrize("rates", [[0.0], [1.0], [0.1, 1.5], [], 0.01, ["a"]])
def test_check_fpr_levels_is_a_config_error(rates):
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        check_fpr_levels(rates)


def test_check_fpr_levels_sorts_and_deduplicates():
    assert check_fpr_levels((0.01, 0.1, 0.01)) == [0.1, 0.01]


# --- atomic writes ---------------------------------------------------------------------------


def test_write_json_round_trip_with_numpy_values(tmp_path):
    obj = {
        "int": np.int64(3),
        "float": np.float32(0.5),
        "bool": np.bool_(True),
        "array": np.arange(3),
        "matrix": np.eye(2),
        "path": Path("a/b"),
        "nested": [{"x": np.int8(-1)}],
    }
    path = tmp_path / "sub" / "result.json"  # parent folders are created
    write_json(path, obj)
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded == {
        "int": 3,
        "float": 0.5,
        "bool": True,
        "array": [0, 1, 2],
        "matrix": [[1.0, 0.0], [0.0, 1.0]],
        "path": "a/b",
        "nested": [{"x": -1}],
    }
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert os.listdir(path.parent) == ["result.json"]


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"ok": 1})
    with pytest.raises(ValueError):
        write_json(path, {"auc": float("nan")})
    with pytest.raises(ValueError):
        write_json(path, {"auc": np.float64("inf")})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_to_json_refuses_unknown_objects():
    with pytest.raises(TypeError, match="not JSON serialisable"):
        to_json({"x": object()})


def test_atomic_open_leaves_no_trace_after_an_exception(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("original", encoding="utf-8")
    with pytest.raises(RuntimeError, match="crash"), atomic_open(path) as fh:
        fh.write("half of the new content")
        raise RuntimeError("crash")
    assert path.read_text(encoding="utf-8") == "original"
    assert os.listdir(tmp_path) == ["report.txt"]


def test_atomic_open_on_a_new_path_leaves_nothing_after_an_exception(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "new.bin", "wb") as fh:
        fh.write(b"abc")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_open_replaces_on_success(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old", encoding="utf-8")
    with atomic_open(path) as fh:
        fh.write("new ✓")
        assert path.read_text(encoding="utf-8") == "old"  # not yet replaced
    assert path.read_text(encoding="utf-8") == "new ✓"
    write_text(path, "newer")
    assert path.read_text(encoding="utf-8") == "newer"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_save_npy_round_trip(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4).T  # non-contiguous
    save_npy(tmp_path / "a.npy", array)
    out = load_npy(tmp_path / "a.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, array)


def test_save_npy_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError):
        save_npy(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object))
    assert os.listdir(tmp_path) == []


def test_load_npy_refuses_object_arrays(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        load_npy(path)


# --- seeding ---------------------------------------------------------------------------------


def test_rng_streams_are_reproducible():
    a = rng(0, "split").integers(0, 2**31, size=8)
    b = rng(0, "split").integers(0, 2**31, size=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rng(5, "keep", 3).random(4), rng(5, "keep", 3).random(4))


def test_rng_streams_are_independent_by_key_and_seed():
    draws = {
        "split": rng(0, "split").random(8),
        "population": rng(0, "population").random(8),
        "keep0": rng(0, "keep", 0).random(8),
        "keep1": rng(0, "keep", 1).random(8),
        "seed1": rng(1, "split").random(8),
        "no key": rng(0).random(8),
    }
    names = list(draws)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.allclose(draws[a], draws[b]), (a, b)


def test_seed_sequence_carries_the_master_seed():
    seq = seed_sequence(42, "x")
    assert seq.entropy == 42
    assert len(seq.spawn_key) == 4


def test_int_seed_range_and_reproducibility():
    seeds = [int_seed(s, "model", k) for s in range(5) for k in range(20)]
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == len(seeds)
    assert int_seed(3, "model", 7) == int_seed(3, "model", 7)
    assert max(seeds) > 2**40  # uses the wide range, not just 32 bits
