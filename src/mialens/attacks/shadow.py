"""Shadow-model attacks: a classifier learns membership from shadow models' outputs.

The audit's reference models are shadow models in the sense of Shokri et al.: trained
by the adversary with the target's recipe on data from the same distribution, with
known membership. Each attack queries the target once per sample for its prediction
vector (score threat model) and applies an attack classifier trained on the shadows'
prediction vectors of their members and non-members.

* :class:`ShokriAttack` (Shokri et al. 2017, S&P): one attack model per class,
  on the full prediction vector, trained on all shadow models.
* :class:`MLLeaksAttack` (Salem et al. 2019, NDSS, Adversary 1): one shadow
  model and one class-agnostic attack model on the three largest posteriors, sorted.
* :class:`MLLeaksTransferAttack` (Salem et al. 2019, Adversary 2, the "data
  transferring attack"): the same, but the shadow is trained on data from *another*
  distribution. Offline we cannot assume a second real data set of the same input
  shape, so the other distribution is a synthetic classification task of the same
  shape and number of classes (class prototypes with the data's range and density,
  noisy samples, 10% label noise; see :func:`synthetic_task`), trained with the audit's
  recipe. The sorted top-k posteriors make the attack model indifferent to what the
  classes mean, which is why the transfer works.

Attack classifiers are a small torch MLP (default) or scikit-learn models
(:data:`mialens.attacks.attack_models.ClassifierKind`); scores are their log-odds.
Neither paper gives a stopping rule for the attack model (Shokri et al. train neural
networks for a fixed budget; Salem et al. an MLP with one 64-unit hidden layer): we
train it to convergence (:mod:`mialens.attacks.attack_models`): a seeded held-out
``attack_holdout`` (a fifth) of the shadow rows stops training once its loss has not
improved for ``attack_patience`` (20) epochs, within ``attack_max_epochs`` (2000), and
the best epoch's weights are kept; per-class models stop on their pooled held-out loss.
The epochs used are reported in ``extra()["attack_training"]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from mialens.attacks.adversary_data import balanced_rows, data_box, is_binary, num_classes_of
from mialens.attacks.attack_models import AttackModelParams, ClassifierKind, fit_classifier
from mialens.attacks.base import Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import single_thread, single_threaded
from mialens.errors import DataError
from mialens.seeding import int_seed, rng
from mialens.signals.statistics import log_probabilities


def prediction_vectors(logits: np.ndarray, kind: str = "probabilities") -> np.ndarray:
    """Softmax outputs (or log-softmax) of logits, float64."""
    logp = log_probabilities(logits)
    return logp if kind == "log_probabilities" else np.exp(logp)


def top_k_sorted(probs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest posteriors of each row, in decreasing order (Salem et al.)."""
    k = min(k, probs.shape[-1])
    return -np.sort(-probs, axis=-1)[..., :k]


class ShokriParams(AttackModelParams):
    classifier: ClassifierKind = "mlp"
    hidden: int = Field(default=64, ge=1)
    features: Literal["probabilities", "log_probabilities"] = Field(
        default="probabilities", description="the paper feeds probabilities"
    )
    max_rows: int = Field(default=40000, ge=100, description="shadow rows to train on")


class ShokriAttack(QueryAttack):
    """Shokri et al.'s per-class attack models (see the module docstring)."""

    name = "shokri"
    summary = (
        "Shokri et al.: per-class attack models on prediction vectors, trained on the "
        "reference models as shadow models (score)"
    )
    paper = "Shokri et al. 2017, Membership Inference Attacks Against ML Models (S&P)"
    needs = Needs("queries", references="offline")
    Params = ShokriParams

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        assert refs is not None
        data = refs.data
        member = np.asarray(refs.member, bool)
        rows = balanced_rows(member, self.params.max_rows, rng(data.seed, "shokri-rows"))
        r_idx, n_idx = np.unravel_index(rows, member.shape)
        feats = np.empty((len(rows), 0))
        for r in np.unique(r_idx):
            sel = r_idx == r
            vec = prediction_vectors(
                refs.models[r].logits(data.x[n_idx[sel]]), self.params.features
            )
            if feats.shape[1] == 0:
                feats = np.empty((len(rows), vec.shape[1]))
            feats[sel] = vec
        self.num_classes_ = feats.shape[1]
        self.model_ = fit_classifier(
            feats,
            member[r_idx, n_idx],
            self.params.classifier,
            int_seed(data.seed, "shokri"),
            self.params,
            hidden=(self.params.hidden,),
            groups=data.labels[n_idx],
            num_groups=self.num_classes_,
        )

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        vec = prediction_vectors(target.logits(data.x), self.params.features)
        return self.model_.decision(vec, data.labels)

    def extra(self) -> dict:
        return self.model_.extra()


class MLLeaksParams(AttackModelParams):
    shadows: int = Field(default=1, ge=1, description="shadow (reference) models used")
    top_k: int = Field(default=3, ge=1)
    classifier: ClassifierKind = "mlp"
    hidden: int = Field(default=64, ge=1)


def _fit_top_k(vectors, member, params, seed):
    return fit_classifier(
        top_k_sorted(vectors, params.top_k),
        member,
        params.classifier,
        seed,
        params,
        hidden=(params.hidden,),
    )


class MLLeaksAttack(QueryAttack):
    """Salem et al.'s ML-Leaks, Adversary 1 (see the module docstring)."""

    name = "ml_leaks"
    summary = (
        "ML-Leaks (Salem et al.): attack model on the top-3 sorted posteriors, one shadow (score)"
    )
    paper = "Salem et al. 2019, ML-Leaks (NDSS), Adversary 1"
    needs = Needs("queries", references="offline")
    Params = MLLeaksParams

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        assert refs is not None
        data = refs.data
        count = min(self.params.shadows, len(refs.models))
        chosen = rng(data.seed, "ml-leaks-shadows").choice(len(refs.models), count, replace=False)
        vecs = np.concatenate([prediction_vectors(refs.models[r].logits(data.x)) for r in chosen])
        member = np.concatenate([np.asarray(refs.member[r], bool) for r in chosen])
        self.model_ = _fit_top_k(vecs, member, self.params, int_seed(data.seed, "ml-leaks"))

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        return self.model_.decision(
            top_k_sorted(prediction_vectors(target.logits(data.x)), self.params.top_k)
        )

    def extra(self) -> dict:
        return self.model_.extra()


def synthetic_task(
    x_like: np.ndarray, num_classes: int, n: int, seed: int, label_noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic classification task shaped like ``x_like`` (another distribution).

    Binary features: each class has per-feature rates drawn around the data's density
    and samples are Bernoulli draws. Continuous features: each class has a prototype
    drawn uniformly in the data's range, samples add Gaussian noise of a quarter of the
    range. A fraction ``label_noise`` of labels is redrawn uniformly, so that a model
    trained on it over-fits as real models do.
    """
    g = rng(seed, "synthetic-task")
    shape = x_like.shape[1:]
    d = int(np.prod(shape))
    y = g.integers(num_classes, size=n)
    if is_binary(x_like):
        density = float(np.clip(x_like.mean(), 0.01, 0.5))
        rates = np.clip(density * g.gamma(2.0, 0.5, size=(num_classes, d)), 0.0, 0.95)
        x = (g.random((n, d)) < rates[y]).astype(np.float32)
    else:
        lo, hi = data_box(x_like)
        protos = g.uniform(lo, hi, size=(num_classes, d))
        x = np.clip(protos[y] + g.normal(0, 0.25 * (hi - lo), size=(n, d)), lo, hi)
        x = x.astype(np.float32)
    noisy = g.random(n) < label_noise
    y = np.where(noisy, g.integers(num_classes, size=n), y)
    return x.reshape(n, *shape), y.astype(np.int64)


class MLLeaksTransferParams(MLLeaksParams):
    shadow_size: int | None = Field(
        default=None,
        ge=4,
        description="synthetic samples, half of them training the shadow "
        "(default: as many as audited samples)",
    )


class MLLeaksTransferAttack(QueryAttack):
    """Salem et al.'s data transferring attack, Adversary 2 (see the module docstring).

    No reference models: the shadow is the adversary's own model on another distribution.
    Per-target step (:meth:`prepare`): draw the synthetic task with the target's number
    of classes, train the shadow on half of it and the attack model on the shadow's
    members and non-members; no target query. :meth:`score` queries the target once per
    sample for its prediction vector.
    """

    name = "ml_leaks_transfer"
    summary = (
        "ML-Leaks data transferring attack (Salem et al.): top-3 attack model on a shadow "
        "trained on another (synthetic) distribution (score)"
    )
    paper = "Salem et al. 2019, ML-Leaks (NDSS), Adversary 2"
    needs = Needs("queries", target_step=True)
    Params = MLLeaksTransferParams

    @single_threaded
    def _prepare(self, target, data: QueryData) -> None:
        if data.train_model is None:
            raise DataError(f"attack {self.name!r} trains a shadow model: it needs a recipe")
        n = self.params.shadow_size or len(data.x)
        classes = num_classes_of(target, data.labels)
        x, y = synthetic_task(data.x, classes, n, data.seed)
        half = n // 2
        with single_thread():
            shadow = data.train_model(x[:half], y[:half], int_seed(data.seed, "ml-leaks-transfer"))
        member = np.arange(n) < half
        self.shadow_train_accuracy_ = float((shadow.labels(x[:half]) == y[:half]).mean())
        self.shadow_test_accuracy_ = float((shadow.labels(x[half:]) == y[half:]).mean())
        self.model_ = _fit_top_k(
            prediction_vectors(shadow.logits(x)),
            member,
            self.params,
            int_seed(data.seed, "ml-leaks"),
        )

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        return self.model_.decision(
            top_k_sorted(prediction_vectors(target.logits(data.x)), self.params.top_k)
        )

    def extra(self) -> dict:
        return {
            "shadow_train_accuracy": self.shadow_train_accuracy_,
            "shadow_test_accuracy": self.shadow_test_accuracy_,
            **self.model_.extra(),
        }
