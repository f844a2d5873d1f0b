"""The text audit end to end: `mialens audit` on a user's .txt trains tiny causal LMs on
group-level halves, writes the usual outputs, reuses its LMs and cached log-probabilities,
and refuses bad text configurations before training."""

from __future__ import annotations

import csv
import json
import re
import string
from pathlib import Path

import numpy as np
import pytest
from tests.text.conftest import write_text_config
from typer.testing import CliRunner

from mialens.attacks.text_attacks import TEXT_ATTACKS
from mialens.audit.text_design import encode_query_set, prepare_text_audit
from mialens.audit.text_settings import TextModelConfig
from mialens.cli import app
from mialens.data.text import TextDataset
from mialens.data.tokenizers import ByteTokenizer
from mialens.errors import ConfigError, DataError
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config, validate_config

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
WORDS = [
    "the",
    "lord",
    "god",
    "said",
    "unto",
    "moses",
    "and",
    "aaron",
    "spake",
    "children",
    "of",
    "israel",
    "water",
    "light",
]


def _write_texts(path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 7))).capitalize() for _ in range(n)]
    lines[5] = lines[3] + "."  # a near duplicate: one group with line 4
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(tmp_path: Path, **sections) -> dict:
    raw = {
        "dataset": {"name": "txt", "path": str(_write_texts(tmp_path / "verses.txt"))},
        "model": {"layers": 1, "width": 16, "heads": 2, "context": 64},
        "train": {"epochs": 2, "batch_size": 8},
        "audit": {
            "num_models": 4,
            "bootstrap": 10,
            "fpr": [0.1],
            "population_size": 6,
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def _refuse_work(monkeypatch) -> None:
    """Make training an LM or running one on a query set fail the test."""

    def fail(*args, **kwargs):
        raise AssertionError("an LM was trained or run")

    monkeypatch.setattr("mialens.models.causal_lm.train_causal_lm", fail)
    monkeypatch.setattr("mialens.signals.token_logprobs.compute_token_logprobs", fail)


def _samples(out: Path) -> list[dict]:
    with open(out / "samples.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_text_audit_writes_outputs_and_a_rerun_reuses_lms_and_log_probabilities(
    tmp_path, monkeypatch
):
    config, out = write_text_config(tmp_path, _config(tmp_path)), tmp_path / "run"
    result = runner.invoke(app, ["audit", config, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "mean token loss (nats)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["attacks"]) == set(TEXT_ATTACKS)
    tpr = metrics["attacks"]["lira_online"]["tpr_at_fpr"]["0.1"]
    assert tpr["bootstrap"]["low"] <= tpr["mean"] <= tpr["bootstrap"]["high"]
    assert {"train_loss", "test_loss", "loss_gap"} <= set(metrics["utility"])
    assert not any(r["cached"] for r in metrics["training"])
    rows = _samples(out)
    assert all(r["sample_id"].startswith("verses.txt:") for r in rows)
    by_target = [[r for r in rows if r["target"] == str(t)] for t in range(4)]
    assert len({len(rows_t) for rows_t in by_target}) == 1
    groups = [{(r["label"], r["member"]) for r in rows_t} for rows_t in by_target]
    assert all(len({g for g, _ in pairs}) == len(pairs) for pairs in groups)  # a group: one side
    assert "mean token loss on members" in (out / "report.html").read_text()

    _refuse_work(monkeypatch)  # a second run with other attacks trains and runs no LM
    again = tmp_path / "again"
    result = runner.invoke(
        app,
        ["audit", config, "--out", str(again), "--quiet", "--set", "audit.attacks=[loss, min_k]"],
    )
    assert result.exit_code == 0, result.output
    second = json.loads((again / "metrics.json").read_text())
    assert all(r["cached"] for r in second["training"])
    assert [r["loss"] for r in _samples(again)] == [r["loss"] for r in rows]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"audit": {"attacks": ["loss", "confidence"]}}, "scores classifiers"),
        ({"model": {"context": 8}}, "more than model.context = 8"),
        ({"audit": {"num_models": 2, "attacks": ["lira_online"]}}, "needs num_models >= 4"),
        ({"audit": {"attacks": [{"name": "recall", "shots": 50}]}}, "shots = 50"),
        ({"model": {"width": 30, "heads": 4}}, "not divisible by heads"),
        ({"tokenizer": {"kind": "hf"}}, "give it for kind hf only"),
        ({"tokenizer": {"vocab_size": 500}}, "not of bytes"),
        ({"dataset": {"path": None}}, "give dataset.path"),
        ({"audit": {"pool_size": 40}}, "audit.pool_size between 1 and 39"),
    ],
)
def test_bad_text_configs_fail_before_training(tmp_path, monkeypatch, sections, message):
    _refuse_work(monkeypatch)
    config = write_text_config(tmp_path, _config(tmp_path, **sections))
    result = runner.invoke(app, ["audit", config, "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_query_set_past_the_context_or_without_a_token_names_the_sample():
    tokenizer, model = ByteTokenizer(), TextModelConfig(context=8)
    ids = ["verses.txt:9", "verses.txt:2", "verses.txt:14"]
    config_message = (
        "the texts: sample verses.txt:2 needs 10 tokens (start token and text), more than "
        "model.context = 8; raise model.context to at least 10"
    )
    with pytest.raises(ConfigError, match=re.escape(config_message)):
        encode_query_set(tokenizer, ["abc", "x" * 9, "de"], ids, model, "the texts")
    data_message = (
        "q: sample verses.txt:14 needs 9 tokens (start token, prefix and text), more than the "
        "LMs' context of 8: the audit's LMs cannot score it; shorten the texts"
    )
    with pytest.raises(DataError, match=re.escape(data_message)):
        encode_query_set(tokenizer, ["abc", "de", "x" * 7], ids, model, "q", [1], trained=True)
    with pytest.raises(ConfigError, match=r"the texts: sample verses\.txt:14 encodes to no token"):
        encode_query_set(tokenizer, ["abc", "de", ""], ids, model, "the texts")
    query = encode_query_set(tokenizer, ["abc", "de", "f"], ids, model, "the texts", [7])
    assert query.lengths.tolist() == [5, 4, 3] and query.skip == 1
    assert query.tokens[:, :2].tolist() == [[tokenizer.bos_id, 7]] * 3


def test_text_configs_are_text_audits_and_the_example_validates(tmp_path):
    raw = _config(tmp_path)
    assert type(validate_config(raw)).__name__ == "TextAuditSpec"
    example = load_config(REPO / "examples" / "text_kjv_small.yaml")
    assert example.dataset.name == "kjv" and example.audit.num_models == 4


def test_bpe_tokenizer_and_keys_are_the_same_on_a_rerun(tmp_path):
    config = validate_config(_config(tmp_path, tokenizer={"kind": "bpe", "vocab_size": 300}))
    first, second = prepare_text_audit(config), prepare_text_audit(config)
    assert first.tokenizer.fingerprint == second.tokenizer.fingerprint
    assert first.keys == second.keys and len(set(first.keys)) == 4


def test_extra_pool_texts_join_the_pool_with_their_own_groups(tmp_path):
    config = validate_config(_config(tmp_path))
    plain = prepare_text_audit(config)
    canaries = TextDataset(
        "canaries", ("zq canary one", "zq canary one", "xk canary two"),
        np.array(["c1a", "c1b", "c2"]), np.array([0, 0, 1]),
    )  # fmt: skip
    setup = prepare_text_audit(config, extra_pool=canaries)
    n = len(plain.dataset)
    np.testing.assert_array_equal(setup.split.pool[: len(plain.split.pool)], plain.split.pool)
    np.testing.assert_array_equal(setup.split.pool[-3:], [n, n + 1, n + 2])
    keep = setup.keep[:, -3:]
    assert (keep[:, 0] == keep[:, 1]).all() and keep[:, 0].sum() == keep[:, 2].sum() == 2
    assert setup.dataset.groups[n] > plain.dataset.groups.max()
    assert setup.keys != plain.keys  # the data's fingerprint covers the extra texts


def test_an_overfit_lm_leaks_to_lira_online(tmp_path):
    rng = np.random.default_rng(7)
    letters = np.array(list(string.ascii_lowercase))
    lines = ["".join(rng.choice(letters, size=20)) for _ in range(48)]
    (tmp_path / "random.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = _config(
        tmp_path,
        dataset={"path": str(tmp_path / "random.txt")},
        model={"width": 32, "heads": 2, "context": 32},
        train={"epochs": 40, "batch_size": 8, "lr": 0.01},
        audit={"attacks": ["loss", "lira_online"], "pool_size": 32, "bootstrap": 0},
    )
    result = run_audit(validate_config(raw))
    assert result.metrics["lira_online"].auc.mean > 0.8
    assert result.utility["train_loss"]["mean"] < result.utility["test_loss"]["mean"] - 0.5


@pytest.mark.parametrize(
    "tokenizer", [{"kind": "bytes"}, {"kind": "bpe"}, {"kind": "bpe", "vocab_size": 300}]
)
def test_the_recorded_text_configuration_validates_again(tmp_path, tokenizer):
    spec = validate_config(_config(tmp_path, tokenizer=tokenizer))
    again = validate_config(spec.model_dump(mode="json"))
    assert again == spec
    assert again.tokenizer.vocab_size == (
        tokenizer.get("vocab_size", 1024) if tokenizer["kind"] == "bpe" else None
    )


@pytest.mark.parametrize("executor", [{"ensemble": "on"}, {"ensemble_size": 2}])
def test_a_text_audit_refuses_batched_ensembles(tmp_path, executor):
    with pytest.raises(ConfigError, match="trains each LM as its own task"):
        validate_config(_config(tmp_path, executor=executor))


def test_a_text_audit_refuses_ray_gpus_on_the_cpu(tmp_path):
    with pytest.raises(ConfigError, match=r"executor\.num_gpus: 1 reserves GPUs"):
        validate_config(_config(tmp_path, executor={"kind": "ray", "num_gpus": 1}))
