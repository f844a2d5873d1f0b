"""The scoring engine: leave-one-out wiring, validation and a seeded leaky setup."""

import numpy as np
import pytest

from mialens.attacks import DEFAULT_ATTACKS, ReferenceSignals, TargetSignals, build_attack
from mialens.audit.engine import ModelOutputs, score_targets
from mialens.errors import DataError
from mialens.metrics import tpr_at_fpr
from mialens.signals.statistics import loss, rescaled_logit
from mialens.splits import keep_mask


def leaky_outputs(num_models=16, n=2000, z=1000, seed=0):
    """Two-class logits ``[phi, 0]`` (true class first) whose logit-scaled confidence
    ``phi`` is a per-sample difficulty plus a membership shift plus model noise: a
    heterogeneous setup where calibrating per sample with reference models pays off."""
    rng = np.random.default_rng(seed)
    member = keep_mask(num_models, n, seed)
    difficulty = rng.normal(0.0, 3.0, size=n)
    phi = difficulty + 1.0 * member + rng.normal(0.0, 0.5, size=(num_models, n))
    labels = rng.integers(0, 2, size=n)
    logits = np.zeros((num_models, n, 1, 2))
    logits[np.arange(num_models)[:, None], np.arange(n), 0, labels] = phi
    pop_difficulty = rng.normal(0.0, 3.0, size=z)
    pop_phi = pop_difficulty + rng.normal(0.0, 0.5, size=(num_models, z))
    pop_labels = rng.integers(0, 2, size=z)
    pop = np.zeros((num_models, z, 1, 2))
    pop[np.arange(num_models)[:, None], np.arange(z), 0, pop_labels] = pop_phi
    return ModelOutputs(logits, member, labels, pop, pop_labels)


def test_reference_attacks_beat_loss_at_low_fpr_on_a_leaky_setup():
    outputs = leaky_outputs()
    attacks = [build_attack(name) for name in DEFAULT_ATTACKS]
    scores = score_targets(attacks, outputs, targets=[0, 5, 10]).scores
    members = outputs.member[[0, 5, 10]]

    def tpr(name):
        return np.mean([tpr_at_fpr(s, m, 0.01) for s, m in zip(scores[name], members, strict=True)])

    assert tpr("loss") < 0.05
    for name in ("lira_online", "lira_offline", "rmia_online", "rmia_offline"):
        assert tpr(name) > 0.15, name
        assert tpr(name) > 5 * tpr("loss"), name


def test_each_target_is_scored_against_all_other_models():
    # Model r adds r to its logits of every sample, so a fit depends on exactly which
    # models are the references.
    n, m = 6, 4
    member = keep_mask(m, n, 1)
    base = np.zeros((m, n, 1, 2))
    base[:, :, 0, 0] = np.arange(m)[:, None] + 0.1 * member
    outputs = ModelOutputs(base, member, np.zeros(n, int))
    attack = build_attack("loss")
    scores = score_targets([attack], outputs, targets=[2, 0]).scores
    # LOSS uses the target only: rows follow the requested target order
    logits = outputs.logits[:, :, 0]
    np.testing.assert_array_equal(scores["loss"][0], -loss(logits[2], np.zeros(n, int)))
    np.testing.assert_array_equal(scores["loss"][1], -loss(logits[0], np.zeros(n, int)))

    lira = build_attack({"name": "lira_offline", "variance": "per_example"})
    got = score_targets([lira], outputs, targets=[3]).scores["lira_offline"][0]
    phi = rescaled_logit(outputs.logits[:, :, 0], np.zeros(n, int))[:, :, None]
    manual = build_attack({"name": "lira_offline", "variance": "per_example"})
    manual.fit(ReferenceSignals(phi[[0, 1, 2]], member[[0, 1, 2]], np.zeros(n, int)))
    np.testing.assert_allclose(got, manual.score(TargetSignals(phi[3], np.zeros(n, int))))


def test_model_outputs_validation():
    member = keep_mask(2, 4, 0)
    good = np.zeros((2, 4, 3))
    with pytest.raises(DataError, match="NaN"):
        bad = good.copy()
        bad[1, 2, 0] = np.nan
        ModelOutputs(bad, member, np.zeros(4, int))
    with pytest.raises(DataError, match="label 3"):
        ModelOutputs(good, member, np.array([0, 1, 2, 3]))
    with pytest.raises(DataError, match="shape"):
        ModelOutputs(good, member[:, :3], np.zeros(4, int))
    with pytest.raises(DataError, match="population logits"):
        ModelOutputs(good, member, np.zeros(4, int), np.zeros((2, 5, 2, 3)), np.zeros(5, int))
    with pytest.raises(DataError, match="population"):
        score_targets(
            [build_attack("rmia_offline")], ModelOutputs(good, member, np.zeros(4, int)), [0]
        )
