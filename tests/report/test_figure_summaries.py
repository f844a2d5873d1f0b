"""The figures read their numbers from summaries (mialens.report.figure_data)."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.audit.results import AuditResult
from mialens.report import figure_data


def _result(levels: list[float]) -> AuditResult:
    gen = np.random.default_rng(3)
    members = np.stack([gen.permutation(np.arange(400) < 200) for _ in range(3)])
    scores = {"a": np.round(gen.normal(size=members.shape) + members, 1)}  # ties
    result = AuditResult(
        sample_ids=gen.permutation(400) * 5 + 2,
        labels=gen.integers(0, 3, size=400),
        members=members,
        target_models=[0, 1, 2],
        scores=scores,
        attacks={"a": {}},
        fpr_levels=levels,
    )
    result.compute_metrics(n_boot=0, seed=0)
    return result


def test_level_summary_from_metrics_equals_the_scores():
    with_level, without = _result([0.01, 0.1]), _result([0.1])
    read, computed = (figure_data.level_summary(r, "a", 0.01) for r in (with_level, without))
    assert read.auc == pytest.approx(computed.auc, abs=1e-12)
    np.testing.assert_array_equal(read.tpr, computed.tpr)
    assert read.reachable == computed.reachable


def test_histogram_densities_integrate_to_one():
    result = _result([0.1])
    hist = figure_data.score_histogram(result.scores["a"], result.members, bins=40)
    for density in hist.density.values():
        assert float(np.sum(density * np.diff(hist.edges))) == pytest.approx(1.0)
