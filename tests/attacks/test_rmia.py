"""RMIA (Zarifzadeh et al. 2024): exact values on dyadic hand-computed arrays."""

import numpy as np
import pytest

from mialens.attacks import ReferenceSignals, TargetSignals
from mialens.attacks.rmia import RMIAOffline, RMIAOnline, dominance_fraction
from mialens.errors import ConfigError, DataError

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


@pytest.mark.parametrize(("gamma", "expected"), [(1.0, [2 / 3, 1 / 3]), (2.0, [1 / 3, 0.0])])
def test_online_exact(gamma, expected):
    # Pr(x0) = (0.75 [IN] + 0.25 [OUT]) / 2 = 0.5;  Pr(x1) = (0.875 + 0.25) / 2 = 0.5625
    # Pr(z) = [0.5, 0.5, 0.5]
    # r_x = [0.75 / 0.5, 0.28125 / 0.5625] = [1.5, 0.5];  r_z = [1, 0.5, 2]
    # gamma 1: x0 dominates z with r_z <= 1.5 (two), x1 those with r_z <= 0.5 (one, a tie)
    # gamma 2: x0 those with r_z <= 0.75 (one), x1 those with r_z <= 0.25 (none)
    attack = RMIAOnline(gamma=gamma).fit(refs())
    np.testing.assert_array_equal(attack.pr_x_[:, 0], [0.5, 0.5625])
    np.testing.assert_array_equal(attack.score(target()), expected)


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
    scores = RMIAOnline().fit(two).score(TargetSignals(target_x, LABELS, target_z, POP_LABELS))
    np.testing.assert_allclose(scores, [(2 / 3 + 1) / 2, (1 / 3 + 0) / 2], rtol=1e-15)


def test_offline_exact():
    # a = 0.5: Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2
    # Pr_OUT(x0) = 0.25 (model 1), Pr_OUT(x1) = 0.25 (model 0) -> Pr(x) = 0.4375 for both
    # Pr_OUT(z) = 0.5 -> Pr(z) = 0.625
    # r_x = [0.75, 0.28125] / 0.4375 = [1.714.., 0.642..];  r_z = [0.8, 0.4, 1.6]
    attack = RMIAOffline(a=0.5).fit(refs())
    np.testing.assert_allclose(attack.pr_x_[:, 0], [0.4375, 0.4375])
    np.testing.assert_allclose(attack.pr_z_[:, 0], [0.625] * 3)
    np.testing.assert_array_equal(attack.score(target()), [1.0, 1 / 3])


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
