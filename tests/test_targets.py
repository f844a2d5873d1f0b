"""Tests of the query adapters (mialens.targets) and query collection (mialens.signals.queries)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from mialens.augment import Transform, query_transforms
from mialens.errors import ConfigError, DataError
from mialens.signals.queries import QueryConfig, collect_logits, transforms_for
from mialens.targets import (
    CallableTarget,
    SklearnTarget,
    Target,
    TorchTarget,
    as_target,
    probabilities_to_logits,
)
from mialens.targets.adapters import (
    PROBABILITY_FLOOR,
    SUM_TOLERANCE,
    classify_outputs,
    looks_like_probabilities,
    rounding_unit,
    sum_tolerance,
)

LOG_FLOOR = float(np.log(np.float64(PROBABILITY_FLOOR)))  # log(1e-30) = -69.0776


def _x(n: int = 6, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _FixedProba:
    """A minimal estimator whose predict_proba returns a fixed table."""

    def __init__(self, table: np.ndarray, classes: list[int] | None = None) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        if classes is not None:
            self.classes_ = np.asarray(classes)
        self.seen_shapes: list[tuple[int, ...]] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen_shapes.append(x.shape)
        return self.table[: len(x)]


# --- probabilities_to_logits ---------------------------------------------------------------


def test_probabilities_to_logits_is_floored_log():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    out = probabilities_to_logits(probs)
    assert out.dtype == np.float32
    expected = np.array([[np.log(0.5), np.log(0.5), LOG_FLOOR], [0.0, LOG_FLOOR, LOG_FLOOR]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert np.isfinite(out).all()


def test_looks_like_probabilities():
    assert looks_like_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    # 0.9 is within rounding to 1 decimal of 1 (2 entries x 0.05); 0.8 is not
    assert looks_like_probabilities(np.array([[0.2, 0.7]]))
    assert not looks_like_probabilities(np.array([[0.2, 0.6]]))
    assert not looks_like_probabilities(np.array([[-0.5, 1.5]]))  # sums to 1, but negative
    assert not looks_like_probabilities(np.zeros((0, 2)))  # empty


# --- TorchTarget ---------------------------------------------------------------------------


def test_torch_target_returns_module_logits():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = _x(10)
    target = TorchTarget(module, num_classes=3, batch_size=3)  # several chunks
    out = target.logits(x)
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    assert out.dtype == np.float32
    assert out.shape == (10, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert target.queries == 10
    np.testing.assert_array_equal(target.labels(x), expected.argmax(axis=1))
    assert target.queries == 20


def test_torch_target_evaluates_in_eval_mode_and_restores_train_mode():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    module.train()
    x = _x(8)
    target = TorchTarget(module)
    first = target.logits(x)
    second = target.logits(x)
    np.testing.assert_array_equal(first, second)  # dropout was off
    assert module.training
    assert all(m.training for m in module.modules())
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(first, module(torch.as_tensor(x)).numpy(), rtol=1e-6)
    target.logits(x)
    assert not module.training  # an eval-mode module stays in eval mode


def test_torch_target_restores_mode_when_forward_fails():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    module = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        TorchTarget(module).logits(_x())
    assert module.training


def test_torch_target_accepts_float64_and_non_contiguous_input():
    torch.manual_seed(0)
    module = nn.Linear(4, 3)
    target = TorchTarget(module)
    x = _x()
    expected = target.logits(np.ascontiguousarray(x[:, ::-1]))
    np.testing.assert_allclose(target.logits(x[:, ::-1]), expected, rtol=1e-6)
    np.testing.assert_allclose(target.logits(x[:, ::-1].astype(np.float64)), expected, rtol=1e-6)


def test_torch_target_with_probability_output():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    out = TorchTarget(module, output="probabilities").logits(_x())
    with torch.no_grad():
        probs = module(torch.as_tensor(_x())).numpy()
    np.testing.assert_allclose(out, np.log(probs), rtol=1e-5)


def test_torch_target_wrong_number_of_classes():
    target = TorchTarget(nn.Linear(4, 3), num_classes=5)
    with pytest.raises(DataError, match="3 columns but the data has 5 classes"):
        target.logits(_x())
    assert target.queries == 0


# --- SklearnTarget -------------------------------------------------------------------------


def test_sklearn_target_on_logistic_regression():
    rs = np.random.default_rng(0)
    x = rs.normal(size=(60, 4))
    y = np.argmax(x[:, :3], axis=1)
    clf = LogisticRegression(max_iter=200).fit(x, y)
    target = SklearnTarget(clf, num_classes=3)
    out = target.logits(x[:7])
    expected = np.log(np.maximum(clf.predict_proba(x[:7].astype(np.float32)), 1e-30))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_softmax(out), clf.predict_proba(x[:7]), atol=1e-5)
    assert target.queries == 7


def test_sklearn_target_floors_zero_probabilities():
    est = _FixedProba([[1.0, 0.0], [0.25, 0.75]])
    out = SklearnTarget(est).logits(_x(2))
    expected = np.array([[0.0, LOG_FLOOR], [np.log(0.25), np.log(0.75)]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_sklearn_target_flattens_inputs():
    est = _FixedProba(np.full((3, 2), 0.5), classes=[0, 1])
    SklearnTarget(est).logits(np.zeros((3, 1, 2, 2), np.float32))
    assert est.seen_shapes == [(3, 4)]


def test_sklearn_target_places_columns_of_seen_classes():
    # The estimator saw only classes 0 and 2 of 4: its columns go to indices 0 and 2.
    est = _FixedProba([[0.25, 0.75], [1.0, 0.0]], classes=[0, 2])
    out = SklearnTarget(est, num_classes=4).logits(_x(2))
    expected = np.array(
        [
            [np.log(0.25), LOG_FLOOR, np.log(0.75), LOG_FLOOR],
            [0.0, LOG_FLOOR, LOG_FLOOR, LOG_FLOOR],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_sklearn_target_subset_with_real_estimator():
    rs = np.random.default_rng(1)
    x = rs.normal(size=(40, 3))
    y = np.where(x[:, 0] > 0, 3, 1)  # classes 1 and 3 of 5
    clf = LogisticRegression().fit(x, y)
    out = SklearnTarget(clf, num_classes=5).logits(x[:4])
    assert out.shape == (4, 5)
    proba = clf.predict_proba(x[:4].astype(np.float32))
    np.testing.assert_allclose(out[:, [1, 3]], np.log(proba), rtol=1e-5)
    np.testing.assert_allclose(out[:, [0, 2, 4]], LOG_FLOOR, rtol=1e-6)


def test_sklearn_target_needs_predict_proba():
    class NoProba:
        def predict(self, x):
            return np.zeros(len(x))

    with pytest.raises(DataError, match="predict_proba"):
        SklearnTarget(NoProba())


# --- CallableTarget ------------------------------------------------------------------------


def test_callable_target_detects_probabilities():
    probs = np.array([[0.23, 0.77], [0.5, 0.5], [1.0, 0.0]], np.float32)  # 2 decimals
    target = CallableTarget(lambda x: probs[: len(x)])
    out = target.logits(_x(3))
    floor = 0.01 / 4  # the middle of [0, 0.005), the values that round to 0.00
    zero_row = np.log([1, floor]) - np.log1p(floor)  # clipped at the floor, renormalised
    expected = [[np.log(0.23), np.log(0.77)], [np.log(0.5)] * 2, zero_row]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_callable_target_exact_probabilities_keep_the_exact_floor():
    probs = np.array([[0.2345678, 0.7654322], [1.0, 0.0]])  # not rounded to <= 6 decimals
    out = CallableTarget(lambda x: probs[: len(x)]).logits(_x(2))
    np.testing.assert_allclose(out, np.log([[0.2345678, 0.7654322], [1, 1e-30]]), rtol=1e-6)


def test_callable_target_passes_logits_through():
    logits = np.array([[2.0, -1.0], [0.3, 0.1]], np.float32)
    out = CallableTarget(lambda x: logits).logits(_x(2))
    np.testing.assert_array_equal(out, logits)


def test_callable_target_accepts_tensors_and_lists():
    t = CallableTarget(lambda x: torch.tensor([[1.0, 2.0, 3.0]] * len(x), requires_grad=True))
    np.testing.assert_array_equal(t.logits(_x(2)), [[1, 2, 3], [1, 2, 3]])
    t = CallableTarget(lambda x: [[1.0, 5.0]] * len(x))
    np.testing.assert_array_equal(t.logits(_x(3)), [[1, 5]] * 3)


def test_callable_target_declared_logits_are_not_converted():
    # rows that look like probabilities stay as they are when declared logits
    probs = np.array([[0.2, 0.8]], np.float32)
    out = CallableTarget(lambda x: probs, output="logits").logits(_x(1))
    np.testing.assert_array_equal(out, probs)


def test_callable_target_declared_probabilities():
    probs = np.array([[0.2, 0.8]], np.float32)
    out = CallableTarget(lambda x: probs, output="probabilities").logits(_x(1))
    np.testing.assert_allclose(out, [[np.log(0.2), np.log(0.8)]], rtol=1e-6)


def test_callable_target_declared_probabilities_that_are_not():
    target = CallableTarget(lambda x: np.array([[2.0, -1.0]]), output="probabilities")
    with pytest.raises(DataError, match="declared to be probabilities"):
        target.logits(_x(1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_is_a_data_error(bad):
    target = CallableTarget(lambda x: np.array([[0.1, bad], [0.3, 0.2]]))
    with pytest.raises(DataError, match="model output contains"):
        target.logits(_x(2))
    assert target.queries == 0


def test_wrong_column_count_is_a_data_error():
    target = CallableTarget(lambda x: np.tile([1.0, 2.0, 3.0], (len(x), 1)), num_classes=4)
    with pytest.raises(DataError, match="3 columns but the data has 4 classes"):
        target.logits(_x(2))


def test_single_column_output_is_a_data_error():
    with pytest.raises(DataError, match="at least 2"):
        CallableTarget(lambda x: np.zeros((len(x), 1))).logits(_x(2))


def test_wrong_row_count_is_a_data_error():
    with pytest.raises(DataError, match="rows but there are 3 samples"):
        CallableTarget(lambda x: np.zeros((2, 2))).logits(_x(3))


def test_base_target_is_abstract():
    with pytest.raises(NotImplementedError):
        Target().logits(_x(1))


# --- as_target -----------------------------------------------------------------------------


def test_as_target_dispatch():
    module = nn.Linear(4, 2)
    t = as_target(module, num_classes=2)
    assert isinstance(t, TorchTarget)
    assert t.output == "logits"  # 'auto' means logits for modules
    assert t.num_classes == 2
    assert as_target(module, output="probabilities").output == "probabilities"
    assert as_target(t) is t

    est = _FixedProba(np.full((2, 2), 0.5))
    assert isinstance(as_target(est), SklearnTarget)

    fn = CallableTarget(lambda x: np.zeros((len(x), 2)))
    assert as_target(fn) is fn
    wrapped = as_target(lambda x: np.zeros((len(x), 2)), num_classes=2, output="logits")
    assert isinstance(wrapped, CallableTarget)
    assert wrapped.output == "logits"
    assert wrapped.num_classes == 2


@pytest.mark.parametrize("obj", [42, "model.pt", np.zeros((3, 2)), None])
def test_as_target_rejects_unsupported_objects(obj):
    with pytest.raises(DataError, match="cannot query"):
        as_target(obj)


# --- query collection ----------------------------------------------------------------------


def test_transforms_for_tabular_is_identity_only():
    views = transforms_for(QueryConfig(flip=True, shift=2), "tabular")
    assert views == [Transform()]


def test_transforms_for_images():
    views = transforms_for(QueryConfig(flip=True, shift=1), "image")
    assert len(views) == 18  # 3x3 shifts, with and without a flip
    assert views[0].is_identity
    assert len(set(views)) == 18
    assert transforms_for(QueryConfig(), "image") == [Transform()]


def test_collect_logits_tabular_shape_and_queries():
    x = _x(7)
    weights = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    target = CallableTarget(lambda b: b @ weights)
    out = collect_logits(target, x, [Transform()], batch_size=3)
    assert out.shape == (7, 1, 3)
    np.testing.assert_allclose(out[:, 0], x @ weights, rtol=1e-6)
    assert target.queries == 7


def test_collect_logits_over_image_views():
    rs = np.random.default_rng(3)
    x = rs.normal(size=(5, 1, 4, 4)).astype(np.float32)
    weights = rs.normal(size=(16, 3)).astype(np.float32)
    target = CallableTarget(lambda b: b.reshape(len(b), -1) @ weights)
    views = query_transforms(flip=True, shift=1)
    out = collect_logits(target, x, views, batch_size=2)
    assert out.shape == (5, len(views), 3)
    assert target.queries == 5 * len(views)
    # view 0 is the unmodified sample
    np.testing.assert_allclose(out[:, 0], x.reshape(5, -1) @ weights, rtol=1e-5)
    # every other view is the model on the transformed images
    for v, view in enumerate(views):
        expected = view(x).reshape(5, -1) @ weights
        np.testing.assert_allclose(out[:, v], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 0], out[:, 1])


def test_collect_logits_with_torch_target_and_flipped_views():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(9, 2))
    x = np.random.default_rng(4).normal(size=(3, 1, 3, 3)).astype(np.float32)
    target = TorchTarget(module)
    views = [Transform(), Transform(flip=True)]
    out = collect_logits(target, x, views)
    with torch.no_grad():
        mirrored = module(torch.as_tensor(np.ascontiguousarray(x[..., ::-1]))).numpy()
    np.testing.assert_allclose(out[:, 1], mirrored, rtol=1e-6, atol=1e-6)
    assert target.queries == 6


def test_label_only_view_refuses_scores_and_counts_label_queries():
    from mialens.targets import LabelOnlyTarget, restrict

    inner = CallableTarget(lambda x: np.tile([0.0, 1.0], (len(x), 1)), num_classes=2)
    view = restrict(inner, "label")
    assert isinstance(view, LabelOnlyTarget)
    with pytest.raises(PermissionError):
        view.logits(_x(3))
    np.testing.assert_array_equal(view.labels(_x(3)), [1, 1, 1])
    assert view.queries == 3
    scores = restrict(inner, "score")
    assert scores.logits(_x(2)).shape == (2, 2) and scores.queries == 2
    with pytest.raises(DataError, match="white-box"):
        restrict(inner, "white-box")


# --- rounded and truncated probabilities ---------------------------------------------------


def test_rounding_unit_detects_decimals_through_float32():
    assert rounding_unit(np.array([[0.23, 0.77]], np.float32)) == pytest.approx(0.01)
    assert rounding_unit(np.array([[0.5, 0.5]])) == pytest.approx(0.1)
    assert rounding_unit(np.array([[0.123457, 0.876543]], np.float32)) == pytest.approx(1e-6)
    assert rounding_unit(np.array([[0.2345678, 0.7654322]])) is None


def test_row_sum_tolerance_grows_with_the_classes_and_the_rounding():
    # 10 classes rounded to 2 decimals: a row sum may be off by 10 * 0.005 = 0.05
    assert sum_tolerance(10, 0.01) == pytest.approx(0.05 + SUM_TOLERANCE)
    assert sum_tolerance(100, 0.01) == pytest.approx(0.5 + SUM_TOLERANCE)
    assert sum_tolerance(10, None) == SUM_TOLERANCE
    row = np.full((1, 10), 0.1)
    row[0, :4] = 0.09  # sums to 0.96: a possible rounding of a probability vector
    assert classify_outputs(row) == ("probabilities", pytest.approx(0.01))
    row[0, :8] = 0.09  # sums to 0.92: more than rounding explains
    assert classify_outputs(row)[0] == "ambiguous"
    assert classify_outputs(np.array([[0.3, -0.1, 0.8]]))[0] == "logits"
    assert classify_outputs(np.zeros((2, 3)))[0] == "logits"  # all-zero logits: uniform


def test_probabilities_rounded_to_two_decimals_are_detected_and_stay_finite():
    probs = np.array([[0.97, 0.02, 0.0, 0.0], [0.33, 0.33, 0.33, 0.0]])  # sums 0.99, 0.99
    out = CallableTarget(lambda x: probs).logits(_x(2))
    assert np.isfinite(out).all()
    floor = 0.01 / 4
    expected = np.maximum(probs, floor)
    expected = np.log(expected / expected.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(_softmax(out).sum(axis=1), 1, rtol=1e-6)


def test_declared_probabilities_with_missing_mass_are_renormalised():
    top2 = np.array([[0.6, 0.3, 0.0], [0.0, 0.0, 0.0]])  # top-k answers; a row rounded away
    out = CallableTarget(lambda x: top2, output="probabilities").logits(_x(2))
    p = np.maximum(top2, 0.1 / 4)
    np.testing.assert_allclose(out, np.log(p / p.sum(axis=1, keepdims=True)), rtol=1e-5)
    np.testing.assert_allclose(out[1], np.log(1 / 3), rtol=1e-6)  # nothing known: uniform


def test_auto_refuses_outputs_that_are_neither_and_says_both_ways():
    target = CallableTarget(lambda x: np.array([[0.6, 0.2, 0.0]]))  # 0.8: not from rounding
    with pytest.raises(DataError, match=r"ambiguous.*sums to 0\.8.*output='probabilities'.*top-k"):
        target.logits(_x(1))


def test_declared_probabilities_summing_beyond_rounding_are_refused():
    target = CallableTarget(lambda x: np.array([[0.9, 0.8]]), output="probabilities")
    with pytest.raises(DataError, match=r"a row sums to 1\.7; 2 probabilities rounded to 0\.1 sum"):
        target.logits(_x(1))


def test_rounded_probabilities_declared_are_not_advised_to_be_logits():
    probs = np.round(_softmax(np.random.default_rng(0).normal(size=(50, 10)) * 3), 2)
    assert np.abs(probs.sum(axis=1) - 1).max() > 1e-4  # what the old rule refused
    out = TorchTarget(nn.Identity(), output="probabilities").logits(probs.astype(np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))


def test_auto_refuses_a_model_whose_batches_disagree():
    answers = iter([np.array([[0.2, 0.8]]), np.array([[2.0, -1.0]])])
    target = CallableTarget(lambda x: next(answers))
    target.logits(_x(1))
    with pytest.raises(DataError, match="like probabilities in an earlier batch but like logits"):
        target.logits(_x(1))


@pytest.mark.parametrize("answer", [np.array([["cat", "dog"]]), "logits", {"cat": 0.2}])
def test_callable_returning_non_numbers_is_a_data_error(answer):
    with pytest.raises(DataError, match="the model callable must return numbers"):
        CallableTarget(lambda x: answer).logits(_x(1))


def test_unknown_output_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="output must be 'auto', 'logits' or 'probabilities'"):
        as_target(lambda x: x, output="probs")
