from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from mialens.errors import ConfigError, DataError
from mialens.metrics import (
    AttackMetrics,
    advantage,
    attack_metrics,
    auc,
    batch_metrics,
    fpr_resolvable,
    log_fpr_grid,
    mean_roc,
    roc_curve,
    tpr_at_fpr,
)

# Hand example, sorted by decreasing score: 0.9 M, 0.8 M, 0.7 N, 0.6 M, 0.5 N, 0.4 N
# (3 members, 3 non-members). ROC points (fpr, tpr), one per threshold:
#   (0, 0) (0, 1/3) (0, 2/3) (1/3, 2/3) (1/3, 1) (2/3, 1) (1, 1)
# AUC: members 0.9 and 0.8 beat all 3 non-members, 0.6 beats 2 -> 8/9.
# Advantage: max tpr - fpr = 2/3 (at (0, 2/3) and (1/3, 1)).
# TPR@FPR: 2/3 for any level < 1/3, 1 from 1/3 on.
# The arrays are shuffled so that members are not contiguous or first.
PERM = np.array([3, 0, 5, 1, 4, 2])
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])[PERM]
HAND_MEMBERS = np.array([1, 1, 0, 1, 0, 0], bool)[PERM]

# Ties: 0.9 M | 0.5 M, 0.5 N, 0.5 N | 0.1 N (2 members, 3 non-members).
# ROC points: (0, 0) (0, 1/2) (2/3, 1) (1, 1): the 0.5 group is all-or-nothing, so
# TPR@FPR = 1/2 for every level < 2/3 (never the 3/4 that splitting the group gives).
# AUC: 0.9 beats 3; the tied member 0.5 ties 2 (1/2 each) and beats 0.1 -> (3 + 2) / 6.
# Advantage: max(1/2 - 0, 1 - 2/3) = 1/2.
TIE_PERM = np.array([2, 4, 0, 3, 1])
TIE_SCORES = np.array([0.9, 0.5, 0.5, 0.5, 0.1])[TIE_PERM]
TIE_MEMBERS = np.array([1, 1, 0, 0, 0], bool)[TIE_PERM]

LEVELS = [0.0, 0.1, 1 / 3, 0.5, 2 / 3, 1.0]


def test_hand_example_roc_points():
    fpr, tpr, thresholds = roc_curve(HAND_SCORES, HAND_MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1], atol=0)
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1], atol=0)
    assert thresholds[0] == np.inf
    np.testing.assert_array_equal(thresholds[1:], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_hand_example_metrics():
    assert auc(HAND_SCORES, HAND_MEMBERS) == pytest.approx(8 / 9, abs=1e-15)
    assert advantage(HAND_SCORES, HAND_MEMBERS) == pytest.approx(2 / 3, abs=1e-15)
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBERS, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBERS, 0.3) == pytest.approx(2 / 3)
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBERS, 1 / 3) == 1.0
    res = attack_metrics(HAND_SCORES, HAND_MEMBERS, LEVELS)
    assert isinstance(res, AttackMetrics)
    assert res.auc == pytest.approx(8 / 9, abs=1e-15)
    assert res.advantage == pytest.approx(2 / 3, abs=1e-15)
    assert res.tpr_at_fpr == pytest.approx(
        {0.0: 2 / 3, 0.1: 2 / 3, 1 / 3: 1.0, 0.5: 1.0, 2 / 3: 1.0, 1.0: 1.0}
    )
    assert (res.n_members, res.n_nonmembers) == (3, 3)
    assert res.resolved == {0.0: False, 0.1: False, 1 / 3: True, 0.5: True, 2 / 3: True, 1.0: True}


def test_ties_are_all_or_nothing():
    fpr, tpr, _ = roc_curve(TIE_SCORES, TIE_MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 2 / 3, 1], atol=0)
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1], atol=0)
    assert auc(TIE_SCORES, TIE_MEMBERS) == pytest.approx(5 / 6, abs=1e-15)
    assert advantage(TIE_SCORES, TIE_MEMBERS) == pytest.approx(0.5, abs=1e-15)
    for level in (0.0, 1 / 3, 0.5, 0.66):
        assert tpr_at_fpr(TIE_SCORES, TIE_MEMBERS, level) == 0.5
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBERS, 2 / 3) == 1.0


@pytest.mark.parametrize(
    ("scores", "members", "expected"),
    [
        (HAND_SCORES, HAND_MEMBERS, [8 / 9, 2 / 3, [2 / 3, 2 / 3, 1, 1, 1, 1]]),
        (TIE_SCORES, TIE_MEMBERS, [5 / 6, 1 / 2, [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1]]),
    ],
)
def test_batch_matches_hand_values(scores, members, expected):
    out = batch_metrics(scores[None], members[None], LEVELS)
    assert out["auc"] == pytest.approx([expected[0]], abs=1e-15)
    assert out["advantage"] == pytest.approx([expected[1]], abs=1e-15)
    np.testing.assert_allclose(out["tpr"], [expected[2]], rtol=0, atol=1e-15)


def test_perfect_and_reversed_separation():
    members = np.array([0, 1, 0, 1, 1, 0, 0, 1], bool)
    scores = np.where(members, 1.0, 0.0) + np.linspace(0, 0.5, 8)
    assert auc(scores, members) == 1.0
    assert advantage(scores, members) == 1.0
    assert tpr_at_fpr(scores, members, 0.0) == 1.0
    assert auc(-scores, members) == 0.0
    assert advantage(-scores, members) == 0.0
    assert tpr_at_fpr(-scores, members, 0.75) == 0.0
    assert tpr_at_fpr(-scores, members, 1.0) == 1.0


def test_all_tied_is_chance():
    members = np.array([1, 0, 0, 1, 0], bool)
    scores = np.full(5, 0.3)
    assert auc(scores, members) == 0.5
    assert advantage(scores, members) == 0.0
    assert tpr_at_fpr(scores, members, 0.99) == 0.0


def test_unresolved_low_fpr():
    gen = np.random.default_rng(3)
    members = gen.permutation(np.r_[np.ones(50, bool), np.zeros(50, bool)])
    scores = gen.normal(size=100) + members
    res = attack_metrics(scores, members, [0.01, 0.02, 0.1])
    assert res.n_nonmembers == 50
    assert res.resolved == {0.01: False, 0.02: True, 0.1: True}
    # With 50 non-members the only FPR <= 1% is 0, so TPR@1% is TPR@0.
    assert res.tpr_at_fpr[0.01] == tpr_at_fpr(scores, members, 0.0)


def test_fpr_resolvable():
    assert fpr_resolvable(100, 0.01)
    assert not fpr_resolvable(99, 0.01)
    assert fpr_resolvable(10_000, 1e-4)
    assert not fpr_resolvable(9_999, 1e-4)
    assert fpr_resolvable(1000, 0.001)
    assert not fpr_resolvable(0, 0.5)


@pytest.mark.parametrize(
    ("scores", "members", "message"),
    [
        ([0.1, np.nan, 0.3], [1, 0, 1], "NaN"),
        ([0.1, np.inf, 0.3], [1, 0, 1], "infinite"),
        ([0.1, 0.2, 0.3], [1, 0], "shape"),
        ([0.1, 0.2, 0.3], [0, 0, 0], "no member"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "no non-member"),
        ([[0.1, 0.2], [0.3, 0.4]], [[1, 0], [0, 1]], "shape"),
        (["a", "b"], [1, 0], "numeric"),
        ([0.1, 0.2], [2, 0], "boolean"),
    ],
)
def test_single_functions_validate(scores, members, message):
    for fn in (roc_curve, auc, advantage):
        with pytest.raises(DataError, match=message):
            fn(scores, members)
    with pytest.raises(DataError, match=message):
        tpr_at_fpr(scores, members, 0.1)
    with pytest.raises(DataError, match=message):
        attack_metrics(scores, members, [0.1])


def test_batch_validates():
    scores = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    with pytest.raises(DataError, match=r"no member in target rows \[1\]"):
        batch_metrics(scores, [[1, 0, 0], [0, 0, 0]], [0.1])
    with pytest.raises(DataError, match="shape"):
        batch_metrics(scores[0], [1, 0, 0], [0.1])
    with pytest.raises(DataError, match="counts"):
        batch_metrics(scores, [[1, 0, 0], [0, 1, 0]], [0.1], counts=np.ones((2, 4), int))
    with pytest.raises(DataError, match="counts"):
        batch_metrics(scores, [[1, 0, 0], [0, 1, 0]], [0.1], counts=np.ones((0, 3), int))
    with pytest.raises(DataError, match="non-negative integer"):
        batch_metrics(scores, [[1, 0, 0], [0, 1, 0]], [0.1], counts=np.ones((2, 3)))
    with pytest.raises(DataError, match="resample 1 leaves target row 0"):
        batch_metrics(scores, [[1, 0, 0], [0, 1, 0]], [0.1], counts=[[1, 1, 1], [0, 2, 1]])


@pytest.mark.parametrize("levels", [[-0.1], [1.5], [np.nan], []])
def test_bad_levels(levels):
    with pytest.raises(ConfigError, match="fpr levels"):
        attack_metrics(HAND_SCORES, HAND_MEMBERS, levels)
    with pytest.raises(ConfigError, match="fpr levels"):
        batch_metrics(HAND_SCORES[None], HAND_MEMBERS[None], levels)


def _random_tied(seed: int, n_targets: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    members = gen.random((n_targets, n_samples)) < gen.uniform(0.2, 0.8, (n_targets, 1))
    members[:, 0], members[:, 1] = True, False  # every row needs both classes
    members = gen.permuted(members, axis=1)
    # Few distinct values -> many ties, shifted a little for members.
    scores = np.round(gen.normal(size=(n_targets, n_samples)) + 0.7 * members, 1)
    return scores, members


@pytest.mark.parametrize(("seed", "n_samples"), [(0, 7), (1, 60), (2, 500), (3, 3001)])
def test_batch_equals_sklearn_per_row(seed, n_samples):
    scores, members = _random_tied(seed, 6, n_samples)
    levels = [0.0, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    out = batch_metrics(scores, members, levels)
    for t in range(scores.shape[0]):
        fpr, tpr, _ = sk_roc_curve(members[t], scores[t], drop_intermediate=False)
        assert out["auc"][t] == pytest.approx(roc_auc_score(members[t], scores[t]), abs=1e-12)
        assert out["advantage"][t] == np.max(tpr - fpr)
        expected = [tpr[fpr <= v].max() for v in levels]
        np.testing.assert_array_equal(out["tpr"][t], expected)
        single = attack_metrics(scores[t], members[t], levels)
        assert single.auc == pytest.approx(out["auc"][t], abs=1e-12)
        assert single.advantage == out["advantage"][t]
        assert list(single.tpr_at_fpr.values()) == expected
        # Levels exactly at the achievable ROC FPRs (boundary of the <= comparison),
        # unsorted and repeated.
        grid = np.r_[fpr[::-1], fpr[:3]]
        row = batch_metrics(scores[t : t + 1], members[t : t + 1], grid)["tpr"][0]
        np.testing.assert_array_equal(row, [tpr[fpr <= v].max() for v in grid])


def test_counts_equal_explicit_resampling():
    scores, members = _random_tied(7, 5, 300)
    levels = [0.0, 0.01, 0.1, 0.3, 1.0]
    gen = np.random.default_rng(11)
    draws = gen.integers(0, scores.shape[1], size=(9, scores.shape[1]))
    counts = np.stack([np.bincount(d, minlength=scores.shape[1]) for d in draws])
    weighted = batch_metrics(scores, members, levels, counts=counts)
    assert weighted["tpr"].shape == (9, 5, len(levels))
    for b, d in enumerate(draws):
        explicit = batch_metrics(scores[:, d], members[:, d], levels)
        np.testing.assert_allclose(weighted["auc"][b], explicit["auc"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            weighted["advantage"][b], explicit["advantage"], rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(weighted["tpr"][b], explicit["tpr"], rtol=0, atol=1e-12)


def test_counts_chunking_is_invisible(monkeypatch):
    scores, members = _random_tied(8, 3, 50)
    counts = np.random.default_rng(0).multinomial(50, np.full(50, 1 / 50), size=7)
    whole = batch_metrics(scores, members, [0.1], counts=counts)
    monkeypatch.setattr("mialens.metrics.resampled._BLOCK_ELEMENTS", 1)
    chunked = batch_metrics(scores, members, [0.1], counts=counts)
    for key, value in whole.items():
        np.testing.assert_array_equal(chunked[key], value)


def test_mean_roc_averages_step_tprs():
    scores = np.stack([HAND_SCORES, np.r_[TIE_SCORES, 0.0]])
    members = np.stack([HAND_MEMBERS, np.r_[TIE_MEMBERS, False]])
    # Second row: the tie example plus a lowest non-member (4 non-members):
    # ROC points (0, 0) (0, 1/2) (1/2, 1) (3/4, 1) (1, 1).
    grid = [0.0, 0.3, 1 / 3, 0.5, 1.0]
    expected = np.mean([[2 / 3, 2 / 3, 1, 1, 1], [1 / 2, 1 / 2, 1 / 2, 1, 1]], axis=0)
    np.testing.assert_allclose(mean_roc(scores, members, grid), expected, rtol=0, atol=1e-15)


def test_log_fpr_grid():
    grid = log_fpr_grid(50, points=5)
    assert grid.shape == (5,)
    assert grid[0] == pytest.approx(0.02)
    assert grid[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(np.log(grid)), np.log(50) / 4)
    assert log_fpr_grid(10**7)[0] == pytest.approx(1e-5)
    assert log_fpr_grid(10**7).shape == (200,)
    with pytest.raises(ConfigError):
        log_fpr_grid(0)


@pytest.mark.parametrize("decimals", [None, 1])
def test_attack_metrics_equal_sklearn_bit_for_bit(decimals):
    """The ROC built from the tie groups is sklearn's, so metrics.json does not move."""
    scores, members = _random_tied(9, 3, 2001)
    if decimals is None:
        scores = scores + np.random.default_rng(1).normal(scale=1e-3, size=scores.shape)
    for s, m in zip(scores, members, strict=True):
        fpr, tpr, _ = sk_roc_curve(m, s, drop_intermediate=False)
        out = attack_metrics(s, m, [1e-3, 0.01, 0.1])
        assert out.auc == float(sk_auc(fpr, tpr))
        assert out.advantage == float(np.max(tpr - fpr))
        assert list(out.tpr_at_fpr.values()) == [tpr[fpr <= v].max() for v in (1e-3, 0.01, 0.1)]
