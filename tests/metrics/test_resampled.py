"""The weighted ROC kernel behind batch_metrics and the bootstrap (mialens.metrics.resampled)."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.metrics import batch_metrics
from mialens.metrics.resampled import (
    allowed_counts,
    member_counts,
    rank_target,
    resampled_metrics,
)

# Sample positions shuffled: by score the order is 3, 0, 4, 1, 2.
SCORES = np.array([[0.8, 0.6, 0.5, 0.9, 0.7]])
MEMBERS = np.array([[False, False, False, True, True]])


def test_hand_computed_resample():
    # Drawn: the 0.9 member once, the 0.8 non-member twice, the 0.7 member once, the 0.6
    # non-member never, the 0.5 non-member three times: 2 members, 5 non-members.
    counts = np.array([[2, 0, 3, 1, 1]])
    levels = np.array([0.1, 0.3, 0.4, 1.0])
    out = resampled_metrics(SCORES, MEMBERS, levels, counts)
    # ROC points (0, 1/2), (2/5, 1/2), (2/5, 1), (1, 1); member-non-member pairs won:
    # 5 by the 0.9 member, 3 by the 0.7 one, of 2 x 5.
    assert out["auc"][0, 0] == 8 / 10
    assert out["advantage"][0, 0] == 1 - 2 / 5
    np.testing.assert_array_equal(out["tpr"][0, 0], [0.5, 0.5, 1.0, 1.0])


def test_hand_computed_ties_between_members_and_non_members():
    # By score: a non-member (0.9), a tie group at 0.7 of a member drawn twice and a
    # non-member, then a member (0.5); positions shuffled.
    scores = np.array([[0.7, 0.9, 0.5, 0.7]])
    members = np.array([[True, False, True, False]])
    out = resampled_metrics(scores, members, np.array([0.5, 1.0]), np.array([[2, 1, 1, 1]]))
    # ROC points (1/2, 0), (1, 2/3), (1, 1); the tied pairs count one half: 2 x 1/2 of 3 x 2.
    assert out["auc"][0, 0] == 1 / 6
    assert out["advantage"][0, 0] == 0.0
    np.testing.assert_array_equal(out["tpr"][0, 0], [0.0, 1.0])


def test_ranked_target_groups_and_peaks():
    scores = np.array([0.5, 0.9, 0.7, 0.7, 0.1, 0.2, 0.3])
    members = np.array([True, False, True, False, False, True, False])
    target = rank_target(scores, members)
    # By score: 0.9 out, 0.7 {in, out}, 0.5 in, 0.3 out, 0.2 in, 0.1 out.
    np.testing.assert_array_equal(target.members, [2, 0, 5])
    np.testing.assert_array_equal(target.nonmembers, [1, 3, 6, 4])
    assert target.group_starts is None  # no two non-members tie
    np.testing.assert_array_equal(target.above, [0, 0, 2, 3])
    np.testing.assert_array_equal(target.above_or_tied, [0, 1, 2, 3])
    np.testing.assert_array_equal(target.peaks, [0, 2, 3])


def test_allowed_counts_in_the_rocs_floating_point():
    n = np.array([10, 100, 100, 3])
    levels = np.array([0.3, 0.29, 0.07, 1 / 3])
    got = allowed_counts(n, levels)
    # 0.29 * 100 rounds to 28.999999999999996, yet 29 / 100 <= 0.29.
    np.testing.assert_array_equal(np.diagonal(got), [3, 29, 7, 1])
    for i, level in enumerate(levels):
        k = got[:, i]
        assert (k / n <= level).all() and ((k == n) | ((k + 1) / n > level)).all()


def test_member_counts_are_exact():
    gen = np.random.default_rng(4)
    counts = gen.integers(0, 6, size=(7, 301)).astype(np.uint8)
    members = gen.random((3, 301)) < 0.5
    expected = counts.astype(np.int64) @ members.T.astype(np.int64)
    np.testing.assert_array_equal(member_counts(counts, members), expected)


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_bit_identical_to_explicit_resampling(decimals):
    gen = np.random.default_rng(5)
    members = gen.permuted(np.arange(200)[None].repeat(4, 0) % 3 == 0, axis=1)
    scores = gen.normal(size=members.shape) + members
    if decimals is not None:
        scores = np.round(scores, decimals)  # ties, within and across the classes
    levels = np.array([0.0, 0.005, 0.01, 0.1, 0.37, 1.0])
    draws = gen.integers(0, 200, size=(6, 200))
    counts = np.stack([np.bincount(d, minlength=200) for d in draws])
    weighted = resampled_metrics(scores, members, levels, counts)
    for b, d in enumerate(draws):
        explicit = batch_metrics(scores[:, d], members[:, d], levels)
        for key, value in explicit.items():
            np.testing.assert_array_equal(weighted[key][b], value)


def test_the_tpr_search_reads_only_the_leading_columns_it_needs():
    from mialens.metrics.resampled import _leading_columns

    rows = np.array([[0, 0, 1, 1, 2, 5, 9, 9], [0, 1, 1, 3, 3, 3, 4, 8]])
    values = np.array([0, 2])
    width = _leading_columns(rows, values)
    assert width == 4  # probed at 1, 2, 4, 8 columns: the first past which both exceed
    for row, value in zip(rows, values, strict=True):
        assert np.searchsorted(row[:width], value, "right") == np.searchsorted(row, value, "right")
    assert _leading_columns(rows, np.array([1, 8])) == rows.shape[1]  # row 1 never exceeds 8
