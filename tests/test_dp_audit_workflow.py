"""The DP audit workflow on hand-built canary games: every method's number, its selection
record and the document's keys; and the configuration's refusals, before any training."""

from __future__ import annotations

import numpy as np
import pytest

from mialens.audit.dp_game import CanaryGame
from mialens.dp import selection
from mialens.dp.coverage import ideal_bound
from mialens.dp.gaussian_dp import estimate_gaussian_dp
from mialens.dp.many_run import audit_many_runs
from mialens.errors import ConfigError
from mialens.seeding import rng
from mialens.workflows.config import DPAuditConfig, DPAuditSettings, validate_config
from mialens.workflows.dp_audit import audit_games, guess_accuracy, run_seeds, simulated_k

M = 200


def _game(seed: int, signal: float = 2.0, m: int = M, kind: str = "crafted") -> CanaryGame:
    """A hand-built game; not "dirac" unless asked, so that no ideal canaries are simulated."""
    gen = np.random.default_rng(seed)
    included = gen.random(m) < 0.5
    strong = signal * included + gen.normal(size=m)
    order = gen.permutation(m)  # shuffled, non-contiguous canary ids
    return CanaryGame(
        kind=kind, view="all_steps", m=m, seed=seed, ids=np.array([f"c{i}" for i in order]),
        included=included, scores={"dirac_final": gen.normal(size=m), "dirac_all_steps": strong},
        accountant_epsilon=4.0, delta=1e-5, sample_rate=0.01, steps=100, noise_multiplier=1.0,
        max_grad_norm=1.0, train_size=1000, references=0,
        canaries={"kind": kind, "seed": seed, "m": m, "included": int(included.sum()),
                  "inclusion_bits": "".join("1" if b else "0" for b in included)},
    )  # fmt: skip


def _settings(**kw) -> DPAuditSettings:
    return DPAuditSettings(count=M, view="all_steps", **kw)


def test_document_keys_and_the_one_run_bound_of_the_configured_rule():
    game = _game(3)
    settings = _settings(methods=["one_run"], selection={"rule": "split", "share": 0.5})
    doc = audit_games([game], settings, "rdp")
    assert {
        "accountant_epsilon",
        "delta",
        "dp_sgd",
        "canaries",
        "methods",
        "guess_accuracy",
    } <= set(doc)
    assert doc["dp_sgd"] == {"sample_rate": 0.01, "steps": 100, "noise_multiplier": 1.0,
                             "max_grad_norm": 1.0}  # fmt: skip
    assert doc["canaries"]["inclusion_bits"] == game.canaries["inclusion_bits"]
    entry = doc["methods"]["one_run"]
    keys = {"epsilon_lower", "beta", "m", "guesses", "correct", "ceiling", "ratio", "selection"}
    assert keys <= set(entry)
    expected = selection.split(
        game.scores, game.included, grid=selection.DEFAULT_GRID,
        bound=selection.steinke_bound(1e-5), beta=0.05, seed=3,
    )  # fmt: skip
    assert entry["epsilon_lower"] == expected.result.epsilon_lower > 0
    assert entry["score"] == "dirac_all_steps" and entry["m"] == 100
    assert entry["ratio"] == pytest.approx(entry["epsilon_lower"] / 4.0)
    assert entry["selection"]["audited_canaries"] == 100


def test_fdp_names_its_curve():
    game = _game(4, signal=3.0)
    fixed = {"rule": "fixed", "k_plus": 20, "k_minus": 20, "score": "dirac_all_steps"}
    settings = _settings(methods=["one_run_fdp"], selection=fixed)
    prv = audit_games([game], settings, "prv")["methods"]["one_run_fdp"]
    assert prv["curve"] == "eps_delta" and prv["method"] == "one_run_fdp_eps_delta"
    rdp = audit_games([game], settings, "rdp")["methods"]["one_run_fdp"]
    assert rdp["curve"] == "dpsgd" and rdp["method"] == "one_run_fdp_dpsgd"
    assert prv["guesses"] == rdp["guesses"] == 40 and rdp["selection"] == {"rule": "fixed"}


def test_many_run_chooses_its_threshold_on_other_runs():
    games = [_game(s) for s in range(10)]
    settings = _settings(methods=["many_run"], runs=10, seed=5)
    entry = audit_games(games, settings, "rdp")["methods"]["many_run"]
    pooled = {n: np.concatenate([g.scores[n] for g in games[:5]]) for n in games[0].scores}
    bits = np.concatenate([g.included for g in games[:5]])
    name, threshold = selection.choose_threshold(pooled, bits, delta=1e-5, beta=0.05)
    assert (entry["selection"]["score"], entry["selection"]["threshold"]) == (name, threshold)
    picks = rng(5, "dp-audit-many-run-canary").integers(0, M, 5)
    values = np.array([g.scores[name][j] for g, j in zip(games[5:], picks, strict=True)])
    member = np.array([g.included[j] for g, j in zip(games[5:], picks, strict=True)])
    expected = audit_many_runs(values[member], values[~member], threshold=threshold, delta=1e-5)
    assert entry["epsilon_lower"] == expected.epsilon_lower and entry["m"] == 5


def test_gaussian_dp_is_an_estimate_on_the_held_out_half():
    game = _game(6)
    entry = audit_games([game], _settings(methods=["gaussian_dp"]), "rdp")["methods"]["gaussian_dp"]
    assert entry["kind"] == "estimate" and "epsilon_lower" not in entry
    chooser, audited = selection.halves(M, 6)
    name, threshold = selection.choose_threshold(
        {n: v[chooser] for n, v in game.scores.items()}, game.included[chooser],
        delta=1e-5, beta=0.05,
    )  # fmt: skip
    values, bits = game.scores[name][audited], game.included[audited]
    expected = estimate_gaussian_dp(values[bits], values[~bits], threshold=threshold, delta=1e-5)
    assert entry["epsilon_estimate"] == expected.epsilon_lower and entry["beta"] is None


def test_guess_accuracy_by_hand():
    m = 8
    game = _game(0, m=m)
    scores = np.arange(m, dtype=float)
    included = np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=bool)  # by ascending score
    game.scores["dirac_final"][:] = scores
    game.included[:] = included
    curve = guess_accuracy(game, {}, beta=0.05, points=4)
    assert curve["guesses"] == [2, 4, 6, 8] and curve["score"] == "dirac_final"
    # r=2: top 7 IN (right), bottom 0 OUT (right); r=4: + 6 IN (wrong), 1 OUT (right)
    # r=6: + 5 IN (right), 2 OUT (wrong); r=8: + 4 IN (right), 3 OUT (right)
    assert curve["accuracy"] == [1.0, 0.75, 4 / 6, 6 / 8]
    assert curve["needed_for_accountant"] == [None] * 4  # 8 canaries cannot certify eps = 4
    assert set(curve["needed_for"]) == {"4", "1", "2"}  # the accountant's and smaller ones
    # eps = 1: q = e / (1 + e); 8 of 8 right has p = q^8 = 0.077 >= 0.05: out of reach too
    assert curve["needed_for"]["1"] == [None] * 4


def test_dirac_canaries_are_compared_with_ideal_ones():
    game = _game(8, signal=3.0, m=40, kind="dirac")
    settings = DPAuditSettings(count=40, view="all_steps", methods=["one_run"])
    doc = audit_games([game], settings, "rdp")
    ideal = ideal_bound(0.01, 100, 1.0, 40, view="all_steps", method="one_run", delta=1e-5)
    assert doc["simulator_ideal"]["one_run"]["epsilon_lower"] == ideal
    ours = doc["methods"]["one_run"]["epsilon_lower"]
    assert doc["simulator_ideal"]["one_run"]["ratio"] == (ours / ideal if ideal > 0 else None)
    assert "simulator_ideal" not in audit_games([_game(8)], settings, "rdp")


def test_simulated_rule_fixes_k_from_the_recipe_alone():
    game = _game(9, signal=3.0, m=40, kind="dirac")
    rule = {"rule": "simulated", "score": "dirac_all_steps"}
    settings = DPAuditSettings(count=40, view="all_steps", methods=["one_run"], selection=rule)
    entry = audit_games([game], settings, "rdp")["methods"]["one_run"]
    k, candidates = simulated_k(game, 0.05)
    assert candidates == (5, 10) and entry["selection"]["k"] == k == entry["k_plus"]
    # the same k whatever the scores: it is chosen on simulated canaries
    other = _game(10, signal=0.0, m=40, kind="dirac")
    assert simulated_k(other, 0.05) == (k, candidates)
    expected = selection.fixed(
        game.scores["dirac_all_steps"], game.included, score="dirac_all_steps", k_plus=k,
        k_minus=k, bound=selection.steinke_bound(1e-5), beta=0.05, seed=9,
    )  # fmt: skip
    assert entry["epsilon_lower"] == expected.result.epsilon_lower


def test_runs_have_their_own_seeds():
    seeds = run_seeds(_settings(runs=3, seed=7))
    assert seeds[0] == 7 and len(set(seeds)) == 3


BASE = {
    "dataset": {"name": "digits"},
    "train": {"optimizer": "sgd", "momentum": 0.0, "dp": {"noise_multiplier": 1.0}},
}


@pytest.mark.parametrize(
    "dp_audit, train, message",
    [
        ({"beta": 0.0}, {}, "dp_audit.beta: Input should be greater than 0"),
        ({"delta": 1.5}, {}, "dp_audit.delta: Input should be less than 1"),
        ({"delta": 1e-6}, {}, "differs from train.dp.delta"),
        ({}, {"dp": None}, "train.dp is missing"),
        ({}, {"optimizer": "adam"}, "needs plain SGD"),
        ({"methods": ["gaussian_dp"]}, {}, "needs view all_steps"),
        ({"view": "all_steps", "kind": "ood"}, {}, "kind 'ood' needs view final"),
        ({"methods": ["many_run"]}, {}, "many_run needs runs >= 2"),
        ({"count": 60000}, {}, "2 \\* m \\* delta <= 1"),
        ({"selection": {"rule": "fixed", "k_plus": 3}}, {}, "needs k_plus and k_minus"),
        ({"selection": {"rule": "fixed", "k_plus": 30, "k_minus": 1}, "count": 20}, {}, "exceed"),
        ({"selection": {"grid": [[0.7, 0.6]]}}, {}, "sum to \\(0, 1\\]"),
        ({"scores": ["loss"]}, {}, "not available for dirac canaries"),
        ({"selection": {"score": "loss"}}, {}, "'loss' is not among the scores used"),
        ({"kind": "mislabeled", "references": 3}, {}, "even number"),
        ({"count": 1}, {}, "dp_audit.count: Input should be greater than or equal to 2"),
        ({"kind": "ood", "selection": {"rule": "simulated"}}, {}, "needs kind dirac"),
    ],
)
def test_impossible_settings_are_refused_at_load(dp_audit, train, message):
    raw = {**BASE, "train": {**BASE["train"], **train}, "dp_audit": dp_audit}
    with pytest.raises(ConfigError, match=message):
        validate_config(raw, DPAuditConfig)
