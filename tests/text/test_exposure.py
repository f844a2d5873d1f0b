"""Exposure of secret-sharer canaries: exact values, the skew-normal extrapolation against
exact ranks on 10**4 enumerated candidates of a tiny trained LM, and repetition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from mialens.attacks.exposure import (
    candidate_log_perplexities,
    candidate_sample,
    exact_canary_exposures,
    exposures_from_space,
    extrapolated_canary_exposures,
    space_texts,
)
from mialens.data.secret_canaries import SecretFormat, insert_canaries
from mialens.data.text import TextDataset
from mialens.data.tokenizers import ByteTokenizer, encode_padded
from mialens.errors import ConfigError, DataError
from mialens.metrics.exposure import exact_exposure, extrapolated_exposure
from mialens.models.causal_lm import (
    CausalLMConfig,
    CausalTransformer,
    LMTrainConfig,
    train_causal_lm,
)
from mialens.signals.token_logprobs import compute_token_logprobs

PHRASES = ["for his mercy endureth for ever", "in the beginning", "let there be light"]
FOUR_DIGITS = SecretFormat(template="pin {secret}", length=4, exact_only=True)
CONFIG = CausalLMConfig(vocab_size=257, layers=1, width=32, heads=2, context=40)
TOK = ByteTokenizer()


def test_exact_rank_and_exposure_with_ties_against_the_canary() -> None:
    others = np.array([3.0, 1.0, 2.0, 2.0, 5.0])  # |R| = 6 with the canary
    result = exact_exposure([2.0, 0.5, 6.0, 1.5], others)
    assert result.space == 6
    assert result.rank.tolist() == [4, 1, 6, 2]  # |{r' : Px(r') <= Px(canary)}|
    assert result.best_rank.tolist() == [2, 1, 6, 2]
    assert result.ties.tolist() == [2, 0, 0, 0] and result.tied.tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(
        result.exposure, [math.log2(6 / 4), math.log2(6), 0.0, math.log2(3)], rtol=1e-15
    )
    np.testing.assert_allclose(result.best_exposure[0], math.log2(3), rtol=1e-15)
    with pytest.raises(DataError, match="NaN"):
        exact_exposure([1.0], [2.0, np.nan])


def test_extrapolation_is_the_released_skew_normal_formula() -> None:
    sample = stats.skewnorm.rvs(4.0, loc=30.0, scale=3.0, size=20_000, random_state=1)
    canary = np.array([29.0, 31.0, 40.0, 25.0])
    result = extrapolated_exposure(canary, sample)
    params = stats.skewnorm.fit(sample)  # TF Privacy's compute_exposure_extrapolation
    np.testing.assert_allclose(
        result.exposure, -np.log2(stats.skewnorm.cdf(canary, *params)), rtol=1e-9
    )
    truth = -np.log2(stats.skewnorm.cdf(canary, 4.0, loc=30.0, scale=3.0))
    np.testing.assert_allclose(result.exposure[:3], truth[:3], atol=0.1)
    assert result.beyond_sample.tolist() == [False, False, False, True]
    assert result.sample_size == 20_000 and result.ks_statistic < 0.02
    with pytest.raises(DataError, match="at least 100 sampled candidates"):
        extrapolated_exposure(canary, sample[:99])
    with pytest.raises(DataError, match="same log-perplexity"):
        extrapolated_exposure(canary, np.full(200, 3.0))


@pytest.fixture(scope="module")
def trained() -> dict:
    """A tiny byte-level LM trained 12 epochs on 20 phrases plus 3 canaries ("pin" and 4 digits)
    inserted 1, 4 and 16 times each, and its log-perplexity of all 10**4 candidates."""
    ids = np.random.default_rng(5).permutation(400)[:20] * 3 + 1
    data = TextDataset("phrases", tuple(PHRASES[i % 3] for i in range(20)), ids, np.arange(20))
    out, record = insert_canaries(data, (1, 4, 16), 3, seed=2, secret_format=FOUR_DIGITS)
    tokens, lengths = encode_padded(TOK, list(out.texts), 40)
    recipe = LMTrainConfig(epochs=12, batch_size=16)
    result = train_causal_lm(lambda: CausalTransformer(CONFIG), tokens, lengths, recipe, 0, 257)
    model = CausalTransformer(CONFIG)
    model.load_state_dict(result.state_dict)
    logppl = candidate_log_perplexities(model, TOK, space_texts(record), 40, batch_size=512)
    return {"model": model.eval(), "record": record, "logppl": logppl}


def test_log_perplexity_is_the_full_sequence_nll(trained) -> None:
    model, record = trained["model"], trained["record"]
    text = record.canaries[0].text
    with torch.no_grad():
        ids = torch.as_tensor([[TOK.bos_id, *TOK.encode(text)]])
        logp = torch.log_softmax(model(ids).double(), -1)[0, :-1].gather(-1, ids[0, 1:, None])
    direct = -float(logp.sum())
    score = candidate_log_perplexities(model, TOK, [text, "pin 0000"], 40)
    assert score[0] == pytest.approx(direct, abs=1e-4)
    assert score[1] == pytest.approx(trained["logppl"][0], abs=1e-4)
    tokens, lengths = encode_padded(TOK, [text], 40)
    lp = compute_token_logprobs(model, tokens, lengths, 257)
    assert score[0] == pytest.approx(-lp.logprob.sum(), abs=1e-4)
    with pytest.raises(
        DataError, match="takes 9 tokens with its start token, more than max_tokens=8"
    ):
        candidate_log_perplexities(model, TOK, [text], 8)


def test_extrapolation_agrees_with_exact_ranks_on_ten_thousand_candidates(trained) -> None:
    """Every candidate, taken as the canary, against the 2,000 of a seeded sample: within
    1 bit wherever the exact exposure is at most 6 bits, i.e. wherever at least 1/64 of
    the space (about 31 sampled candidates) is more likely, so the fitted CDF is read
    inside the sampled range rather than in its extrapolated tail. 1 bit is a factor 2
    on the rank; the sampling error alone there is about 0.25 bits (Poisson, 31 points).
    """
    logppl, record = trained["logppl"], trained["record"]
    pool = np.setdiff1d(np.arange(logppl.size), record.secret_indices)
    exact = exact_exposure(logppl, logppl[pool]).exposure  # each candidate vs the others
    sample = np.random.default_rng(0).choice(pool, 2000, replace=False)
    extrapolated = extrapolated_exposure(logppl, logppl[sample]).exposure
    inside = exact <= 6.0
    assert inside.sum() > 9000
    assert np.abs(extrapolated - exact)[inside].max() <= 1.0
    canaries = exposures_from_space(record, logppl)
    well_inside = canaries.exposure <= 6.0
    np.testing.assert_allclose(
        extrapolated[record.secret_indices][well_inside], canaries.exposure[well_inside], atol=1.0
    )


def test_a_canary_inserted_16_times_is_more_exposed_than_one_inserted_once(trained) -> None:
    result = exposures_from_space(trained["record"], trained["logppl"])
    once, sixteen = (
        result.exposure[result.repetitions == 1],
        result.exposure[result.repetitions == 16],
    )
    assert result.method == "exact" and result.space_bits == pytest.approx(math.log2(10**4 - 8))
    assert sixteen.min() > once.max()
    assert sixteen.mean() - once.mean() > 4.0


def test_exact_exposures_enumerate_the_space_with_the_model(trained) -> None:
    fmt = SecretFormat(alphabet="0123456789", length=2, exact_only=True)
    _, record = insert_canaries(
        TextDataset("p", ("a b",), np.array([9]), np.zeros(1, int)),
        (1, 4),
        2,
        seed=0,
        secret_format=fmt,
    )
    result = exact_canary_exposures(trained["model"], TOK, record, 40)
    texts = space_texts(record)
    assert texts[7] == "my secret number is 07"
    expected = exposures_from_space(
        record, candidate_log_perplexities(trained["model"], TOK, texts, 40)
    )
    np.testing.assert_array_equal(result.exposure, expected.exposure)
    assert result.to_json()["rank"] == expected.detail.rank.tolist()
    with pytest.raises(ConfigError, match="exceeds max_candidates=50"):
        exact_canary_exposures(trained["model"], TOK, record, 40, max_candidates=50)
    with pytest.raises(ConfigError, match="at least 1,000,000"):
        extrapolated_canary_exposures(trained["model"], TOK, record, 40)


def test_extrapolated_exposures_sample_the_space_less_the_secrets(trained) -> None:
    data = TextDataset("p", ("a b", "c d"), np.array([31, 4]), np.arange(2))
    _, record = insert_canaries(data, (1, 16), 2, seed=3)  # 6 digits: 10**6 candidates
    sample = candidate_sample(record, 500, seed=4)
    assert np.unique(sample).size == 500 and not np.isin(sample, record.secret_indices).any()
    assert np.array_equal(sample, candidate_sample(record, 500, seed=4))
    result = extrapolated_canary_exposures(trained["model"], TOK, record, 40, 500, seed=4)
    again = extrapolated_canary_exposures(trained["model"], TOK, record, 40, 500, seed=4)
    np.testing.assert_array_equal(result.exposure, again.exposure)
    assert result.method == "extrapolated" and result.detail.sample_size == 500
    assert result.to_json()["fit"]["sample_size"] == 500
    with pytest.raises(ConfigError, match="candidate sample must hold"):
        candidate_sample(record, 10**6, seed=0)
