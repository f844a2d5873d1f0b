"""The audit page's figures drawn by a second process (mialens.report.figure_worker):
the same PNG bytes as drawn in process, from figures that travel as JSON exactly, and a
fall-back to drawing in process when the worker fails."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from mialens.audit.results import AuditResult
from mialens.report import figure_worker
from mialens.report.figure_data import AuditFigures, audit_figures
from mialens.report.figure_worker import FigureWorker, worth_a_worker
from mialens.report.plots import audit_pngs
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.outputs import write_outputs

IMAGE = re.compile(r"data:image/png;base64,([^\"]+)")


def _result() -> AuditResult:
    gen = np.random.default_rng(11)
    members = np.stack([gen.permutation(np.arange(300) < 150) for _ in range(3)])
    scores = {
        "a$": np.round(gen.normal(size=members.shape) + members, 1),  # ties, a mathtext "$"
        "b": gen.standard_t(1.5, size=members.shape) + 2 * members,
    }
    result = AuditResult(
        sample_ids=gen.permutation(300) * 7 + 3,
        labels=gen.integers(0, 3, size=300),
        members=members,
        target_models=[0, 1, 2],
        scores=scores,
        attacks={name: {} for name in scores},
        fpr_levels=[0.1, 0.01],
    )
    result.compute_metrics(n_boot=10, seed=0)
    return result


def test_figures_travel_as_json_exactly():
    figures = audit_figures(_result())
    back = AuditFigures.from_json(json.loads(json.dumps(figures.to_json())))
    assert back.roc.labels == figures.roc.labels and back.spread.names == figures.spread.names
    for got, want in [
        (back.roc.grid, figures.roc.grid),
        *zip(back.roc.tpr, figures.roc.tpr, strict=True),
        *zip(back.spread.tpr, figures.spread.tpr, strict=True),
    ]:
        np.testing.assert_array_equal(got, want)
    for name, hist in figures.histograms.items():
        np.testing.assert_array_equal(back.histograms[name].edges, hist.edges)
        for member in (False, True):
            np.testing.assert_array_equal(
                back.histograms[name].density[member], hist.density[member]
            )
        assert back.histograms[name].spike == hist.spike
    assert back.spread.level == figures.spread.level


def test_worker_draws_the_bytes_drawn_in_process():
    figures = audit_figures(_result())
    worker = FigureWorker()
    try:
        worker.submit(figures)
        assert worker.pngs() == audit_pngs(figures)
    finally:
        worker.close()


def test_a_failed_worker_leaves_the_figures_to_this_process(caplog):
    figures = audit_figures(_result())
    worker = FigureWorker()
    worker._proc.kill()
    worker._proc.wait()
    worker.submit(figures)  # into a closed pipe: no error here
    with caplog.at_level(logging.WARNING):
        assert worker.pngs() == audit_pngs(figures)
    assert "the figure worker failed, drawing in this process" in caplog.text
    worker.close()


def test_pngs_before_submit_is_an_error():
    worker = FigureWorker()
    with pytest.raises(RuntimeError, match="before submit"):
        worker.pngs()
    worker.close()


def test_the_worker_ends_with_its_block_even_unsubmitted():
    with pytest.raises(KeyError), figure_worker.figure_worker(figure_worker.MIN_SCORES) as w:
        process = w._proc
        raise KeyError("the audit failed before its figures")
    assert process.poll() is not None


def test_small_audits_draw_in_process():
    assert not worth_a_worker(figure_worker.MIN_SCORES - 1)
    with figure_worker.figure_worker(figure_worker.MIN_SCORES - 1) as w:
        assert w is None


def test_written_report_is_the_same_with_a_worker(tmp_path):
    result = _result()
    worker = FigureWorker()
    worker.submit(audit_figures(result))
    write_outputs(result, tmp_path / "worker", worker=worker)
    worker.close()
    write_outputs(result, tmp_path / "inline")
    pages = [(tmp_path / d / "report.html").read_text() for d in ("worker", "inline")]
    assert IMAGE.findall(pages[0]) == IMAGE.findall(pages[1]) and len(IMAGE.findall(pages[0])) == 3
    for name in ("metrics.json", "samples.csv"):
        assert (tmp_path / "worker" / name).read_bytes() == (
            tmp_path / "inline" / name
        ).read_bytes()


def test_an_audit_draws_in_a_worker_when_worth_it(tmp_path, monkeypatch):
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden": [16]},
            "train": {"epochs": 2, "batch_size": 64},
            "audit": {"num_models": 2, "pool_size": 200, "bootstrap": 5, "attacks": ["loss"]},
        }
    )
    run_audit(config, tmp_path / "inline")
    started = []
    monkeypatch.setattr(figure_worker, "MIN_SCORES", 0)
    monkeypatch.setattr(figure_worker.FigureWorker, "submit", _recording(started))
    run_audit(config, tmp_path / "worker")
    assert started == [1]
    pages = [(tmp_path / d / "report.html").read_text() for d in ("worker", "inline")]
    assert IMAGE.findall(pages[0]) == IMAGE.findall(pages[1])


def _recording(started: list):
    submit = FigureWorker.submit

    def recorded(self, figures):
        started.append(1)
        submit(self, figures)

    return recorded
