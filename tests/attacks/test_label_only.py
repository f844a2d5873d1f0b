"""Label-only attacks: gap and augmentation (correctness under perturbations)."""

import numpy as np
import pytest
from threat_setup import assert_trained_to_convergence, evaluate, leaky_setup

from mialens.attacks.base import QueryData, QueryReferences
from mialens.attacks.label_only import (
    AugmentationAttack,
    AugmentationParams,
    GapAttack,
    correctness,
    perturbation_views,
)
from mialens.targets import CallableTarget, LabelOnlyTarget


def sign_target() -> LabelOnlyTarget:
    """Class 1 iff the features sum to more than 0."""

    def logits(x):
        z = x.reshape(len(x), -1).sum(axis=1)
        return np.stack([np.zeros_like(z), z], axis=1)

    return LabelOnlyTarget(CallableTarget(logits, 2, output="logits"))


def test_gap_scores_correctness():
    x = np.array([[1.0], [-2.0], [3.0]], np.float32)
    y = np.array([1, 1, 0])
    target = sign_target()
    np.testing.assert_array_equal(GapAttack().fit().score(target, QueryData(x, y)), [1, 0, 0])
    assert target.queries == 3


def test_correctness_matrix_exact():
    x = np.array([[0.5], [-0.5]], np.float32)
    y = np.array([1, 1])
    views = [lambda b: b, lambda b: b - 1.0, lambda b: b + 1.0]
    got = correctness(sign_target().labels, x, y, views)
    np.testing.assert_array_equal(got, [[True, False, True], [False, False, True]])


def test_bit_flip_views_are_seeded_and_flip_at_the_given_rate():
    x = (np.random.default_rng(0).random((400, 50)) < 0.3).astype(np.float32)
    params = AugmentationParams(num_noise=3, flip_prob=0.1)
    views = perturbation_views(params, x, seed=1)
    assert len(views) == 4
    np.testing.assert_array_equal(views[0](x), x)  # the unmodified query comes first
    flipped = views[1](x)
    assert set(np.unique(flipped)) <= {0.0, 1.0}
    assert abs((flipped != x).mean() - 0.1) < 0.01
    np.testing.assert_array_equal(flipped, perturbation_views(params, x, seed=1)[1](x))
    assert not np.array_equal(flipped, views[2](x))


def test_gaussian_views_scale_with_the_feature_range():
    x = np.random.default_rng(0).uniform(-2, 2, (500, 40)).astype(np.float32)
    views = perturbation_views(AugmentationParams(num_noise=1, noise_std=0.05), x, seed=0)
    noise = views[1](x) - x
    assert noise.std() == pytest.approx(0.05 * (x.max() - x.min()), rel=0.05)


def test_image_views_are_flips_and_shifts():
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert len(perturbation_views(AugmentationParams(), x, seed=0)) == 9
    assert len(perturbation_views(AugmentationParams(flip=True), x, seed=0)) == 18
    assert len(perturbation_views(AugmentationParams(shift=2), x, seed=0)) == 25


def test_threshold_scorer_is_the_fraction_of_correct_queries():
    x = np.array([[5.0], [0.02], [-5.0]], np.float32)
    y = np.array([1, 1, 1])
    attack = AugmentationAttack(
        scorer="threshold", perturbation="gaussian", num_noise=9, noise_std=0.1
    ).fit()
    target = sign_target()
    scores = attack.score(target, QueryData(x, y))
    assert scores[0] == 1.0 and scores[2] == 0.0 and 0 < scores[1] < 1
    # exactly the fraction of the seeded views (unmodified first) still labelled 1
    views = perturbation_views(attack.params, x, seed=0)
    expected = np.mean([(v(x)[:, 0] > 0) == 1 for v in views], axis=0)
    np.testing.assert_array_equal(scores, expected)
    assert target.queries == 3 * 10  # the unmodified query and 9 noisy ones per sample
    assert attack.needs.references == "none"
    assert AugmentationAttack().needs.references == "offline"


def test_logistic_scorer_on_a_leaky_setup():
    setup = leaky_setup("tabular")
    result = evaluate(AugmentationAttack(), setup)
    assert result["auc"] > 0.7
    assert result["queries"] == 31  # unmodified + 30 noisy queries
    fitted = AugmentationAttack().fit(
        QueryReferences(setup.models[1:], setup.member[1:], setup.data)
    )
    assert len(fitted.extra()["logistic_coefficients"]) == 31
    assert_trained_to_convergence([fitted.extra()])  # lbfgs within its iteration cap


def test_image_augmentations_on_leaky_digits():
    setup = leaky_setup("digits")
    result = evaluate(AugmentationAttack(), setup)
    assert result["queries"] == 9
    assert result["auc"] > 0.55


def test_logistic_scorer_asks_the_references_for_labels(monkeypatch):
    # reference models answer label queries as the target does: a label-preserving
    # defence by the model's own label (the defence is not run); undefended, the
    # correctness features are exactly those of the arg-max of the logits, as before
    from mialens.attacks.attack_models import fit_classifier
    from mialens.defenses.apply import DefendedTarget
    from mialens.defenses.output import build_output_defense

    g = np.random.default_rng(4)
    x = g.normal(0, 1, (60, 3)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    member = g.random((2, 60)) < 0.5
    data = QueryData(x, y, seed=3)
    params = {"perturbation": "gaussian", "num_noise": 4, "noise_std": 0.3}
    plain_refs = [sign_target().inner, sign_target().inner]
    plain = AugmentationAttack(**params).fit(QueryReferences(plain_refs, member, data))
    defense = build_output_defense("top_k")
    monkeypatch.setattr(defense, "apply", lambda z: pytest.fail("the defence ran"))
    defended_refs = [DefendedTarget(sign_target().inner, defense) for _ in range(2)]
    defended = AugmentationAttack(**params).fit(QueryReferences(defended_refs, member, data))
    assert defended.coefficients_ == plain.coefficients_
    assert all(r.queries == r.inner.queries == 60 * 5 for r in defended_refs)
    views = perturbation_views(plain.params, x, 3)
    feats = [
        correctness(lambda b, m=m: m.logits(b).argmax(axis=-1), x, y, views) for m in plain_refs
    ]
    expected = fit_classifier(
        np.concatenate(feats).astype(np.float64), member.ravel(), "logistic", 3
    )
    assert plain.coefficients_ == expected.model.coef_[0].tolist()
