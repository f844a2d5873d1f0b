"""The text attacks of the audit on hand-built statistics: exact values, leave-one-out
references, and the registry's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.attacks.text_attacks import (
    TEXT_ATTACKS,
    TextSignals,
    build_text_attack,
    score_text_attacks,
    sequence_rmia,
)
from mialens.attacks.text_scores import sequence_lira
from mialens.errors import ConfigError
from mialens.signals.token_logprobs import TokenLogProbs

# per-token mean log-likelihood LL of 4 LMs (rows) on 2 pool samples, and on 2 population
# samples; every sample has two tokens, LL - 0.5 and LL + 0.5
LL = np.array([[-1.0, -3.0], [-2.0, -1.0], [-1.5, -4.0], [-4.0, -2.0]])
POP_LL = np.array([[-2.0, -3.0], [-2.5, -1.5], [-1.0, -2.0], [-3.0, -2.5]])
MEMBER = np.array([[True, False], [False, True], [True, False], [False, True]])


def _stats(ll: np.ndarray) -> TokenLogProbs:
    logprob = np.stack([ll - 0.5, ll + 0.5], axis=-1)
    var = np.full_like(logprob, 4.0)
    return TokenLogProbs(logprob, np.zeros_like(logprob), var, np.full(ll.shape[1], 2))


def _signals() -> TextSignals:
    return TextSignals(
        texts=("In the beginning", "AND GOD SAID"),
        member=MEMBER,
        plain=_stats(LL),
        population=_stats(POP_LL),
        lower=_stats(LL - 1.0),
        recall=_stats(LL * 2.0),
    )


def test_scores_without_references_on_hand_computed_values():
    s = _signals()
    np.testing.assert_allclose(build_text_attack("loss").score(s, 0), [-1.0, -3.0])
    # Min-K% at k = 0.5: the lower of the two tokens
    np.testing.assert_allclose(build_text_attack({"name": "min_k", "k": 0.5}).score(s, 3),
                               [-4.5, -2.5])  # fmt: skip
    # Min-K%++: (log p - mu) / sigma with mu = 0, sigma = 2, lowest token
    np.testing.assert_allclose(
        build_text_attack({"name": "min_k_plus_plus", "k": 0.5}).score(s, 0), [-0.75, -1.75]
    )
    # lowercase: log PPL(lower) / log PPL = (1 - LL) / -LL
    np.testing.assert_allclose(build_text_attack("lowercase").score(s, 0), [2.0, 4.0 / 3.0])
    # ReCaLL: LL(x | P) / LL(x) = 2
    np.testing.assert_allclose(build_text_attack("recall").score(s, 1), [2.0, 2.0])


def test_reference_ratio_uses_the_out_references_of_each_sample():
    # target 0: sample 0 is OUT for LMs 1 and 3 (LL -2, -4: mean -3), sample 1 for LM 2 (-4)
    scores = build_text_attack("reference").score(_signals(), 0)
    np.testing.assert_allclose(scores, [3.0 / 1.0, 4.0 / 3.0])


def test_lira_is_sequence_lira_on_the_mean_log_likelihood_leaving_the_target_out():
    s = _signals()
    for name, online in (("lira_online", True), ("lira_offline", False)):
        expected = sequence_lira(LL[2], LL[[0, 1, 3]], MEMBER[[0, 1, 3]], online=online)
        np.testing.assert_allclose(build_text_attack(name).score(s, 2), expected)


def test_sequence_rmia_online_matches_the_paper_formula_by_hand():
    target, refs, ref_in = LL[0], LL[1:], MEMBER[1:]
    pr = np.exp(refs)
    pr_x = 0.5 * ((pr * ref_in).sum(0) / ref_in.sum(0) + (pr * ~ref_in).sum(0) / (~ref_in).sum(0))
    ratio_x = np.exp(target) / pr_x
    ratio_z = np.exp(POP_LL[0]) / np.exp(POP_LL[1:]).mean(axis=0)
    gamma = 2.0
    counts = (ratio_x[:, None] / ratio_z[None, :] >= gamma).sum(axis=1)
    expected = (counts + 0.5 + np.arctan(np.log(ratio_x)) / np.pi) / (len(ratio_z) + 1)
    got = sequence_rmia(target, refs, ref_in, POP_LL[0], POP_LL[1:], online=True, gamma=gamma)
    np.testing.assert_allclose(got, expected)


def test_sequence_rmia_offline_with_a_fixed_slope():
    target, refs, ref_in, a = LL[1], LL[[0, 2, 3]], MEMBER[[0, 2, 3]], 0.4
    out = ~ref_in
    pr_out = (np.exp(refs) * out).sum(0) / out.sum(0)
    ratio_x = np.exp(target) / (0.5 * ((1 + a) * pr_out + (1 - a)))
    pr_z = 0.5 * ((1 + a) * np.exp(POP_LL[[0, 2, 3]]).mean(0) + (1 - a))
    ratio_z = np.exp(POP_LL[1]) / pr_z
    counts = (ratio_x[:, None] / ratio_z[None, :] >= 2.0).sum(axis=1)
    expected = (counts + 0.5 + np.arctan(np.log(ratio_x)) / np.pi) / 3
    got = sequence_rmia(target, refs, ref_in, POP_LL[1], POP_LL[[0, 2, 3]], online=False, a=a)
    np.testing.assert_allclose(got, expected)
    attack = build_text_attack({"name": "rmia_offline", "a": a})
    np.testing.assert_allclose(attack.score(_signals(), 1), expected)


def test_every_attack_scores_every_target():
    attacks = [build_text_attack(name) for name in TEXT_ATTACKS]
    scores = score_text_attacks(attacks, _signals())
    assert set(scores) == set(TEXT_ATTACKS)
    assert all(s.shape == (4, 2) and np.isfinite(s).all() for s in scores.values())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("confidence", "scores classifiers"),
        ("min_k_plus", "Did you mean"),
        ({"name": "min_k", "k": 2.0}, "invalid parameters for attack 'min_k'"),
        ({"k": 0.2}, "a 'name' key"),
    ],
)
def test_the_registry_refuses_what_is_no_text_attack(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_text_attack(spec)


def test_defaults_follow_the_papers():
    assert build_text_attack("min_k").params.k == 0.2
    assert build_text_attack("min_k_plus_plus").params.k == 0.2
    assert build_text_attack("rmia_offline").params.gamma == 2.0
    needs = {name: cls.needs.references for name, cls in TEXT_ATTACKS.items()}
    assert needs["reference"] == "offline" and needs["lira_online"] == "online"
    assert needs["loss"] == needs["recall"] == "none"
