"""The threshold's position among the non-members (mialens.metrics.threshold_position),
on arrays small enough to follow by hand."""

import numpy as np

from mialens.metrics.resampled import rank_target, tpr_at_allowances
from mialens.metrics.threshold_position import (
    binomial_quantiles,
    threshold_shifts,
    widened_levels,
)

# Six samples in a shuffled order; by decreasing score target 0 sees member, non-member,
# member, non-member, member, non-member, and target 1 the opposite.
ORDER = np.array([3, 0, 5, 1, 4, 2])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])[ORDER]
MEMBERS = np.array([[True, False] * 3, [False, True] * 3])[:, ORDER]


def test_tpr_at_allowances_by_hand():
    # target 0: no false positive accepts the top member (1/3), one the next (2/3), ...
    first = tpr_at_allowances(rank_target(SCORES, MEMBERS[0]), np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(first, [1 / 3, 2 / 3, 1, 1])
    second = tpr_at_allowances(rank_target(SCORES, MEMBERS[1]), np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(second, [0, 1 / 3, 2 / 3, 1])


def test_binomial_quantiles_by_hand():
    # Binomial(3, 1/2): CDF 1/8, 1/2, 7/8, 1 at 0, 1, 2, 3
    uniforms = np.array([0.1, 0.125, 0.3, 0.5, 0.6, 0.9, 1.0])
    np.testing.assert_array_equal(binomial_quantiles(3, 0.5, uniforms), [0, 0, 1, 1, 2, 3, 3])


def test_threshold_shifts_by_hand():
    """FPR 1/3 on 3 non-members allows k = 1 (TPR c(1): 2/3 on target 0, 1/3 on target 1).
    Binomial(3, 1/3) has CDF 8/27, 20/27, 26/27, 1, so first uniforms 0.1, 0.6, 0.9 give
    J = 0, 1, 2; the second place the threshold between c(J - 1) and c(J): halfway, at
    c(J - 1), at c(J). Target 0 (c = 0, 1/3, 2/3, 1 from j = -1) moves by -1/2, -1/3,
    +1/3, target 1 (c = 0, 0, 1/3, 2/3) by -1/3, -1/3, +1/3."""
    levels = np.array([1 / 3])
    uniforms = np.array([[0.1, 0.5], [0.6, 0.0], [0.9, 1.0]])
    shifts = threshold_shifts(SCORES[None].repeat(2, 0), MEMBERS, levels, uniforms)
    np.testing.assert_allclose(shifts[:, 0], [-5 / 12, -1 / 3, 1 / 3])


def test_levels_allowing_ten_false_positives_are_left_alone():
    gen = np.random.default_rng(2)
    members = np.stack([gen.permutation(np.arange(40) < 20) for _ in range(3)])
    levels = np.array([0.5, 0.45])  # 20 non-members: 10 and 9 false positives allowed
    np.testing.assert_array_equal(widened_levels(members, levels), [False, True])
    scores = gen.normal(size=members.shape) + members
    shifts = threshold_shifts(scores, members, levels, gen.random((5, 2)))
    assert (shifts[:, 0] == 0).all() and shifts.shape == (5, 2)
