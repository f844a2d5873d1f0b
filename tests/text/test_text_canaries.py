"""Secret-sharer canaries in a text audit: `mialens audit` with an audit.canaries section
adds them to the pool (all IN or all OUT per LM), writes canaries.json, keeps them out of
the headline metrics, reuses its LMs and cached log-probabilities on a rerun, and refuses
canary sections that cannot work before training."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from tests.text.conftest import write_text_config
from tests.text.test_text_audit import REPO, _config, _refuse_work
from typer.testing import CliRunner

from mialens.audit.text_design import prepare_text_audit
from mialens.audit.text_gate import design_texts
from mialens.cli import app
from mialens.workflows.config import load_config, validate_config
from mialens.workflows.outputs import load_result, write_report

runner = CliRunner()
CANARIES = {"repetitions": [1, 4], "per_repetition": 2, "seed": 3, "candidates": 300}


def _canary_config(tmp_path, **canaries):
    raw = _config(tmp_path, audit={"canaries": {**CANARIES, **canaries}})
    raw["audit"]["attacks"] = ["loss", "min_k_plus_plus", "lira_online"]
    return raw


def test_a_text_audit_with_canaries_writes_canaries_json_and_reuses_its_lms(tmp_path, monkeypatch):
    config, out = write_text_config(tmp_path, _canary_config(tmp_path)), tmp_path / "run"
    result = runner.invoke(app, ["audit", config, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "canaries.json").read_text())
    assert doc["count"] == 4 and doc["copies"] == 10
    assert {c["repetitions"] for c in doc["record"]["canaries"]} == {1, 4}
    assert len(doc["exposures"]) == 4 and all(
        e["method"] == "extrapolated" for e in doc["exposures"]
    )
    assert [r["repetitions"] for r in doc["by_repetition"]] == [1, 4]
    assert set(doc["tpr_at_fpr"]) == {"loss", "min_k_plus_plus", "lira_online"}
    assert {r["level"] for r in doc["tpr_at_fpr"]["lira_online"]} == {0.1, 0.01}
    trained = np.array(doc["trained"])
    assert (trained.sum(axis=0) == 2).all()  # each canary IN for half of the 4 LMs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["canaries"]["file"] == "canaries.json"
    assert metrics["design"]["canary_copies"] == 10
    with open(out / "samples.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert not any(r["sample_id"].startswith("canary-") for r in rows)  # out of the headline
    assert "Secret-sharer canaries" in (out / "report.html").read_text()
    analyze = ["analyze", str(out), "--quiet", "--set", "analysis.fpr=[0.1]"]
    result = runner.invoke(app, [*analyze, "--set", "analysis.top_fraction=0.3"])
    assert result.exit_code == 0, result.output  # the natural pool samples, as in samples.csv
    with open(out / "analysis" / "samples.csv", newline="", encoding="utf-8") as fh:
        analysed = [r["sample_id"] for r in csv.DictReader(fh)]
    assert analysed == list(dict.fromkeys(r["sample_id"] for r in rows))
    # the run folder's result holds the canaries' brief: a page redrawn from it keeps them
    reread = load_result(out)
    assert reread.secret_canaries == metrics["canaries"]
    assert "Secret-sharer canaries" in write_report(reread, tmp_path / "redrawn").read_text()

    _refuse_work(monkeypatch)  # the rerun trains no LM and scores no candidate afresh
    again = tmp_path / "again"
    result = runner.invoke(app, ["audit", config, "--out", str(again), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((again / "canaries.json").read_text())["exposures"] == doc["exposures"]


def test_canary_copies_are_all_in_or_all_out_of_each_lm(tmp_path):
    setup = prepare_text_audit(validate_config(_canary_config(tmp_path)))
    ids = setup.dataset.ids[setup.split.pool].astype(str)
    for canary in setup.canaries.canaries:
        cols = np.isin(ids, canary.copy_ids)
        assert cols.sum() == canary.repetitions
        keep = setup.keep[:, cols]
        assert (keep.all(axis=1) | ~keep.any(axis=1)).all()
        assert keep[:, 0].sum() == setup.num_models // 2
    assert (~setup.natural).sum() == 10 and setup.design()["pool_size"] == len(ids) - 10


def test_the_design_gate_leaves_the_canary_copies_out(tmp_path):
    setup = prepare_text_audit(validate_config(_canary_config(tmp_path)))
    members, nonmembers, groups = design_texts(setup)
    canary_texts = {c.text for c in setup.canaries.canaries}
    assert not canary_texts & set(members + nonmembers)
    assert len(members) + len(nonmembers) == groups.size == setup.natural.sum()


@pytest.mark.parametrize(
    ("canaries", "message"),
    [
        ({"per_repetition": 20}, "more than half of the"),
        ({"template": "a long secret template " * 3 + "{secret}"}, "more than model.context = 64"),
        ({"template": "no slot"}, "exactly once"),
        ({"length": 3}, "fewer than the 1,000,000"),
        ({"repetitions": [4, 4]}, "distinct counts"),
    ],
)
def test_bad_canary_sections_fail_before_training(tmp_path, monkeypatch, canaries, message):
    _refuse_work(monkeypatch)
    raw = _canary_config(tmp_path, **canaries)
    config = write_text_config(tmp_path, raw)
    result = runner.invoke(app, ["audit", config, "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_the_full_example_validates_with_its_canaries():
    example = load_config(REPO / "examples" / "text_kjv.yaml")
    assert example.audit.num_models == 16 and example.audit.canaries.copies == 168
