"""Attack-P and Attack-R (Ye et al. 2022): the inverse interpolated percentile, exactly."""

import numpy as np
import pytest

from mialens.attacks import ReferenceSignals, TargetSignals
from mialens.attacks.loss_percentile import (
    AttackP,
    AttackR,
    interpolated_cdf,
    interpolated_cdf_rows,
)


def test_interpolated_cdf_hand_values():
    v = np.array([1.0, 2.0, 2.0, 4.0])
    t = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0])
    # (i + (t - v_i) / (v_{i+1} - v_i)) / (m - 1) for v_i < t <= v_{i+1}; ties -> first index
    expected = [0.0, 0.0, 0.5 / 3, 1 / 3, 2.5 / 3, 1.0, 1.0]
    np.testing.assert_allclose(interpolated_cdf(v, t), expected, atol=1e-15)


def test_interpolated_cdf_inverts_numpy_percentile_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(500):
        v = np.sort(rng.integers(0, 6, size=rng.integers(1, 8)).astype(float))
        t = float(rng.integers(-1, 7))
        alpha = rng.random()
        below_percentile = t <= np.percentile(v, 100 * alpha)
        assert below_percentile == (interpolated_cdf(v, np.array([t]))[0] <= alpha)


def test_rows_version_matches_single_version_with_padding():
    rows = np.array(
        [[1.0, 2.0, 2.0, 4.0], [1.0, 3.0, np.inf, np.inf], [5.0, np.inf, np.inf, np.inf]]
    )
    counts = np.array([4, 2, 1])
    t = np.array([3.0, 2.0, 5.0])
    expected = [
        interpolated_cdf(rows[0], t[:1])[0],
        interpolated_cdf(rows[1, :2], t[1:2])[0],
        interpolated_cdf(rows[2, :1], t[2:])[0],
    ]
    np.testing.assert_allclose(interpolated_cdf_rows(rows, counts, t), expected)
    assert expected == pytest.approx([2.5 / 3, 0.5, 0.0])


def test_attack_p_exact():
    # population losses [0.5, 1, 2, 4]; F(0.25) = 0, F(1) = 1/3, F(1.5) = 1/2, F(5) = 1
    target = TargetSignals(
        values=np.array([[0.25], [1.0], [1.5], [5.0]]),
        labels=np.zeros(4, int),
        population=np.array([[4.0], [0.5], [2.0], [1.0]]),
    )
    scores = AttackP().fit().score(target)
    np.testing.assert_allclose(scores, [1.0, 2 / 3, 0.5, 0.0])


def test_attack_r_uses_only_out_reference_losses():
    # sample 0: OUT losses {1, 3} (model 2's 0.1 is IN and ignored); target loss 2 -> F = 1/2
    # sample 1: OUT losses {0.5, 1, 2}; target loss 0.75 -> F = (0 + 0.5) / 2 = 1/4
    values = np.array([[1.0, 0.5], [3.0, 1.0], [0.1, 2.0]])[:, :, None]
    member = np.array([[False, False], [False, False], [True, False]])
    attack = AttackR().fit(ReferenceSignals(values, member, np.array([0, 1])))
    scores = attack.score(TargetSignals(np.array([[2.0], [0.75]]), np.array([0, 1])))
    np.testing.assert_allclose(scores, [0.5, 0.75])


def test_both_read_the_loss():
    assert AttackP().signal().name == AttackR().signal().name == "loss"
