"""Leave-one-out moments from sums over all models, and the attacks fitted from them,
against a refit on each target's references."""

import numpy as np
import pytest

from mialens.attacks import ModelSignals, build_attack
from mialens.attacks.rmia import binned_histogram, dominance_counts, histogram_bounds
from mialens.errors import DataError
from mialens.metrics import attack_metrics
from mialens.signals.leave_one_out import leave_out, side_moments
from mialens.splits import keep_mask

# Five models, three samples, one query. Sample ids [7, 2, 9] (as held by the audit):
# sample 7: all OUT, values [0, 2, 4, 6, 8]: mean 4, squares 40; without model 4 the
#   values [0, 2, 4, 6] have mean 3 and squares 20; without models 4 and 0, mean 4, squares 8.
# sample 2: IN for models 0, 1, 2 with values [1, 2, 3] (mean 2, squares 2), OUT [100, 200].
# sample 9: all OUT, [0.1] * 4 and 1e8: without model 4 the rest is constant, which the
#   subtraction cannot resolve (it cancels): summed again, mean 0.1 and squares 0 exactly.
VALUES = np.array(
    [[0.0, 1.0, 0.1], [2.0, 2.0, 0.1], [4.0, 3.0, 0.1], [6.0, 100.0, 0.1], [8.0, 200.0, 1e8]]
)[:, :, None]
MEMBER = np.array([[False, True, False]] * 3 + [[False, False, False]] * 2)


def test_leave_out_exact_on_a_hand_built_array():
    out = side_moments(VALUES, ~MEMBER)
    count, mean, squares = leave_out(out, VALUES, ~MEMBER, [4], guard="spread")
    np.testing.assert_array_equal(count, [4, 1, 4])
    assert mean[0, 0] == 3.0 and squares[0, 0] == 20.0
    assert mean[1, 0] == 100.0 and squares[1, 0] == 0.0  # the OUT side of sample 2 lost 200
    assert mean[2, 0] == np.mean([0.1] * 4) and squares[2, 0] == 0.0
    count, mean, squares = leave_out(out, VALUES, ~MEMBER, [4, 0], guard="spread")
    np.testing.assert_array_equal(count, [3, 1, 3])
    assert mean[0, 0] == 4.0 and squares[0, 0] == 8.0
    inside = side_moments(VALUES, MEMBER)
    count, mean, squares = leave_out(inside, VALUES, MEMBER, [1], guard="spread")
    np.testing.assert_array_equal(count, [0, 2, 0])
    assert mean[1, 0] == 2.0 and squares[1, 0] == 2.0


def test_a_side_that_loses_no_model_keeps_the_full_moments_exactly():
    out = side_moments(VALUES, ~MEMBER)
    count, mean, squares = leave_out(out, VALUES, ~MEMBER, [1], guard="spread")
    # model 1 is IN for sample 2: its OUT side is untouched
    assert count[1] == 2 and mean[1, 0] == out.mean[1, 0] and squares[1, 0] == out.squares[1, 0]


def test_samples_are_independent_under_shuffled_sample_order():
    order = np.array([2, 0, 1])
    out = side_moments(VALUES, ~MEMBER)
    got = leave_out(out, VALUES, ~MEMBER, [4, 2], guard="mean")
    shuffled = leave_out(
        side_moments(VALUES[:, order], ~MEMBER[:, order]),
        VALUES[:, order],
        ~MEMBER[:, order],
        [4, 2],
        guard="mean",
    )
    for a, b in zip(got, shuffled, strict=True):
        np.testing.assert_array_equal(a[order], b)


def test_mean_guard_keeps_tiny_positive_means_relatively_exact():
    # probabilities: one model near 1, the others 1e-20; leaving it out must give 1e-20
    values = np.array([[0.9], [1e-20], [3e-20], [2e-20]])[:, :, None]
    side = np.ones((4, 1), dtype=bool)
    _, mean, _ = leave_out(side_moments(values, side), values, side, [0], guard="mean")
    assert mean[0, 0] == pytest.approx(2e-20, rel=1e-15)


def models_of(values, member, population=None, labels=None):
    n = values.shape[1]
    pop_labels = None if population is None else np.zeros(population.shape[1], np.int64)
    labels = np.zeros(n, np.int64) if labels is None else labels
    return ModelSignals(values, member, labels, population, pop_labels)


def synthetic(num_models=8, n=600, queries=2, offset=0.0, spread=1.0, seed=0):
    """Signals: difficulty + membership + noise (scaled by ``spread``, shifted by
    ``offset``) with a shuffled keep mask, and probabilities on a population."""
    rng = np.random.default_rng(seed)
    member = keep_mask(num_models, n, seed)[:, rng.permutation(n)]
    difficulty = rng.normal(0, 2, n)[None, :, None]
    noise = rng.normal(0, 0.5, (num_models, n, queries))
    values = offset + spread * (difficulty + member[:, :, None] + noise)
    pop = 1 / (1 + np.exp(-rng.normal(0, 2, (num_models, 300, queries))))
    return values, member, pop


LIRA = [
    {"name": "lira_online", "variance": "per_example"},
    {"name": "lira_online", "variance": "global"},
    {"name": "lira_offline", "variance": "per_example"},
    {"name": "lira_offline", "variance": "global"},
    {"name": "lira_online", "center": "median", "variance": "per_example"},
]


def fast_and_refit(spec, models, target):
    attack = build_attack(spec)
    fast = attack.clone().fit_leaving_out(models, target).score(models.target(target))
    refit = attack.clone().fit(models.references(target)).score(models.target(target))
    return fast, refit


@pytest.mark.parametrize("spec", LIRA, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize(
    ("offset", "spread", "atol"),
    [(0.0, 1.0, 1e-11), (1e6, 1.0, 1e-6), (0.0, 1e-5, 1e-11), (1e3, 1e-3, 1e-6)],
)
def test_lira_leaving_out_equals_the_refit(spec, offset, spread, atol):
    # Tolerance: 1e-11 absolute on scores of order 1-100; with an offset the refit's own
    # means carry rounding of eps * offset, i.e. eps * offset / spread in the score.
    values, member, _ = synthetic(offset=offset, spread=spread)
    models = models_of(values, member)
    for target in (0, 5):
        fast, refit = fast_and_refit(spec, models, target)
        np.testing.assert_allclose(fast, refit, rtol=0, atol=atol * (1 + np.abs(refit).max()))
        if spec.get("center") == "median":  # no sums: the refit itself
            np.testing.assert_array_equal(fast, refit)


RMIA = [
    {"name": "rmia_online"},
    {"name": "rmia_offline", "a": 0.3},
    {"name": "rmia_offline"},  # a: auto, chosen on the references
]


@pytest.mark.parametrize("spec", RMIA, ids=lambda s: "-".join(map(str, s.values())))
def test_rmia_leaving_out_equals_the_refit(spec):
    values, member, pop = synthetic(queries=1)
    probabilities = 1 / (1 + np.exp(-values))
    probabilities[:, :5] = 1e-30  # a few samples no model fits: tiny means
    models = models_of(probabilities, member, pop)
    attack = build_attack(spec)
    for target in (0, 3):
        fast_attack = attack.clone().fit_leaving_out(models, target)
        refit_attack = attack.clone().fit(models.references(target))
        np.testing.assert_allclose(fast_attack.pr_x_, refit_attack.pr_x_, rtol=1e-13)
        np.testing.assert_allclose(fast_attack.pr_z_, refit_attack.pr_z_, rtol=1e-13)
        assert fast_attack.extra() == refit_attack.extra()
        got = fast_attack.score(models.target(target))
        np.testing.assert_allclose(got, refit_attack.score(models.target(target)), rtol=1e-13)


@pytest.mark.parametrize("name", ["lira_online", "lira_offline", "rmia_online", "rmia_offline"])
def test_metrics_of_leaving_out_equal_the_refit_to_1e9(name):
    values, member, pop = synthetic(num_models=16, n=2000, queries=1, seed=3)
    if name.startswith("rmia"):
        values = 1 / (1 + np.exp(-values))
    models = models_of(values, member, pop)
    for target in (1, 10):
        fast, refit = fast_and_refit(name, models, target)
        levels = (1e-3, 1e-2, 1e-1)
        a, b = (attack_metrics(s, member[target], levels) for s in (fast, refit))
        assert abs(a.auc - b.auc) <= 1e-9 and abs(a.advantage - b.advantage) <= 1e-9
        for v in levels:
            assert abs(a.tpr_at_fpr[v] - b.tpr_at_fpr[v]) <= 1e-9


def test_leaving_out_checks_the_references_like_fit():
    member = np.array([[True, True], [False, True], [False, False], [False, False]])
    models = models_of(np.arange(8.0).reshape(4, 2, 1), member)  # sample 0: only model 0 IN
    with pytest.raises(DataError, match="at least one reference model"):
        build_attack("lira_online").fit_leaving_out(models, 0)
    build_attack("lira_online").fit_leaving_out(models, 2)  # model 0 stays a reference
    with pytest.raises(DataError, match="population"):
        build_attack("rmia_online").fit_leaving_out(models, 2)


@pytest.mark.parametrize("queries", [1, 2])
@pytest.mark.parametrize("z", [5, 3000])  # bins == levels, and bins < levels
def test_binned_histograms_equal_binning_every_count(queries, z):
    rng = np.random.default_rng(queries + z)
    grid = np.array([0.25, 0.5, 1.0, 2.0, 4.0])  # exact ties
    ratio_x = np.concatenate([rng.choice(grid, (200, queries)), rng.random((300, queries))])
    ratio_z = np.concatenate(
        [rng.choice(grid, (z // 2, queries)), rng.random((z - z // 2, queries))]
    )
    member = rng.random(500) < 0.4
    levels = queries * z + 1
    bins = min(levels, 1024)
    for gamma in (1.0, 2.0):
        binned = dominance_counts(ratio_x, ratio_z, gamma).sum(axis=1) * bins // levels
        for rows in (~member, member):
            bounds = histogram_bounds(np.sort(ratio_z, axis=0), bins)
            got = binned_histogram(ratio_x[rows], bounds, gamma, bins)
            np.testing.assert_array_equal(got, np.bincount(binned[rows], minlength=bins))
