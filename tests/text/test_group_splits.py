"""Group-level membership: a near-duplicate group is all IN or all OUT, IN for exactly half
of the models, and never split between the pool and the test set."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.errors import ConfigError
from mialens.splits import group_keep_mask, keep_mask, make_group_split


def _groups(seed: int = 3) -> np.ndarray:
    """Uneven groups (sizes 1 to 6) with shuffled, non-contiguous group ids."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=23)
    names = rng.permutation(np.arange(1000, 1000 + 7 * len(sizes), 7))
    return rng.permutation(np.repeat(names, sizes))


def test_group_keep_mask_gives_every_group_one_membership_in_half_of_the_models():
    groups = _groups()
    mask = group_keep_mask(6, groups, seed=11)
    assert mask.shape == (6, len(groups))
    for name in np.unique(groups):
        columns = mask[:, groups == name]
        assert (columns == columns[:, :1]).all()  # all IN or all OUT in every model
        assert columns[:, 0].sum() == 3
    assert (mask[0::2] == ~mask[1::2]).all()  # complementary pairs
    np.testing.assert_array_equal(mask, group_keep_mask(6, groups, seed=11))
    assert not np.array_equal(mask, group_keep_mask(6, groups, seed=12))


def test_group_keep_mask_is_keep_mask_over_the_sorted_groups():
    groups = np.array([40, 7, 40, 19, 7, 7, 3])
    by_group = keep_mask(4, 4, seed=5)  # groups 3, 7, 19, 40
    expected = by_group[:, [3, 1, 3, 2, 1, 1, 0]]
    np.testing.assert_array_equal(group_keep_mask(4, groups, seed=5), expected)
    # the first pair does not depend on how many models the audit has
    np.testing.assert_array_equal(group_keep_mask(2, groups, 5), expected[:2])


def test_group_split_keeps_every_group_on_one_side():
    groups = _groups()
    split = make_group_split(groups, seed=2, pool_size=40, population_size=5)
    pool_groups, test_groups = set(groups[split.pool]), set(groups[split.test])
    assert not pool_groups & test_groups
    assert len(split.pool) >= 40
    assert len(split.pool) - 40 < np.bincount(np.unique(groups, return_inverse=True)[1]).max()
    assert set(split.pool) | set(split.test) == set(range(len(groups)))
    assert len(split.population) == 5 and set(split.population) <= set(split.test)
    assert len(split.validation) == 0
    again = make_group_split(groups, seed=2, pool_size=40, population_size=5)
    np.testing.assert_array_equal(split.pool, again.pool)
    np.testing.assert_array_equal(split.population, again.population)


def test_group_split_exact_on_a_hand_built_case():
    groups = np.array([5, 9, 5, 2, 9, 9])  # group 2: 1 sample, 5: 2, 9: 3
    split = make_group_split(groups, seed=0, pool_size=2, test_size=1)
    for part in (split.pool, split.test):
        assert len({int(g) for g in groups[part]}) == 1  # one whole group each here
    assert len(split.pool) >= 2 and len(split.test) >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool_size": 60}, "between 1 and"),
        ({"pool_size": 10, "test_size": 500}, "audit.test_size is 500"),
        ({"pool_size": 10, "population_size": 500}, "audit.population_size is 500"),
    ],
)
def test_group_split_refuses_sizes_that_do_not_fit(kwargs, message):
    groups = _groups()[:50]
    with pytest.raises(ConfigError, match=message):
        make_group_split(groups, seed=0, **kwargs)


def test_a_single_group_cannot_be_halved():
    with pytest.raises(ConfigError, match="single near-duplicate group"):
        group_keep_mask(2, np.array([4, 4, 4]), seed=0)
    with pytest.raises(ConfigError, match="at least 2 groups"):
        make_group_split(np.array([4, 4, 4]), seed=0, pool_size=2)
    with pytest.raises(ConfigError, match="leaving no test set"):  # 3 samples: both groups
        make_group_split(np.array([8, 8, 1, 1]), seed=0, pool_size=3)
