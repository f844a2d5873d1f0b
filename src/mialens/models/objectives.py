"""What a training step minimises: per-sample losses, RelaxLoss, adversarial regularisation.

:class:`Objective` turns a step's logits ``(K, B, C)`` into each model's loss ``(K,)``,
the mean of its samples' losses (padding masked out), plus adversarial regularisation's
privacy penalty. The per-sample loss is the recipe's cross-entropy (with label
smoothing and a sample-aware defence's per-sample weights and smoothing), RelaxLoss, or
a custom :data:`mialens.models.loop.LossFn`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mialens.errors import ConfigError
from mialens.models.recipe import AdversarialRegularizationConfig, TrainConfig
from mialens.models.step import Batch, LossFn


class CrossEntropy:
    """The recipe's per-sample cross-entropy with label smoothing ``epsilon``; with
    per-sample ``weights`` or ``smoothing``: ``w_i [(1 - e_i) CE_i + e_i mean_j(-log
    p_ij)]`` with ``e_i`` the sample's smoothing added to the recipe's (equal to smoothed
    cross-entropy when all ``w_i = 1`` and ``e_i = epsilon``)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        weights: torch.Tensor | None = None,
        smoothing: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if weights is None and smoothing is None:
            return F.cross_entropy(
                logits, y, reduction="none", label_smoothing=self.label_smoothing
            )
        weights = torch.ones_like(y, dtype=logits.dtype) if weights is None else weights
        smoothing = torch.zeros_like(weights) if smoothing is None else smoothing
        logp = torch.log_softmax(logits, dim=1)
        eps = (smoothing + self.label_smoothing).clamp(max=1.0)
        nll = -logp.gather(1, y[:, None]).squeeze(1)
        uniform = -logp.mean(dim=1)
        return weights * ((1 - eps) * nll + eps * uniform)


def relaxloss(logits: torch.Tensor, y: torch.Tensor, epoch: int, alpha: float, upper: float):
    """Per-sample losses whose mean is RelaxLoss's batch objective (Chen, Yu & Fritz
    2022, Alg. 1, as in the authors' code): on even epochs (counting from 0) ``|L -
    alpha|``, i.e. gradient ascent once the mean loss ``L`` falls below ``alpha``; on odd
    epochs ``L`` while it exceeds ``alpha``, else *flatten the posterior*: cross-entropy
    against soft labels that keep the (detached, capped at ``upper``) true-class
    confidence and spread the rest uniformly over the other classes."""
    per_sample = F.cross_entropy(logits, y, reduction="none")
    mean = F.cross_entropy(logits, y)
    if (epoch - 1) % 2 == 0:  # d|L - alpha| = sign(L - alpha) dL
        return torch.sign(mean - alpha).detach() * per_sample
    if mean.item() > alpha:
        return per_sample
    c = logits.shape[1]
    p_true = torch.softmax(logits, dim=1).gather(1, y[:, None]).detach().clamp(max=upper)
    soft = ((1 - p_true) / (c - 1)).expand(-1, c).clone()
    soft.scatter_(1, y[:, None], p_true)
    return -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1)


class Objective:
    """A step's loss for each of ``K`` models (see the module docstring)."""

    def __init__(
        self,
        config: TrainConfig,
        loss: LossFn | None = None,
        regularizer: AdversarialRegularizer | None = None,
    ) -> None:
        self.config, self.regularizer = config, regularizer
        self.loss = loss if loss is not None else CrossEntropy(config.label_smoothing)
        self.custom = loss is not None

    def per_sample(self, logits, y, extras, epoch: int) -> torch.Tensor:
        """Losses ``(N,)`` of the samples with ``logits (N, C)`` and labels ``y (N,)``."""
        relax = self.config.relaxloss
        if relax is not None:
            return relaxloss(logits, y, epoch, relax.alpha, relax.upper)
        if extras is None:
            return self.loss(logits, y, None)
        if self.custom:
            return self.loss(logits, y, extras[:, 0])
        return self.loss(logits, y, extras[:, 0], extras[:, 1])

    def batch_loss(self, logits: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        """Each model's mean loss over its valid samples ``(K,)`` (plus the penalty)."""
        flat_y = batch.y.flatten()
        extras = None if batch.extras is None else batch.extras.flatten(0, 1).to(logits.device)
        per_sample = self.per_sample(logits.flatten(0, 1), flat_y, extras, epoch)
        per_sample = per_sample.view_as(batch.y)
        counts = batch.counts.clamp(min=1).to(logits.device)
        per_model = (per_sample * batch.valid).sum(1) / counts
        if self.regularizer is not None:
            per_model = per_model + self.regularizer.penalty(logits[0], batch.y[0])
        return per_model

    def one_sample_loss(
        self, epoch: int
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """``loss(logits (1, C), y (1,), extras (1, 3)) -> scalar`` for per-sample gradients."""
        return lambda logits, y, extras: self.per_sample(logits, y, extras, epoch).sum()

    def prepare(self, learner) -> None:
        """Before each step: adversarial regularisation's inference-model steps."""
        if self.regularizer is not None:
            self.regularizer.train_attack(learner.model, self.config.batch_size)
            learner.train_mode(True)


class _InferenceModel(nn.Module):
    """Nasr et al. 2018's attack model h(f(x), y): prediction and label branches."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.pred = nn.Sequential(nn.Linear(num_classes, 128), nn.ReLU(), nn.Linear(128, 64))
        self.label = nn.Linear(num_classes, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, probs.shape[1]).float()
        return self.head(torch.cat([self.pred(probs), self.label(onehot)], dim=1)).squeeze(1)


class AdversarialRegularizer:
    """Adversarial regularisation (Nasr, Shokri & Houmansadr 2018, Eq. 7 and Alg. 1).

    Before each classifier step the inference model ``h`` takes ``attack_steps`` ascent
    steps on the gain ``E_D[log h(f(x), y)] + E_D'[log(1 - h(f(x'), y'))]`` with batches
    from the training set ``D`` and the reference set ``D'``; the classifier then
    minimises ``CE + alpha * E_batch[log h(f(x), y)]``.
    """

    def __init__(
        self,
        config: AdversarialRegularizationConfig,
        num_classes: int,
        members: tuple[torch.Tensor, torch.Tensor],
        reference: tuple,
        gen: torch.Generator,
        device: str,
    ) -> None:
        self.config, self.gen, self.device = config, gen, device
        self.members = members
        self.reference = (
            torch.as_tensor(reference[0], dtype=torch.float32),
            torch.as_tensor(reference[1], dtype=torch.long),
        )
        if len(self.reference[1]) == 0:
            raise ConfigError("adversarial regularisation needs a non-empty reference set")
        self.attack = _InferenceModel(num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.attack.parameters(), lr=config.attack_lr)

    def _batch(self, data, size: int):
        idx = torch.randint(0, len(data[1]), (size,), generator=self.gen)
        return data[0][idx].to(self.device), data[1][idx].to(self.device)

    def train_attack(self, model: nn.Module, batch_size: int) -> None:
        model.eval()
        for _ in range(self.config.attack_steps):
            xm, ym = self._batch(self.members, batch_size)
            xr, yr = self._batch(self.reference, batch_size)
            with torch.no_grad():
                pm, pr = torch.softmax(model(xm), 1), torch.softmax(model(xr), 1)
            gain = (
                F.logsigmoid(self.attack(pm, ym)).mean() + F.logsigmoid(-self.attack(pr, yr)).mean()
            )
            self.optimizer.zero_grad(set_to_none=True)
            (-gain).backward()
            self.optimizer.step()

    def penalty(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.config.alpha * F.logsigmoid(self.attack(torch.softmax(logits, 1), y)).mean()
