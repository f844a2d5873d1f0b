"""Per-sample statistics of model outputs, computed in float64.

Every function takes logits of shape ``(..., n_classes)`` and integer labels that
broadcast against the leading axes, and returns one value per leading position. Logits
stand for any log-scores: log-probabilities are valid logits (softmax leaves them
unchanged), which is how probability outputs of other models enter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from mialens.errors import unknown_name


def _as64(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64)


def _true_class(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``values[..., labels]`` where labels broadcast against the leading axes."""
    lab = np.broadcast_to(np.asarray(labels)[..., None], (*values.shape[:-1], 1))
    return np.take_along_axis(values, lab, axis=-1)[..., 0]


def _other_classes(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A boolean mask that is False at the true class and True elsewhere."""
    classes = np.arange(values.shape[-1])
    return classes != np.asarray(labels)[..., None]


def log_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(logits / temperature)`` over the class axis."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = _as64(logits)
    return _log_softmax(z if temperature == 1 else z / temperature)  # z / 1 is z


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - m - log sum exp(z - m)`` over the last axis, ``m`` the row's maximum (0 where
    it is infinite): the shift that keeps ``exp`` in range, in the operations of
    ``scipy.special.log_softmax`` (the same values), on NumPy arrays without its
    array-API dispatch (2.6x faster on an audit's logits)."""
    top = z.max(axis=-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    shifted = z - top
    with np.errstate(divide="ignore"):  # a row of zero probabilities: log 0 = -inf
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy ``-log p_y`` (Yeom et al. 2018)."""
    return -_true_class(log_probabilities(logits), labels)


def probability(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probability of the true class, ``softmax(logits / T)_y``."""
    return np.exp(_true_class(log_probabilities(logits, temperature), labels))


def confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confidence in the true class, ``p_y`` (Song & Mittal 2021, I_conf)."""
    return probability(logits, labels)


def entropy(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Prediction entropy ``-sum_i p_i log p_i`` (Song & Mittal 2021, I_entr); label-free."""
    logp = log_probabilities(logits)
    return -np.sum(np.exp(logp) * logp, axis=-1)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Modified entropy (Song & Mittal 2021, Eq. 3).

    ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``, with
    ``log(1 - p_i)`` computed as ``log sum_{j != i} p_j`` so that confident outputs keep
    their precision.
    """
    logp = log_probabilities(logits)
    p = np.exp(logp)
    # log1p(-p) is exact for p <= 1/2; only the arg-max class can exceed 1/2, and for it
    # log(1 - p) = logsumexp of the other classes' log-probabilities.
    log1m = np.negative(p)
    with np.errstate(divide="ignore"):  # p == 1 happens only at the arg-max, replaced below
        np.log1p(log1m, out=log1m)
    top = np.argmax(logp, axis=-1)[..., None]
    masked = logp.copy()
    np.put_along_axis(masked, top, -np.inf, axis=-1)
    np.put_along_axis(log1m, top, logsumexp(masked, axis=-1)[..., None], axis=-1)
    del masked
    logp_y = _true_class(logp, labels)
    log1m_y = _true_class(log1m, labels)
    # the terms p_i log(1 - p_i) of the other classes, in place of p (the arrays are large)
    terms = np.multiply(p, log1m, out=p)
    np.copyto(terms, 0.0, where=~_other_classes(logp, labels))
    return -np.exp(log1m_y) * logp_y - np.sum(terms, axis=-1)


def rescaled_logit(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA logit scaling ``phi(p_y) = log(p_y / (1 - p_y))`` (Carlini et al. 2022, Eq. 4).

    Computed stably as ``z_y - logsumexp_{j != y} z_j`` from the logits ``z``.
    """
    z = _as64(logits)
    others = np.where(_other_classes(z, labels), z, -np.inf)
    return _true_class(z, labels) - logsumexp(others, axis=-1)


def hinge(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logit margin ``z_y - max_{j != y} z_j`` (Carlini et al. 2022, Sec. VI-A)."""
    z = _as64(logits)
    others = np.where(_other_classes(z, labels), z, -np.inf)
    return _true_class(z, labels) - others.max(axis=-1)


def correctness(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the arg-max class is the true class, else 0.0."""
    return (np.argmax(logits, axis=-1) == np.asarray(labels)).astype(np.float64)


SignalFn = Callable[..., np.ndarray]

SIGNALS: dict[str, SignalFn] = {
    "loss": loss,
    "probability": probability,
    "confidence": confidence,
    "entropy": entropy,
    "modified_entropy": modified_entropy,
    "rescaled_logit": rescaled_logit,
    "hinge": hinge,
    "correctness": correctness,
}


@dataclass(frozen=True)
class SignalSpec:
    """Which statistic of the model outputs an attack consumes (a key of :data:`SIGNALS`),
    with its parameters."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)


def compute_signal(
    name: str, logits: np.ndarray, labels: np.ndarray, **params: float
) -> np.ndarray:
    """Evaluate the statistic ``name`` on ``logits`` (see :data:`SIGNALS`)."""
    if name not in SIGNALS:
        raise unknown_name("signal", name, list(SIGNALS))
    return SIGNALS[name](logits, labels, **params)
