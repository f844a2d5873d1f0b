"""The Python API for models the user trained: scikit-learn, PyTorch, callables, arrays."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import mialens
from mialens.errors import ConfigError, DataError
from mialens.models import ModelConfig, TrainConfig
from mialens.splits import keep_mask, make_split


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
    assert result.metrics["loss"].auc.mean > 0.6
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
    assert result.metrics["loss"].auc.mean > 0.7
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


# --- errors at the boundary ----------------------------------------------------------------


def test_population_and_test_features_must_match_the_audited_samples(digits):
    x, y, members, (x_pop, y_pop), _ = digits
    tree = DecisionTreeClassifier().fit(x, y)
    with pytest.raises(DataError, match=r"population x has samples of shape \(32,\), but x has"):
        mialens.audit_model(tree, x, y, members, population=(x_pop[:, :32], y_pop))
    with pytest.raises(DataError, match=r"test x has samples of shape \(63,\)"):
        mialens.audit_model(tree, x, y, members, test=(x_pop[:, 1:], y_pop))


@pytest.mark.parametrize(
    "bad",
    [
        {"test": "not a pair"},
        {"population": ("x", "y", "z")},
        {"num_references": 3},
        {"attacks": ["rmia_online"]},  # needs population data
        {"attacks": ["no_such_attack"]},
        {"fpr": [0.0]},
    ],
)
def test_audit_model_checks_its_inputs_before_training_a_reference(digits, bad):
    x, y, members, _, ids = digits
    trained, events = [], []

    def recipe(xs, ys, seed):
        trained.append(seed)
        return DecisionTreeClassifier(random_state=0).fit(xs, ys)

    tree = DecisionTreeClassifier(random_state=0).fit(x[members], y[members])
    kwargs = {"num_references": 2, "train_reference": recipe, "sample_ids": ids, **bad}
    with pytest.raises((ConfigError, DataError)):
        mialens.audit_model(tree, x, y, members, progress=lambda *e: events.append(e), **kwargs)
    assert trained == [] and events == []


def test_callable_target_returning_strings_is_a_data_error(digits):
    x, y, members, _, _ = digits

    def train(xs, ys, seed):
        return lambda v: np.full((len(v), 10), "cat")

    with pytest.raises(DataError, match=r"must return numbers.*returned a ndarray of strings"):
        mialens.audit_model(train(x, y, 0), x, y, members, train_reference=train,
                            num_references=2, attacks=["loss"], bootstrap=0)  # fmt: skip


def _tiny_logits(n=40, r=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    members = np.arange(n) % 2 == 0
    return rng.normal(size=(n, 3)), y, members, rng.normal(size=(r, n, 3)), keep_mask(r, n, 1)


def test_out_that_is_an_existing_file_is_refused_before_the_work(tmp_path):
    target, y, members, refs, ref_members = _tiny_logits()
    path = tmp_path / "metrics.txt"
    path.write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        mialens.audit_logits(target, y, members, refs, ref_members, out=path)
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        mialens.audit_logits(target, y, members, refs, ref_members, out=path / "run")


@pytest.mark.parametrize("fpr", [[0.0, 0.01], [0.1, 1.0], [1.5], []])
def test_api_refuses_the_fpr_levels_the_config_refuses(fpr):
    target, y, members, refs, ref_members = _tiny_logits()
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        mialens.audit_logits(target, y, members, refs, ref_members, fpr=fpr, attacks=["loss"])
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        mialens.validate_config({"audit": {"fpr": fpr}})


def test_members_given_as_indices_get_a_hint(digits):
    x, y, members, _, _ = digits
    tree = DecisionTreeClassifier().fit(x, y)
    with pytest.raises(DataError, match=r"looks like \d+ sample indices; pass a boolean mask"):
        mialens.audit_model(tree, x, y, np.flatnonzero(members), num_references=2)


def test_split_sizes_beyond_the_data_report_no_negative_counts():
    with pytest.raises(ConfigError) as err:
        make_split(2, seed=0, pool_size=100)
    assert "-98" not in str(err.value)
    assert "the data set has 2 samples, too few for an audit" in str(err.value)
    with pytest.raises(ConfigError) as err:
        make_split(50, seed=0, pool_size=100)
    assert "-50" not in str(err.value)
    assert "a pool of 100 does not fit" in str(err.value)


# --- attacks the data cannot serve ---------------------------------------------------------


def test_audit_without_population_skips_the_default_attacks_that_need_it(digits, caplog):
    x, y, members, _, _ = digits
    tree = DecisionTreeClassifier(random_state=0).fit(x[members], y[members])
    with caplog.at_level("WARNING", logger="mialens.workflows.api"):
        result = mialens.audit_model(tree, x, y, members, num_references=2, bootstrap=0)
    needing = {"attack_p", "rmia_online", "rmia_offline"}
    assert set(result.skipped) == needing
    assert not needing & set(result.scores)
    assert {"loss", "lira_online", "lira_offline"} <= set(result.scores)
    assert "skipped attacks attack_p, rmia_online, rmia_offline: each needs population" in (
        caplog.text
    )
    assert result.to_json()["skipped_attacks"] == result.skipped


def test_audit_logits_without_population_skips_too():
    target, y, members, refs, ref_members = _tiny_logits()
    result = mialens.audit_logits(target, y, members, refs, ref_members, bootstrap=0)
    assert "rmia_online" in result.skipped and "lira_online" in result.scores


def test_independent_reference_memberships_are_accepted():
    rng = np.random.default_rng(5)
    target, y, members, refs, _ = _tiny_logits(r=8)
    ref_members = rng.random((8, 40)) < 0.5  # independent inclusions, as DP auditing draws
    ref_members[0], ref_members[1] = True, False  # every sample has an IN and an OUT
    result = mialens.audit_logits(
        target, y, members, refs, ref_members, bootstrap=0, attacks=["lira_online", "lira_offline"]
    )
    assert result.scores["lira_online"].shape == (1, 40)


def test_samples_without_an_out_reference_are_refused_at_the_boundary():
    target, y, members, refs, ref_members = _tiny_logits()
    ref_members = ref_members.copy()
    ref_members[:, :3] = True
    with pytest.raises(DataError, match="reference_members: 3 of 40 samples are members of every"):
        mialens.audit_logits(target, y, members, refs, ref_members, attacks=["lira_offline"])
    # attacks without references do not need them
    mialens.audit_logits(target, y, members, refs, ref_members, attacks=["loss"], bootstrap=0)


def test_online_attacks_need_an_in_reference_per_sample():
    target, y, members, refs, ref_members = _tiny_logits()
    ref_members = ref_members.copy()
    ref_members[:, :5] = False
    result = mialens.audit_logits(target, y, members, refs, ref_members, bootstrap=0)
    assert "5 samples are members of none" in result.skipped["lira_online"]
    assert "lira_offline" in result.scores and "lira_online" not in result.scores
    with pytest.raises(DataError, match="'lira_online' is online and needs every sample"):
        mialens.audit_logits(target, y, members, refs, ref_members, attacks=["lira_online"])


# --- the result object ---------------------------------------------------------------------


def test_result_repr_summary_and_frame(monkeypatch):
    target, y, members, refs, ref_members = _tiny_logits(n=400)
    result = mialens.audit_logits(
        target, y, members, refs, ref_members, bootstrap=20, attacks=["loss", "lira_online"]
    )
    text = repr(result)
    assert len(text) < 300 and text.startswith("AuditResult(400 samples, 1 target(s); AUC: loss")
    table = result.summary().splitlines()
    assert table[0].split() == ["attack", "AUC", "TPR@0.1", "TPR@0.01", "TPR@0.001", "TPR@0.0001"]
    auc = result.metrics["loss"].auc
    low, high = auc.bootstrap.low, auc.bootstrap.high
    assert table[2].startswith(f"loss         {auc.mean:.3f} [{low:.3f}, {high:.3f}]")
    assert table[2].endswith("unresolved")  # 0.0001 < 1 / 200 non-members
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    with pytest.raises(ImportError, match="to_frame\\(\\) needs pandas"):
        result.to_frame()


def test_train_config_is_exported_beside_torch_recipe():
    assert mialens.TrainConfig is TrainConfig and mialens.ModelConfig is ModelConfig
    assert {"TrainConfig", "ModelConfig", "torch_recipe"} <= set(mialens.__all__)


def test_result_to_frame_with_pandas():
    pytest.importorskip("pandas")
    target, y, members, refs, ref_members = _tiny_logits(n=400)
    result = mialens.audit_logits(
        target, y, members, refs, ref_members, bootstrap=20, attacks=["loss", "lira_online"]
    )
    frame = result.to_frame()
    assert list(frame.index) == ["loss", "lira_online"]
    assert frame.loc["loss", "auc"] == result.metrics["loss"].auc.mean
    assert frame.loc["loss", "auc_low"] == result.metrics["loss"].auc.bootstrap.low
    assert np.isnan(frame.loc["loss", "tpr@0.0001"])  # unresolved
    assert frame.loc["loss", "tpr@0.1"] == result.metrics["loss"].at(0.1).mean
