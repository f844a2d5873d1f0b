"""The analysis of a real (small) audit: outputs, reproducibility, epochs, errors, CLI, study."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mialens.analysis import epochs as epochs_module
from mialens.analysis.explain import analyze
from mialens.analysis.outliers import GEOMETRIC, OUTPUT
from mialens.analysis.summary import AnalysisSummary
from mialens.cli import app
from mialens.errors import CacheError, ConfigError, DataError
from mialens.report.analysis_figures import analysis_figures
from mialens.report.tables import read_samples
from mialens.workflows import study as runner_module
from mialens.workflows.analyse import analyze_run
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.outputs import load_result, read_summary
from mialens.workflows.study import load_study

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
FAST = {"feature_models": 4, "iforest_trees": 10, "embedding_samples": 120, "gallery": 4}


def _raw(**analysis):
    return {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden": [64]},
        "train": {"epochs": 10, "batch_size": 32},
        "audit": {
            "num_models": 4,
            "pool_size": 400,
            "bootstrap": 0,
            "attacks": ["loss", "lira_online", "rmia_offline"],
            "canaries": {"kind": "mislabel", "fraction": 0.05},
        },
        "analysis": {**FAST, **analysis},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small audit with canaries and its analysis, shared by the tests below."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("analysis-cache")
    mp.setenv("MIALENS_CACHE_DIR", str(cache))
    out = tmp_path_factory.mktemp("run")
    result = run_audit(validate_config(_raw(epoch_models=1)), out)
    yield out, result, cache
    mp.undo()


def _csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_outputs_of_an_audit_with_analysis(run):
    out, result, _ = run
    header, rows = _csv(out / "analysis" / "samples.csv")
    assert header[:2] == ["sample_id", "vulnerability"]
    measures = [f"{s}_{m}" for s in ("input", "features", "logits") for m in GEOMETRIC]
    assert set(measures) | set(OUTPUT) <= set(header)
    assert [r[0] for r in rows] == [str(v) for v in result.sample_ids]
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["attack"] in {"lira_online", "rmia_offline", "loss"}
    assert set(summary["statistics"]["spearman"]) == set(measures) | set(OUTPUT)
    assert summary["statistics_without_canaries"]["n"] == 380
    assert summary["canaries"]["count"] == 20
    assert set(summary["vulnerability"]["levels"]) == {"0.01", "0.001"}
    assert len(summary["per_class"]) == 10
    assert len(summary["epochs"]) == 10 and 0 <= summary["epochs"][-1]["auc"] <= 1
    assert summary["link"]["measure"] not in ("memorization", "memorization_confidence")
    assert "vulnerability_tail" in header
    assert summary["measure_groups"]["features_knn"] == "geometric"
    assert summary["measure_groups"]["logits_knn"] == "output"
    assert set(summary["headline"]["groups"]) == {"geometric", "output", "memorization"}
    assert summary["vulnerability"]["tail"]["ties_at_max"] <= 0.01 * 400
    report = (out / "analysis" / "report.html").read_text()
    assert "tail vulnerability" in report and "model-output difficulty" in report
    assert report.count("data:image/png;base64,") == 6  # incl. gallery and epochs
    assert "http://" not in report and "https://" not in report
    main = (out / "report.html").read_text()
    assert 'href="analysis/report.html"' in main and "Canaries" in main
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["attacks"]["loss"]["canaries"]["count"] == 20
    assert metrics["design"]["canaries"].startswith("20 mislabel")


def test_summary_round_trips_through_summary_json(run):
    """summary.json keeps its keys, order and values through AnalysisSummary."""
    out, _, _ = run
    doc = json.loads((out / "analysis" / "summary.json").read_text())
    summary = read_summary(out)
    assert summary.to_json() == doc and list(summary.to_json()) == list(doc)
    assert json.dumps(summary.to_json()) == json.dumps(doc)  # the order of nested keys too
    assert AnalysisSummary.from_json(summary.to_json()) == summary
    assert (
        summary.vulnerability.levels[0.01].vulnerable
        == (doc["vulnerability"]["levels"]["0.01"]["vulnerable"])
    )
    assert summary.leakage.tpr_at_fpr[0.01] == doc["leakage"]["tpr_at_fpr"]["0.01"]
    assert summary.headline.groups == doc["headline"]["groups"]


def test_analyze_run_reproduces_the_analysis_from_the_folder(run, monkeypatch):
    out, _, cache = run
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    before = (out / "analysis" / "samples.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("the analysis must reuse cached models and epochs")

    monkeypatch.setattr(epochs_module, "train_model", no_training)
    analysis = analyze_run(out)
    assert (out / "analysis" / "samples.csv").read_text() == before
    assert analysis.summary.epochs
    loaded = load_result(out)
    assert loaded.members.shape == (4, 400) and set(loaded.scores) == {
        "loss", "lira_online", "rmia_offline"
    }  # fmt: skip
    table = read_samples(out / "samples.csv")
    np.testing.assert_array_equal(loaded.scores["loss"][0], table["loss"][table["target"] == 0])


def test_analysis_options_and_python_api(run, monkeypatch):
    out, result, cache = run
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    analysis = analyze(
        result,
        validate_config(_raw(attack="loss", spaces=["input"], embedding_samples=0)).analysis,
    )
    assert analysis.summary.attack == "loss"
    assert analysis.summary.attack_choice == "configured"
    assert not any(k.startswith("features_") for k in analysis.table)
    assert analysis_figures(analysis)[0]["caption"] == "vulnerability"
    with pytest.raises(ConfigError, match="only analysis"):
        analyze_run(out, ["audit.seed=3"])


def test_analyze_without_cached_models_says_how_to_fix(run, tmp_path, monkeypatch):
    out, _, _ = run
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(CacheError, match="MIALENS_CACHE_DIR"):
        analyze_run(out)
    with pytest.raises(DataError, match="not an audit run folder"):
        analyze_run(tmp_path)


def test_cli_analyze(run, monkeypatch):
    out, _, cache = run
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    result = runner.invoke(
        app, ["analyze", str(out), "-q", "--set", "analysis.spaces=[input]", "--set",
              "analysis.embedding_samples=0", "--set", "analysis.epoch_models=0"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "vulnerable" in result.output and "analysis/" in result.output
    result = runner.invoke(app, ["analyze", str(out / "nowhere")])
    assert result.exit_code == 2 and "not an audit run folder" in result.output


def test_config_rejects_bad_analysis_settings():
    with pytest.raises(ConfigError, match=r"not among audit\.attacks"):
        validate_config(_raw(attack="lira_offline"))
    with pytest.raises(ConfigError, match="num_models >= 4"):
        raw = _raw()
        raw["audit"]["num_models"] = 2
        raw["audit"]["attacks"] = ["loss"]
        validate_config(raw)
    with pytest.raises(ConfigError, match="feature_models"):
        validate_config(_raw(feature_models=3))


def test_study_runs_its_grid(tmp_path, monkeypatch):
    study = tmp_path / "study.yaml"
    study.write_text(
        """
name: tiny
base:
  dataset: {name: digits}
  model: {hidden: [32]}
  train: {epochs: 4, batch_size: 64}
  audit: {num_models: 4, pool_size: 300, bootstrap: 0, attacks: [loss, lira_offline]}
  analysis: {spaces: [input], embedding_samples: 0, iforest_trees: 10, gallery: 0}
settings:
  - {name: original}
  - {name: l2, set: {train.weight_decay: 0.01}}
  - {name: skipped, set: {train.label_smoothing: 0.1}}
"""
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["study", str(study), "--out", str(out), "-q", "--setting", "original",
              "--setting", "l2", "--set", "audit.seed=1"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "study.json").read_text())
    assert [r["name"] for r in doc["settings"]] == ["original", "l2"]
    assert doc["attack"] == "lira_offline"
    for row in doc["settings"]:
        for key in ("train_acc", "test_acc", "auc", "advantage", "tpr_at_fpr", "link"):
            assert key in row
        assert set(row["tpr_at_fpr"]) == {"0.1", "0.01", "0.001", "0.0001"}
    assert doc["settings"][1]["overrides"] == "train.weight_decay=0.01"
    assert (out / "settings" / "l2" / "analysis" / "summary.json").is_file()
    assert "study" in (out / "report.html").read_text().lower()

    def no_rerun(*args, **kwargs):
        raise AssertionError("finished settings are read back, not run again")

    monkeypatch.setattr(runner_module, "run_audit", no_rerun)
    again = runner.invoke(
        app, ["study", str(study), "--out", str(out), "-q", "--setting", "original",
              "--setting", "l2", "--set", "audit.seed=1"]
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads((out / "study.json").read_text())["settings"] == doc["settings"]
    result = runner.invoke(app, ["study", str(study), "--out", str(out), "--setting", "nope"])
    assert result.exit_code == 2 and "no study setting named nope" in result.output


@pytest.mark.parametrize("name", ["location30", "fashion_mnist", "purchase100", "cifar10"])
def test_example_studies_are_valid(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on the GPU they ask for
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    study, configs = load_study(REPO / "examples" / f"beyond_overfitting_{name}.yaml")
    names = [s.name for s, _ in configs]
    assert names[0] == "original" and "dp_sgd" in names and "label_smoothing" in names
    assert all(c.analysis is not None and c.analysis.attack == study.attack for _, c in configs)
    assert next(c for s, c in configs if s.name == "dp_sgd").train.dp is not None
    if name in ("purchase100", "cifar10"):
        assert all(c.audit.device == "cuda" for _, c in configs)
