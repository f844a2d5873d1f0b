"""The DP audit: does a DP-SGD training deliver the epsilon its accountant claims?

One run (or ``runs``) of the recipe is trained with canaries, each included independently
with probability 1/2 (:func:`mialens.audit.dp_game.play_canary_game`); every configured
method turns the canaries' scores and bits into a (1 - beta) lower bound on epsilon, or,
for ``gaussian_dp``, an estimate:

* ``one_run``: Steinke, Nasr & Jagielski 2023, Theorem 3 (:mod:`mialens.dp.one_run`);
* ``one_run_fdp``: Mahloujifar, Melis & Chaudhuri 2024 with the accountant's DP-SGD curve
  (:mod:`mialens.dp.dpsgd`) for Opacus' RDP accountant, else the (eps, delta) curve
  (:mod:`mialens.dp.fdp`); the output names the curve;
* ``many_run``: Clopper-Pearson on one canary of each audited run, at a score and threshold
  chosen on the other half of the runs (:mod:`mialens.dp.many_run`);
* ``gaussian_dp``: Nasr et al. 2023's Gaussian-DP estimate at a threshold chosen on a seeded
  half of the canaries, estimated on the other half (:mod:`mialens.dp.gaussian_dp`).

The one-run guesses (k+, k-, the score) follow ``dp_audit.selection``
(:mod:`mialens.dp.selection`), whose correction or split the output reports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mialens.audit.dp_game import CanaryGame, check_canary_game, play_canary_game
from mialens.data.catalog import load_dataset
from mialens.data.dataset import Dataset
from mialens.dp import selection
from mialens.dp.coverage import ideal_bound, pilot_candidates, pilot_k
from mialens.dp.dpsgd import epsilon_lower_dpsgd
from mialens.dp.gaussian_dp import estimate_gaussian_dp
from mialens.dp.many_run import audit_many_runs
from mialens.dp.mechanisms import IdealDiracDPSGD
from mialens.dp.one_run import guess, p_value
from mialens.dp.result import DPAuditResult
from mialens.errors import DataError
from mialens.folders import writable_folder
from mialens.models.architectures import ModelConfig
from mialens.models.recipe import TrainConfig
from mialens.models.store import ModelStore, default_cache_dir
from mialens.seeding import int_seed, rng
from mialens.workflows.config import DPAuditConfig, DPAuditSettings
from mialens.workflows.outputs import CANARIES_FILE, write_dp_audit

log = logging.getLogger(__name__)

CURVES = {
    "dpsgd": "the accountant's DP-SGD curve (RDP of the sampled Gaussian mechanism at the "
    "run's sample rate and steps; bounds the accountant's epsilon)",
    "eps_delta": "the (eps, delta)-DP curve (Dong, Roth & Su 2022, Prop. 2.5; bounds the "
    "true epsilon of any (eps, delta)-DP training)",
}


@dataclass(frozen=True)
class DPAuditReport:
    """The audit's document (what ``dp_audit.json`` holds) and the games behind it (the
    audited run first)."""

    doc: dict[str, Any]
    games: tuple[CanaryGame, ...]

    @property
    def accountant_epsilon(self) -> float:
        return self.doc["accountant_epsilon"]

    @property
    def methods(self) -> dict[str, dict[str, Any]]:
        return self.doc["methods"]


def model_store(settings: DPAuditSettings) -> ModelStore:
    """The model store of ``settings.cache_dir`` (default: the shared cache), checked."""
    where = "dp_audit.cache_dir" if settings.cache_dir else "the cache folder ($MIALENS_CACHE_DIR)"
    return ModelStore(writable_folder(settings.cache_dir or default_cache_dir(), where) / "models")


def run_seeds(settings: DPAuditSettings) -> list[int]:
    """The seed of each run: ``dp_audit.seed`` for the audited run, derived ones after it."""
    derived = [int_seed(settings.seed, "dp-audit-run", r) for r in range(1, settings.runs)]
    return [settings.seed, *derived]


def check_runs(dataset: Dataset, train: TrainConfig, settings: DPAuditSettings) -> None:
    """Refuse, without training, what :func:`play_runs` would refuse before its first run."""
    check_canary_game(
        dataset,
        train,
        kind=settings.kind,
        count=settings.count,
        seed=run_seeds(settings)[0],
        view=settings.view,
        references=settings.references,
        score_names=settings.scores,
    )


def play_runs(
    dataset: Dataset,
    model: ModelConfig,
    train: TrainConfig,
    settings: DPAuditSettings,
    store: ModelStore | None,
    player: Callable[..., CanaryGame] = play_canary_game,
) -> list[CanaryGame]:
    """Every run's game (each trained once; the store resumes a killed audit)."""
    games = []
    for r, seed in enumerate(run_seeds(settings)):
        log.info(
            "DP audit: run %d/%d (%d %s canaries)",
            r + 1,
            settings.runs,
            settings.count,
            settings.kind,
        )
        games.append(
            player(
                dataset,
                model,
                train,
                kind=settings.kind,
                count=settings.count,
                seed=seed,
                view=settings.view,
                references=settings.references,
                score_names=settings.scores,
                device=settings.device,
                store=store,
            )
        )
    return games


def run_dp_audit(config: DPAuditConfig, out_dir: str | os.PathLike | None = None) -> DPAuditReport:
    """Train the canary runs of ``config``, bound epsilon with every method and, with
    ``out_dir``, write ``dp_audit.json``, ``canaries.npz`` and ``dp_audit.html`` there."""
    settings = config.dp_audit
    if out_dir is not None:
        writable_folder(out_dir, "--out")
    store = model_store(settings)
    games = play_runs(load_dataset(config.dataset), config.model, config.train, settings, store)
    report = DPAuditReport(audit_games(games, settings, config.train.dp.accountant), tuple(games))
    report.doc["config"] = config.model_dump(mode="json")
    if out_dir is not None:
        write_dp_audit(report, out_dir)
    return report


def audit_games(
    games: Sequence[CanaryGame], settings: DPAuditSettings, accountant: str
) -> dict[str, Any]:
    """The audit's document from the games (the first is the audited run)."""
    target = games[0]
    methods = {}
    for name in settings.methods:
        entry = METHODS[name](games, settings, accountant)
        value = entry.get("epsilon_lower", entry.get("epsilon_estimate"))
        entry["ratio"] = None if value is None else value / target.accountant_epsilon
        methods[name] = entry
    game = target.to_json()
    record = game.pop("canaries")  # the canary set: its bits, coordinates or sources
    for shown_above in ("accountant_epsilon", "delta"):
        game.pop(shown_above)
    doc = {
        "accountant_epsilon": target.accountant_epsilon,
        "delta": target.delta,
        "accountant": accountant,
        "dp_sgd": game.pop("dp_sgd"),
        "canaries": {**game, **record, "runs": len(games), "arrays": CANARIES_FILE},
        "methods": methods,
    }
    doc["guess_accuracy"] = guess_accuracy(target, methods, settings.beta)
    if target.kind == "dirac":
        doc["simulator_ideal"] = simulator_ideal(target, methods, settings.beta)
    return doc


def simulator_ideal(
    game: CanaryGame, methods: dict[str, dict[str, Any]], beta: float
) -> dict[str, dict[str, Any]]:
    """Per one-run method: the bound that ideal Dirac canaries give for the same q, steps,
    noise multiplier, m and view (:func:`mialens.dp.coverage.ideal_bound`: the median over
    five simulated games, k chosen on pilot games), and this audit's share of it."""
    ideal = {}
    for name in ("one_run", "one_run_fdp"):
        if name not in methods:
            continue
        simulated = _SIMULATED[name].get(methods[name].get("curve"), _SIMULATED[name][None])
        value = ideal_bound(
            game.sample_rate,
            game.steps,
            game.noise_multiplier,
            game.m,
            view=game.view,
            method=simulated,
            beta=beta,
            delta=game.delta,
        )
        ours = methods[name]["epsilon_lower"]
        ideal[name] = {
            "method": simulated,
            "epsilon_lower": value,
            "ratio": ours / value if value > 0 else None,
        }
    return ideal


_SIMULATED = {
    "one_run": {None: "one_run"},
    "one_run_fdp": {"dpsgd": "one_run_fdp_dpsgd", None: "one_run_fdp_eps_delta"},
}


def _scores(game: CanaryGame, settings: DPAuditSettings) -> dict[str, np.ndarray]:
    """The scores the audit may choose from, in the configured order."""
    names = settings.scores or list(game.scores)
    return {n: game.scores[n] for n in names}


def _select(
    game: CanaryGame, settings: DPAuditSettings, bound: selection.Bound
) -> selection.Selection:
    """The one-run bound of ``game`` under the configured rule for k+, k- and the score."""
    scores, rule, beta = _scores(game, settings), settings.selection, settings.beta
    if rule.rule == "fixed":
        name = rule.score or next(iter(scores))
        return selection.fixed(
            scores[name],
            game.included,
            score=name,
            k_plus=rule.k_plus,
            k_minus=rule.k_minus,
            bound=bound,
            beta=beta,
            seed=game.seed,
        )
    if rule.rule == "simulated":
        name = rule.score or next(iter(scores))
        k, candidates = simulated_k(game, beta)
        chosen = selection.fixed(
            scores[name],
            game.included,
            score=name,
            k_plus=k,
            k_minus=k,
            bound=bound,
            beta=beta,
            seed=game.seed,
        )
        record = {
            "rule": "simulated",
            "k": k,
            "candidates": list(candidates),
            "pilot_games": PILOT_GAMES,
        }
        return replace(chosen, record=record)
    if rule.rule == "bonferroni":
        return selection.bonferroni(
            scores, game.included, grid=rule.grid, bound=bound, beta=beta, seed=game.seed
        )
    return selection.split(
        scores,
        game.included,
        grid=rule.grid,
        bound=bound,
        beta=beta,
        seed=game.seed,
        share=rule.share,
    )


PILOT_GAMES = 5


def simulated_k(game: CanaryGame, beta: float) -> tuple[int, tuple[int, ...]]:
    """k+ = k- with the largest median Steinke bound on ``PILOT_GAMES`` simulated games of
    ideal Dirac canaries at the run's q, steps, noise multiplier, m and view
    (:func:`mialens.dp.coverage.pilot_k`), and the candidates tried. A function of the
    recipe alone, never of the canaries' scores or bits: k is fixed in advance."""
    mechanism = IdealDiracDPSGD(game.sample_rate, game.steps, game.noise_multiplier, view=game.view)
    candidates = pilot_candidates(game.m) or (1,)
    k = pilot_k(
        mechanism,
        m=game.m,
        candidates=candidates,
        repetitions=PILOT_GAMES,
        beta=beta,
        delta=game.delta,
        seed=int_seed(game.seed, "dp-audit-pilot") % 2**32,
    )
    return k, candidates


def _one_run(games, settings, accountant) -> dict[str, Any]:
    """Steinke et al.'s bound on the audited run."""
    return _select(games[0], settings, selection.steinke_bound(games[0].delta)).to_json()


def _one_run_fdp(games, settings, accountant) -> dict[str, Any]:
    """Mahloujifar et al.'s bound on the audited run, with the accountant's DP-SGD curve
    for the RDP accountant (whose epsilon it bounds), else the (eps, delta) curve."""
    game = games[0]
    curve = "dpsgd" if accountant == "rdp" else "eps_delta"
    if curve == "dpsgd":

        def bound(m: int, guesses: int, correct: int, beta: float) -> DPAuditResult:
            return epsilon_lower_dpsgd(
                m,
                guesses,
                correct,
                q=game.sample_rate,
                steps=game.steps,
                beta=beta,
                delta=game.delta,
            )
    else:
        bound = selection.fdp_bound("eps_delta", game.delta)
    return {**_select(game, settings, bound).to_json(), "curve": curve, "curve_is": CURVES[curve]}


def _many_run(games, settings, accountant) -> dict[str, Any]:
    """Clopper-Pearson over runs: the score and threshold chosen on the first half of the
    runs (all their canaries), one canary (fixed in advance) of each other run a trial."""
    half = len(games) // 2
    chooser, audited = games[:half], games[half:]
    pooled = {
        n: np.concatenate([g.scores[n] for g in chooser]) for n in _scores(chooser[0], settings)
    }
    bits = np.concatenate([g.included for g in chooser])
    delta, beta = games[0].delta, settings.beta
    name, threshold = selection.choose_threshold(pooled, bits, delta=delta, beta=beta)
    picks = rng(settings.seed, "dp-audit-many-run-canary").integers(0, games[0].m, len(audited))
    trial_scores = np.array([g.scores[name][j] for g, j in zip(audited, picks, strict=True)])
    trial_in = np.array([g.included[j] for g, j in zip(audited, picks, strict=True)])
    record = {
        "rule": "threshold chosen on other runs",
        "selection_runs": half,
        "audited_runs": len(audited),
        "score": name,
        "threshold": threshold,
    }
    if trial_in.all() or not trial_in.any():
        side = "OUT" if trial_in.all() else "IN"
        note = f"no audited run has its trial canary {side}: no bound (0)"
        return {
            "method": "many_run_clopper_pearson",
            "kind": "bound",
            "epsilon_lower": 0.0,
            "beta": beta,
            "delta": delta,
            "m": len(audited),
            "guesses": len(audited),
            "correct": None,
            "ceiling": None,
            "selection": record,
            "note": note,
        }
    result = audit_many_runs(
        trial_scores[trial_in],
        trial_scores[~trial_in],
        threshold=threshold,
        delta=delta,
        beta=beta,
    )
    return {**result.to_json(), "score": name, "selection": record}


def _gaussian_dp(games, settings, accountant) -> dict[str, Any]:
    """Nasr et al.'s Gaussian-DP estimate: threshold and score chosen on a seeded half of
    the audited run's canaries, rates measured on the other half. Not a bound."""
    game = games[0]
    scores = _scores(game, settings)
    chooser, audited = selection.halves(game.m, game.seed, settings.selection.share)
    name, threshold = selection.choose_threshold(
        {n: v[chooser] for n, v in scores.items()},
        game.included[chooser],
        delta=game.delta,
        beta=settings.beta,
    )
    values, bits = scores[name][audited], game.included[audited]
    record = {
        "rule": "split",
        "selection_canaries": int(chooser.size),
        "audited_canaries": int(audited.size),
        "score": name,
        "threshold": threshold,
    }
    try:
        result = estimate_gaussian_dp(
            values[bits], values[~bits], threshold=threshold, delta=game.delta
        )
    except DataError as exc:
        return {
            "method": "gaussian_dp_nasr2023",
            "kind": "estimate",
            "epsilon_estimate": None,
            "beta": None,
            "delta": game.delta,
            "m": int(audited.size),
            "guesses": int(audited.size),
            "correct": None,
            "ceiling": None,
            "score": name,
            "selection": record,
            "note": str(exc),
        }
    return {**result.to_json(), "score": name, "selection": record}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "one_run": _one_run,
    "one_run_fdp": _one_run_fdp,
    "many_run": _many_run,
    "gaussian_dp": _gaussian_dp,
}


def _needed_correct(m: int, guesses: int, epsilon: float, delta: float, beta: float) -> int | None:
    """The fewest right guesses out of ``guesses`` whose Steinke p-value under (``epsilon``,
    ``delta``)-DP is below ``beta`` (so certify ``epsilon``), None when even all do not.
    The p-value falls as the right guesses grow: bisection."""
    if p_value(m, guesses, guesses, epsilon, delta) >= beta:
        return None
    low, high = 0, guesses  # p(low) >= beta > p(high)
    while high - low > 1:
        middle = (low + high) // 2
        if p_value(m, guesses, middle, epsilon, delta) < beta:
            high = middle
        else:
            low = middle
    return high


REFERENCE_EPSILONS = (1.0, 2.0, 4.0)  # drawn below the accountant's for scale


def guess_accuracy(
    game: CanaryGame, methods: dict[str, dict[str, Any]], beta: float, points: int = 40
) -> dict[str, Any]:
    """Accuracy of the k+ = k- = r / 2 top/bottom guesses on all of the audited run's
    canaries against the number of guesses r, for the score the one-run bound used; and
    the accuracy Steinke et al.'s test needs at each r to certify the accountant's epsilon
    (``needed_for_accountant``) and each smaller epsilon of ``REFERENCE_EPSILONS``
    (``needed_for``); None where even perfect guesses cannot, absent when 2 m delta > 1."""
    chosen = next((e["score"] for e in methods.values() if e.get("score") in game.scores), None)
    score = chosen or next(iter(game.scores))
    m = game.m
    sizes = np.unique(2 * np.round(np.geomspace(1, m // 2, points)).astype(int))
    accuracy = []
    for r in sizes:
        _, correct = guess(
            game.scores[score], game.included, k_plus=r // 2, k_minus=r // 2, seed=game.seed
        )
        accuracy.append(correct / r)
    levels = [game.accountant_epsilon]
    levels += [e for e in REFERENCE_EPSILONS if e < game.accountant_epsilon]
    needed = {}
    if 2 * m * game.delta <= 1:
        for eps in levels:
            counts = [_needed_correct(m, int(r), eps, game.delta, beta) for r in sizes]
            needed[f"{eps:g}"] = [
                None if v is None else v / r for v, r in zip(counts, sizes, strict=True)
            ]
    return {
        "score": score,
        "m": m,
        "guesses": sizes.tolist(),
        "abstention": (1 - sizes / m).tolist(),
        "accuracy": accuracy,
        "needed_for_accountant": needed.get(f"{game.accountant_epsilon:g}"),
        "needed_for": needed or None,
        "beta": beta,
    }
