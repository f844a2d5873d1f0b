"""Outlierness measures on hand-built geometries and hand-built model outputs."""

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from mialens.analysis.outliers import (
    GEOMETRIC,
    geometric_measures,
    mean_over_out_models,
    output_measures,
    percentile_within,
    shrunk_mahalanobis,
)


def _two_blobs(seed=0):
    """Class 0 around (0, 0) with one far point; class 1 around (10, 0) with one point
    placed next to class 0."""
    gen = np.random.default_rng(seed)
    a = gen.normal(scale=0.5, size=(60, 2))
    b = gen.normal(scale=0.5, size=(60, 2)) + np.array([10.0, 0.0])
    a[7] = [0.0, 6.0]  # far from its class, on no other class's side
    b[3] = [1.5, 0.0]  # a class-1 point inside class 0
    points = np.concatenate([a, b])
    labels = np.repeat([0, 1], 60)
    return points, labels


def test_far_point_is_the_outlier_of_its_class_under_every_measure():
    points, labels = _two_blobs()
    m = geometric_measures(points, labels, neighbors=5, trees=200, seed=0)
    for name in ("centroid_euclidean", "centroid_mahalanobis", "knn", "lof", "iforest"):
        assert np.argmax(m[name][:60]) == 7, name
        assert np.argmax(m[name][60:]) == 3, name
    assert m["lof"][7] > 2 and np.median(m["lof"]) == pytest.approx(1, abs=0.2)
    # the leave-one-out centroid excludes the point itself
    others = points[[i for i in range(60) if i != 7]].mean(axis=0)
    assert m["centroid_euclidean"][7] == pytest.approx(np.linalg.norm(points[7] - others))


def test_border_is_positive_only_near_another_class():
    points, labels = _two_blobs()
    border = geometric_measures(points, labels, neighbors=5, trees=10)["border"]
    assert border[63] > 0  # the class-1 point inside class 0
    assert (np.delete(border, 63) < 0).all()


def test_cosine_distance_sees_direction_not_length():
    gen = np.random.default_rng(2)
    pts = np.abs(gen.normal(size=(40, 3))) + np.array([5.0, 0.0, 0.0])
    pts[0] = [50.0, 0.5, 0.5]  # same direction as the class, ten times longer
    pts[1] = [0.0, 6.0, 0.0]  # another direction
    m = geometric_measures(pts, np.zeros(40, int), neighbors=3, trees=10)
    assert np.argmax(m["centroid_cosine"]) == 1
    assert np.argmax(m["centroid_euclidean"]) == 0


def test_small_classes_are_undefined():
    points = np.random.default_rng(0).normal(size=(12, 2))
    labels = np.array([0] * 10 + [1] * 2)
    m = geometric_measures(points, labels, neighbors=3, trees=10)
    assert set(m) == set(GEOMETRIC)
    assert all(np.isnan(v[10:]).all() and np.isfinite(v[:10]).all() for v in m.values())


@pytest.mark.parametrize(("n", "d"), [(30, 80), (200, 10), (50, 50)])
def test_shrunk_mahalanobis_equals_scikit_learn(n, d):
    x = np.random.default_rng(n).normal(size=(n, d)) * np.linspace(0.2, 3, d)
    expected = np.sqrt(LedoitWolf().fit(x).mahalanobis(x))
    np.testing.assert_allclose(shrunk_mahalanobis(x), expected, rtol=1e-9)


def test_percentiles_and_their_mean_over_out_models():
    values = np.array([3.0, 1.0, 2.0, np.nan])
    np.testing.assert_allclose(
        percentile_within(values, np.array([True, True, False, True])), [1.0, 0.5, np.nan, np.nan]
    )
    per_model = [{"m": np.array([1.0, 2.0, 3.0, 4.0])}, {"m": np.array([40.0, 30.0, 20.0, 10.0])}]
    out = np.array([[True, True, False, False], [False, True, True, True]])
    # model 0 ranks samples 0, 1 as 1/2, 2/2; model 1 ranks 1, 2, 3 as 3/3, 2/3, 1/3
    np.testing.assert_allclose(
        mean_over_out_models(per_model, out)["m"], [0.5, (1 + 1) / 2, 2 / 3, 1 / 3]
    )


def _logits(pred: np.ndarray, num_classes: int = 3, strength: float = 4.0) -> np.ndarray:
    return strength * np.eye(num_classes)[pred]


def test_mislabeled_point_shows_out_model_disagreement_and_memorisation():
    # 4 models, 2 samples labelled 0. Sample 0 is clean: every model predicts 0.
    # Sample 1 is mislabeled (truly class 2): the models that trained on it memorised
    # label 0, the models that did not predict class 2.
    members = np.array([[True, True], [True, False], [False, True], [False, False]])
    labels = np.array([0, 0])
    pred = np.array([[0, 0], [0, 2], [0, 0], [0, 2]])
    m = output_measures(_logits(pred), labels, members)
    assert m["out_disagreement"].tolist() == [0.0, 1.0]
    assert m["memorization"].tolist() == [0.0, 1.0]  # Feldman & Zhang: 1 - 0
    p_top = np.exp(4) / (np.exp(4) + 2)
    p_other = 1 / (np.exp(4) + 2)
    np.testing.assert_allclose(m["out_difficulty"], [1 - p_top, 1 - p_other])
    np.testing.assert_allclose(m["memorization_confidence"], [0.0, p_top - p_other])
    np.testing.assert_allclose(m["out_neg_margin"], [-4.0, 4.0])
