"""The analysis workflow: explain the leakage of a finished audit run and write
``RUN_DIR/analysis`` (and the audit's report, which then links it)."""

from __future__ import annotations

import os

from mialens.analysis.explain import Analysis, analyze
from mialens.errors import ConfigError
from mialens.workflows.config import apply_overrides, validate_config
from mialens.workflows.outputs import load_result, write_analysis, write_report


def analyze_run(run_dir: str | os.PathLike, overrides: list[str] = ()) -> Analysis:
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
        raise ConfigError(
            "this run is a text audit: mialens analyze explains classifier audits, whose "
            "outlierness measures need input features, logits and penultimate-layer features; "
            "a text audit's per-sample scores and memberships are in its samples.csv"
        )
    raw["analysis"] = dict(raw.get("analysis") or {})
    config = validate_config(apply_overrides(raw, list(overrides)))
    analysis = analyze(result, config.analysis)
    write_analysis(analysis, run_dir)
    write_report(result, run_dir, analysis.summary)
    return analysis
