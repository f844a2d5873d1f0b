"""The run folder: write an audit's outputs (metrics.json, samples.csv, report.html) and
its analysis, and read an audit back.

Each file is written atomically, so a killed run never leaves a truncated result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mialens.analysis.explain import Analysis
from mialens.audit.results import AuditResult
from mialens.errors import DataError
from mialens.io import write_json, write_text
from mialens.report.analysis_page import render_analysis
from mialens.report.audit_page import render_report
from mialens.report.tables import read_samples, samples_table, table_csv

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.csv"
REPORT_FILE = "report.html"
ANALYSIS_DIR = "analysis"


def write_report(
    result: AuditResult, out_dir: str | os.PathLike, analysis: dict[str, Any] | None = None
) -> Path:
    """(Re)write ``report.html``; with an analysis summary it links the analysis report."""
    path = Path(out_dir) / REPORT_FILE
    write_text(path, render_report(result, analysis))
    return path


def write_outputs(
    result: AuditResult, out_dir: str | os.PathLike, analysis: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write the three outputs into ``out_dir`` (created if needed); returns their paths.

    ``analysis`` is the summary of a leakage analysis written beside them, which the
    report then summarises and links."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / METRICS_FILE,
        "samples": out / SAMPLES_FILE,
        "report": out / REPORT_FILE,
    }
    write_json(paths["metrics"], result.to_dict())
    write_text(paths["samples"], samples_table(result))
    write_report(result, out, analysis)
    return paths


def write_analysis(analysis: Analysis, run_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the analysis's ``samples.csv``, ``summary.json`` and ``report.html`` into
    ``run_dir/analysis``; returns their paths."""
    out = Path(run_dir) / ANALYSIS_DIR
    paths = {
        "samples": out / "samples.csv",
        "summary": out / "summary.json",
        "report": out / "report.html",
    }
    write_text(paths["samples"], table_csv(analysis.table))
    write_json(paths["summary"], analysis.summary)
    write_text(paths["report"], render_analysis(analysis))
    return paths


def _class_indices(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The class index of each label of samples.csv (original labels mapped back)."""
    if values is None:
        return labels.astype(np.int64)
    index = {v: c for c, v in enumerate(values)}
    return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)


_METRIC_KEYS = ("auc", "advantage", "tpr_at_fpr", "tie_share", "bootstrap_replicates", "canaries")


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
        table = read_samples(paths[1])
        return _result_from(doc, table, paths[1])
    except DataError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a truncated or foreign file: missing keys or columns, no rows, wrong types
        raise DataError(f"cannot read the audit run in {run}: {type(exc).__name__}: {exc}") from exc


def _result_from(doc: dict[str, Any], table: dict[str, np.ndarray], samples: Path) -> AuditResult:
    targets = list(dict.fromkeys(table["target"].tolist()))
    if not targets:
        raise ValueError(f"{samples} has no rows")
    rows = [table["target"] == t for t in targets]
    ids = table["sample_id"][rows[0]]
    if any(not np.array_equal(table["sample_id"][r], ids) for r in rows):
        raise DataError(f"{samples}: the targets do not list the same samples in one order")
    attacks = doc["attacks"]
    return AuditResult(
        sample_ids=ids,
        labels=_class_indices(table["label"][rows[0]], doc.get("design", {}).get("label_values")),
        members=np.stack([table["member"][r].astype(bool) for r in rows]),
        target_models=targets,
        scores={name: np.stack([table[name][r] for r in rows]) for name in attacks},
        attacks={
            n: {k: v for k, v in a.items() if k not in _METRIC_KEYS} for n, a in attacks.items()
        },
        fpr_levels=[float(v) for v in doc["fpr_levels"]],
        metrics={n: {k: a[k] for k in _METRIC_KEYS if k in a} for n, a in attacks.items()},
        utility=doc.get("utility", {}),
        design=doc.get("design", {}),
        training=doc.get("training", []),
        config=doc["config"],
        environment=doc.get("environment", {}),
        created=doc.get("created", ""),
    )
