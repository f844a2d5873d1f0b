"""Quantile-regression membership inference (Bertran et al. 2023, NeurIPS).

No reference models: a regressor fitted on *non-member* data (the audit's population,
which trained no model) predicts, for a sample ``(x, y)``, the distribution of the
target's score ``s(x, y)`` over non-members; a member's score sits above its predicted
non-member quantile. The score is the hinge ``z_y - max_{j != y} z_j`` of the target's
logits (the official code's ``label_logit_and_hinge_scoring_fn``).

* ``loss: gaussian`` (the official code's default parametrisation): the regressor
  outputs ``mu(x, y)`` and ``log sigma(x, y)`` trained by Gaussian negative
  log-likelihood; every quantile is ``mu + sigma * Phi^-1(1 - alpha)``, so the
  membership score ``(s - mu) / sigma`` sweeps all false-positive rates at once.
* ``loss: pinball``: the regressor predicts the ``a = 1 - alpha`` quantile ``q(x, y)``
  for a target false-positive rate ``alpha`` directly, with the pinball loss
  ``max(a (s - q), (a - 1) (s - q))``; the score is ``s - q`` (the decision ``s > q``
  has false-positive rate ``alpha`` on non-members).

The regressor is a small MLP on the flattened features with one output head per class
(the label selects the head, as in the official image code); a held-out fifth of the
population picks the training epoch with the lowest validation loss.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from mialens.attacks.adversary_data import Standardizer, num_classes_of
from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData
from mialens.attacks.networks import mlp, seeded, single_thread, single_threaded
from mialens.seeding import int_seed, rng
from mialens.signals.statistics import hinge


class QuantileParams(AttackParams):
    loss: Literal["gaussian", "pinball"] = "gaussian"
    alpha: float = Field(default=0.01, gt=0, lt=1, description="pinball: target FPR")
    hidden: list[int] = Field(default=[128], description="regressor hidden widths")
    epochs: int = Field(default=60, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=128, ge=1)
    holdout: float = Field(default=0.2, ge=0, lt=1)


def gaussian_nll(mu: torch.Tensor, log_sigma: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-row Gaussian negative log-likelihood, up to the constant ``log sqrt(2 pi)``."""
    return log_sigma + 0.5 * torch.exp(-2 * log_sigma) * (s - mu) ** 2


def pinball(q: torch.Tensor, s: torch.Tensor, level: float) -> torch.Tensor:
    """Pinball (quantile) loss of the ``level`` quantile ``q`` for observations ``s``."""
    diff = s - q
    return torch.relu(diff) * level + torch.relu(-diff) * (1 - level)


class QuantileAttack(QueryAttack):
    """Bertran et al.'s quantile-regression attack (see the module docstring).

    Per-target step (:meth:`prepare`): query the target's logits on the population
    (one query per population sample) and fit the regressor to its hinge scores there.
    :meth:`score` queries the target's logits on the candidates (one per sample) and
    compares each score with its predicted non-member quantile.
    """

    name = "quantile"
    summary = (
        "quantile regression (Bertran et al.): a regressor fitted on non-member data predicts "
        "the quantiles of the target's hinge score; no reference models (score)"
    )
    paper = (
        "Bertran et al. 2023, Scalable Membership Inference Attacks via Quantile Regression "
        "(NeurIPS)"
    )
    needs = Needs("queries", population=True, target_step=True)
    Params = QuantileParams

    def _outputs(self) -> int:
        return 2 if self.params.loss == "gaussian" else 1

    def _heads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net_(x).view(len(x), self.num_classes_, self._outputs())
        return out[torch.arange(len(x)), y]

    def _loss(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self._heads(x, y)
        if self.params.loss == "gaussian":
            return gaussian_nll(out[:, 0], out[:, 1], s)
        return pinball(out[:, 0], s, 1 - self.params.alpha)

    def _fit_regressor(self, x: np.ndarray, y: np.ndarray, s: np.ndarray, seed: int) -> None:
        p = self.params
        flat = x.reshape(len(x), -1)
        self.scale_ = Standardizer.fit(flat)
        xt = torch.as_tensor(self.scale_(flat))
        yt = torch.as_tensor(np.asarray(y, np.int64))
        st = torch.as_tensor(np.asarray(s, np.float32))
        order = rng(seed, "quantile-holdout").permutation(len(xt))
        n_hold = int(len(order) * p.holdout)
        hold, train = torch.as_tensor(order[:n_hold]), torch.as_tensor(order[n_hold:])
        with seeded(int_seed(seed, "quantile-init")):
            self.net_ = mlp(flat.shape[1], tuple(p.hidden), self.num_classes_ * self._outputs())
        opt = torch.optim.Adam(self.net_.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        gen = torch.Generator().manual_seed(int_seed(seed, "quantile-batches") % (2**63))
        with single_thread():
            best, best_state = self._epochs(xt, yt, st, train, hold, opt, gen)
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.validation_loss_ = None if not np.isfinite(best) else float(best)
        self.net_.eval()

    def _epochs(self, xt, yt, st, train, hold, opt, gen):
        p = self.params
        best, best_state = np.inf, None
        for _ in range(p.epochs):
            self.net_.train()
            perm = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(perm), p.batch_size):
                idx = perm[i : i + p.batch_size]
                opt.zero_grad(set_to_none=True)
                self._loss(xt[idx], yt[idx], st[idx]).mean().backward()
                opt.step()
            if len(hold):
                self.net_.eval()
                with torch.no_grad():
                    val = float(self._loss(xt[hold], yt[hold], st[hold]).mean())
                if val < best:
                    best, best_state = val, copy.deepcopy(self.net_.state_dict())
        return best, best_state

    @single_threaded
    def _prepare(self, target, data: QueryData) -> None:
        self.num_classes_ = num_classes_of(target, data.labels, data.population_labels)
        pop_scores = hinge(target.logits(data.population_x), data.population_labels)
        self._fit_regressor(data.population_x, data.population_labels, pop_scores, data.seed)

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        s = hinge(target.logits(data.x), data.labels)
        xt = torch.as_tensor(self.scale_(data.x.reshape(len(data.x), -1)))
        with torch.no_grad():
            out = self._heads(xt, torch.as_tensor(np.asarray(data.labels, np.int64))).double()
        out = out.numpy()
        if self.params.loss == "gaussian":
            return (s - out[:, 0]) / np.exp(out[:, 1])
        return s - out[:, 0]

    def extra(self) -> dict:
        return {"validation_loss": self.validation_loss_}
