"""The study workflow: audit and analyse the same configuration under a grid of
training recipes (see :mod:`mialens.analysis.study`), and write ``OUT/study.json`` and
``OUT/report.html``."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mialens.analysis.study import (
    StudyConfig,
    StudySetting,
    override_text,
    study_findings,
    study_row,
    summarize_study,
)
from mialens.analysis.summary import AnalysisSummary, json_safe
from mialens.audit.results import AuditResult
from mialens.errors import ConfigError, DataError
from mialens.io import write_json, write_text
from mialens.metrics.leakage import fpr_key
from mialens.report.study_page import render_study
from mialens.workflows.audit import run_audit
from mialens.workflows.config import (
    AuditConfig,
    apply_overrides,
    format_errors,
    read_yaml,
    validate_config,
)
from mialens.workflows.outputs import ANALYSIS_DIR, SUMMARY_FILE, load_result, read_summary

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
_PREFERRED_ATTACKS = ("lira_online", "rmia_online", "lira_offline", "rmia_offline")


def load_study(
    path: str | os.PathLike, overrides: list[str] = (), only: list[str] = ()
) -> tuple[StudyConfig, list[tuple[StudySetting, AuditConfig]]]:
    """Read a study file and validate the configuration of every setting.

    ``overrides`` (``KEY=VALUE``) apply to every setting after its own; ``only`` keeps
    the named settings.
    """
    raw = read_yaml(path, "study") or {}
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid study {path}:\n{format_errors(exc, StudyConfig)}") from None
    names = [s.name for s in study.settings]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"study settings named twice: {', '.join(dup)}")
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ConfigError(
            f"no study setting named {', '.join(unknown)}; settings: {', '.join(names)}"
        )
    chosen = [s for s in study.settings if not only or s.name in only]
    base = apply_overrides(copy.deepcopy(study.base), list(overrides))
    attack = study.attack or _default_attack(base)
    configs = []
    for setting in chosen:
        raw_setting = apply_overrides(copy.deepcopy(study.base), override_text(setting.set))
        raw_setting = apply_overrides(raw_setting, list(overrides))
        raw_setting["analysis"] = {**(raw_setting.get("analysis") or {}), "attack": attack}
        try:
            configs.append((setting, validate_config(raw_setting)))
        except ConfigError as exc:
            raise ConfigError(f"study setting {setting.name!r}: {exc}") from None
    return study.model_copy(update={"attack": attack}), configs


def _default_attack(base: dict[str, Any]) -> str:
    if (base.get("analysis") or {}).get("attack"):
        return base["analysis"]["attack"]
    config = validate_config(base)
    names = config.audit.attack_names
    return next((n for n in _PREFERRED_ATTACKS if n in names), names[0])


def _finished(run_dir: Path, config: AuditConfig) -> tuple[AuditResult, AnalysisSummary] | None:
    """The result and analysis summary of ``run_dir`` if it holds a finished audit of
    exactly ``config`` (so an interrupted study resumes at its first unfinished setting);
    an analysis older than the headline is run again."""
    if not (run_dir / ANALYSIS_DIR / SUMMARY_FILE).is_file():
        return None
    try:
        result = load_result(run_dir)
        summary = read_summary(run_dir)
    except DataError:
        return None
    if result.config != json.loads(json.dumps(config.model_dump(mode="json"))):
        return None
    return result, summary


def run_study(
    study: StudyConfig,
    configs: list[tuple[StudySetting, AuditConfig]],
    out_dir: str | os.PathLike,
    progress: bool = False,
) -> dict[str, Any]:
    """Audit and analyse every setting, then write ``study.json`` and ``report.html``.

    A setting whose folder already holds a finished audit and analysis of the same
    configuration is read back instead of run again."""
    out = Path(out_dir)
    rows = []
    for i, (setting, config) in enumerate(configs, 1):
        log.info("study %s: setting %d of %d, %s", study.name, i, len(configs), setting.name)
        run_dir = out / "settings" / setting.name
        done = _finished(run_dir, config)
        if done is not None:
            log.info(
                "setting %s: reusing the finished audit and analysis in %s", setting.name, run_dir
            )
            result, summary = done
        else:
            result = run_audit(config, run_dir, progress=progress)
            summary = read_summary(run_dir)
        rows.append(study_row(setting, result, summary, study.attack))
    levels = [fpr_key(v) for v in configs[0][1].audit.fpr]
    doc: dict[str, Any] = {
        "name": study.name,
        "description": study.description,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": configs[0][1].dataset.name,
        "attack": study.attack,
        "fpr_levels": levels,
        "vulnerable_levels": list(rows[0]["vulnerable"]),
        "settings": rows,
    }
    doc.update(summarize_study(rows, levels))
    doc["findings"] = study_findings(doc)
    doc = json_safe(doc)
    write_json(out / STUDY_FILE, doc)
    write_text(out / "report.html", render_study(doc, rows))
    return doc
