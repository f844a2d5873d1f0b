"""The analysis workflow: explain the leakage of a finished audit run and write
``RUN_DIR/analysis`` (and the audit's report, which then links it)."""

from __future__ import annotations

import os
from pathlib import Path

from mialens.analysis.explain import Analysis, analyze
from mialens.analysis.settings import AnalysisSettings
from mialens.analysis.text_explain import TextAnalysis, analyze_text
from mialens.audit.results import AuditResult
from mialens.errors import ConfigError
from mialens.io import write_json, write_text
from mialens.report.tables import table_csv
from mialens.report.text_analysis_page import render_text_analysis
from mialens.workflows.config import apply_overrides, validate_config
from mialens.workflows.outputs import ANALYSIS_DIR, load_result, write_analysis, write_report


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


def analyze_text_run(
    result: AuditResult, run_dir: str | os.PathLike, overrides: list[str] = ()
) -> TextAnalysis:
    """Analyse a text audit's run (which texts leak) and write ``run_dir/analysis``:
    samples.csv, summary.json and report.html."""
    raw = apply_overrides({"analysis": {}}, list(overrides))["analysis"]
    settings = validate_config(raw, AnalysisSettings)
    analysis = analyze_text(result, settings)
    out = Path(run_dir) / ANALYSIS_DIR
    write_text(out / "samples.csv", table_csv(analysis.table))
    write_json(out / "summary.json", analysis.summary)
    page = render_text_analysis(analysis.summary, analysis.table["vulnerability"])
    write_text(out / "report.html", page)
    return analysis
