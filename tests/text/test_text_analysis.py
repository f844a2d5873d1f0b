"""`mialens analyze` on a text audit: the text outlierness measures (exact values on
hand-built texts), the analysis outputs of a tiny audit run, and the canaries of a tiny
canary audit read from its canaries.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tests.text.conftest import write_text_config
from tests.text.test_text_audit import WORDS
from tests.text.test_text_canaries import _canary_config
from typer.testing import CliRunner

from mialens.analysis.text_explain import group_headline, inserted_canaries
from mialens.analysis.text_outliers import (
    idf_measures,
    out_token_loss,
    text_measure_group,
    text_measures,
    unique_trigram_share,
)
from mialens.cli import app
from mialens.errors import DataError
from mialens.workflows.analyse import read_inserted_canaries
from mialens.workflows.outputs import load_result

runner = CliRunner()


def test_idf_measures_are_mean_and_max_log_inverse_document_frequency():
    texts = ["The lord said", "the LORD spake", "water, water light"]
    m = idf_measures(texts)
    ln3, ln32 = np.log(3), np.log(3 / 2)
    np.testing.assert_allclose(m["mean_idf"], [(ln32 + ln32 + ln3) / 3, (2 * ln32 + ln3) / 3,
                                               ln3])  # fmt: skip
    np.testing.assert_allclose(m["max_idf"], [ln3, ln3, ln3])
    assert np.isnan(idf_measures(["...", "a"])["mean_idf"][0])


def test_unique_trigram_share_counts_trigrams_in_no_other_text():
    texts = ["a b c d", "b c d e", "x y", "a b c d"]
    # text 0: {abc, bcd}, both in text 3; text 1: {bcd, cde}, cde unique; text 2: none
    np.testing.assert_allclose(unique_trigram_share(texts), [0.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(unique_trigram_share(["p q r s", "p q r"]), [0.5, 0.0])


def test_text_measures_keep_sample_order_with_shuffled_groups():
    groups = np.array([17, 4, 17, 9, 17])
    m = text_measures(["a", "b", "a", "c", "a"], groups, np.array([3, 1, 3, 5, 3]))
    np.testing.assert_array_equal(m["group_size"], [3, 1, 3, 1, 3])
    np.testing.assert_array_equal(m["tokens"], [3, 1, 3, 5, 3])
    with pytest.raises(DataError, match="disagree"):
        text_measures(["a"], groups, np.array([1]))


def test_out_token_loss_averages_mean_token_loss_over_out_models():
    logprob = np.zeros((3, 2, 3))
    logprob[:, 0, :2] = [[-1, -3], [-2, -2], [-4, -6]]  # losses 2, 2, 5
    logprob[:, 1, :3] = [[-3, -3, -3], [-1, -2, -3], [-9, 0, 0]]  # losses 3, 2, 3
    logprob[:, 0, 2] = -100.0  # past sample 0's length: ignored
    members = np.array([[True, False], [False, True], [False, False]])
    got = out_token_loss(logprob, np.array([2, 3]), members)
    np.testing.assert_allclose(got, [(2 + 5) / 2, (3 + 3) / 2])
    with pytest.raises(DataError, match="OUT for at least one"):
        out_token_loss(logprob, np.array([2, 3]), np.ones((3, 2), bool))


def test_group_headline_picks_the_best_measure_of_each_group():
    entry = {"auc": 0.8, "ci_low": 0.6, "ci_high": 0.9, "p_holm": 0.01}
    weak = {"auc": 0.55, "ci_low": 0.4, "ci_high": 0.7, "p_holm": 0.5}
    stats = {
        "sets": {"top": {"measures": {"mean_idf": weak, "tokens": entry, "out_token_loss": weak}}},
        "spearman": {
            k: {"rho": 0.1, "p_holm": 0.2} for k in ("mean_idf", "tokens", "out_token_loss")
        },
    }
    head = group_headline(stats, "top")
    assert head["groups"]["text"]["measure"] == "tokens" and head["groups"]["text"]["predicts"]
    assert head["groups"]["output"]["measure"] == "out_token_loss"
    assert not head["groups"]["output"]["predicts"]
    assert text_measure_group("out_token_loss") == "output"


def _audit_config(tmp_path: Path) -> str:
    rng = np.random.default_rng(3)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(44)]
    lines[7] = lines[2] + "."  # a near-duplicate group of two
    text = tmp_path / "verses.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = {
        "dataset": {"name": "txt", "path": str(text)},
        "model": {"layers": 1, "width": 16, "heads": 2, "context": 64},
        "train": {"epochs": 1, "batch_size": 8},
        "audit": {
            "num_models": 4,
            "attacks": ["loss"],
            "pool_size": 36,
            "bootstrap": 0,
            "fpr": [0.1],
            "population_size": 4,
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    return write_text_config(tmp_path, raw)


def test_analyze_a_text_run_writes_samples_summary_and_report(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["audit", _audit_config(tmp_path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "analyze",
            str(out),
            "--quiet",
            "--set",
            "analysis.fpr=[0.1]",
            "--set",
            "analysis.top_fraction=0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "text measures: best" in result.output
    with open(out / "analysis" / "samples.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 36 and all(r["sample_id"].startswith("verses.txt:") for r in rows)
    assert {"text", "mean_idf", "unique_trigrams", "group_size", "out_token_loss"} <= set(rows[0])
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 37))
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["kind"] == "text" and summary["attack"] == "loss"
    head = summary["headline"]
    assert head["set"] == "top" and set(head["groups"]) == {"text", "output"}
    entry = summary["statistics"]["sets"]["top"]["measures"][head["groups"]["text"]["measure"]]
    assert entry["ci_low"] <= entry["auc"] <= entry["ci_high"] and "p_holm" in entry
    assert summary["canaries"] == {"source": None, "inserted": False}
    assert len(summary["top"]) == 20
    page = (out / "analysis" / "report.html").read_text()
    assert "Most vulnerable texts" in page and summary["top"][0]["text"][:20] in page
    assert "This audit inserted no canaries" in page and "canaries (" not in result.output

    bad = runner.invoke(app, ["analyze", str(out), "--quiet", "--set", "analysis.fdr=2"])
    assert bad.exit_code == 2 and "fdr" in bad.output


def _rate(doc: dict, attack: str, repetitions: int, level: float) -> dict:
    return next(
        r
        for r in doc["tpr_at_fpr"][attack]
        if r["repetitions"] == repetitions and r["level"] == level
    )


def test_the_analysis_of_a_canary_audit_shows_canaries_json_next_to_the_natural_texts(
    tmp_path,
):
    config, out = write_text_config(tmp_path, _canary_config(tmp_path)), tmp_path / "run"
    assert runner.invoke(app, ["audit", config, "--out", str(out), "--quiet"]).exit_code == 0
    levels = ["--set", "analysis.fpr=[0.1,0.001]", "--set", "analysis.top_fraction=0.3"]
    result = runner.invoke(app, ["analyze", str(out), "--quiet", *levels])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "canaries.json").read_text())
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    c, attack = summary["canaries"], summary["attack"]
    assert c["source"] == "canaries.json" and c["attack"] == attack and not c["attack_fallback"]
    assert (c["count"], c["copies"], c["pool"]) == (4, 10, None)
    metrics = load_result(out).metrics[attack]
    assert c["natural_tpr"]["0.1"]["mean"] == metrics.at(0.1).mean
    assert c["natural_tpr"]["0.001"] is None  # the audit measured FPR 0.1 only
    for row, entry in zip(c["by_repetition"], doc["by_repetition"], strict=True):
        assert row["repetitions"] == entry["repetitions"] and row["canaries"] == 2
        assert row["exposure_trained"] == entry["in_mean"]
        assert row["exposure_untrained"] == entry["out_mean"]
        rate = _rate(doc, attack, entry["repetitions"], 0.1)
        assert {k: row["tpr"]["0.1"][k] for k in ("tpr", "ci_low", "ci_high")} == {
            k: rate[k] for k in ("tpr", "ci_low", "ci_high")
        }
        assert row["tpr"]["0.001"] is None  # canaries.json has levels 0.1 and 0.01
    page = (out / "analysis" / "report.html").read_text()
    assert "canaries inserted 4x" in page and "TPR at FPR 10% [95%]" in page
    assert "natural texts" in page and "No canaries in the pool" not in page
    assert "canaries (canaries.json): 4; inserted 4x" in result.output

    fallback = inserted_canaries(doc, load_result(out), "rmia_offline", [0.01])
    assert fallback["attack"] == "loss" and "rmia_offline is not in" in fallback["attack_fallback"]
    assert fallback["by_repetition"][0]["tpr"]["0.01"]["tpr"] == _rate(doc, "loss", 1, 0.01)["tpr"]

    (out / "canaries.json").write_text(json.dumps({**doc, "trained": doc["trained"][:2]}))
    with pytest.raises(DataError, match="does not belong to this run"):
        read_inserted_canaries(out, 4)
    (out / "canaries.json").unlink()
    result = runner.invoke(app, ["analyze", str(out), "--quiet", *levels])
    assert result.exit_code == 0, result.output
    page = (out / "analysis" / "report.html").read_text()
    assert "This audit inserted canaries" in page and "no <code>canaries.json</code>" in page
