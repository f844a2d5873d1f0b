"""RMIA (Zarifzadeh et al. 2024): exact values on dyadic hand-computed arrays."""

import numpy as np
import pytest

from mialens.attacks import ReferenceSignals, TargetSignals, build_attack
from mialens.attacks.rmia import (
    A_GRID,
    RMIAOffline,
    RMIAOnline,
    auc_from_histograms,
    dominance_fraction,
    tie_broken_score,
)
from mialens.audit.engine import score_targets
from mialens.errors import ConfigError, DataError
from mialens.signals.store import SAMPLE_BLOCK

# Two reference models (complementary), two audit samples, three population samples.
# Values are Pr(x | theta) (true-label probabilities); all dyadic, so ratios are exact.
REF_X = np.array([[0.75, 0.25], [0.25, 0.875]])[:, :, None]
MEMBER = np.array([[True, False], [False, True]])
REF_Z = np.array([[0.5, 0.25, 0.75], [0.5, 0.75, 0.25]])[:, :, None]
LABELS = np.array([0, 1])
POP_LABELS = np.array([0, 1, 1])
TARGET_X = np.array([[0.75], [0.28125]])
TARGET_Z = np.array([[0.5], [0.25], [1.0]])


def refs():
    return ReferenceSignals(REF_X, MEMBER, LABELS, REF_Z, POP_LABELS)


def target():
    return TargetSignals(TARGET_X, LABELS, TARGET_Z, POP_LABELS)


def g(r):
    """The tie-break term 1/2 + arctan(log r) / pi."""
    return 0.5 + np.arctan(np.log(r)) / np.pi


def test_defaults_follow_the_authors_released_configurations():
    assert RMIAOnline().params.model_dump() == {"gamma": 2.0, "temperature": 2.0}
    assert RMIAOffline().params.model_dump() == {"gamma": 2.0, "temperature": 2.0, "a": "auto"}
    assert RMIAOffline(a=0.33).params.a == 0.33


def test_tie_break_exact():
    # r_z = [0.5, 1, 4]; g(1) = 1/2, g(e) = 3/4, g(1/e) = 1/4, g(0) = 0.
    # gamma 1: counts [2, 2, 0, 0] -> (count + g) / (Z + 1) = [2.5, 2.75, 0.25, 0] / 4
    # gamma 2: r_z <= r_x / 2 -> counts [1, 2, 0, 0] -> [1.5, 2.75, 0.25, 0] / 4
    rx = np.array([[1.0], [np.e], [1 / np.e], [0.0]])
    rz = np.array([[0.5], [1.0], [4.0]])
    np.testing.assert_array_equal(dominance_fraction(rx, rz, 1.0)[:, 0], [2 / 3, 2 / 3, 0, 0])
    np.testing.assert_allclose(
        tie_broken_score(rx, rz, 1.0), [0.625, 0.6875, 0.0625, 0.0], rtol=1e-15, atol=0
    )
    np.testing.assert_allclose(
        tie_broken_score(rx, rz, 2.0), [0.375, 0.6875, 0.0625, 0.0], rtol=1e-15, atol=0
    )


def test_saturated_samples_do_not_tie_and_one_query_ranks_by_the_ratio():
    rng = np.random.default_rng(3)
    rz = rng.uniform(0.1, 1.0, (50, 1))
    rx = np.exp(rng.uniform(-3, 30, (400, 1)))  # most beyond gamma * max r_z: fraction 1
    assert (dominance_fraction(rx, rz, 2.0) == 1).mean() > 0.8
    scores = tie_broken_score(rx, rz, 2.0)
    assert len(np.unique(scores)) == len(scores)
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(rx[:, 0]))
    assert ((scores >= 0) & (scores < 1)).all()


@pytest.mark.parametrize(("gamma", "expected"), [(1.0, [2 / 3, 1 / 3]), (2.0, [1 / 3, 0.0])])
def test_online_exact(gamma, expected):
    # Pr(x0) = (0.75 [IN] + 0.25 [OUT]) / 2 = 0.5;  Pr(x1) = (0.875 + 0.25) / 2 = 0.5625
    # Pr(z) = [0.5, 0.5, 0.5]
    # r_x = [0.75 / 0.5, 0.28125 / 0.5625] = [1.5, 0.5];  r_z = [1, 0.5, 2]
    # gamma 1: x0 dominates z with r_z <= 1.5 (two), x1 those with r_z <= 0.5 (one, a tie)
    # gamma 2: x0 those with r_z <= 0.75 (one), x1 those with r_z <= 0.25 (none)
    # score = (Z * fraction + g(r_x)) / (Z + 1) with Z = 3
    attack = RMIAOnline(gamma=gamma, temperature=1.0).fit(refs())
    np.testing.assert_array_equal(attack.pr_x_[:, 0], [0.5, 0.5625])
    want = (3 * np.array(expected) + g(np.array([1.5, 0.5]))) / 4
    np.testing.assert_allclose(attack.score(target()), want, rtol=1e-15)


def test_scores_are_the_mean_of_the_per_query_scores():
    # query 0 as in test_online_exact (gamma 1: [2/3, 1/3]); query 1: same references,
    # target Pr(x | theta) = [1.0, 0.25] -> r_x = [2, 0.444..] -> [3/3, 0/3]
    two = ReferenceSignals(
        np.concatenate([REF_X, REF_X], axis=2),
        MEMBER,
        LABELS,
        np.concatenate([REF_Z, REF_Z], axis=2),
        POP_LABELS,
    )
    target_x = np.concatenate([TARGET_X, [[1.0], [0.25]]], axis=1)
    target_z = np.concatenate([TARGET_Z, TARGET_Z], axis=1)
    scores = (
        RMIAOnline(gamma=1.0).fit(two).score(TargetSignals(target_x, LABELS, target_z, POP_LABELS))
    )
    q0 = (np.array([2, 1]) + g(np.array([1.5, 0.5]))) / 4
    q1 = (np.array([3, 0]) + g(np.array([2.0, 0.25 / 0.5625]))) / 4
    np.testing.assert_allclose(scores, (q0 + q1) / 2, rtol=1e-15)


def test_offline_exact():
    # a = 0.5: Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2
    # Pr_OUT(x0) = 0.25 (model 1), Pr_OUT(x1) = 0.25 (model 0) -> Pr(x) = 0.4375 for both
    # Pr_OUT(z) = 0.5 -> Pr(z) = 0.625
    # r_x = [0.75, 0.28125] / 0.4375 = [1.714.., 0.642..];  r_z = [0.8, 0.4, 1.6]
    # gamma 1: counts [3, 1]
    attack = RMIAOffline(a=0.5, gamma=1.0).fit(refs())
    np.testing.assert_allclose(attack.pr_x_[:, 0], [0.4375, 0.4375])
    np.testing.assert_allclose(attack.pr_z_[:, 0], [0.625] * 3)
    want = (np.array([3, 1]) + g(np.array([0.75, 0.28125]) / 0.4375)) / 4
    np.testing.assert_allclose(attack.score(target()), want, rtol=1e-15)
    assert attack.extra() == {}  # a fixed: nothing chosen


def test_offline_a_one_uses_out_average_and_a_zero_ignores_references():
    # a = 1: Pr(x) = Pr_OUT(x); a = 0: Pr(x) = (Pr_OUT(x) + 1) / 2.
    np.testing.assert_allclose(RMIAOffline(a=1.0).fit(refs()).pr_x_[:, 0], [0.25, 0.25])
    np.testing.assert_allclose(RMIAOffline(a=0.0).fit(refs()).pr_x_[:, 0], [0.625, 0.625])


def test_online_marginal_is_balanced_despite_unequal_in_out_counts():
    # Three IN and one OUT model: Pr(x) is still (mean IN + mean OUT) / 2, so the count of
    # IN references (which leave-one-out ties to the target's membership) cannot leak.
    values = np.array([[0.5], [0.5], [0.5], [0.25]])[:, :, None]
    member = np.array([[True], [True], [True], [False]])
    pop = np.full((4, 1, 1), 0.5)
    r = ReferenceSignals(values, member, np.array([0]), pop, np.array([0]))
    assert RMIAOnline().fit(r).pr_x_[0, 0] == pytest.approx(0.375)


def test_dominance_fraction_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    for gamma in (0.5, 1.0, 2.0):
        rx = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], size=(300, 3))  # many exact ties
        rz = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], size=(120, 3))
        brute = np.stack(
            [(np.divide.outer(rx[:, q], rz[:, q]) >= gamma).mean(axis=1) for q in range(3)], axis=1
        )
        np.testing.assert_array_equal(dominance_fraction(rx, rz, gamma), brute)


def test_temperature_enters_the_signal():
    assert RMIAOnline(temperature=2.0).signal().kwargs == {"temperature": 2.0}
    assert RMIAOffline().signal().name == "probability"  # Pr(x | theta), not the loss


def test_parameters_are_validated():
    with pytest.raises(ConfigError, match="rmia_offline"):
        RMIAOffline(a=1.5)
    with pytest.raises(ConfigError, match="rmia_offline"):
        RMIAOffline(a="best")
    with pytest.raises(ConfigError, match="gamma"):
        RMIAOnline(gamma=0)
    with pytest.raises(ConfigError, match="extra"):
        RMIAOnline(a=0.3)  # offline-only parameter


def test_population_is_required():
    with pytest.raises(DataError, match="population"):
        RMIAOnline().fit(ReferenceSignals(REF_X, MEMBER, LABELS))
    attack = RMIAOnline().fit(refs())
    with pytest.raises(DataError, match="population"):
        attack.score(TargetSignals(TARGET_X, LABELS))


# a: auto. Reference 0 is attacked with references 1 and 2 (its OUT models per sample).
# x0 is a member of reference 0, x1 not; reference 2 trained both (so it never enters
# their OUT mean), reference 1 neither: Pr_OUT(x0) = Pr_OUT(x1) = 0.5, and the
# population has Pr(z | ref 0) = Pr_OUT(z) = 1, so r_z = 1 for every a.
# x1: 0.25 < Pr(x1) for every a (Pr(x) >= Pr_OUT(x)): count 0.
# x0: 0.625 >= ((1 + a) 0.5 + 1 - a) / 2 = 0.75 - a / 4  iff  a >= 0.5: count 1.
# AUC is 1/2 for a < 0.5 and 1 from a = 0.5 on; the first best is a = 0.5.
AUTO_REF_X = np.array([[0.625, 0.25], [0.5, 0.5], [0.875, 0.875]])[:, :, None]
AUTO_MEMBER = np.array([[True, False], [False, False], [True, True]])
AUTO_REF_Z = np.ones((3, 1, 1))


def auto_refs():
    return ReferenceSignals(AUTO_REF_X, AUTO_MEMBER, LABELS, AUTO_REF_Z, POP_LABELS[:1])


def test_auto_a_exact():
    attack = RMIAOffline(gamma=1.0)
    hist = attack.chunk_summary(auto_refs())
    assert hist.shape == (len(A_GRID), 2, 2)  # queries x population + 1 = 2 score levels
    below, above = A_GRID < 0.5, A_GRID >= 0.5
    np.testing.assert_array_equal(hist[below], [[[1, 0], [1, 0]]] * below.sum())
    np.testing.assert_array_equal(hist[above], [[[1, 0], [0, 1]]] * above.sum())
    attack.fit(auto_refs())
    assert attack.extra() == {"a": 0.5, "a_reference_auc": 1.0}
    # the attack itself then uses a = 0.5 with all references: Pr_OUT = [0.5, 0.375]
    np.testing.assert_array_equal(attack.pr_x_[:, 0], [0.625, 0.53125])


def test_auc_from_histograms_counts_ties_half():
    # negatives at levels [0, 1, 1], positives at [1, 2]: pairs (1 vs 0) 1, (1 vs 1) 2 x 1/2,
    # (2 vs any) 3 -> (1 + 1 + 3) / 6
    num, den = auc_from_histograms(np.array([1, 2, 0]), np.array([0, 1, 1]))
    assert (num, den) == (10, 12)


def test_auto_a_falls_back_to_the_released_value_without_a_usable_reference():
    one = ReferenceSignals(REF_X[:1], np.zeros((1, 2), bool), LABELS, REF_Z[:1], POP_LABELS)
    # two complementary references: no non-member of reference 0 is OUT of reference 1
    pair = ReferenceSignals(REF_X, MEMBER, LABELS, REF_Z, POP_LABELS)
    for refs_ in (one, pair):
        attack = RMIAOffline().fit(refs_)
        assert attack.extra()["a"] == 0.33 and attack.extra()["a_reference_auc"] is None
        assert "too few reference models" in attack.extra()["a_note"]
        np.testing.assert_array_equal(attack.pr_x_, RMIAOffline(a=0.33).fit(refs_).pr_x_)


def test_auto_a_is_chunking_invariant_and_reported_per_target():
    from tests.scale.test_streaming import leaky

    outputs = leaky(num_models=6)
    whole = score_targets(
        [build_attack("rmia_offline")], outputs, [0, 2], chunk_size=4 * SAMPLE_BLOCK
    )
    chunked = score_targets(
        [build_attack("rmia_offline")], outputs, [0, 2], chunk_size=SAMPLE_BLOCK
    )
    np.testing.assert_array_equal(chunked.scores["rmia_offline"], whole.scores["rmia_offline"])
    assert chunked.extras["rmia_offline"] == whole.extras["rmia_offline"]
    assert [set(e) for e in whole.extras["rmia_offline"]] == [{"a", "a_reference_auc"}] * 2
