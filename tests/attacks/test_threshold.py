"""LOSS (Yeom et al.) and Song & Mittal class-threshold attacks: exact values."""

import numpy as np
import pytest

from mialens.attacks import ModelSignals, ReferenceSignals, TargetSignals
from mialens.attacks.threshold import (
    ConfidenceAttack,
    EntropyAttack,
    LossAttack,
    ModifiedEntropyAttack,
    best_threshold,
)
from mialens.errors import DataError


def test_loss_score_is_negated_loss_of_first_query():
    values = np.array([[0.5, 9.0], [2.0, 9.0], [0.0, 9.0]])
    scores = LossAttack().fit().score(TargetSignals(values, np.array([0, 1, 0])))
    np.testing.assert_array_equal(scores, [-0.5, -2.0, -0.0])


def test_best_threshold_maximises_balanced_accuracy():
    # candidates 0.2 .. 0.9; balanced accuracy (TPR + TNR) / 2:
    # t=0.2: (1 + 0)/2, 0.3: (1 + 1/3)/2, 0.4: (1 + 2/3)/2 = 5/6, 0.7: (2/3 + 2/3)/2,
    # 0.8: (2/3 + 1)/2 = 5/6, 0.9: (1/3 + 1)/2  -> smallest maximiser 0.4
    assert best_threshold(np.array([0.9, 0.8, 0.4]), np.array([0.7, 0.3, 0.2])) == 0.4


def _refs(values, member, labels):
    return ReferenceSignals(
        np.asarray(values, float)[:, :, None], np.asarray(member), np.asarray(labels)
    )


def test_class_thresholds_and_scores():
    # two reference models, four samples (labels 1, 0, 1, 0), confidence values
    values = [[0.9, 0.6, 0.3, 0.2], [0.4, 0.8, 0.95, 0.1]]
    member = [[True, False, False, True], [False, True, True, False]]
    labels = [1, 0, 1, 0]
    attack = ConfidenceAttack().fit(_refs(values, member, labels))
    # class 0: IN {0.2, 0.8}, OUT {0.6, 0.1}: t=0.1: (1+0)/2, 0.2: (1+1/2)/2 = 0.75,
    #          0.6: (1/2 + 1/2)/2, 0.8: (1/2 + 1)/2 = 0.75 -> 0.2
    # class 1: IN {0.9, 0.95}, OUT {0.3, 0.4}: 0.9 gives (1 + 1)/2 -> 0.9
    np.testing.assert_array_equal(attack.thresholds_, [0.2, 0.9])
    target = TargetSignals(np.array([[0.5], [0.5], [0.95], [0.1]]), np.array(labels))
    np.testing.assert_allclose(attack.score(target), [0.5 - 0.9, 0.5 - 0.2, 0.95 - 0.9, 0.1 - 0.2])


def test_class_without_members_falls_back_to_the_global_threshold():
    values = [[0.9, 0.5, 0.2], [0.3, 0.6, 0.8]]
    member = [[True, False, False], [False, False, True]]  # class 1 (sample 1) never IN
    attack = ConfidenceAttack().fit(_refs(values, member, [0, 1, 2]))
    all_in = np.array([0.9, 0.8])
    all_out = np.array([0.5, 0.2, 0.3, 0.6])
    assert attack.thresholds_[1] == best_threshold(all_in, all_out)


def test_entropy_attacks_negate_the_metric():
    values = [[0.1, 2.0], [1.5, 0.2]]  # entropy: low for members
    member = [[True, False], [False, True]]
    for cls in (EntropyAttack, ModifiedEntropyAttack):
        attack = cls().fit(_refs(values, member, [0, 0]))
        # class 0: -entropy IN {-0.1, -0.2}, OUT {-2.0, -1.5} -> threshold -0.2
        assert attack.thresholds_[0] == pytest.approx(-0.2)
        score = attack.score(TargetSignals(np.array([[0.05], [3.0]]), np.array([0, 0])))
        np.testing.assert_allclose(score, [-0.05 + 0.2, -3.0 + 0.2])


def test_score_rejects_labels_never_seen_when_fitting():
    attack = ConfidenceAttack().fit(
        _refs([[0.9, 0.1], [0.2, 0.8]], [[True, False], [False, True]], [0, 1])
    )
    with pytest.raises(DataError, match="never seen"):
        attack.score(TargetSignals(np.array([[0.5]]), np.array([5])))


def test_each_attack_reads_its_own_statistic():
    names = {
        cls.name: cls().signal().name
        for cls in (LossAttack, ConfidenceAttack, EntropyAttack, ModifiedEntropyAttack)
    }
    assert names == {
        "loss": "loss",
        "confidence": "confidence",
        "entropy": "entropy",
        "mentr": "modified_entropy",
    }


@pytest.mark.parametrize("cls", [ConfidenceAttack, EntropyAttack, ModifiedEntropyAttack])
@pytest.mark.parametrize("zeros", [False, True])
def test_leaving_out_equals_the_refit_on_the_references_exactly(cls, zeros):
    gen = np.random.default_rng(3)
    values = gen.integers(-6, 6, size=(5, 60, 1)) / 4 + 0.125  # ties within and across models
    if zeros:  # both signed zeros: the refit decides which one a threshold is
        values[0, :6, 0], values[1, :6, 0] = 0.0, -0.0
    member = gen.random((5, 60)) < 0.5
    samples = np.arange(60)
    member[samples % 5, samples] = member[(samples + 1) % 5, samples] = False  # two OUT models
    labels = gen.permutation(np.arange(60) % 5)
    labels[labels == 2] = 3  # class 2 has no sample; class 4 no member in some references
    member[:, labels == 4] = False
    member[0, np.flatnonzero(labels == 4)[0]] = True
    models = ModelSignals(values, member, labels)
    for target in range(5):
        fast = cls().fit_leaving_out(models, target).thresholds_
        refit = cls().fit(models.references(target)).thresholds_
        assert fast.tobytes() == refit.tobytes()
