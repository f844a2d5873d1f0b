"""`mialens audit` of a Hugging Face causal LM saved in a local folder (``model: {hf:
folder}``): each LM is the tiny GPT-2 the test builds from a config and saves (no
download), fine-tuned on its member half; a rerun trains nothing, a changed base model
is retrained, and bad folders, tokenizers and contexts are refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tests.text.conftest import write_text_config
from tests.text.test_text_audit import _refuse_work, _write_texts
from typer.testing import CliRunner

from mialens.audit.text_design import prepare_text_audit
from mialens.cli import app
from mialens.data.tokenizers import BPETokenizer
from mialens.workflows.config import validate_config

transformers = pytest.importorskip("transformers")
runner = CliRunner()


def _save_gpt2(folder: Path, vocab_size: int, positions: int = 128, seed: int = 0) -> None:
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=positions, n_embd=32, n_layer=2, n_head=2
    )
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)


def _vocab(folder: Path) -> int:
    return json.loads((folder / "config.json").read_text())["vocab_size"]


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    return _write_texts(tmp_path / "verses.txt")


@pytest.fixture
def gpt2(tmp_path: Path, texts: Path) -> Path:
    """A tiny GPT-2 and a BPE tokenizer learned on the test's texts, in one folder."""
    folder = tmp_path / "gpt2"
    bpe = BPETokenizer.train(texts.read_text(encoding="utf-8").splitlines(), 300)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe.backend, bos_token="<s>", eos_token="<s>"
    )
    tokenizer.save_pretrained(folder)
    _save_gpt2(folder, len(tokenizer))
    return folder


def _config(tmp_path: Path, texts: Path, model: dict, **sections) -> str:
    raw = {
        "dataset": {"name": "txt", "path": str(texts)},
        "model": model,
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.001},
        "audit": {
            "num_models": 4,
            "bootstrap": 10,
            "fpr": [0.1],
            "population_size": 6,
            "cache_dir": str(tmp_path / "cache"),
        },
        **sections,
    }
    return write_text_config(tmp_path, raw)


def _audit(config: str, out: Path, *extra: str) -> dict:
    result = runner.invoke(app, ["audit", config, "--out", str(out), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_an_hf_audit_fine_tunes_the_model_and_a_rerun_trains_nothing(tmp_path, texts, gpt2):
    config = _config(tmp_path, texts, {"hf": str(gpt2)})
    metrics = _audit(config, tmp_path / "run")
    assert not any(r["cached"] for r in metrics["training"]) and len(metrics["training"]) == 4
    assert metrics["design"]["base_model"] == str(gpt2)
    assert metrics["config"]["tokenizer"] == {"kind": "hf", "path": str(gpt2), "vocab_size": None}
    assert "mean token loss on members" in (tmp_path / "run" / "report.html").read_text()
    assert (tmp_path / "run" / "samples.csv").is_file()
    analysed = runner.invoke(app, ["analyze", str(tmp_path / "run"), "--quiet"])
    assert analysed.exit_code == 0, analysed.output
    assert (tmp_path / "run" / "analysis" / "summary.json").is_file()

    with pytest.MonkeyPatch.context() as patch:
        _refuse_work(patch)  # other attacks: no LM trained or run
        again = _audit(config, tmp_path / "again", "--set", "audit.attacks=[loss, min_k]")
    assert all(r["cached"] for r in again["training"])

    _save_gpt2(gpt2, _vocab(gpt2), seed=1)  # other base weights: every LM is fine-tuned again
    changed = _audit(config, tmp_path / "changed")
    assert not any(r["cached"] for r in changed["training"])
    assert {r["key"] for r in changed["training"]}.isdisjoint(r["key"] for r in metrics["training"])


def test_canaries_are_measured_on_a_fine_tuned_model(tmp_path, texts, gpt2):
    canaries = {"repetitions": [1, 2], "per_repetition": 1, "candidates": 100}
    audit = {"num_models": 4, "bootstrap": 0, "fpr": [0.1], "population_size": 6,
             "attacks": ["loss"], "canaries": canaries, "blind_baseline": False,
             "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    config = _config(tmp_path, texts, {"hf": str(gpt2)}, audit=audit)
    metrics = _audit(config, tmp_path / "run")
    assert [row["repetitions"] for row in metrics["canaries"]["by_repetition"]] == [1, 2]


def _refused(tmp_path: Path, monkeypatch, config: str) -> str:
    _refuse_work(monkeypatch)
    result = runner.invoke(app, ["audit", config, "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_folders_without_a_loadable_model_are_refused(tmp_path, monkeypatch, texts, gpt2):
    missing = _config(tmp_path, texts, {"hf": str(tmp_path / "nowhere")})
    assert "is not a folder" in _refused(tmp_path, monkeypatch, missing)
    (gpt2 / "model.safetensors").rename(gpt2 / "pytorch_model.bin")
    pickled = _config(tmp_path, texts, {"hf": str(gpt2)})
    assert "pickled .bin weights are never loaded" in _refused(tmp_path, monkeypatch, pickled)


@pytest.mark.parametrize(
    ("model", "sections", "message"),
    [
        ({"layers": 2}, {}, "with hf, drop layers: a pretrained model"),
        ({}, {"tokenizer": {"kind": "bytes"}}, "tokenizer.kind bytes cannot feed model.hf"),
        ({}, {"tokenizer": {"kind": "bpe"}}, "tokenizer.kind bpe cannot feed model.hf"),
    ],
)
def test_built_in_fields_and_other_tokenizers_are_refused_with_an_hf_model(
    tmp_path, monkeypatch, texts, gpt2, model, sections, message
):
    config = _config(tmp_path, texts, {"hf": str(gpt2), **model}, **sections)
    assert message in _refused(tmp_path, monkeypatch, config)


def test_samples_past_the_context_and_a_larger_vocabulary_are_refused(
    tmp_path, monkeypatch, texts, gpt2
):
    config = _config(tmp_path, texts, {"hf": str(gpt2)})
    _save_gpt2(gpt2, _vocab(gpt2), positions=4)
    assert "more than the context of model.hf, 4 tokens" in _refused(tmp_path, monkeypatch, config)
    _save_gpt2(gpt2, 100)
    assert "more than the vocab_size 100 of model.hf" in _refused(tmp_path, monkeypatch, config)


def test_the_transformers_package_is_named_when_missing(tmp_path, monkeypatch, texts, gpt2):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    config = _config(tmp_path, texts, {"hf": str(gpt2)})
    assert "pip install 'mialens[transformers]'" in _refused(tmp_path, monkeypatch, config)


def test_the_recorded_hf_configuration_validates_again(tmp_path, texts, gpt2):
    raw = yaml.safe_load(Path(_config(tmp_path, texts, {"hf": str(gpt2)})).read_text())
    spec = validate_config(raw)
    assert spec.model.context == 128 and spec.tokenizer.path == gpt2
    assert validate_config(spec.model_dump(mode="json")) == spec
    setup = prepare_text_audit(spec)
    assert setup.spec(0)["model"] == setup.spec(1)["model"] and len(set(setup.keys)) == 4
