"""Output defences: exact values and label preservation."""

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from mialens.defenses.output import (
    OUTPUT_DEFENSES,
    DefenderData,
    HampOutput,
    LabelOnly,
    LogitReweighting,
    MemGuard,
    ProbabilityNoise,
    ReverseSigmoid,
    Rounding,
    Temperature,
    TopK,
    build_output_defense,
)
from mialens.errors import ConfigError, UnknownNameError
from mialens.targets.adapters import CallableTarget

Z = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 0.5, 0.5], [1.0, 1.0, 4.0, 0.0]])


def probs(logits):
    return softmax(np.asarray(logits, dtype=np.float64), axis=1)


def random_logits(n=300, c=5, seed=0):
    return np.random.default_rng(seed).normal(0, 3, size=(n, c))


def fitted(defense, z):
    rng = np.random.default_rng(1)
    labels = z.argmax(axis=1)
    data = DefenderData(
        member_logits=z,
        member_labels=labels,
        nonmember_logits=z * 0.3 + rng.normal(0, 1, z.shape),
        random_logits=rng.normal(0, 1, z.shape),
    )
    return defense.fit(data)


@pytest.mark.parametrize("name", sorted(OUTPUT_DEFENSES))
def test_label_preserving_defences_keep_every_label(name):
    z = random_logits()
    defense = fitted(build_output_defense(name), z)
    out = defense.apply(z)
    assert out.shape == z.shape and np.isfinite(out).all()
    if defense.label_preserving:
        np.testing.assert_array_equal(out.argmax(axis=1), z.argmax(axis=1))


def test_top_k_releases_the_k_largest_exactly_and_spreads_the_rest():
    out = probs(TopK(k=2).apply(Z))
    p = probs(Z)
    # row 0: classes 0, 1 kept; classes 2, 3 share the remaining mass equally
    np.testing.assert_allclose(out[0, :2], p[0, :2], rtol=1e-6)
    np.testing.assert_allclose(out[0, 2:], [(1 - p[0, :2].sum()) / 2] * 2, rtol=1e-6)


def test_rounding_and_temperature():
    out = probs(Rounding(decimals=1).apply(Z))
    expected = np.maximum(np.round(probs(Z), 1), 0.025)  # a released 0 is below 0.05
    np.testing.assert_allclose(out, expected / expected.sum(axis=1, keepdims=True), atol=1e-7)
    np.testing.assert_allclose(
        probs(Temperature(temperature=2.0).apply(Z)), probs(Z / 2), rtol=1e-6
    )


def test_rounded_answers_are_read_as_the_adapters_read_rounded_probabilities():
    # the adaptive adversary knows the answers are rounded: a released 0 stands for a
    # probability below 10^-d / 2, read at 10^-d / 4 as a model's own rounded outputs
    rounded = np.round(probs(Z), 1)
    assert rounded[0, 3] == 0  # row 0 rounds to [0.6, 0.2, 0.1, 0.0]
    served = CallableTarget(lambda x: rounded, num_classes=4).logits(np.zeros((3, 1)))
    out = Rounding(decimals=1).apply(Z)
    np.testing.assert_allclose(out, served, atol=1e-6)
    np.testing.assert_allclose(out[0], np.log(np.array([0.6, 0.2, 0.1, 0.025]) / 0.925), rtol=1e-6)
    # every class rounded to 0 (all below 1/2) reads as uniform; a 1 keeps its 0s at 1/4
    flat = probs(Rounding(decimals=0).apply(np.array([[0.0, 0.0, 0.0, 0.0], [9.0, 0, 0, 0]])))
    np.testing.assert_allclose(flat, [[0.25] * 4, [4 / 7, 1 / 7, 1 / 7, 1 / 7]], rtol=1e-6)


def test_label_only_is_one_hot():
    out = probs(LabelOnly().apply(Z))
    np.testing.assert_allclose(out, np.eye(4)[[0, 1, 2]], atol=1e-12)
    # exact zeros, unlike rounded ones, keep the floor of exact probabilities
    assert LabelOnly().apply(Z).min() == np.float32(np.log(1e-30))


def test_reverse_sigmoid_formula():
    beta, gamma = 0.6, 0.2
    p = np.clip(probs(Z), 1e-9, 1 - 1e-9)
    y = p - beta * (expit(gamma * logit(p)) - 0.5)
    expected = y / y.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        probs(ReverseSigmoid(beta=beta, gamma=gamma).apply(Z)), expected, rtol=1e-6
    )


def test_noise_is_seeded_fresh_per_answer_and_unbiased():
    z = np.tile(Z[:1], (4000, 1))
    a = probs(ProbabilityNoise(sigma=0.05, seed=3).apply(z))
    b = probs(ProbabilityNoise(sigma=0.05, seed=3).apply(z))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # every answer draws new noise
    np.testing.assert_allclose(a.mean(axis=0), probs(Z[:1])[0], atol=0.01)


def test_logit_reweighting_hand_computed():
    # centroids: class 0 from rows [2, 0] and [4, 0] -> [3, 0]; class 1 from [0, 2] -> [0, 2]
    train = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 2.0]])
    defense = LogitReweighting(w=0.5).fit(DefenderData(train, np.array([0, 0, 1])))
    query = np.array([[1.0, 1.0]])  # predicted class 0 (first arg-max)
    # cos([1, 1], [3, 0]) = 1/sqrt(2); a = 0.5 / sqrt(2)
    a = 0.5 / np.sqrt(2)
    np.testing.assert_allclose(defense.apply(query), [[(1 - a) + 3 * a, (1 - a)]], rtol=1e-6)


def test_logit_reweighting_never_changes_the_label_even_with_a_misleading_centroid():
    train = np.array([[0.0, 5.0], [0.0, 5.0]])  # class-0 "training" logits point to class 1
    defense = LogitReweighting(w=1.0).fit(DefenderData(train, np.array([0, 0])))
    query = np.array([[1.0, 0.9]])
    out = defense.apply(query)
    assert out.argmax() == 0
    np.testing.assert_allclose(out, query)  # the mixture would flip it: released unchanged


def test_hamp_output_keeps_ranking_and_uses_random_inputs_scores():
    z = random_logits(50, 4)
    donors = random_logits(20, 4, seed=5)
    defense = HampOutput(seed=0).fit(DefenderData(z, z.argmax(1), random_logits=donors))
    out = probs(defense.apply(z))
    np.testing.assert_array_equal(np.argsort(-out, axis=1), np.argsort(-z, axis=1))
    sorted_donors = -np.sort(-probs(donors), axis=1)
    for row in -np.sort(-out, axis=1):
        assert np.isclose(sorted_donors, row, rtol=1e-5).all(axis=1).any()


def test_memguard_fools_its_own_classifier_within_budget():
    rng = np.random.default_rng(0)
    members = rng.normal(0, 1, (400, 5))
    members[np.arange(400), rng.integers(0, 5, 400)] += 6.0  # confident
    nonmembers = rng.normal(0, 1, (400, 5))
    nonmembers[np.arange(400), rng.integers(0, 5, 400)] += 1.5
    defense = MemGuard(epsilon=2.0, steps=150).fit(
        DefenderData(members, members.argmax(1), nonmember_logits=nonmembers)
    )
    before = np.abs(defense.membership(members) - 0.5).mean()
    out = defense.apply(members)
    after = np.abs(defense.membership(out) - 0.5).mean()
    assert after < before / 2
    np.testing.assert_array_equal(out.argmax(1), members.argmax(1))
    assert np.abs(probs(out) - probs(members)).sum(axis=1).mean() <= 2.0 + 0.1


def test_unknown_and_invalid():
    with pytest.raises(UnknownNameError, match="Did you mean 'top_k'"):
        build_output_defense("topk")
    with pytest.raises(ConfigError, match="k"):
        build_output_defense({"name": "top_k", "k": 0})
    with pytest.raises(RuntimeError, match="fit"):
        LogitReweighting().apply(Z)


def test_selective_reweighting_touches_only_atypical_queries():
    from mialens.defenses.output import SelectiveLogitReweighting

    rng = np.random.default_rng(0)
    typical = np.array([5.0, 0.0, 0.0]) + rng.normal(0, 0.3, (200, 3))
    defense = SelectiveLogitReweighting(w=0.5, quantile=0.1).fit(
        DefenderData(typical, np.zeros(200, int))
    )
    centroid = defense.centroids_[0]
    queries = np.array([[5.0, 0.1, 0.0], [2.0, 1.9, 0.0]])  # typical, then atypical
    out = defense.apply(queries)
    np.testing.assert_allclose(out[0], queries[0], rtol=1e-6)  # released unchanged
    np.testing.assert_allclose(out[1], 0.5 * queries[1] + 0.5 * centroid, rtol=1e-5)
    # about `quantile` of the training members themselves count as atypical
    changed = ~np.isclose(defense.apply(typical), typical, rtol=1e-6).all(axis=1)
    assert 0.05 < changed.mean() < 0.15


@pytest.mark.parametrize("name", ["noise", "hamp_output"])
def test_randomised_defences_draw_independent_noise_per_model(name):
    from mialens.defenses.apply import fit_per_model

    z = random_logits(200, 5)
    donors = [random_logits(50, 5, seed=9)] * 3  # the same model three times
    fitted = fit_per_model(build_output_defense(name), [z] * 3, [z.argmax(1)] * 3, None, donors)
    a, b, c = (d.apply(z) for d in fitted)
    assert not np.allclose(a, b) and not np.allclose(b, c)  # target and references differ
    again = fit_per_model(build_output_defense(name), [z] * 3, [z.argmax(1)] * 3, None, donors)
    np.testing.assert_array_equal(again[1].apply(z), b)  # still deterministic


# noise redraws the rejected rows of a batch from one stream: same law, other draws
@pytest.mark.parametrize("name", sorted(set(OUTPUT_DEFENSES) - {"noise"}))
def test_a_batch_releases_what_its_answers_would_one_by_one(name):
    z = random_logits(40, 5, seed=3)
    batched = fitted(build_output_defense(name), random_logits()).apply(z)
    single = fitted(build_output_defense(name), random_logits())
    one_by_one = np.concatenate([single.apply(z[i : i + 1]) for i in range(len(z))])
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)


def test_memguard_batches_keep_every_label_even_at_near_ties():
    z = random_logits(500, 5, seed=4)
    top = z.argmax(axis=1)
    z[:100, (top[:100] + 1) % 5] = z[:100, top[:100]] - 1e-7  # a rival within float32 noise
    defense = fitted(MemGuard(steps=50), random_logits())
    out = defense.apply(z)
    np.testing.assert_array_equal(out.argmax(axis=1), z.argmax(axis=1))
    assert (np.abs(probs(out) - probs(z)).sum(axis=1) > 1e-3).mean() > 0.2  # noise was added


def test_memguard_gradient_matches_finite_differences():
    from mialens.defenses.output import _memguard_gradient

    defense = fitted(MemGuard(steps=1), random_logits())
    z = random_logits(6, 5, seed=5)
    s, label = probs(z), z.argmax(axis=1)
    noisy = z + np.random.default_rng(6).normal(0, 0.3, z.shape)

    def loss(v):
        sp = probs(v)
        others = np.where(np.arange(5) == label[:, None], -np.inf, v)
        keep = np.maximum(others.max(axis=1) - v[np.arange(6), label] + 1e-3, 0)
        return np.abs(defense.membership(v) - 0.5) + 10.0 * keep + 0.1 * np.abs(sp - s).sum(1)

    grad = _memguard_gradient(noisy, s, label, defense.classifier_, 10.0, 0.1)
    h = 1e-6
    for j in range(5):
        step = np.zeros_like(noisy)
        step[:, j] = h
        numeric = (loss(noisy + step) - loss(noisy - step)) / (2 * h)
        np.testing.assert_allclose(grad[:, j], numeric, rtol=1e-4, atol=1e-6)
