"""Boundary-distance attack: the batched HopSkipJump search, its budget and calibrations."""

import numpy as np
import pytest
from threat_setup import evaluate, leaky_setup

from mialens.attacks.base import QueryData, QueryReferences
from mialens.attacks.boundary import BoundaryAttack, SearchSettings, boundary_distances
from mialens.seeding import int_seed, rng
from mialens.targets import CallableTarget, LabelOnlyTarget

W = np.array([3.0, -1.0, 2.0, 0.5, 1.0])
B = 1.5


def linear_target() -> LabelOnlyTarget:
    """Class 1 iff w.x > b: the distance of x to the boundary is (b - w.x) / ||w||."""

    def logits(x):
        z = x.reshape(len(x), -1) @ W - B
        return np.stack([np.zeros_like(z), z], axis=1)

    return LabelOnlyTarget(CallableTarget(logits, 2, output="logits"))


def samples(n=40, seed=0):
    g = np.random.default_rng(seed)
    x = g.uniform(-1, 1, size=(n, W.size)).astype(np.float32)
    y = (x @ W > B).astype(np.int64)
    return x, y


def test_distances_of_a_linear_boundary_are_exact_upper_bounds():
    x, y = samples()
    target = linear_target()
    settings = SearchSettings(max_queries=400, init_eval=20, max_eval=100)
    dist, used = boundary_distances(target.labels, x, y, settings, seed=0, box=(-4.0, 4.0))
    true = np.abs(x @ W - B) / np.linalg.norm(W)
    # every visited point is misclassified, so the estimate never undercuts the truth
    # (up to the bisection's resolution), and on a flat boundary the search converges
    assert (dist >= true * (1 - 2**-9) - 1e-6).all()
    np.testing.assert_allclose(dist, true, rtol=0.05, atol=1e-3)
    assert used.max() <= 400
    assert target.queries == used.sum()  # the label-only view counted every query


def test_misclassified_samples_are_at_distance_zero_after_one_query():
    x, y = samples()
    wrong = 1 - y
    target = linear_target()
    dist, used = boundary_distances(
        target.labels, x, wrong, SearchSettings(max_queries=100), seed=0, box=(-4.0, 4.0)
    )
    assert (dist == 0).all() and (used == 1).all() and target.queries == len(x)


@pytest.mark.parametrize("budget", [30, 57, 131])
def test_the_query_budget_is_never_exceeded(budget):
    x, y = samples(seed=1)
    target = linear_target()
    _, used = boundary_distances(
        target.labels, x, y, SearchSettings(max_queries=budget), seed=3, box=(-4.0, 4.0)
    )
    assert used.max() <= budget
    assert used.max() >= budget - 12  # spent nearly to the end (a bisection is 10)
    assert target.queries == used.sum()


def test_the_budget_holds_when_starting_points_are_rare():
    # 64 features: a bisection is 10 queries, so a start found at the 20th uniform draw
    # (1 + 20 + 10 = 31 queries) would overrun a budget of 30; such draws are skipped
    def labels(b):
        return (b.reshape(len(b), -1)[:, :3].min(axis=1) > 0.45).astype(np.int64)

    x = np.random.default_rng(0).uniform(-1, 0, size=(400, 64)).astype(np.float32)
    y = np.zeros(400, np.int64)
    dist, used = boundary_distances(
        labels, x, y, SearchSettings(max_queries=30), seed=0, box=(-1.0, 1.0)
    )
    assert used.max() <= 30
    assert (dist < 16.0).any() and (dist == 16.0).any()  # some found a start, some did not


def test_search_is_seeded():
    x, y = samples()
    args = (x, y, SearchSettings(max_queries=120), 7, (-4.0, 4.0))
    a, _ = boundary_distances(linear_target().labels, *args)
    b, _ = boundary_distances(linear_target().labels, *args)
    np.testing.assert_array_equal(a, b)


def test_unsupervised_threshold_is_the_percentile_of_random_input_distances():
    x, y = samples(60)
    data = QueryData(x, y, seed=5)
    attack = BoundaryAttack(max_queries=80, calibration_samples=20, top_t=30).fit()
    target = linear_target()
    scores = attack.prepare(target, data).score(target, data)
    # the attack's random inputs and search, reproduced from its seeds
    box = (float(x.min()), float(x.max()))
    noise = rng(5, "boundary-unsupervised").random((20, W.size)) * (box[1] - box[0]) + box[0]
    noise = noise.astype(np.float32)
    own = linear_target().labels(noise)
    settings = SearchSettings.of(attack.params)
    ref, ref_used = boundary_distances(
        linear_target().labels, noise, own, settings, int_seed(5, "boundary-random"), box
    )
    dist, used = boundary_distances(linear_target().labels, x, y, settings, 5, box)
    assert attack.threshold_ == pytest.approx(np.percentile(ref, 30))
    np.testing.assert_allclose(scores, dist - attack.threshold_)
    # every query counts: the random inputs' labels, their searches, the samples' searches
    assert target.queries == 20 + ref_used.sum() + used.sum()


def test_references_are_needed_only_for_supervised_calibration():
    assert BoundaryAttack().needs.references == "none"
    assert BoundaryAttack(calibration="none").needs.references == "none"
    assert BoundaryAttack(calibration="supervised").needs.references == "offline"
    # the per-target step is the unsupervised calibration
    assert BoundaryAttack().needs.target_step
    assert not BoundaryAttack(calibration="none").needs.target_step
    assert not BoundaryAttack(calibration="supervised").needs.target_step


def test_supervised_calibration_needs_only_the_reference_labels():
    # any queryable reference model will do (here not a torch module): members are the
    # samples far from the boundary, so the threshold separates them exactly
    x, y = samples(60)
    far = np.abs(x @ W - B) / np.linalg.norm(W) > 0.3
    refs = QueryReferences([linear_target().inner], far[None], QueryData(x, y, seed=2))
    attack = BoundaryAttack(calibration="supervised", calibration_samples=60).fit(refs)
    assert attack.extra()["calibration_balanced_accuracy"] == pytest.approx(1.0)
    assert 0.25 < attack.threshold_ < 0.35


def test_boundary_distance_separates_members_on_a_leaky_setup():
    setup = leaky_setup("tabular")
    result = evaluate(BoundaryAttack(max_queries=150, calibration_samples=20), setup)
    assert result["auc"] > 0.75
    # 150 per sample plus the calibration's 20 random inputs (their labels and searches)
    assert result["queries"] <= 150 + 20 * 151 / len(setup.data.labels)


def test_supervised_calibration_on_a_reference_model():
    setup = leaky_setup("tabular")
    attack = BoundaryAttack(max_queries=100, calibration="supervised", calibration_samples=40)
    result = evaluate(attack, setup, targets=(0,))
    assert result["auc"] > 0.7
    fitted = BoundaryAttack(max_queries=100, calibration="supervised", calibration_samples=40)
    fitted.fit(QueryReferences(setup.models[1:], setup.member[1:], setup.data))
    assert fitted.extra()["calibration_balanced_accuracy"] > 0.6
    assert fitted.threshold_ > 0


def no_defence_run(monkeypatch):
    """A label-preserving output defence whose answers must not be computed."""
    from mialens.defenses.output import build_output_defense

    defense = build_output_defense("top_k")
    monkeypatch.setattr(defense, "apply", lambda z: pytest.fail("the defence ran"))
    return defense


def test_supervised_calibration_asks_the_reference_for_labels(monkeypatch):
    # the reference's labels are label queries: a defended reference answers them as it
    # answers labels (a label-preserving defence by the model's own label, not run), and
    # an undefended one gives exactly the arg-max of its logits, as before
    from mialens.attacks.threshold import best_threshold
    from mialens.defenses.apply import DefendedTarget

    x, y = samples(60)
    far = np.abs(x @ W - B) / np.linalg.norm(W) > 0.3
    data = QueryData(x, y, seed=2)
    params = {"calibration": "supervised", "calibration_samples": 30, "max_queries": 60}
    plain = BoundaryAttack(**params).fit(QueryReferences([linear_target().inner], far[None], data))
    defended_ref = DefendedTarget(linear_target().inner, no_defence_run(monkeypatch))
    defended = BoundaryAttack(**params).fit(QueryReferences([defended_ref], far[None], data))
    assert defended.threshold_ == plain.threshold_
    # the threshold from the arg-max of the reference's logits, reproduced from the seeds
    pick = rng(2, "boundary-calibration")
    rows = np.concatenate(
        [
            pick.choice(np.flatnonzero(far), 15, replace=False),
            pick.choice(np.flatnonzero(~far), 15, replace=False),
        ]
    )
    ref = linear_target().inner
    dist, used = boundary_distances(
        lambda b: ref.logits(b).argmax(axis=-1),
        x[rows],
        y[rows],
        SearchSettings.of(plain.params),
        int_seed(2, "boundary-supervised"),
        (float(x.min()), float(x.max())),
    )
    assert plain.threshold_ == best_threshold(dist[far[rows]], dist[~far[rows]])
    assert defended_ref.queries == defended_ref.inner.queries == used.sum()
