"""Tests of the experimental design (mialens.splits)."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.errors import ConfigError
from mialens.splits import Split, keep_mask, make_split

# --- keep_mask -----------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(2, 10), (4, 9), (8, 101), (16, 64), (6, 1)])
def test_every_sample_is_a_member_of_exactly_half_the_models(k, n):
    mask = keep_mask(k, n, seed=0)
    assert mask.shape == (k, n)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(axis=0), np.full(n, k // 2))


@pytest.mark.parametrize(("k", "n"), [(2, 10), (8, 33)])
def test_models_come_in_complementary_pairs(k, n):
    mask = keep_mask(k, n, seed=3)
    for p in range(k // 2):
        np.testing.assert_array_equal(mask[2 * p + 1], ~mask[2 * p])


def test_even_pool_is_split_in_halves():
    mask = keep_mask(6, 20, seed=1)
    np.testing.assert_array_equal(mask.sum(axis=1), [10] * 6)


def test_odd_pool_alternates_the_larger_half():
    # pool of 5: pair 0 gives model 0 two samples, pair 1 gives model 2 three, ...
    mask = keep_mask(6, 5, seed=0)
    np.testing.assert_array_equal(mask.sum(axis=1), [2, 3, 3, 2, 2, 3])
    np.testing.assert_array_equal(mask.sum(axis=0), [3] * 5)


def test_keep_mask_is_deterministic_by_seed():
    np.testing.assert_array_equal(keep_mask(8, 50, seed=7), keep_mask(8, 50, seed=7))


def test_different_seeds_give_different_masks():
    assert not np.array_equal(keep_mask(8, 50, seed=0), keep_mask(8, 50, seed=1))


def test_pairs_differ_from_each_other():
    mask = keep_mask(8, 50, seed=0)
    even_rows = [mask[2 * p] for p in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(even_rows[i], even_rows[j])
            assert not np.array_equal(even_rows[i], ~even_rows[j])


@pytest.mark.parametrize(("small", "large"), [(2, 4), (4, 16), (8, 10)])
def test_smaller_audit_is_a_prefix_of_a_larger_one(small, large):
    np.testing.assert_array_equal(keep_mask(large, 37, seed=2)[:small], keep_mask(small, 37, 2))


@pytest.mark.parametrize("k", [0, 1, 3, 7, -2])
def test_bad_number_of_models_is_an_error(k):
    with pytest.raises(ConfigError, match="even and at least 2"):
        keep_mask(k, 10, seed=0)


def test_empty_pool_gives_empty_mask():
    assert keep_mask(4, 0, seed=0).shape == (4, 0)


# --- make_split ----------------------------------------------------------------------------


def _assert_disjoint(split: Split, n: int) -> None:
    parts = [split.pool, split.validation, split.test]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined), "parts overlap"
    assert joined.min(initial=0) >= 0
    assert joined.max(initial=0) < n
    for part in parts:
        assert np.issubdtype(part.dtype, np.integer)
    assert np.isin(split.population, split.test).all()


def test_default_split_is_70_percent_pool_and_no_validation():
    split = make_split(100, seed=0)
    assert len(split.pool) == 70
    assert len(split.validation) == 0
    assert len(split.test) == 30
    np.testing.assert_array_equal(split.population, split.test)
    _assert_disjoint(split, 100)
    # everything is used
    assert sorted(np.concatenate([split.pool, split.test]).tolist()) == list(range(100))


def test_validation_defaults_to_a_fifth_of_the_rest_when_needed():
    split = make_split(100, seed=0, need_validation=True)
    assert len(split.pool) == 70
    assert len(split.validation) == 6  # 30 // 5
    assert len(split.test) == 24
    _assert_disjoint(split, 100)


def test_validation_default_has_at_least_one_sample():
    split = make_split(10, seed=0, need_validation=True)
    assert (len(split.pool), len(split.validation), len(split.test)) == (7, 1, 2)


def test_explicit_validation_without_need_is_kept():
    split = make_split(100, seed=0, val_size=5)
    assert (len(split.pool), len(split.validation), len(split.test)) == (70, 5, 25)


def test_explicit_sizes_leave_the_rest_unused():
    split = make_split(100, seed=1, pool_size=40, val_size=10, test_size=20)
    assert (len(split.pool), len(split.validation), len(split.test)) == (40, 10, 20)
    _assert_disjoint(split, 100)


def test_population_is_a_sorted_subset_of_test():
    split = make_split(100, seed=0, population_size=10)
    assert len(split.population) == 10
    assert len(np.unique(split.population)) == 10
    assert np.isin(split.population, split.test).all()
    assert not np.isin(split.population, split.pool).any()
    assert np.all(np.diff(split.population) > 0)


def test_population_of_the_test_set_size_is_the_test_set():
    split = make_split(100, seed=0, population_size=30)
    np.testing.assert_array_equal(split.population, split.test)


@pytest.mark.parametrize("size", [31, 1000])
def test_population_larger_than_the_test_set_is_refused_not_clipped(size):
    with pytest.raises(ConfigError, match=f"population_size is {size} but the test set .* has 30"):
        make_split(100, seed=0, population_size=size)


def test_make_split_is_deterministic_by_seed():
    a = make_split(200, seed=4, population_size=20, need_validation=True)
    b = make_split(200, seed=4, population_size=20, need_validation=True)
    for field in ("pool", "validation", "test", "population"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_different_seeds_give_different_splits():
    a = make_split(200, seed=0)
    b = make_split(200, seed=1)
    assert not np.array_equal(a.pool, b.pool)
    assert set(a.pool.tolist()) != set(b.pool.tolist())


def test_split_is_shuffled():
    split = make_split(100, seed=0)
    assert not np.array_equal(np.sort(split.pool), np.arange(70))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(pool_size=101),
        dict(pool_size=100),  # nothing left for the test set
        dict(pool_size=60, val_size=30, test_size=20),
        dict(pool_size=60, test_size=41),
        dict(pool_size=3),  # too small a pool
        dict(test_size=31),
    ],
)
def test_sizes_exceeding_the_data_are_a_config_error(kwargs):
    with pytest.raises(ConfigError, match="the data set has 100 samples"):
        make_split(100, seed=0, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [dict(val_size=128), dict(pool_size=150), dict(pool_size=60, val_size=50)]
)
def test_size_errors_never_report_negative_counts(kwargs):
    with pytest.raises(ConfigError, match="the data set has 100 samples") as info:
        make_split(100, seed=0, **kwargs)
    assert "-" not in str(info.value).replace("audit.", "")


def test_validation_needed_but_zero_is_a_config_error():
    with pytest.raises(ConfigError, match="val_size > 0"):
        make_split(100, seed=0, val_size=0, need_validation=True)


def test_tiny_data_set_is_a_config_error():
    with pytest.raises(ConfigError, match="too few"):
        make_split(4, seed=0)
