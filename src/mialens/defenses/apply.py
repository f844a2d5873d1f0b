"""Put an output defence in front of every model of an audit.

The adversary is adaptive: its reference models are trained like the target and
queried through the same defence, so the defence is fitted per model on that model's
own data (its training members, non-members the defender holds, random inputs) and
applied to every model's answers: the cached logits for score-based attacks and, for
attacks that query models themselves, every live query.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mialens.audit.design import AuditSetup
from mialens.defenses.output import DefenderData, OutputDefense
from mialens.seeding import int_seed
from mialens.targets.adapters import Target


def random_inputs(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random inputs in the data's range: Bernoulli for binary features, else
    uniform between each feature's minimum and maximum (HAMP's random samples)."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    binary = np.isin(flat, (0.0, 1.0)).all(axis=0)
    out = np.where(
        binary,
        rng.random((n, flat.shape[1])) < flat.mean(axis=0),
        rng.uniform(lo, hi, (n, flat.shape[1])),
    )
    return out.astype(np.float32).reshape((n, *x.shape[1:]))


def fit_per_model(
    defense: OutputDefense,
    member_logits: list[np.ndarray],
    member_labels: list[np.ndarray],
    nonmember_logits: list[np.ndarray] | None,
    random_logits: list[np.ndarray] | None,
) -> list[OutputDefense]:
    """One fitted copy of ``defense`` per model, from that model's own outputs.

    A randomised defence (one with a ``seed``) gets an independent stream per model,
    derived from its seed: with one shared stream, the target and every reference model
    would draw the same noise for the same query, and an adaptive attack calibrated per
    sample on the reference models would cancel it.
    """
    params = defense.params.model_dump()
    fitted = []
    for k in range(len(member_logits)):
        copy = (
            type(defense)(**{**params, "seed": int_seed(params["seed"], "output-defense", k)})
            if "seed" in params
            else defense.clone()
        )
        data = DefenderData(
            member_logits=member_logits[k],
            member_labels=member_labels[k],
            nonmember_logits=None if nonmember_logits is None else nonmember_logits[k],
            random_logits=None if random_logits is None else random_logits[k],
        )
        fitted.append(copy.fit(data))
    return fitted


def fit_output_defenses(
    defense: OutputDefense, setup: AuditSetup, logits: np.ndarray, models: Sequence[Target]
) -> list[OutputDefense]:
    """``defense`` fitted per model of the audit on what its owner holds: the model's
    outputs on its training members (from ``logits`` on the setup's query positions), on
    the validation split (non-members) and on random inputs (queried on ``models``)."""
    dataset, split, keep = setup.dataset, setup.split, setup.keep
    settings = setup.config.audit
    n_pool = len(split.pool)
    labels = dataset.y[split.pool]
    held_out = dataset.x[split.validation]
    noise = random_inputs(dataset.x[split.pool], 1000, int_seed(settings.seed, "random-inputs"))
    return fit_per_model(
        defense,
        member_logits=[logits[k, :n_pool, 0][keep[k]] for k in range(len(models))],
        member_labels=[labels[keep[k]] for k in range(len(models))],
        nonmember_logits=[m.logits(held_out) for m in models] if len(held_out) else None,
        random_logits=[m.logits(noise) for m in models],
    )


def defend_logits(defenses: list[OutputDefense], logits: np.ndarray) -> tuple[np.ndarray, float]:
    """Released outputs of every model, ``logits (K, n, Q, C)`` in and out, and the
    defence's mean time per answer in seconds (its inference overhead).

    Each model's ``n * Q`` answers are one batch, query by query (the order in which a
    randomised defence draws its noise)."""
    k_models, n, q, c = logits.shape
    out = np.empty_like(logits)
    start = time.perf_counter()
    for k, defense in enumerate(defenses):
        batch = defense.apply(logits[k].transpose(1, 0, 2).reshape(q * n, c))
        out[k] = batch.reshape(q, n, c).transpose(1, 0, 2)
    per_answer = (time.perf_counter() - start) / max(k_models * n * q, 1)
    return out, per_answer


class DefendedTarget(Target):
    """A model answering through its output defence (for attacks that query it).

    Every query batch goes through the defence at once. A label query to a
    label-preserving defence (whose released arg-max is the model's, see
    :meth:`OutputDefense.apply`) is answered by the model's own label: the same answer
    without the defence's work, which for MemGuard is an optimisation per answer. Such
    queries draw no noise from a randomised defence's stream.
    """

    def __init__(self, inner: Target, defense: OutputDefense) -> None:
        super().__init__(inner.num_classes)
        self.inner, self.defense = inner, defense

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.defense.apply(self.inner.logits(x))

    def labels(self, x: np.ndarray) -> np.ndarray:
        if not self.defense.label_preserving:
            return super().labels(x)
        out = self.inner.labels(x)
        self.queries += len(x)
        return out
