"""The Python API for models the user trained: scikit-learn, PyTorch, callables, arrays."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import mialens
from mialens.errors import ConfigError, DataError
from mialens.models import ModelConfig, TrainConfig
from mialens.splits import keep_mask


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    pool, pop = order[:600], order[600:900]
    members = rng.random(600) < 0.5
    ids = np.array([f"digit-{i}" for i in pool])  # string ids, shuffled
    return x[pool], y[pool], members, (x[pop], y[pop]), ids


def test_sklearn_target_leaks_and_keeps_ids(digits, tmp_path):
    x, y, members, pop, ids = digits
    tree = DecisionTreeClassifier(random_state=0).fit(x[members], y[members])  # memorises
    result = mialens.audit_model(
        tree, x, y, members, population=pop, sample_ids=ids, num_references=4,
        bootstrap=0, attacks=["loss", "lira_offline", "rmia_offline"], out=tmp_path,
    )  # fmt: skip
    assert result.utility["train_accuracy"]["mean"] == 1.0
    assert result.utility["test_accuracy"]["mean"] < 1.0
    assert result.metrics["loss"]["auc"]["mean"] > 0.6
    np.testing.assert_array_equal(result.sample_ids, ids)
    assert (tmp_path / "samples.csv").read_text().splitlines()[1].startswith(ids[0])


def test_torch_target_with_recipe(digits):
    x, y, members, pop, _ = digits
    recipe = mialens.torch_recipe(ModelConfig(hidden=[32]), TrainConfig(epochs=5), num_classes=10)
    target = recipe(x[members], y[members], 0)
    result = mialens.audit_model(
        target, x, y, members, population=pop, train_reference=recipe, num_references=2,
        bootstrap=0, attacks=["loss", "lira_online", "rmia_online"],
    )  # fmt: skip
    assert set(result.scores) == {"loss", "lira_online", "rmia_online"}
    assert result.scores["lira_online"].shape == (1, len(y))


def test_callable_returning_probabilities(digits):
    x, y, members, _, _ = digits
    model = LogisticRegression(max_iter=300).fit(x[members], y[members])

    def train(xs, ys, seed):
        return LogisticRegression(max_iter=300).fit(xs, ys).predict_proba

    result = mialens.audit_model(
        model.predict_proba, x, y, members, train_reference=train, num_references=2,
        bootstrap=0, attacks=["loss", "attack_r"],
    )  # fmt: skip
    direct = -np.log(model.predict_proba(x)[np.arange(len(y)), y])
    np.testing.assert_allclose(-result.scores["loss"][0], direct, rtol=1e-5, atol=1e-6)


def test_precomputed_logits():
    rng = np.random.default_rng(0)
    n, r = 200, 4
    y = rng.integers(0, 3, n)
    members = rng.random(n) < 0.5
    ref_members = keep_mask(r, n, seed=1)
    target = rng.normal(size=(n, 3))
    target[np.arange(n), y] += 2.0 * members
    refs = rng.normal(size=(r, n, 3))
    refs[np.arange(r)[:, None], np.arange(n), y] += 2.0 * ref_members
    result = mialens.audit_logits(
        target, y, members, refs, ref_members, bootstrap=0, attacks=["loss", "lira_online"]
    )
    assert result.metrics["loss"]["auc"]["mean"] > 0.7
    assert result.utility["test_source"] == "non-members"


def test_api_errors(digits):
    x, y, members, _, _ = digits
    with pytest.raises(ConfigError, match="train_reference"):
        mialens.audit_model(lambda v: np.zeros((len(v), 10)), x, y, members)
    tree = DecisionTreeClassifier().fit(x, y)
    with pytest.raises(DataError, match="population"):
        mialens.audit_model(tree, x, y, members, attacks=["rmia_online"], num_references=2)
    with pytest.raises(DataError, match="some samples as members"):
        mialens.audit_model(tree, x, y, np.ones(len(y), bool), num_references=2)
    with pytest.raises(DataError, match="single class"):
        mialens.audit_model(tree, x, np.zeros(len(y), int), members, num_references=2)
    with pytest.raises(ConfigError, match="even"):
        mialens.audit_model(tree, x, y, members, num_references=3)
    with pytest.raises(DataError, match="reference_logits"):
        mialens.audit_logits(
            np.zeros((4, 3)),
            [0, 1, 2, 0],
            [1, 0, 1, 0],
            np.zeros((2, 4, 2)),
            np.zeros((2, 4), bool),
        )
    with pytest.raises(DataError, match="NaN"):
        bad = np.zeros((4, 3))
        bad[0, 0] = np.nan
        mialens.audit_logits(
            bad, [0, 1, 2, 0], [1, 0, 1, 0], np.zeros((2, 4, 3)), np.zeros((2, 4), bool)
        )


def test_audit_logits_rejects_misshapen_population_and_references():
    y, members = [0, 1, 2, 0], [1, 0, 1, 0]
    target, refs, ref_members = np.zeros((4, 3)), np.zeros((2, 4, 3)), np.zeros((2, 4), bool)
    pop_labels = [0, 1, 2]

    def call(**kw):
        args = dict(
            target_logits=target,
            y=y,
            members=members,
            reference_logits=refs,
            reference_members=ref_members,
            attacks=["attack_p"],
            bootstrap=0,
        )
        mialens.audit_logits(**{**args, **kw})

    with pytest.raises(
        DataError, match="reference_population_logits must have shape \\(2, 3, 3\\)"
    ):
        call(population_logits=np.zeros((3, 3)), reference_population_logits=np.zeros((2, 5, 3)),
             population_labels=pop_labels)  # fmt: skip
    with pytest.raises(
        DataError, match="reference_population_logits must have shape \\(2, 3, 3\\)"
    ):
        call(population_logits=np.zeros((3, 3)), reference_population_logits=np.zeros((3, 3, 3)),
             population_labels=pop_labels)  # fmt: skip
    with pytest.raises(DataError, match="population_logits"):
        call(population_logits=np.zeros(3), reference_population_logits=np.zeros((2, 3, 3)),
             population_labels=pop_labels)  # fmt: skip
    with pytest.raises(DataError, match="reference_logits"):
        call(reference_logits=[np.zeros((4, 3)), np.zeros((2, 3))])
    with pytest.raises(DataError, match="target_logits"):
        call(target_logits=3.0)
