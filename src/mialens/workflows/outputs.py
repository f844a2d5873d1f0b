"""The run folder: write an audit's outputs (metrics.json, samples.csv, report.html) and
its analysis, and read an audit back.

Each file is written atomically, so a killed run never leaves a truncated result.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mialens.audit.results import AuditResult
from mialens.errors import DataError
from mialens.io import write_bytes, write_json, write_text
from mialens.report.audit_page import render_report
from mialens.report.figure_worker import FigureWorker
from mialens.report.tables import read_samples, samples_table, table_csv
from mialens.workflows.phases import phase

if TYPE_CHECKING:  # the analysis (torch, scikit-learn models) loads only when written
    from mialens.analysis.explain import Analysis
    from mialens.analysis.summary import AnalysisSummary

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.csv"
REPORT_FILE = "report.html"
ANALYSIS_DIR = "analysis"
SUMMARY_FILE = "summary.json"
DP_AUDIT_FILE = "dp_audit.json"
CANARIES_FILE = "canaries.npz"
DP_AUDIT_PAGE = "dp_audit.html"


def write_report(
    result: AuditResult,
    out_dir: str | os.PathLike,
    analysis: AnalysisSummary | None = None,
    pngs: dict[str, bytes] | None = None,
) -> Path:
    """(Re)write ``report.html``; with an analysis summary it links the analysis report.
    ``pngs``: its figures, if already drawn."""
    path = Path(out_dir) / REPORT_FILE
    write_text(path, render_report(result, analysis, pngs=pngs))
    return path


def write_outputs(
    result: AuditResult,
    out_dir: str | os.PathLike,
    analysis: AnalysisSummary | None = None,
    worker: FigureWorker | None = None,
) -> dict[str, Path]:
    """Write the three outputs into ``out_dir`` (created if needed); returns their paths.

    ``analysis`` is the summary of a leakage analysis written beside them, which the
    report then summarises and links. ``worker``: the process drawing the report's
    figures, which were submitted to it (:class:`~mialens.report.figure_worker.FigureWorker`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "samples": out / SAMPLES_FILE,
        "report": out / REPORT_FILE,
    }
    with phase("writing"):
        write_json(paths["metrics"], result.to_json())
        write_text(paths["samples"], samples_table(result))
    with phase("report"):
        write_report(result, out, analysis, worker.pngs() if worker is not None else None)
    return paths


def write_dp_audit(report: Any, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write a DP audit's ``dp_audit.json``, ``canaries.npz`` (every run's canary ids,
    inclusion bits and scores; the audited run's unprefixed, run r's as ``run<r>_...``;
    pickle-free) and the page ``dp_audit.html``, each atomically; returns their paths."""
    from mialens.report.dp_audit_page import render_dp_audit  # its figures load matplotlib

    out = Path(out_dir)
    paths = {
        "json": out / DP_AUDIT_FILE,
        "arrays": out / CANARIES_FILE,
        "page": out / DP_AUDIT_PAGE,
    }
    arrays = {}
    for r, game in enumerate(report.games):
        prefix = f"run{r}_" if r else ""
        arrays.update({prefix + name: values for name, values in game.arrays().items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # str and bool arrays: never pickled
    write_bytes(paths["arrays"], buffer.getvalue())
    write_json(paths["json"], report.doc)
    write_text(paths["page"], render_dp_audit(report.doc))
    return paths


def write_analysis(analysis: Analysis, run_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the analysis's ``samples.csv``, ``summary.json`` and ``report.html`` into
    ``run_dir/analysis``; returns their paths."""
    out = Path(run_dir) / ANALYSIS_DIR
    paths = {
        "samples": out / "samples.csv",
        "summary": out / SUMMARY_FILE,
        "report": out / "report.html",
    }
    write_text(paths["samples"], table_csv(analysis.table))
    write_json(paths["summary"], analysis.summary.to_json())
    from mialens.report.analysis_page import render_analysis

    write_text(paths["report"], render_analysis(analysis))
    return paths


def read_summary(run_dir: str | os.PathLike) -> AnalysisSummary:
    """The :class:`~mialens.analysis.summary.AnalysisSummary` of a run folder's analysis."""
    from mialens.analysis.summary import AnalysisSummary

    path = Path(run_dir) / ANALYSIS_DIR / SUMMARY_FILE
    try:
        return AnalysisSummary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read the analysis {path}: {type(exc).__name__}: {exc}") from exc


def load_result(run_dir: str | os.PathLike) -> AuditResult:
    """The :class:`AuditResult` of a run folder, from its ``metrics.json`` and ``samples.csv``."""
    run = Path(run_dir)
    paths = [run / METRICS_FILE, run / SAMPLES_FILE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{run} is not an audit run folder: {', '.join(missing)} missing (write one with "
            "`mialens audit CONFIG --out DIR`)"
        )
    try:
        doc = json.loads(paths[0].read_text(encoding="utf-8"))
        return AuditResult.from_json(doc, read_samples(paths[1]))
    except (DataError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a truncated or foreign file: missing keys or columns, no rows, wrong types
        raise DataError(f"cannot read the audit run in {run}: {type(exc).__name__}: {exc}") from exc
