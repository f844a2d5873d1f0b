"""The text audit's distribution-shift gate: `mialens audit` on a text data set runs the
blind baseline before training, records it in metrics.json, the report and the summary,
stays quiet on its own i.i.d. design, fires on supplied shifted texts, and refuses bad
settings before any LM is trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.text.conftest import write_text_config
from tests.text.test_text_audit import WORDS
from typer.testing import CliRunner

from mialens.audit.text_design import prepare_text_audit
from mialens.audit.text_gate import ARGUMENT_SOURCE, DESIGN_SOURCE, design_texts, run_gate
from mialens.cli import app
from mialens.errors import ConfigError
from mialens.metrics.blind_baseline import DISTINGUISHABLE
from mialens.workflows.config import validate_config
from mialens.workflows.text_audit import run_text_audit

runner = CliRunner()
MONTHS = ["March", "June", "October", "December"]


def _sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(4, 8))).capitalize() for _ in range(n)]


def _dated(texts: list[str], seed: int) -> list[str]:
    """The texts with a date in front, as news articles newer than the others would be."""
    rng = np.random.default_rng(seed)
    return [f"On {rng.choice(MONTHS)} {rng.integers(1, 28)}, {rng.integers(2021, 2025)}: {t}"
            for t in texts]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _config(tmp_path: Path, cache: Path, **audit) -> dict:
    verses = tmp_path / "verses.txt"
    verses.write_text("\n".join(_sentences(40, 0)) + "\n", encoding="utf-8")
    return {
        "dataset": {"name": "txt", "path": str(verses)},
        "model": {"layers": 1, "width": 16, "heads": 2, "context": 64},
        "train": {"epochs": 1, "batch_size": 8},
        "audit": {
            "num_models": 2,
            "attacks": ["loss"],
            "bootstrap": 0,
            "fpr": [0.1],
            "cache_dir": str(cache),
            **audit,
        },
    }


def _audit(tmp_path: Path, raw: dict, out: Path):
    path = write_text_config(tmp_path, raw)
    return runner.invoke(app, ["audit", path, "--out", str(out), "--quiet"])


def _shifted_files(tmp_path: Path) -> dict[str, str]:
    members = tmp_path / "members.jsonl"
    rows = [json.dumps({"text": t}) for t in _dated(_sentences(30, 1), 2)]
    members.write_text("\n".join(rows) + "\n", encoding="utf-8")
    nonmembers = tmp_path / "nonmembers.txt"
    nonmembers.write_text("\n".join(_sentences(30, 3)) + "\n", encoding="utf-8")
    return {"members": str(members), "nonmembers": str(nonmembers)}


def test_the_gate_is_quiet_on_the_design_and_fires_on_supplied_shifted_texts(tmp_path, cache):
    out = tmp_path / "run"
    result = _audit(tmp_path, _config(tmp_path, cache, blind_baseline={"folds": 3}), out)
    assert result.exit_code == 0, result.output
    gate = json.loads((out / "metrics.json").read_text())["blind_baseline"]
    assert not gate["fires"] and gate["source"] == DESIGN_SOURCE and gate["folds"] == 3
    assert gate["n_members"] + gate["n_nonmembers"] == 28  # the pool: 70% of 40 verses
    assert gate["ci_low"] <= 0.5
    page = (out / "report.html").read_text()
    assert "blind baseline (no model)" in page and "No distribution shift detected" in page
    assert DISTINGUISHABLE not in page
    assert "blind baseline (no model)" in result.output

    shifted = tmp_path / "shifted"
    raw = {**_config(tmp_path, cache), "supplied_texts": _shifted_files(tmp_path)}
    result = _audit(tmp_path, raw, shifted)
    assert result.exit_code == 0, result.output
    gate = json.loads((shifted / "metrics.json").read_text())["blind_baseline"]
    assert gate["fires"] and gate["auc"] > 0.9
    assert gate["source"].startswith("supplied: ") and "members.jsonl" in gate["source"]
    assert (gate["n_members"], gate["n_nonmembers"]) == (30, 30)
    page = (shifted / "report.html").read_text()
    assert (
        f'<p class="warning" id="blind-baseline"><strong>Warning:</strong> {DISTINGUISHABLE}'
        in page
    )
    assert DISTINGUISHABLE in " ".join(result.output.split())


def test_run_text_audit_takes_member_and_nonmember_texts(tmp_path, cache):
    config = validate_config(_config(tmp_path, cache))
    members, nonmembers = _dated(_sentences(24, 4), 5), _sentences(24, 6)
    result = run_text_audit(config, member_texts=members, nonmember_texts=nonmembers)
    gate = result.blind_baseline
    assert gate["source"] == ARGUMENT_SOURCE and gate["fires"]
    assert result.to_json()["blind_baseline"] == gate
    off = validate_config(_config(tmp_path, cache, blind_baseline=False))
    assert off.audit.blind_baseline is None and run_gate(prepare_text_audit(off)) is None


def test_the_design_texts_are_target_zeros_members_and_nonmembers_with_their_groups(
    tmp_path, cache
):
    setup = prepare_text_audit(validate_config(_config(tmp_path, cache)))
    members, nonmembers, groups = design_texts(setup)
    pool = setup.split.pool
    assert members == [setup.dataset.texts[i] for i in pool[setup.keep[0]]]
    assert len(members) + len(nonmembers) == len(pool) == groups.size
    assert not set(groups[: len(members)]) & set(groups[len(members) :])  # groups are one side
    first = run_gate(setup)
    assert run_gate(setup) == first and first["seed"] == setup.config.audit.seed


@pytest.mark.parametrize(
    ("audit", "supplied", "message"),
    [
        ({"blind_baseline": {"folds": 1}}, None, "greater than or equal to 2"),
        ({"blind_baseline": {"level": 1.5}}, None, "less than 1"),
        ({"blind_baseline": {"fold": 3}}, None, "did you mean 'folds'"),
        ({}, {"members": "members.csv", "nonmembers": "nonmembers.txt"}, "a .txt or .jsonl"),
        ({}, {"members": "absent.txt", "nonmembers": "nonmembers.txt"}, "is not a file"),
        ({"blind_baseline": False}, "shifted", "drop audit.blind_baseline: false"),
        ({"blind_baseline": {"folds": 20}}, None, "at least 40 texts per side"),
    ],
)
def test_bad_gate_settings_fail_before_training(
    tmp_path, cache, monkeypatch, audit, supplied, message
):
    def fail(*args, **kwargs):
        raise AssertionError("an LM was trained")

    monkeypatch.setattr("mialens.models.causal_lm.train_causal_lm", fail)
    raw = _config(tmp_path, cache, **audit)
    files = _shifted_files(tmp_path)
    if supplied == "shifted":
        raw["supplied_texts"] = files
    elif supplied:
        (tmp_path / "members.csv").write_text("a\n", encoding="utf-8")
        raw["supplied_texts"] = {k: str(tmp_path / v) for k, v in supplied.items()}
    result = _audit(tmp_path, raw, tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_member_texts_come_in_pairs(tmp_path, cache):
    setup = prepare_text_audit(validate_config(_config(tmp_path, cache)))
    with pytest.raises(ConfigError, match="give both member_texts and nonmember_texts"):
        run_gate(setup, member_texts=_sentences(20, 7))
