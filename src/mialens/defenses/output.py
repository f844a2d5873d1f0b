"""Inference-time defences: transformations of what a model releases per query.

Every defence maps the model's logits ``(n, C)`` to the released output, returned as
logits again (log-probabilities of the released probability vector, floored like every
probability output in mialens; the logit-reweighting defences release the reweighted
logits themselves), so that every attack runs unchanged on defended models.
An adaptive adversary queries its reference models through the same defence; the audit
does exactly that. Defences that the defender calibrates on its own model (centroids,
MemGuard's classifier) are fitted per model on that model's training members and on
non-member data the defender holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy.special import expit, log_softmax, logit, softmax

from mialens.errors import ConfigError, DataError, unknown_name
from mialens.targets.adapters import (
    PROBABILITY_FLOOR,
    probabilities_to_logits,
    probability_floor,
)
from mialens.threads import fixed_threads

if TYPE_CHECKING:  # PyTorch loads only to fit MemGuard's classifier
    import torch

LOG_FLOOR = float(np.log(PROBABILITY_FLOOR))


class DefenseParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DefenderData:
    """What the defender knows of its own model: logits on its training members (with
    their labels), on non-members it holds, and on random inputs (for HAMP)."""

    member_logits: np.ndarray
    member_labels: np.ndarray
    nonmember_logits: np.ndarray | None = None
    random_logits: np.ndarray | None = None


def released(probs: np.ndarray) -> np.ndarray:
    """Logits of a released probability vector (rows renormalised, zeros floored)."""
    probs = np.clip(probs, 0.0, None)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    return np.log(np.maximum(probs, PROBABILITY_FLOOR)).astype(np.float32)


class OutputDefense(ABC):
    """A defence applied to every answer of a model (parameters validated by ``Params``)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    label_preserving: ClassVar[bool] = True
    """True when the released arg-max always equals the model's."""
    Params: ClassVar[type[DefenseParams]] = DefenseParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(f"invalid parameters for defence {self.name!r}:\n{exc}") from exc

    def clone(self) -> OutputDefense:
        return type(self)(**self.params.model_dump())

    def fit(self, data: DefenderData) -> OutputDefense:
        """Calibrate on the defended model's outputs (a no-op for stateless defences)."""
        return self

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The released output, as logits, for every row of ``logits (n, C)``; a
        label-preserving defence breaks the float32 ties it creates towards the model's
        label, so that its released arg-max always is the model's."""
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2:
            raise DataError(f"an output defence takes logits of shape (n, C); got {z.shape}")
        out = self._apply(z).astype(np.float32)
        if self.label_preserving:
            label = z.argmax(axis=1)
            tied = np.flatnonzero(out.argmax(axis=1) != label)
            out[tied, label[tied]] = np.nextafter(out[tied].max(axis=1), np.float32(np.inf))
        return out

    @abstractmethod
    def _apply(self, z: np.ndarray) -> np.ndarray: ...


class TopK(OutputDefense):
    """Release only the ``k`` largest probabilities (Shokri et al. 2017, Sec. VI-A).

    The adversary learns the top-``k`` probabilities and nothing about the remaining
    mass, which is spread uniformly over the other classes (the maximum-entropy
    completion), so the released ``k`` values are reproduced exactly.
    """

    name = "top_k"
    summary = "release only the k largest probabilities"
    paper = "Shokri et al. 2017, Membership Inference Attacks against ML Models (S&P), Sec. VI-A"

    class Params(DefenseParams):
        k: int = Field(default=1, ge=1)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        p = softmax(z, axis=1)
        c = p.shape[1]
        k = min(self.params.k, c)
        order = np.argsort(-p, axis=1, kind="stable")
        top = np.take_along_axis(p, order[:, :k], axis=1)
        rest = (1.0 - top.sum(axis=1, keepdims=True)) / max(c - k, 1)
        out = np.broadcast_to(rest, p.shape).copy()
        np.put_along_axis(out, order[:, :k], top, axis=1)
        return released(out)


class Rounding(OutputDefense):
    """Round every probability to ``decimals`` digits (Shokri et al. 2017, Sec. VI-A).

    Not label-preserving when two classes round to the same value; ties are released as
    ties. The adversary knows the answers are rounded, so it reads them as
    :mod:`mialens.targets.adapters` reads rounded probabilities: a released 0 stands for
    a probability in ``[0, 10**-decimals / 2)`` and is floored at
    :func:`~mialens.targets.adapters.probability_floor` of the unit, not at
    :data:`PROBABILITY_FLOOR` (which would overstate the defence). A row rounded to all
    zeros is thus read as uniform.
    """

    name = "rounding"
    summary = "round probabilities to a few decimals"
    paper = "Shokri et al. 2017, Membership Inference Attacks against ML Models (S&P), Sec. VI-A"
    label_preserving = False

    class Params(DefenseParams):
        decimals: int = Field(default=2, ge=0, le=15)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        p = np.round(softmax(z, axis=1), self.params.decimals)
        return probabilities_to_logits(p, probability_floor(10.0**-self.params.decimals))


class Temperature(OutputDefense):
    """Release ``softmax(z / T)``: high temperatures flatten confidences (Shokri et al.
    2017, Sec. VI-A "increase entropy"); the arg-max is unchanged."""

    name = "temperature"
    summary = "soften the softmax with a temperature T"
    paper = "Shokri et al. 2017, Membership Inference Attacks against ML Models (S&P), Sec. VI-A"

    class Params(DefenseParams):
        temperature: float = Field(default=4.0, gt=0.0)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(log_softmax(z / self.params.temperature, axis=1), LOG_FLOOR)


class ProbabilityNoise(OutputDefense):
    """Add Gaussian noise of scale ``sigma`` to the probabilities, clip at 0 and
    renormalise (output perturbation, a baseline of Jia et al. 2019, Sec. 6). Every
    answer draws fresh noise from a stream seeded by ``seed``. With ``preserve_label``
    a draw that changes the arg-max is rejected and redrawn (after 100 rejections the
    noise-free vector is released), so the defended model keeps its accuracy."""

    name = "noise"
    summary = "Gaussian noise on the released probabilities"
    paper = "Jia et al. 2019, MemGuard (CCS), Sec. 6, output-noise baselines"

    class Params(DefenseParams):
        sigma: float = Field(default=0.05, gt=0.0)
        preserve_label: bool = True
        seed: int = 0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._rng = np.random.default_rng(self.params.seed)

    @property
    def label_preserving(self) -> bool:  # type: ignore[override]
        return self.params.preserve_label

    def _draw(self, p: np.ndarray) -> np.ndarray:
        noisy = np.clip(p + self._rng.normal(0.0, self.params.sigma, p.shape), 0.0, None)
        noisy[noisy.sum(axis=1) == 0] = 1.0
        return noisy / noisy.sum(axis=1, keepdims=True)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        p = softmax(z, axis=1)
        out = self._draw(p)
        if self.params.preserve_label:
            label = p.argmax(axis=1)
            for _ in range(100):
                bad = out.argmax(axis=1) != label
                if not bad.any():
                    break
                out[bad] = self._draw(p[bad])
            else:
                out[bad] = p[bad]
        return released(out)


class LabelOnly(OutputDefense):
    """Release the predicted label only (Choquette-Choo et al. 2021 show label-only
    attacks still succeed); encoded as a one-hot probability vector."""

    name = "label_only"
    summary = "release the predicted label only"
    paper = "Choquette-Choo et al. 2021, Label-Only Membership Inference Attacks (ICML)"

    def _apply(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros_like(z)
        out[np.arange(len(z)), z.argmax(axis=1)] = 1.0
        return released(out)


class ReverseSigmoid(OutputDefense):
    """Reverse sigmoid perturbation (Lee et al. 2019, Eq. 4):
    ``y' = normalise(y - beta * (sigmoid(gamma * logit(y)) - 1/2))``, which pushes
    confident scores down and small scores up. Large ``beta`` can change the arg-max."""

    name = "reverse_sigmoid"
    summary = "reverse sigmoid perturbation of the probabilities"
    paper = (
        "Lee et al. 2019, Defending Against NN Model Stealing Attacks Using Deceptive "
        "Perturbations (S&P Workshops), Eq. 4"
    )
    label_preserving = False

    class Params(DefenseParams):
        beta: float = Field(default=0.5, gt=0.0)
        gamma: float = Field(default=0.1, gt=0.0)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        p = np.clip(softmax(z, axis=1), 1e-9, 1 - 1e-9)
        r = self.params.beta * (expit(self.params.gamma * logit(p)) - 0.5)
        return released(np.clip(p - r, 0.0, None))


class LogitReweighting(OutputDefense):
    """Logit reweighting of Khalil et al. 2025 (Membership Inference Attacks Beyond
    Overfitting, Sec. 6): each query's logits ``z`` are mixed with the centroid ``c_k``
    of the model's logits on its training samples of the predicted class ``k``:
    ``z' = (1 - a) z + a c_k`` with ``a = w * max(cos(z, c_k), 0)``. Queries that look
    like typical training points of their class are pulled to the class centroid, which
    hides how confidently an individual sample was memorised. If the mixture would
    change the arg-max (possible only when ``c_k``'s own arg-max is not ``k``), the
    query is released unchanged, so the predicted label is always preserved."""

    name = "logit_reweighting"
    summary = "mix each query's logits with its predicted class's training centroid"
    paper = "Khalil et al. 2025, Membership Inference Attacks Beyond Overfitting, Sec. 6"

    class Params(DefenseParams):
        w: float = Field(default=0.1, ge=0.0, le=1.0)

    def fit(self, data: DefenderData) -> LogitReweighting:
        z = np.asarray(data.member_logits, dtype=np.float64)
        labels = np.asarray(data.member_labels)
        c = z.shape[1]
        self.centroids_ = np.zeros((c, c))
        for k in range(c):
            rows = z[labels == k]
            self.centroids_[k] = rows.mean(axis=0) if len(rows) else 0.0
        return self

    def _cosine(self, z: np.ndarray) -> np.ndarray:
        """Cosine between each row and the centroid of its arg-max class (0 for zeros)."""
        cent = self.centroids_[z.argmax(axis=1)]
        norms = np.linalg.norm(z, axis=1) * np.linalg.norm(cent, axis=1)
        return np.where(norms > 0, (z * cent).sum(axis=1) / np.where(norms > 0, norms, 1), 0.0)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        if not hasattr(self, "centroids_"):
            raise RuntimeError("fit logit_reweighting on the model's training logits first")
        k = z.argmax(axis=1)
        cent = self.centroids_[k]
        a = (self.params.w * np.clip(self._cosine(z), 0.0, None))[:, None]
        mixed = (1 - a) * z + a * cent
        keep = mixed.argmax(axis=1) == k
        return np.where(keep[:, None], mixed, z)


class SelectiveLogitReweighting(LogitReweighting):
    """Sample-aware logit reweighting: only queries that look like intra-class outliers
    are pulled to their predicted class's training centroid, ``z' = (1 - w) z + w c_k``.

    A query is an outlier when the cosine between its logits and ``c_k`` is below the
    ``quantile`` of the same cosine over the model's training members of class ``k``
    (the defender's own data): the atypical samples Khalil et al. 2025 find most
    vulnerable. Typical queries are released unchanged. Label-preserving as
    :class:`LogitReweighting`.
    """

    name = "selective_logit_reweighting"
    summary = "logit reweighting applied only to queries atypical for their class"
    paper = (
        "Khalil et al. 2025, Membership Inference Attacks Beyond Overfitting, Sec. 6 "
        "(sample-aware variant)"
    )

    class Params(DefenseParams):
        w: float = Field(default=0.5, ge=0.0, le=1.0)
        quantile: float = Field(default=0.1, gt=0.0, lt=1.0)

    def fit(self, data: DefenderData) -> SelectiveLogitReweighting:
        super().fit(data)
        z = np.asarray(data.member_logits, dtype=np.float64)
        cos = self._cosine(z)
        k = z.argmax(axis=1)
        self.thresholds_ = np.full(len(self.centroids_), -np.inf)
        for c in range(len(self.centroids_)):
            if (k == c).any():
                self.thresholds_[c] = np.quantile(cos[k == c], self.params.quantile)
        return self

    def _apply(self, z: np.ndarray) -> np.ndarray:
        if not hasattr(self, "thresholds_"):
            raise RuntimeError(
                "fit selective_logit_reweighting on the model's training logits first"
            )
        k = z.argmax(axis=1)
        outlier = self._cosine(z) < self.thresholds_[k]
        a = np.where(outlier, self.params.w, 0.0)[:, None]
        mixed = (1 - a) * z + a * self.centroids_[k]
        keep = mixed.argmax(axis=1) == k
        return np.where(keep[:, None], mixed, z)


class HampOutput(OutputDefense):
    """HAMP's output modification (Chen & Pattabiraman 2024, Sec. 4.3): the released
    scores are those the model gives a random input, rearranged so that their ranking
    equals the query's ranking. The label is preserved; the scores carry no information
    about the query beyond its class order."""

    name = "hamp_output"
    summary = "release a random input's scores rearranged to the query's ranking"
    paper = "Chen & Pattabiraman 2024, Overconfidence is a Dangerous Thing (NDSS), Sec. 4.3"

    class Params(DefenseParams):
        seed: int = 0

    def fit(self, data: DefenderData) -> HampOutput:
        """Keep the sorted probability vectors of the model on random inputs."""
        if data.random_logits is None or len(data.random_logits) == 0:
            raise DataError("hamp_output needs the model's outputs on random inputs")
        p = softmax(np.asarray(data.random_logits, dtype=np.float64), axis=1)
        self.sorted_ = -np.sort(-p, axis=1)
        self._rng = np.random.default_rng(self.params.seed)
        return self

    def _apply(self, z: np.ndarray) -> np.ndarray:
        if not hasattr(self, "sorted_"):
            raise RuntimeError("fit hamp_output on the model's outputs on random inputs first")
        donors = self.sorted_[self._rng.integers(0, len(self.sorted_), size=len(z))]
        ranks = np.argsort(-z, axis=1, kind="stable")
        out = np.empty_like(donors)
        np.put_along_axis(out, ranks, donors, axis=1)
        return released(out)


class MemGuard(OutputDefense):
    """MemGuard (Jia et al. 2019, Sec. 4): per query, find a noise vector ``r`` with the
    predicted label unchanged and the defender's own membership classifier ``g`` fooled
    (``g(s + r) = 0.5``), minimising the distortion; then add it with probability
    ``min(1, epsilon / ||r||_1)`` so that the expected L1 distortion stays within the
    budget ``epsilon`` (Phase II).

    Phase I follows the paper's formulation in logit space: with ``s' = softmax(z')``,
    minimise ``|g(s') - 0.5| + c2 * ReLU(max_{j != l} z'_j - z'_l) + c3 * ||s' - s||_1``
    by ``steps`` Adam steps (Kingma & Ba 2015, Algorithm 1, torch's defaults with
    ``lr = 0.1``) from ``z' = z``; a result that changes the label is discarded (no
    noise). ``g`` is a small MLP on the sorted probability vector, trained by the
    defender on its training members versus non-members it holds. The gradient is
    written out (:func:`_memguard_gradient`) and every step runs on the whole query batch
    in float64; each row's optimisation depends on that row only, so a batch releases
    what its rows would release one by one.
    """

    name = "memguard"
    summary = "adversarial noise that fools the defender's own membership classifier"
    paper = (
        "Jia et al. 2019, MemGuard: Defending against Black-Box Membership Inference "
        "Attacks via Adversarial Examples (CCS), Sec. 4"
    )

    class Params(DefenseParams):
        epsilon: float = Field(default=1.0, gt=0.0, description="expected L1 distortion budget")
        steps: int = Field(default=200, ge=1)
        c2: float = Field(default=10.0, ge=0.0)
        c3: float = Field(default=0.1, ge=0.0)
        seed: int = 0

    def fit(self, data: DefenderData) -> MemGuard:
        if data.nonmember_logits is None or len(data.nonmember_logits) == 0:
            raise DataError(
                "memguard needs the defender's non-member outputs for its classifier: give "
                "the audit a validation split (audit.val_size > 0)"
            )
        import torch

        members, nonmembers = data.member_logits, data.nonmember_logits
        feats = np.concatenate([_sorted_probs(members), _sorted_probs(nonmembers)])
        target = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
        gen = torch.Generator().manual_seed(self.params.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.params.seed)
            net = _train_classifier(feats, target, gen)
        hidden, out = net[0], net[2]
        w1, b1, w2 = (t.detach().double().numpy() for t in (hidden.weight, hidden.bias, out.weight))
        self.classifier_ = (w1, b1, w2[0], float(out.bias[0]))
        self._rng = np.random.default_rng(self.params.seed)
        return self

    def membership(self, logits: np.ndarray) -> np.ndarray:
        """The defender's classifier's membership probability ``g`` of every row."""
        w1, b1, w2, b2 = self.classifier_
        return expit(np.maximum(_sorted_probs(logits) @ w1.T + b1, 0.0) @ w2 + b2)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        if not hasattr(self, "classifier_"):
            raise RuntimeError("fit memguard on the model's member and non-member outputs first")
        p = self.params
        label = z.argmax(axis=1)
        s = softmax(z, axis=1)
        noisy = z.copy()
        m1, m2 = np.zeros_like(z), np.zeros_like(z)
        beta1, beta2, lr, eps = 0.9, 0.999, 0.1, 1e-8
        for t in range(1, p.steps + 1):
            grad = _memguard_gradient(noisy, s, label, self.classifier_, p.c2, p.c3)
            m1 = beta1 * m1 + (1 - beta1) * grad
            m2 = beta2 * m2 + (1 - beta2) * grad * grad
            denom = np.sqrt(m2) / np.sqrt(1 - beta2**t) + eps
            noisy = noisy - (lr / (1 - beta1**t)) * m1 / denom
        sp = _softmax_rows(noisy)
        valid = sp.argmax(axis=1) == label
        r = np.where(valid[:, None], sp - s, 0.0)
        dist = np.abs(r).sum(axis=1)
        keep_prob = np.where(dist > 0, np.minimum(1.0, p.epsilon / np.maximum(dist, 1e-12)), 0.0)
        add = self._rng.random(len(z)) < keep_prob
        return released(s + add[:, None] * r)


def _memguard_gradient(
    noisy: np.ndarray,
    s: np.ndarray,
    label: np.ndarray,
    classifier: tuple[np.ndarray, np.ndarray, np.ndarray, float],
    c2: float,
    c3: float,
) -> np.ndarray:
    """Gradient of MemGuard's Phase I loss (see :class:`MemGuard`) with respect to the
    noisy logits, row by row, for ``g(q) = sigmoid(w2 . relu(W1 q + b1) + b2)`` on the
    sorted probabilities ``q``: subgradient 0 at the kinks of ``|.|`` and ReLU, and the
    margin's gradient on its first arg-max, as torch's autograd takes them."""
    rows = np.arange(len(noisy))[:, None]
    w1, b1, w2, b2 = classifier
    sp = _softmax_rows(noisy)
    order = np.argsort(-sp, axis=1)
    pre = sp[rows, order] @ w1.T + b1
    g = expit(np.maximum(pre, 0.0) @ w2 + b2)
    d_out = np.sign(g - 0.5) * g * (1 - g)
    d_sp = c3 * np.sign(sp - s)
    d_sp[rows, order] += ((d_out[:, None] * w2) * (pre > 0)) @ w1
    grad = sp * (d_sp - (d_sp * sp).sum(axis=1, keepdims=True))
    rows = rows[:, 0]
    others = noisy.copy()
    others[rows, label] = -np.inf
    rival = others.argmax(axis=1)
    active = others[rows, rival] - noisy[rows, label] + 1e-3 > 0
    grad[rows, rival] += c2 * active
    grad[rows, label] -= c2 * active
    return grad


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sorted_probs(logits: np.ndarray) -> np.ndarray:
    p = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    return -np.sort(-p, axis=1)


@fixed_threads()
def _train_classifier(
    feats: np.ndarray, target: np.ndarray, gen: torch.Generator
) -> torch.nn.Module:
    """The defender's membership classifier: an MLP on sorted probability vectors."""
    import torch

    from mialens.models.loop import minibatch_epoch

    c = feats.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Linear(c, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1), torch.nn.Sigmoid()
    )
    x = torch.as_tensor(feats, dtype=torch.float32)
    y = torch.as_tensor(target, dtype=torch.float32)[:, None]
    # balance members and non-members
    weight = torch.where(y > 0.5, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy(net(x[idx]), y[idx], weight=weight[idx])

    for _ in range(200):
        minibatch_epoch(opt, torch.arange(len(x)), 256, gen, batch_loss)
    net.eval()
    for param in net.parameters():
        param.requires_grad_(False)
    return net


OUTPUT_DEFENSES: dict[str, type[OutputDefense]] = {
    cls.name: cls
    for cls in (
        TopK,
        Rounding,
        Temperature,
        ProbabilityNoise,
        LabelOnly,
        ReverseSigmoid,
        LogitReweighting,
        SelectiveLogitReweighting,
        HampOutput,
        MemGuard,
    )
}


def build_output_defense(spec: str | dict[str, Any]) -> OutputDefense:
    """An output defence from a name or ``{name: ..., **params}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name")
    if name not in OUTPUT_DEFENSES:
        raise unknown_name("output defence", str(name), list(OUTPUT_DEFENSES))
    return OUTPUT_DEFENSES[name](**{k: v for k, v in spec.items() if k != "name"})
