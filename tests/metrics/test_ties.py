"""The tie guard: FPR levels that a tie group makes unreachable, and tie shares."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.attacks.loss_percentile import interpolated_cdf_rows
from mialens.metrics import attack_metrics, leakage_summary, level_ties, tie_groups, tpr_at_fpr

# Hand example (6 members, 10 non-members), by decreasing score:
#   1.0: 4 M + 2 N | 0.8: N | 0.7: M | 0.6: N | 0.5: M | 0.4: 5 N | 0.2: N
# Cumulative non-members after each group: 2 3 3 4 4 9 10, so the ROC FPRs are
#   0, 0.2, 0.3, 0.3, 0.4, 0.4, 0.9, 1.
# Level 0.1: a tie-free attack attains floor(0.1 * 10) / 10 = 0.1, but the 1.0 group (6 of
# 16 scores) straddles it: the best FPR <= 0.1 is 0 < 0.1 / 2 -> unreachable, TPR 0.
# Level 0.85: floor(8.5) = 8 non-members; achieved 4 = 8 / 2 -> reachable (boundary).
# Level 0.0: a tie-free attack attains FPR 0 too -> reachable (and unresolved).
HAND_GROUPS = [(1.0, 4, 2), (0.8, 0, 1), (0.7, 1, 0), (0.6, 0, 1), (0.5, 1, 0), (0.4, 0, 5)]
HAND_GROUPS += [(0.2, 0, 1)]
_SCORES = np.concatenate([np.full(p + n, v) for v, p, n in HAND_GROUPS])
_MEMBERS = np.concatenate([np.r_[np.ones(p, bool), np.zeros(n, bool)] for _, p, n in HAND_GROUPS])
PERM = np.random.default_rng(5).permutation(_SCORES.size)
SCORES, MEMBERS = _SCORES[PERM], _MEMBERS[PERM]

# level: (reachable, achieved_fpr, next_fpr, group_share)
EXPECTED = {
    0.0: (True, 0.0, 0.2, 6 / 16),
    0.1: (False, 0.0, 0.2, 6 / 16),
    0.15: (False, 0.0, 0.2, 6 / 16),
    0.2: (True, 0.2, 0.3, 1 / 16),
    0.5: (True, 0.4, 0.9, 5 / 16),
    0.85: (True, 0.4, 0.9, 5 / 16),
    1.0: (True, 1.0, None, 0.0),
}


def test_tie_groups_hand_example():
    pos, neg = tie_groups(SCORES, MEMBERS)
    np.testing.assert_array_equal(pos, [p for _, p, _ in HAND_GROUPS])
    np.testing.assert_array_equal(neg, [n for _, _, n in HAND_GROUPS])


@pytest.mark.parametrize(("level", "expected"), EXPECTED.items())
def test_level_ties_hand_example(level, expected):
    ties = level_ties(*tie_groups(SCORES, MEMBERS), level)
    reachable, achieved, nxt, share = expected
    assert ties.reachable is reachable
    assert ties.achieved_fpr == achieved
    assert ties.next_fpr == nxt
    assert ties.group_share == share


def test_attack_metrics_carry_the_guard():
    res = attack_metrics(SCORES, MEMBERS, list(EXPECTED))
    assert res.tie_share == 6 / 16
    assert {v: t.reachable for v, t in res.ties.items()} == {v: e[0] for v, e in EXPECTED.items()}
    assert res.tpr_at_fpr[0.1] == 0.0  # the TPR at FPR 0: the whole 1.0 group is excluded
    assert res.tpr_at_fpr[0.2] == 4 / 6
    assert res.resolved[0.0] is False and res.resolved[0.1] is True


def test_no_ties_reach_every_level():
    members = np.array([1, 0, 0, 1, 0, 1, 0], bool)
    scores = np.array([0.9, 0.1, 0.35, 0.7, 0.6, 0.2, 0.8])
    res = attack_metrics(scores, members, [0.25, 0.5, 0.7, 1.0])
    assert res.tie_share == 1 / 7
    assert all(t.reachable for t in res.ties.values())
    # 4 non-members: 0.25, 0.5 and 0.7 -> floor(level * 4) = 1, 2, 2 non-members attained.
    assert [t.achieved_fpr for t in res.ties.values()] == [0.25, 0.5, 0.5, 1.0]
    assert [t.group_share for t in res.ties.values()] == [1 / 7, 1 / 7, 1 / 7, 0.0]


def test_all_tied():
    members = np.array([0, 1, 0, 0, 1], bool)
    res = attack_metrics(np.full(5, 0.3), members, [0.34, 0.5, 1.0])
    assert res.tie_share == 1.0
    assert [t.reachable for t in res.ties.values()] == [False, False, True]
    assert res.ties[0.5] == level_ties(np.array([2]), np.array([3]), 0.5)
    assert res.ties[0.5].next_fpr == 1.0 and res.ties[0.5].group_share == 1.0


def test_level_between_roc_points_in_float():
    # 0.3 * 10 is 3.0000000000000004 and 0.7 * 10 is 7.000000000000001 in floating point:
    # the attained non-member counts are 3 and 7, as for the ROC's FPRs 3/10 and 7/10.
    scores = np.arange(20.0)
    members = np.arange(20) % 2 == 0
    for level, count in ((0.3, 3), (0.7, 7), (0.29, 2)):
        ties = level_ties(*tie_groups(scores, members), level)
        assert ties.reachable and ties.achieved_fpr == count / 10


def _two_targets() -> tuple[np.ndarray, np.ndarray]:
    """Target 0: the hand example; target 1: the same with every tie broken."""
    broken = _SCORES - np.arange(_SCORES.size) * 1e-3
    perm = np.random.default_rng(9).permutation(_SCORES.size)
    return np.stack([SCORES, broken[perm]]), np.stack([MEMBERS, _MEMBERS[perm]])


def test_leakage_summary_aggregates_the_guard():
    scores, members = _two_targets()
    out = leakage_summary(scores, members, [0.1, 0.2], n_boot=10)
    at = out.at(0.1)
    assert at.bootstrap is not None
    assert at.resolved is True
    assert at.reachable is False and at.unreachable_targets == 1
    assert at.ties.reachable == [False, True]
    assert at.ties.achieved_fpr == [0.0, 0.1]
    assert at.ties.next_fpr == [0.2, 0.2]
    assert at.ties.group_share == [6 / 16, 1 / 16]
    assert at.per_target == [0.0, 4 / 6]  # the untied target ranks 4 members first
    assert out.at(0.2).reachable is True
    assert out.at(0.2).unreachable_targets == 0
    assert out.tie_share.to_json() == {"max": 6 / 16, "per_target": [6 / 16, 1 / 16]}


def test_attack_r_resolution_is_one_over_r_plus_one():
    """Seeded: with R exchangeable OUT losses a non-member's loss is below all of them with
    probability 1/(R+1), so its Attack-R score 1 - F(loss) ties at 1 and every level below
    about 1/(R+1) is unreachable (Ye et al. 2022, Attack R)."""
    gen = np.random.default_rng(0)
    n, refs = 4000, 7
    members = gen.permutation(np.arange(n) < n // 2)
    out_losses = np.sort(gen.normal(size=(n, refs)), axis=1)
    loss = gen.normal(size=n) - 1.5 * members
    scores = 1.0 - interpolated_cdf_rows(out_losses, np.full(n, refs), loss)
    top = scores == 1.0
    assert top[~members].mean() == pytest.approx(1 / (refs + 1), abs=0.02)
    levels = [0.001, 0.01, 0.1, 0.2]
    res = attack_metrics(scores, members, levels)
    assert [res.ties[v].reachable for v in levels] == [False, False, False, True]
    assert all(res.tpr_at_fpr[v] == 0.0 for v in levels[:3])
    assert res.ties[0.1].next_fpr == top[~members].mean()
    assert res.tie_share == top.mean()
    assert tpr_at_fpr(scores, members, 0.2) > 0.5
