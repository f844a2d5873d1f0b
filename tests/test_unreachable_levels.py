"""An FPR level that a tie group straddles is flagged, never shown as a plain TPR."""

import io

import numpy as np
import pytest
from rich.console import Console

import mialens.cli
from mialens.audit.results import AuditResult


def _tied_result() -> AuditResult:
    """One target, 20 members and 100 non-members (shuffled); 30 non-members and 10
    members share the top score, so FPR 0.1 (k* = 10) is only reachable at FPR 0 or 0.3,
    while FPR 0.5 lies past the tie group and is reachable."""
    members = np.r_[np.ones(20, bool), np.zeros(100, bool)]
    scores = np.r_[np.full(10, 5.0), np.linspace(1, 2, 10), np.full(30, 5.0), np.linspace(0, 1, 70)]
    order = np.random.default_rng(0).permutation(120)
    result = AuditResult(
        sample_ids=np.arange(120)[order] * 3 + 7,
        labels=np.zeros(120, np.int64),
        members=members[order][None, :],
        target_models=[0],
        scores={"loss": scores[order][None, :]},
        attacks={"loss": {}},
        fpr_levels=[0.5, 0.1],
    )
    result.compute_metrics(n_boot=0, seed=0)
    return result


def test_metrics_flag_the_straddled_level():
    metrics = _tied_result().metrics["loss"]
    assert metrics.at(0.1).reachable is False and metrics.at(0.1).resolved
    assert metrics.at(0.1).mean == 0.0  # the TPR at FPR 0: before the tie group
    assert metrics.at(0.5).reachable and metrics.at(0.5).mean == 1.0  # 10 + 10 members


def test_headline_gives_no_number_for_an_unreachable_level():
    (row,) = _tied_result().headline()
    assert row["tpr@0.1"] is None and row["tpr@0.5"] == 1.0


def test_frame_gives_no_number_for_an_unreachable_level():
    pytest.importorskip("pandas")
    frame = _tied_result().to_frame()
    assert np.isnan(frame.loc["loss", "tpr@0.1"]) and frame.loc["loss", "tpr@0.5"] == 1.0


def test_summary_marks_an_unreachable_level():
    lines = _tied_result().summary().splitlines()
    assert lines[2].split()[-2:] == ["1.000", "0.000†"]
    assert lines[3] == "† tie group straddles this FPR; see report"


def test_cli_summary_marks_an_unreachable_level(monkeypatch, tmp_path):
    result = _tied_result()
    result.utility = {"train_accuracy": {"mean": 1.0}, "test_accuracy": {"mean": 0.5}}
    buf = io.StringIO()
    monkeypatch.setattr(mialens.cli, "console", Console(file=buf, width=120))
    mialens.cli._print_summary(result, tmp_path)
    text = buf.getvalue()
    assert "0.000†" in text and "1.000†" not in text
    assert "† tie group straddles this FPR; see report" in text
