"""The analysis workflow: explain the leakage of a finished audit run and write
``RUN_DIR/analysis`` (and the audit's report, which then links it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mialens.analysis.explain import Analysis, analyze
from mialens.analysis.settings import AnalysisSettings
from mialens.analysis.text_explain import TextAnalysis, analyze_text
from mialens.audit.results import AuditResult
from mialens.errors import ConfigError, DataError
from mialens.io import write_json, write_text
from mialens.report.tables import table_csv
from mialens.report.text_analysis_page import render_text_analysis
from mialens.workflows.config import apply_overrides, validate_config
from mialens.workflows.outputs import ANALYSIS_DIR, load_result, write_analysis, write_report
from mialens.workflows.text_audit import SECRET_CANARIES_FILE


def analyze_run(run_dir: str | os.PathLike, overrides: list[str] = ()) -> Analysis | TextAnalysis:
    """Analyse the audit in ``run_dir`` (its ``metrics.json`` and ``samples.csv``) and write
    ``run_dir/analysis``; ``overrides`` are ``analysis.KEY=VALUE`` settings."""
    result = load_result(run_dir)
    bad = [o for o in overrides if not o.strip().startswith("analysis.")]
    if bad:
        raise ConfigError(
            f"only analysis.* settings can be changed after the audit; got {', '.join(bad)}"
        )
    raw = dict(result.config)
    if "tokenizer" in raw:
        return analyze_text_run(result, run_dir, overrides)
    raw["analysis"] = dict(raw.get("analysis") or {})
    config = validate_config(apply_overrides(raw, list(overrides)))
    analysis = analyze(result, config.analysis)
    write_analysis(analysis, run_dir)
    write_report(result, run_dir, analysis.summary)
    return analysis


def read_inserted_canaries(run_dir: str | os.PathLike, targets: int) -> dict[str, Any] | None:
    """The content of the run's canaries.json (None if it has none), checked to hold the
    per-repetition numbers the text analysis reads and one row per target of the run."""
    path = Path(run_dir) / SECRET_CANARIES_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows, rates, trained = doc["by_repetition"], doc["tpr_at_fpr"], doc["trained"]
        ok = bool(rows) and bool(rates) and {"count", "copies"} <= set(doc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not ok or len(trained) != targets:
        raise DataError(
            f"{path} does not belong to this run: it needs by_repetition, tpr_at_fpr, count, "
            f"copies and one trained row per target ({targets}); got {len(trained)} rows "
            "(re-run `mialens audit` to rewrite it)"
        )
    return doc


def analyze_text_run(
    result: AuditResult, run_dir: str | os.PathLike, overrides: list[str] = ()
) -> TextAnalysis:
    """Analyse a text audit's run (which texts leak) and write ``run_dir/analysis``:
    samples.csv, summary.json and report.html, with the canaries of its canaries.json."""
    raw = apply_overrides({"analysis": {}}, list(overrides))["analysis"]
    settings = validate_config(raw, AnalysisSettings)
    inserted = read_inserted_canaries(run_dir, len(result.target_models))
    analysis = analyze_text(result, settings, inserted=inserted)
    out = Path(run_dir) / ANALYSIS_DIR
    write_text(out / "samples.csv", table_csv(analysis.table))
    write_json(out / "summary.json", analysis.summary)
    page = render_text_analysis(analysis.summary, analysis.table["vulnerability"])
    write_text(out / "report.html", page)
    return analysis
