"""One audited DP-SGD training run with canaries: the game of Steinke, Nasr & Jagielski
2023 (*Privacy Auditing with One (1) Training Run*, Alg. 1), played by
:func:`play_canary_game`.

The data: one seeded permutation of the data set's positions is cut into, in order, the
sources of ``mislabeled`` canaries (``count`` samples, which train nothing else), the
population of RMIA (``population_size`` samples that train no model, only when an RMIA
score is asked for) and the training data (``train_size`` samples, or all the rest).

The target is trained once with the recipe's DP-SGD (Opacus, Poisson sampling, its noise
multiplier or target epsilon) on the training data plus the included input canaries
(:mod:`mialens.dp.canaries`), or on the training data with Dirac canaries inserted into
its clipped-gradient sums (:mod:`mialens.dp.gradient_canaries`). Each canary is included
independently with probability 1/2.

Scores (higher = IN), by name:

* input canaries: ``loss`` (the negative loss of the target on the canary, Yeom et al.
  2018); with ``references > 0`` also ``lira_online``, ``lira_offline`` (Carlini et al.
  2022), ``rmia_online`` and ``rmia_offline`` (Zarifzadeh et al. 2024), mialens' own
  attacks fitted on reference models trained with the same recipe on the same training
  data plus the canaries of their own inclusion draws: independent of the target's bits,
  in complementary pairs (so that every canary has IN and OUT references, as the online
  attacks need), never the audited run's;
* Dirac canaries: ``dirac_final`` (the final model's parameter change at each canary's
  coordinate) and, with ``view="all_steps"``, ``dirac_all_steps`` (the likelihood ratio
  of every step's noisy gradient there) and ``dirac_all_steps_known_batches`` (the same
  after subtracting the other examples' clipped gradients of each step, for an auditor
  who also sees the batches; see :mod:`mialens.dp.gradient_canaries`).

Every model goes through the model store when one is given, keyed by everything that
determines its weights (data, positions, canaries and their bits, recipe, seeds), so a
killed run resumes and a rerun trains nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mialens.attacks.base import ReferenceSignals, TargetSignals
from mialens.attacks.registry import build_attack
from mialens.data.dataset import Dataset
from mialens.dp.canaries import KINDS, check_count, make_input_canaries
from mialens.dp.gradient_canaries import (
    VIEWS,
    DiracCanaries,
    all_steps_scores,
    check_recipe,
    choose_coordinates,
    dp_sample_rate,
    final_scores,
)
from mialens.errors import CacheError, ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.factory import check_factory
from mialens.models.recipe import TrainConfig
from mialens.models.step import NoisyGradients, Step
from mialens.models.store import ModelStore, spec_key
from mialens.models.training import predict_logits, train_model
from mialens.seeding import int_seed, rng
from mialens.signals.statistics import compute_signal

log = logging.getLogger(__name__)

GAME_KINDS: tuple[str, ...] = (*KINDS, "dirac")
INPUT_SCORES: tuple[str, ...] = ("loss",)
REFERENCE_SCORES: tuple[str, ...] = ("lira_online", "lira_offline", "rmia_online", "rmia_offline")
DIRAC_SCORES: tuple[str, ...] = ("dirac_final", "dirac_all_steps", "dirac_all_steps_known_batches")
_PROBE_SIZE = 512  # training samples whose gradients choose the Dirac coordinates
_OBSERVATIONS = "dirac_observations"
_DATA_GRADIENTS = "dirac_data_gradients"


@dataclass(frozen=True, eq=False)
class CanaryGame:
    """The outcome of one audited run: each canary's inclusion bit and scores.

    ``scores[name]`` is ``(m,)`` float64, higher meaning IN; ``canaries`` the canary set's
    record (its seed and inclusion bits); the DP-SGD parameters are those of the run
    (``sample_rate`` q, ``steps``, ``noise_multiplier``, ``max_grad_norm`` C) and
    ``accountant_epsilon`` is Opacus' epsilon at ``delta`` for them.
    """

    kind: str
    view: str
    m: int
    seed: int
    ids: np.ndarray
    included: np.ndarray
    scores: dict[str, np.ndarray]
    accountant_epsilon: float
    delta: float
    sample_rate: float
    steps: int
    noise_multiplier: float
    max_grad_norm: float
    train_size: int
    references: int
    canaries: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Everything but the per-canary arrays (see :meth:`arrays`), JSON-ready."""
        return {
            "kind": self.kind,
            "view": self.view,
            "m": self.m,
            "seed": self.seed,
            "scores": sorted(self.scores),
            "accountant_epsilon": self.accountant_epsilon,
            "delta": self.delta,
            "dp_sgd": {
                "sample_rate": self.sample_rate,
                "steps": self.steps,
                "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.max_grad_norm,
            },
            "train_size": self.train_size,
            "references": self.references,
            "canaries": self.canaries,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """``ids``, ``included`` and ``score_<name>`` per score, for ``np.savez``."""
        out = {"ids": self.ids.astype(str), "included": self.included}
        out.update({f"score_{name}": values for name, values in self.scores.items()})
        return out


def available_scores(kind: str, view: str, references: int, config: TrainConfig) -> list[str]:
    """The score names a game of ``kind`` can give (``score_names=None`` gives them all)."""
    if kind != "dirac":
        return [*INPUT_SCORES, *(REFERENCE_SCORES if references > 0 else ())]
    plain_sgd = config.optimizer == "sgd" and config.momentum == 0 and config.weight_decay == 0
    names = ["dirac_final"] if view == "final" or plain_sgd else []
    return names + (list(DIRAC_SCORES[1:]) if view == "all_steps" else [])


@dataclass(frozen=True)
class _Layout:
    """The positions of the canary sources, the population and the training data."""

    sources: np.ndarray
    population: np.ndarray
    train: np.ndarray


def play_canary_game(
    dataset: Dataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    kind: str,
    count: int,
    seed: int,
    view: str = "final",
    references: int = 0,
    score_names: Sequence[str] | None = None,
    train_size: int | None = None,
    population_size: int = 500,
    device: str = "cpu",
    store: ModelStore | None = None,
) -> CanaryGame:
    """Train the audited DP-SGD run with ``count`` canaries of ``kind`` (``mislabeled``,
    ``ood``, ``crafted`` or ``dirac``) and score them (module docstring). Every setting is
    checked before any training; ``store=None`` trains without caching."""
    names, layout = _checked_layout(
        dataset, train_config, kind, count, seed, view, references, score_names, train_size,
        population_size,
    )  # fmt: skip
    if model_config.kind == "factory":
        shape, classes = dataset.input_shape, dataset.num_classes
        check_factory(model_config.factory, model_config.kwargs, shape, classes)
    setup = _Setup(dataset, model_config, train_config, layout, int(seed), device, store)
    if kind == "dirac":
        scores, record = _DiracGame(setup, count).play(names)
    else:
        scores, record = _InputGame(setup, kind, count).play(names, references)
    return CanaryGame(
        kind=kind,
        view=view,
        m=count,
        seed=int(seed),
        ids=record["ids"],
        included=record["included"],
        scores=scores,
        accountant_epsilon=float(record["epsilon"]),
        delta=float(train_config.dp.delta),
        sample_rate=float(record["sample_rate"]),
        steps=int(record["steps"]),
        noise_multiplier=float(record["noise_multiplier"]),
        max_grad_norm=float(train_config.dp.max_grad_norm),
        train_size=len(layout.train),
        references=references,
        canaries=record["canaries"],
    )


def check_canary_game(
    dataset: Dataset,
    train_config: TrainConfig,
    *,
    kind: str,
    count: int,
    seed: int,
    view: str = "final",
    references: int = 0,
    score_names: Sequence[str] | None = None,
    train_size: int | None = None,
    population_size: int = 500,
) -> None:
    """Every check :func:`play_canary_game` makes before training, without training (so
    that a caller with several games refuses an impossible one before the first starts)."""
    _checked_layout(
        dataset, train_config, kind, count, seed, view, references, score_names, train_size,
        population_size,
    )  # fmt: skip


def _checked_layout(
    dataset, config, kind, count, seed, view, references, score_names, train_size, population
) -> tuple[list[str], _Layout]:
    """The score names and the data layout of a game; a ConfigError for any impossible
    setting (before anything is trained)."""
    names = _check_game(kind, count, view, references, score_names, config)
    return names, _layout(dataset, kind, count, names, train_size, population, seed)


def _check_game(kind, count, view, references, score_names, config: TrainConfig) -> list[str]:
    """The score names to compute; a ConfigError for any impossible setting."""
    if kind not in GAME_KINDS:
        raise ConfigError(f"unknown canary kind {kind!r}; choose one of {', '.join(GAME_KINDS)}.")
    check_count(count)
    if view not in VIEWS:
        raise ConfigError(f"unknown canary view {view!r}; choose one of {', '.join(VIEWS)}.")
    if config.dp is None:
        raise ConfigError("a DP audit trains with DP-SGD: set train.dp")
    if config.early_stopping is not None:
        raise ConfigError("a DP audit trains for the planned epochs: remove train.early_stopping")
    if kind == "dirac":
        check_recipe(config, view)
    elif view != "final":
        raise ConfigError(
            "input canaries are scored on the final model: view 'all_steps' is for the white-box "
            "gradient (dirac) canaries"
        )
    if isinstance(references, bool) or not isinstance(references, int) or references < 0:
        raise ConfigError(f"references must be an integer >= 0, got {references!r}.")
    if references % 2 or (kind == "dirac" and references):
        raise ConfigError(
            "reference models come in complementary pairs (an even number) and are for input "
            f"canaries only; got references={references} with kind {kind!r}."
        )
    if isinstance(score_names, str):
        raise ConfigError(f"score_names is a list of names, got the string {score_names!r}.")
    available = available_scores(kind, view, references, config)
    names = list(available if score_names is None else score_names)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise ConfigError(
            f"scores {unknown or names} are not available for {kind!r} canaries with view "
            f"{view!r} and {references} reference models; available: {', '.join(available)}."
        )
    return names


def _layout(dataset, kind, count, names, train_size, population_size, seed) -> _Layout:
    n = len(dataset)
    sources = count if kind == "mislabeled" else 0
    wants_population = any(s.startswith("rmia") for s in names)
    population = population_size if wants_population else 0
    if wants_population and population_size < 1:
        raise ConfigError(f"RMIA needs population_size >= 1, got {population_size}.")
    rest = n - sources - population
    size = rest if train_size is None else train_size
    if size < 1 or size > rest:
        raise ConfigError(
            f"{dataset.name} has {n} samples: {sources} canary sources and {population} "
            f"population samples leave {rest} for training, and train_size is {train_size}; "
            "use fewer canaries, a smaller population or a smaller train_size."
        )
    order = rng(seed, "dp-game-layout").permutation(n)
    return _Layout(
        sources=np.sort(order[:sources]),
        population=np.sort(order[sources : sources + population]),
        train=np.sort(order[sources + population : sources + population + size]),
    )


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class _DPRecord:
    """The noise hook that records a run's DP-SGD parameters (steps, sigma, batch)."""

    def __init__(self) -> None:
        self.steps, self.noise_multiplier, self.expected_batch_size = 0, None, None

    def __call__(self, grads: NoisyGradients) -> None:
        self.steps += 1
        self.noise_multiplier = grads.noise_multiplier
        self.expected_batch_size = grads.expected_batch_size

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "noise_multiplier": self.noise_multiplier,
            "expected_batch_size": self.expected_batch_size,
        }


@dataclass(frozen=True)
class _Setup:
    """What both kinds of game share: the data, its layout, the recipe, seed and store."""

    dataset: Dataset
    model_config: ModelConfig
    config: TrainConfig
    layout: _Layout
    seed: int
    device: str
    store: ModelStore | None


class _Game:
    """The cached training both kinds of game share."""

    def __init__(self, setup: _Setup) -> None:
        self.dataset, self.model_config, self.config = (
            setup.dataset,
            setup.model_config,
            setup.config,
        )
        self.layout, self.seed, self.device, self.store = (
            setup.layout,
            setup.seed,
            setup.device,
            setup.store,
        )

    def build(self) -> torch.nn.Module:
        ds = self.dataset
        return build_model(self.model_config, ds.input_shape, ds.num_classes, self.config.dropout)

    def spec(self, role: str, canaries: str, seed: int) -> dict[str, Any]:
        """Everything that determines one model's weights (its store key hashes it)."""
        return {
            "purpose": "dp-canary-game",
            "role": role,
            "data": self.dataset.fingerprint,
            "train_positions": _digest(self.layout.train),
            "canaries": canaries,
            "input_shape": list(self.dataset.input_shape),
            "num_classes": self.dataset.num_classes,
            "model": self.model_config.model_dump(mode="json"),
            "train": self.config.model_dump(mode="json"),
            "seed": seed,
        }

    def trained(
        self,
        spec: dict[str, Any],
        train: Callable[[], tuple[Any, dict[str, Any], dict[str, np.ndarray]]],
        arrays: Sequence[str] = (),
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, np.ndarray]]:
        """Weights, DP record and named arrays of the model of ``spec``: from the store when
        it holds all of them intact, else from ``train()`` (then stored)."""
        key = spec_key(spec)
        cached = self._cached(key, arrays)
        if cached is not None:
            return cached
        result, record, extra = train()
        record = {**record, "epsilon": result.epsilon, "seconds": result.seconds}
        if self.store is not None:
            self.store.save(key, result.state_dict, {"spec": spec, "training": record})
            for name, values in extra.items():
                self.store.save_array(key, name, values)
        return result.state_dict, record, extra

    def _cached(self, key: str, arrays: Sequence[str]):
        if self.store is None or not self.store.has(key):
            return None
        try:
            state, manifest = self.store.load(key)
        except CacheError as exc:
            log.warning("%s", exc)
            self.store.discard(key)
            return None
        extra = {name: self.store.load_array(key, name) for name in arrays}
        if any(v is None for v in extra.values()):
            return None
        return state, manifest["training"], extra

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int, step: Step | None = None):
        return train_model(self.build, x, y, self.config, seed, device=self.device, step=step)

    def logits(self, state: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
        model = self.build().to(self.device)
        model.load_state_dict(state)
        return predict_logits(model, x)


class _InputGame(_Game):
    """The game with input-space canaries added to the training data."""

    def __init__(self, setup: _Setup, kind: str, count: int) -> None:
        super().__init__(setup)
        ds = setup.dataset
        pool = setup.layout.sources if kind == "mislabeled" else setup.layout.train
        x, y, ids = ds.x[pool], ds.y[pool], ds.ids[pool]
        self.canaries = make_input_canaries(
            x, y, ids, ds.num_classes, kind=kind, count=count, seed=setup.seed
        )

    def model(self, role: str, included: np.ndarray, seed: int):
        """One model trained on the training data plus the canaries ``included``."""
        ds, c = self.dataset, self.canaries
        x = np.concatenate([ds.x[self.layout.train], c.x[included]])
        y = np.concatenate([ds.y[self.layout.train], c.y[included]])
        spec = self.spec(role, _digest(c.x, c.y, included), seed)
        q = dp_sample_rate(len(x), self.config.batch_size)

        def train():
            record = _DPRecord()
            result = self.fit(x, y, seed, Step(noisy_hook=record))
            return result, {**record.as_json(), "sample_rate": q}, {}

        state, record, _ = self.trained(spec, train)
        return state, record

    def play(self, names: list[str], references: int):
        c = self.canaries
        state, record = self.model("target", c.included, int_seed(self.seed, "dp-game-target"))
        target = self.logits(state, c.x)
        scores = {}
        if "loss" in names:
            scores["loss"] = -compute_signal("loss", target, c.y)
        attacks = [n for n in names if n in REFERENCE_SCORES]
        if attacks:
            scores.update(self._reference_scores(attacks, references, state, target))
        return scores, {**record, "ids": c.ids, "included": c.included, "canaries": c.to_json()}

    def _reference_scores(self, attacks, references, target_state, target_logits):
        """mialens' attacks fitted on reference models of their own inclusion draws."""
        c, pop = self.canaries, self.layout.population
        member = reference_inclusions(len(c), references, self.seed)
        seeds = [int_seed(self.seed, "dp-game-reference", r) for r in range(references)]
        refs = [self.model(f"reference-{r}", member[r], seeds[r])[0] for r in range(references)]
        ref_logits = np.stack([self.logits(s, c.x) for s in refs])
        x_pop, y_pop = self.dataset.x[pop], self.dataset.y[pop]
        scores = {}
        for name in attacks:
            attack = build_attack(name)
            spec = attack.signal()

            def signal(logits, labels, spec=spec):
                return compute_signal(spec.name, logits, labels, **spec.kwargs)[..., None]

            ref_pop = target_pop = None
            if attack.needs.population:
                ref_pop = np.stack([signal(self.logits(s, x_pop), y_pop) for s in refs])
                target_pop = signal(self.logits(target_state, x_pop), y_pop)
            labels_pop = y_pop if attack.needs.population else None
            refs_signals = ReferenceSignals(
                signal(ref_logits, c.y), member, c.y, ref_pop, labels_pop
            )
            target = TargetSignals(signal(target_logits, c.y), c.y, target_pop, labels_pop)
            scores[name] = attack.fit(refs_signals).score(target)
        return scores


def reference_inclusions(m: int, references: int, seed: int) -> np.ndarray:
    """``(references, m)`` inclusion bits of the reference models: pair ``j`` draws its own
    independent bits (never the target's) for model ``2j`` and their complement for model
    ``2j + 1``, so that every canary is IN for exactly half of the references."""
    rows = []
    for j in range(references // 2):
        bits = rng(seed, "dp-game-reference-inclusion", j).random(m) < 0.5
        rows += [bits, ~bits]
    return np.array(rows, dtype=bool).reshape(references, m)


class _DiracGame(_Game):
    """The game with white-box Dirac canaries in the clipped-gradient sums."""

    def __init__(self, setup: _Setup, count: int) -> None:
        super().__init__(setup)
        self.count = count
        self.train_seed = int_seed(setup.seed, "dp-game-target")

    def initial_model(self) -> torch.nn.Module:
        """The target's initial weights, drawn as :func:`train_model` draws them."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_seed)
            return self.build().to(self.device)

    def canaries(self, initial: torch.nn.Module) -> DiracCanaries:
        """The canaries on the coordinates a seeded probe of the training data touches
        least at the initial weights."""
        ds, train = self.dataset, self.layout.train
        size = min(_PROBE_SIZE, len(train))
        probe = np.sort(rng(self.seed, "dirac-probe").choice(train, size, replace=False))
        clip = self.config.dp.max_grad_norm
        return choose_coordinates(
            initial, ds.x[probe], ds.y[probe], count=self.count, seed=self.seed, clip_norm=clip
        )

    def play(self, names: list[str]):
        ds, train = self.dataset, self.layout.train
        initial = self.initial_model()
        canaries = self.canaries(initial)
        q = dp_sample_rate(len(train), self.config.batch_size)
        where = _digest(canaries.flat_index, np.asarray(canaries.tensors, dtype=str))
        described = f"dirac:{where}:{_digest(canaries.included)}:{q!r}"
        spec = self.spec("target", described, self.train_seed)

        def fit():
            insertion, record = canaries.hook(q, self.seed), _DPRecord()
            step = Step(grad_hook=insertion, noisy_hook=_both(record, insertion.observe))
            result = self.fit(ds.x[train], ds.y[train], self.train_seed, step)
            observed = {
                _OBSERVATIONS: insertion.observations(),
                _DATA_GRADIENTS: insertion.data_gradients(),
            }
            return result, {**record.as_json(), "sample_rate": q}, observed

        state, record, extra = self.trained(spec, fit, arrays=(_OBSERVATIONS, _DATA_GRADIENTS))
        scores = {}
        if "dirac_final" in names:
            batch = record["expected_batch_size"]
            scores["dirac_final"] = final_scores(
                canaries, initial.state_dict(), state, lr=self.config.lr, expected_batch_size=batch
            )
        sigma, observed = record["noise_multiplier"], extra[_OBSERVATIONS]
        if "dirac_all_steps" in names:
            scores["dirac_all_steps"] = all_steps_scores(observed, q, sigma)
        if "dirac_all_steps_known_batches" in names:
            canary_part = observed - extra[_DATA_GRADIENTS]
            scores["dirac_all_steps_known_batches"] = all_steps_scores(canary_part, q, sigma)
        bits = canaries.included
        return scores, {
            **record,
            "ids": canaries.ids,
            "included": bits,
            "canaries": canaries.to_json(),
        }


def _both(first, second):
    def both(grads: NoisyGradients) -> None:
        first(grads)
        second(grads)

    return both
