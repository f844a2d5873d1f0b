"""The small causal transformer and its next-token trainer."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from mialens.errors import DataError
from mialens.models.causal_lm import (
    CausalLMConfig,
    CausalTransformer,
    LMTrainConfig,
    next_token_loss,
    train_causal_lm,
    train_causal_lm_ensemble,
)

CONFIG = CausalLMConfig(vocab_size=257, layers=1, width=32, heads=2, context=32)
RECIPE = LMTrainConfig(epochs=8, batch_size=8, lr=1e-2)


def _train(tokens, lengths, seed=0):
    return train_causal_lm(
        lambda: CausalTransformer(CONFIG), tokens, lengths, RECIPE, seed, CONFIG.vocab_size
    )


def test_training_lowers_the_next_token_loss(byte_corpus) -> None:
    result = _train(*byte_corpus)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == RECIPE.epochs
    assert losses[-1] < 0.5 * losses[0]  # from about log(257) = 5.5 nats per byte


def test_same_seed_same_weights_other_seed_other_weights(byte_corpus) -> None:
    a, b, c = (
        _train(*byte_corpus, seed=3),
        _train(*byte_corpus, seed=3),
        _train(*byte_corpus, seed=4),
    )
    for name, weight in a.state_dict.items():
        assert torch.equal(weight, b.state_dict[name])
    assert not torch.equal(a.state_dict["head.weight"], c.state_dict["head.weight"])


def test_the_model_is_causal_and_exposes_features() -> None:
    torch.manual_seed(0)
    model = CausalTransformer(CONFIG).eval()
    tokens = torch.randint(0, 257, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = 0
    with torch.no_grad():
        logits, other = model(tokens), model(changed)
        assert model.features(tokens).shape == (2, 10, 32)
    assert logits.shape == (2, 10, 257)
    torch.testing.assert_close(logits[:, :6], other[:, :6])  # the past never sees the future
    assert not torch.allclose(logits[:, 6:], other[:, 6:])


def test_next_token_loss_ignores_padding() -> None:
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 1] = 2.0  # predicts token 1 at position 1
    tokens = torch.tensor([[0, 1, 2, 2]])
    expected = -torch.log_softmax(torch.tensor([0.0, 2.0, 0.0]), 0)[1]
    torch.testing.assert_close(next_token_loss(logits, tokens, torch.tensor([2])), expected)


def test_bad_configs_and_inputs_are_refused(byte_corpus) -> None:
    with pytest.raises(pydantic.ValidationError, match="not divisible by heads"):
        CausalLMConfig(vocab_size=10, width=30, heads=4)
    tokens, lengths = byte_corpus
    with pytest.raises(DataError, match=r"token ids must lie in \[0, 100\)"):
        train_causal_lm(lambda: CausalTransformer(CONFIG), tokens, lengths, RECIPE, 0, 100)
    with pytest.raises(DataError, match="2 to T tokens"):
        _train(tokens, np.ones_like(lengths))
    with pytest.raises(DataError, match="exceed the model's context"):
        CausalTransformer(CONFIG)(torch.zeros(1, 40, dtype=torch.long))


def test_an_ensemble_trains_each_model_as_if_alone(byte_corpus) -> None:
    tokens, lengths = byte_corpus
    rows = [np.array([5, 0, 17, 9, 22, 3, 11, 14]), np.array([1, 2, 4, 6, 8, 10, 12, 13])]
    seeds = [7, 2]
    build = lambda: CausalTransformer(CONFIG)  # noqa: E731
    together = train_causal_lm_ensemble(build, tokens, lengths, rows, RECIPE, seeds, 257)
    x = torch.as_tensor(tokens)
    for result, r, seed in zip(together, rows, seeds, strict=True):
        alone = train_causal_lm(build, tokens[r], lengths[r], RECIPE, seed, 257)
        losses = [h["train_loss"] for h in result.history]
        assert losses == pytest.approx([h["train_loss"] for h in alone.history], rel=1e-5)
        # Adam's normalised steps turn rounding in near-zero gradients into weight
        # differences of up to lr; the models they make predict alike
        models = [CausalTransformer(CONFIG).eval() for _ in range(2)]
        models[0].load_state_dict(result.state_dict)
        models[1].load_state_dict(alone.state_dict)
        with torch.no_grad():
            p_together, p_alone = (torch.softmax(m(x), -1) for m in models)
        torch.testing.assert_close(p_together, p_alone, atol=2e-3, rtol=0)
    with pytest.raises(DataError, match="all of one size"):
        train_causal_lm_ensemble(build, tokens, lengths, [rows[0], rows[1][:3]], RECIPE, seeds, 257)
