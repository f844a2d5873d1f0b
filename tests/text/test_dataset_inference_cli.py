"""`mialens dataset-inference` on a tiny text audit: an LM that memorised its texts is
caught on them and not on texts it never saw, a shifted pair is refused (or, with
--allow-shift, flagged), and bad input is refused before any LM runs."""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mialens.cli import app
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config
from mialens.workflows.dataset_inference import run_dataset_inference

runner = CliRunner()
LETTERS = np.array(list(string.ascii_lowercase))
FEATURES = ["loss", "zlib", "lowercase", "min_k", "min_k_plus_plus", "recall"]


def _lines(seed: int, n: int, letters: np.ndarray = LETTERS) -> list[str]:
    """Random 20-letter words, capitalised (so that lowercasing changes them)."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(letters, size=20)).capitalize() for _ in range(n)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Two byte-level LMs, each trained 40 epochs on 20 of 40 pool texts (they memorise)."""
    folder = tmp_path_factory.mktemp("audit")
    raw = {
        "dataset": {"name": "txt", "path": str(_write(folder / "verses.txt", _lines(7, 56)))},
        "model": {"layers": 1, "width": 32, "heads": 2, "context": 48},
        "train": {"epochs": 40, "batch_size": 8, "lr": 0.01},
        "audit": {
            "num_models": 2,
            "pool_size": 40,
            "population_size": 8,
            "bootstrap": 0,
            "fpr": [0.1],
            "attacks": FEATURES,
            "cache_dir": str(folder / "cache"),
        },
    }
    run_audit(validate_config(raw), folder / "run")
    return folder / "run"


def _pool_texts(run: Path, member: bool) -> list[str]:
    """Target 0's pool members (or non-members), read back by their ``<file>:<line>`` ids."""
    lines = (run.parent / "verses.txt").read_text(encoding="utf-8").splitlines()
    with open(run / "samples.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["target"] == "0"]
    ids = [r["sample_id"] for r in rows if r["member"] == str(int(member))]
    return [lines[int(i.split(":")[1]) - 1] for i in ids]


def _invoke(run: Path, suspect: Path, validation: Path, *extra: str):
    args = ["dataset-inference", str(run), "--suspect", str(suspect)]
    return runner.invoke(app, [*args, "--validation", str(validation), "--quiet", *extra])


def _refuse_lm_passes(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("an LM was run")

    monkeypatch.setattr("mialens.signals.token_logprobs.compute_token_logprobs", fail)


def test_the_memorised_texts_are_caught_against_held_out_ones(run, tmp_path):
    suspect = _write(tmp_path / "suspect.txt", _pool_texts(run, member=True))
    validation = _write(tmp_path / "validation.txt", _lines(11, 20))
    result = _invoke(run, suspect, validation)
    assert result.exit_code == 0, result.output
    assert "rejects at alpha 0.05" in result.output
    assert "No distribution shift detected" in " ".join(result.output.split())
    doc = json.loads((run / "dataset_inference" / "dataset_inference.json").read_text())
    assert doc["rejects"] and doc["p_value"] < 0.001
    assert (doc["n_suspect"], doc["n_validation"], doc["model"]) == (20, 20, 0)
    assert list(doc["weights"]) == FEATURES
    assert doc["features"][3] == {"name": "min_k", "k": 0.2}
    assert doc["suspect"]["sha256"] != doc["validation"]["sha256"]
    assert not doc["blind_baseline"]["fires"] and not doc["shift_allowed"]
    assert doc["blind_baseline"]["ci_low"] <= doc["blind_baseline"]["auc"]
    with_reference = run_dataset_inference(run, suspect, validation, tmp_path, reference=True)
    assert list(with_reference.inference.weights) == [*FEATURES, "reference"]
    assert with_reference.inference.rejects


def test_texts_the_target_never_trained_on_are_not_caught(run, tmp_path):
    """Target 0's pool non-members (they trained LM 1) against texts no LM saw: the target
    LM saw neither, so the test does not reject (the reference ratio is left out)."""
    suspect = _write(tmp_path / "suspect.jsonl", [json.dumps({"verse": t}) for t in
                                                  _pool_texts(run, member=False)])  # fmt: skip
    validation = _write(tmp_path / "validation.txt", _lines(11, 20))
    out = tmp_path / "out"
    result = _invoke(run, suspect, validation, "--out", str(out), "--text-field", "verse")
    assert result.exit_code == 0, result.output
    assert "does not reject at alpha 0.05" in result.output
    doc = json.loads((out / "dataset_inference.json").read_text())
    assert not doc["rejects"] and doc["p_value"] > 0.05
    on_lm_1 = run_dataset_inference(run, suspect, validation, out, model=1, text_field="verse")
    assert on_lm_1.inference.rejects  # the same texts trained LM 1


def test_a_shifted_pair_is_refused_before_any_lm_runs_and_allowed_with_a_flag(
    run, tmp_path, monkeypatch
):
    suspect = _write(tmp_path / "suspect.txt", _lines(3, 20, np.array(list("abcdefghij"))))
    validation = _write(tmp_path / "validation.txt", _lines(11, 20))
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _refuse_lm_passes(patch)
        refused = _invoke(run, suspect, validation, "--out", str(out))
    message = " ".join(refused.output.split())
    assert refused.exit_code == 2
    assert "dataset inference refused" in message and "--allow-shift" in message
    assert "members and non-members are distinguishable without the model" in message
    assert not out.exists()

    allowed = _invoke(run, suspect, validation, "--allow-shift", "--out", str(out))
    assert allowed.exit_code == 0, allowed.output
    assert "SHIFTED SETS (--allow-shift)" in allowed.output
    assert "DATASET INFERENCE ON SHIFTED SETS" in allowed.output  # the logged warning
    doc = json.loads((out / "dataset_inference.json").read_text())
    assert doc["shift_allowed"] and doc["blind_baseline"]["fires"]


def test_bad_input_is_refused_before_any_lm_runs(run, tmp_path, monkeypatch):
    _refuse_lm_passes(monkeypatch)
    good = _write(tmp_path / "good.txt", _lines(11, 20))
    few = _write(tmp_path / "few.txt", _lines(12, 9))
    long = _write(tmp_path / "long.txt", [*_lines(13, 19), "x" * 60])
    cases = [
        ((tmp_path / "absent.txt", good), "the suspect file", "absent.txt does not exist"),
        ((good, tmp_path / "texts.csv"), "the validation file", "give a .txt file"),
        ((few, good), "few.txt holds 9 texts", "needs at least 10 per set"),
        ((good, long), "long.txt:20 needs 61 tokens", "more than the LMs' context of 48"),
    ]
    for (suspect, validation), first, second in cases:
        result = _invoke(run, suspect, validation)
        message = " ".join(result.output.split())
        assert result.exit_code == 2 and first in message and second in message, message
    result = _invoke(run, good, good, "--model", "2")
    message = " ".join(result.output.split())
    assert "model 2 is not an LM of the audit, which trained 2 (give 0 to 1)" in message
    result = _invoke(tmp_path, good, good)
    assert "is not an audit run folder" in " ".join(result.output.split())


def test_a_classifier_audit_is_refused(tmp_path):
    raw = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden": [8]},
        "train": {"epochs": 1},
        "audit": {"num_models": 2, "pool_size": 100, "bootstrap": 0, "attacks": ["loss"]},
    }
    run_audit(validate_config(raw), tmp_path / "run")
    texts = _write(tmp_path / "texts.txt", _lines(11, 20))
    result = _invoke(tmp_path / "run", texts, texts)
    assert result.exit_code == 2
    assert "holds a classifier audit, not a text audit" in " ".join(result.output.split())
