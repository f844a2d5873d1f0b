"""The transformers adapter, on a tiny GPT-2 built from a config (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mialens.errors import ConfigError
from mialens.models.causal_lm import LMTrainConfig, train_causal_lm
from mialens.models.hf_adapter import HFCausalLM, load_hf_causal_lm
from mialens.signals.token_logprobs import compute_token_logprobs

transformers = pytest.importorskip("transformers")


@pytest.fixture
def tiny_gpt2(tmp_path: Path) -> Path:
    config = transformers.GPT2Config(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


def test_fine_tuning_a_saved_model_lowers_its_loss(tiny_gpt2: Path, byte_corpus) -> None:
    tokens, lengths = byte_corpus
    model = load_hf_causal_lm(tiny_gpt2)
    assert isinstance(model, HFCausalLM) and model.vocab_size == 257 and model.context == 32
    before = compute_token_logprobs(model, tokens, lengths, 257)
    recipe = LMTrainConfig(epochs=6, batch_size=8, lr=1e-2)
    result = train_causal_lm(lambda: load_hf_causal_lm(tiny_gpt2), tokens, lengths, recipe, 0, 257)
    model.load_state_dict(result.state_dict)
    after = compute_token_logprobs(model, tokens, lengths, 257)
    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]
    assert after.logprob[after.mask].mean() > before.logprob[before.mask].mean() + 1.0
    with torch.no_grad():
        assert model.features(torch.as_tensor(tokens[:2])).shape == (2, tokens.shape[1], 16)


def test_folders_without_a_model_or_with_pickled_weights_are_refused(tmp_path, tiny_gpt2) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_hf_causal_lm(tmp_path)
    (tiny_gpt2 / "model.safetensors").rename(tiny_gpt2 / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"pickled \.bin weights are never loaded"):
        load_hf_causal_lm(tiny_gpt2)
