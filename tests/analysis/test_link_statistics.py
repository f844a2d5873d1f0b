"""Statistics of the outlierness-vulnerability link: exact values, planted link versus none."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from mialens.analysis.outliers import GROUPS
from mialens.analysis.significance import (
    auc_test,
    benjamini_hochberg,
    holm,
    link_statistics,
    per_class,
    spearman,
    stratified_spearman,
)


def test_holm_and_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> Holm 4x, 3x, 2x, 1x with running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: m p / rank = 0.02, 0.02, 0.04, 0.04 with running min from the top
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(holm(np.array([0.2, np.nan, 0.01])), [0.2, np.nan, 0.02])


def test_auc_test_matches_scikit_learn_and_mann_whitney():
    gen = np.random.default_rng(0)
    values = np.round(gen.normal(size=300), 1)
    positive = gen.random(300) < 0.2
    values[positive] += 0.8
    out = auc_test(values, positive)
    assert out["auc"] == pytest.approx(roc_auc_score(positive, values))
    expected_p = stats.mannwhitneyu(values[positive], values[~positive]).pvalue
    assert out["p"] == pytest.approx(expected_p)
    assert out["ci_low"] < out["auc"] < out["ci_high"]
    assert out["n_pos"] == positive.sum() and out["n_neg"] == (~positive).sum()


def test_auc_delong_interval_covers_the_truth():
    gen = np.random.default_rng(1)
    truth = stats.norm.cdf(1 / np.sqrt(2))  # AUC of N(1, 1) vs N(0, 1)
    covered = 0
    for _ in range(500):
        a, b = gen.normal(1, 1, 60), gen.normal(0, 1, 140)
        out = auc_test(np.concatenate([a, b]), np.arange(200) < 60)
        covered += out["ci_low"] <= truth <= out["ci_high"]
    assert 0.92 <= covered / 500 <= 0.98


def test_spearman_planted_link_versus_none():
    gen = np.random.default_rng(2)
    x = gen.normal(size=2000)
    linked = spearman(x, x + gen.normal(size=2000))
    assert linked["rho"] > 0.6 and linked["p"] < 1e-100
    assert linked["ci_low"] < linked["rho"] < linked["ci_high"]
    none = spearman(x, gen.normal(size=2000))
    assert none["ci_low"] < 0 < none["ci_high"] and none["p"] > 0.01
    assert spearman(np.ones(50), x[:50])["rho"] is None  # constant measure
    assert spearman(x[:5], x[:5])["rho"] is None  # too few samples


def test_stratified_spearman_separates_classes_from_within_class_outliers():
    gen = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 200)
    offset = labels.astype(float)
    measure = offset + gen.normal(size=labels.size)
    # vulnerability driven by the class only: an overall correlation, none within classes
    by_class = offset + gen.normal(size=labels.size)
    assert spearman(measure, by_class)["rho"] > 0.7
    within = stratified_spearman(measure, by_class, labels)
    assert abs(within["rho"]) < 0.06 and within["p"] > 0.01 and within["groups"] == 10
    # vulnerability driven by the measure within each class
    planted = stratified_spearman(measure, measure - offset + gen.normal(size=labels.size), labels)
    assert planted["rho"] > 0.5 and planted["p"] < 1e-50


def _synthetic(link: bool, seed: int):
    gen = np.random.default_rng(seed)
    n = 1500
    labels = gen.integers(0, 5, n)
    measures = {f"m{i}": gen.normal(size=n) for i in range(6)}
    noise = gen.normal(size=n)
    vulnerability = (1.5 * measures["m3"] + noise) if link else noise
    sets = {"0.01": vulnerability > np.quantile(vulnerability, 0.9), "tiny": np.arange(n) < 3}
    return vulnerability, measures, sets, labels


def test_link_statistics_planted_link():
    vulnerability, measures, sets, labels = _synthetic(True, 4)
    out = link_statistics(vulnerability, measures, sets, labels)
    assert out["best"] == {"spearman": "m3", "within_class": "m3"}
    assert out["spearman"]["m3"]["p_holm"] < 1e-50
    assert out["sets"]["0.01"]["best"] == "m3"
    assert out["sets"]["0.01"]["measures"]["m3"]["auc"] > 0.85
    assert out["sets"]["0.01"]["measures"]["m3"]["p_holm"] < 1e-20
    assert out["sets"]["tiny"]["size"] == 3 and "measures" not in out["sets"]["tiny"]
    restricted = link_statistics(vulnerability, measures, sets, labels, ["m0", "m1"])
    assert restricted["best"]["spearman"] in {"m0", "m1"}


def test_link_statistics_no_link_after_holm():
    vulnerability, measures, sets, labels = _synthetic(False, 5)
    out = link_statistics(vulnerability, measures, sets, labels)
    for name in measures:
        assert out["spearman"][name]["p_holm"] > 0.05
        assert out["within_class"][name]["p_holm"] > 0.05
        assert out["sets"]["0.01"]["measures"][name]["p_holm"] > 0.05
        assert out["spearman"][name]["p_holm"] >= out["spearman"][name]["p"]


def test_per_class_rows():
    vulnerability, measures, sets, labels = _synthetic(True, 6)
    rows = per_class(vulnerability, measures, sets, labels, [f"c{i}" for i in range(5)])
    assert [r["name"] for r in rows] == [f"c{i}" for i in range(5)]
    assert sum(r["n"] for r in rows) == len(labels)
    assert sum(r["sets"]["0.01"] for r in rows) == sets["0.01"].sum()
    assert all(r["spearman"]["m3"] > 0.5 for r in rows)


def test_spearman_fisher_z_interval_by_hand():
    gen = np.random.default_rng(8)
    x = gen.normal(size=40)
    y = x + gen.normal(size=40)
    out = spearman(x, y)
    rho = stats.spearmanr(x, y)[0]
    # Bonett & Wright (2000): var(atanh r_s) = (1 + r_s^2 / 2) / (n - 3)
    half = 1.959963984540054 * np.sqrt((1 + rho**2 / 2) / 37)
    assert out["rho"] == pytest.approx(rho)
    assert out["ci_low"] == pytest.approx(np.tanh(np.arctanh(rho) - half))
    assert out["ci_high"] == pytest.approx(np.tanh(np.arctanh(rho) + half))


def test_auc_delong_standard_error_by_hand():
    # positives {3, 1}, negatives {2, 0, 2}: placements of positives (share of negatives
    # below, ties 1/2): 3 -> 1, 1 -> 1/3; of negatives (share of positives above): 2 -> 1/2,
    # 0 -> 1, 2 -> 1/2. AUC = 4/6; DeLong var = var(1, 1/3)/2 + var(1/2, 1, 1/2)/3.
    out = auc_test(np.array([3.0, 2.0, 1.0, 0.0, 2.0]), np.array([1, 0, 1, 0, 0], bool))
    auc = 4 / 6
    se = np.sqrt(np.var([1, 1 / 3], ddof=1) / 2 + np.var([0.5, 1, 0.5], ddof=1) / 3)
    half = 1.959963984540054 * se / (auc * (1 - auc))
    logit = np.log(auc / (1 - auc))
    assert out["auc"] == pytest.approx(auc)
    assert out["ci_low"] == pytest.approx(1 / (1 + np.exp(-(logit - half))))
    assert out["ci_high"] == pytest.approx(1 / (1 + np.exp(-(logit + half))))


def _grouped_summary(geometric_leaks: bool):
    """Synthetic measures of the three groups against a planted vulnerable set."""
    from mialens.analysis.outliers import measure_group
    from mialens.analysis.summary import Headline, headline

    gen = np.random.default_rng(11)
    n = 600
    labels = gen.permutation(np.arange(n) % 3)
    vulnerable = gen.random(n) < 0.1
    vuln = gen.normal(size=n) + 2.0 * vulnerable
    lift = 1.0 if geometric_leaks else 0.0
    measures = {
        "input_knn": gen.normal(size=n) + lift * vulnerable,
        "features_lof": gen.normal(size=n) + 0.5 * lift * vulnerable,
        "logits_knn": gen.normal(size=n) + 2.5 * vulnerable,
        "out_neg_margin": gen.normal(size=n) + 2.0 * vulnerable,
        "memorization": gen.normal(size=n) + 3.0 * vulnerable,
    }
    stats_ = link_statistics(vuln, measures, {"0.01": vulnerable}, labels)
    return Headline(**headline(stats_, "0.01")), {k: measure_group(k) for k in measures}


def test_headline_names_the_best_measure_of_each_group():
    from mialens.report.analysis_page import _headline_lines

    head, groups = _grouped_summary(geometric_leaks=True)
    assert groups == {
        "input_knn": "geometric",
        "features_lof": "geometric",
        "logits_knn": "output",
        "out_neg_margin": "output",
        "memorization": "memorization",
    }
    best = {g: e["measure"] for g, e in head.groups.items()}
    assert best == {
        "geometric": "input_knn",
        "output": "logits_knn",
        "memorization": "memorization",
    }
    geo = head.groups["geometric"]
    assert 0.5 < geo["ci_low"] < geo["auc"] < geo["ci_high"]
    assert head.intra_class_outliers_supported
    lines = _headline_lines(head, GROUPS, 0.05)
    assert geo["measures"] == 2 and geo["auc_min"] < geo["auc"]
    assert (
        f"geometric outlierness (input and feature space): 2 measures, AUC {geo['auc_min']:.2f}"
        in lines[0]
    )
    assert "best input_knn AUC" in lines[0]
    assert f"[{geo['ci_low']:.3f}, {geo['ci_high']:.3f}]" in lines[0]
    assert "model-output difficulty" in lines[0] and "memorisation" in lines[0]
    assert lines[1].startswith("Geometric outlierness supports the seed paper's claim")


def test_headline_says_when_geometry_does_not_support_the_claim():
    from mialens.report.analysis_page import _headline_lines

    head, _ = _grouped_summary(geometric_leaks=False)
    assert not head.intra_class_outliers_supported
    assert head.groups["output"]["auc"] > 0.8
    assert "does not support" in _headline_lines(head, GROUPS, 0.05)[1]
