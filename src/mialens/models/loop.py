"""The training loop: one code path for one model and for a batched stack of models.

Every target and reference model is trained here, by :func:`run_epochs`, whether it is
trained alone (:func:`mialens.models.training.train_model`) or with others as one stacked
network (:func:`mialens.models.ensemble.train_ensemble`). A :class:`Learner` holds the
``K`` models being trained (``K = 1`` for one model) and supplies what differs between
the two: the forward pass, the optimizer step, evaluation and the kept weights. The
epochs, the learning-rate schedule, the mini-batches, the augmentation, the loss and its
per-sample weights, smoothing and clipping, the record of each epoch and early stopping
(each model its own) are the same code for both: a stack runs them on tensors with a
leading model axis, padded where models have fewer samples (padding is masked out of
the loss; a model with no sample left in a step takes no optimizer step).

Seams (:class:`Step`): the per-sample loss (a custom loss replaces cross-entropy), a
gradient hook that sees the clipped per-sample gradients before noise is added (DP-SGD
through Opacus, or per-sample clipping), and mixed precision (autocast on CUDA).

Which recipes cannot run as a stack is decided in one place, :func:`batching_blocker`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mialens.augment import random_augment
from mialens.errors import ConfigError
from mialens.models.objectives import Objective
from mialens.models.recipe import TrainConfig
from mialens.models.step import Batch, ClippedGradients, Step

_SINGLE_MODEL_ONLY = {
    "dp": "train.dp (DP-SGD clips and noises per model and accounts per model, in Opacus)",
    "relaxloss": "train.relaxloss (its branch on each batch's mean loss runs per model)",
    "adversarial_regularization": (
        "train.adversarial_regularization (an inference model is trained against each model)"
    ),
}


def batching_blocker(config: TrainConfig, per_sample: bool = False) -> str | None:
    """Why models of this recipe must be trained one by one (None when they can be
    stacked). The one rule: every ``TrainConfig`` field runs in the shared step except
    those listed here, and per-sample treatment (weights, smoothing, clipping) runs on
    one model at a time."""
    for name, reason in _SINGLE_MODEL_ONLY.items():
        if getattr(config, name) is not None:
            return reason
    if per_sample:
        return "per-sample weights, smoothing or clipping"
    return None


@dataclass
class TrainResult:
    """Weights and record of one training run."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int | None = None
    epsilon: float | None = None
    seconds: float = 0.0


class Batches(Protocol):
    """Where a run's mini-batches come from."""

    def epoch(self, active: Sequence[bool]) -> Iterator[Batch]:
        """This epoch's batches of the models still ``active``."""
        ...


class ShuffledBatches:
    """Mini-batches of a fresh permutation of each model's rows every epoch (from the
    model's own generator), stepped in lock-step: a model with fewer rows is padded.
    ``pad``: every batch is ``batch_size`` wide (a stack needs one width for all
    models); otherwise trimmed to the widest model's batch (one model: no padding)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: Sequence[torch.Tensor],
        batch_size: int,
        gens: Sequence[torch.Generator],
        extras: torch.Tensor | None = None,
        pad: bool = True,
    ) -> None:
        self.x, self.y, self.rows, self.extras = x, y, list(rows), extras
        self.batch_size, self.gens, self.pad = batch_size, list(gens), pad

    def epoch(self, active: Sequence[bool]) -> Iterator[Batch]:
        k, bs = len(self.rows), self.batch_size
        orders = {
            m: self.rows[m][torch.randperm(len(self.rows[m]), generator=self.gens[m])]
            for m in range(k)
            if active[m]
        }
        steps = max(math.ceil(len(o) / bs) for o in orders.values())
        index = torch.full((k, steps * bs), -1, dtype=torch.long)
        for m, order in orders.items():
            index[m, : len(order)] = order
        for step in index.view(k, steps, bs).unbind(1):
            valid = step >= 0
            counts = valid.sum(1)
            if not self.pad:
                step, valid = step[:, : int(counts.max())], valid[:, : int(counts.max())]
            rows = step.clamp(min=0)
            extras = None if self.extras is None else self.extras[rows]
            yield Batch(self.x[rows], self.y[rows], valid, counts, extras)


class Learner(Protocol):
    """The ``K`` models one run trains (see the module docstring). Recipes that run on
    one model only (:func:`batching_blocker`) also use its ``model``, ``trainable()``
    and ``per_sample_grads()``."""

    size: int
    device: str

    def train_mode(self, training: bool) -> None:
        """Training or evaluation mode (dropout)."""

    def set_lr(self, lr: float) -> None:
        """The learning rate of the coming steps."""

    def zero_grad(self) -> None: ...

    def forward(self, batch: Batch) -> torch.Tensor:
        """Training-mode logits ``(K, B, C)`` of every model on its own batch."""

    def step(self, active: list[bool]) -> None:
        """One optimizer step (``active``: the models that had samples in it)."""

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode logits ``(K, N, C)`` of every model on the samples ``x``."""

    def keep_best(self, k: int) -> None:
        """Keep model ``k``'s current weights as its best."""

    def state_dict(self, k: int, best: bool) -> dict[str, torch.Tensor]:
        """Model ``k``'s final weights (its kept best ones if ``best``), on the CPU."""

    def epsilon(self) -> float | None:
        """The DP-SGD privacy spent (None without DP)."""


def recipe_step(step: Step | None, config: TrainConfig) -> Step:
    """The step of a run: ``step`` (default: the recipe's), with the recipe's mixed
    precision switched on when ``train.mixed_precision`` asks for it."""
    step = step or Step()
    return replace(step, mixed_precision=True) if config.mixed_precision else step


@contextmanager
def device_run(device: str | torch.device) -> Iterator[None]:
    """The context of one training run on ``device``: the global RNG (and the CUDA
    device's) restored afterwards and, on CUDA, cuDNN's deterministic convolution
    algorithms (same seed, same numbers on one device)."""
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        if not cuda:
            yield
            return
        cudnn = torch.backends.cudnn
        before = cudnn.deterministic, cudnn.benchmark
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = before


def module_to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` on ``device``; on CUDA with its convolution weights channels-last, the
    layout :func:`to_device` gives image batches."""
    model = model.to(device)
    if torch.device(device).type == "cuda":
        return model.to(memory_format=torch.channels_last)
    return model


def to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``x`` on ``device``; on CUDA a batch of images ``(N, C, H, W)`` in channels-last
    layout, in which cuDNN runs convolutions fastest (tensor cores under bfloat16)."""
    x = x.to(device)
    if x.dim() == 4 and torch.device(device).type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def build_optimizer(
    config: TrainConfig, params, fused: bool | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimizer (``fused`` kernels for stacked parameters)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            fused=fused,
        )
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The schedule's learning-rate factor in epoch ``epoch`` (counting from 0)."""
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "step":
        return 0.1 ** (int(epoch >= config.epochs // 2) + int(epoch >= (3 * config.epochs) // 4))
    return 1.0


def epoch_record(epoch: int, loss_sum: float, correct: int, total: int) -> dict[str, float]:
    """The training record of one epoch; a non-finite loss stops training with advice."""
    if not math.isfinite(loss_sum):
        raise ConfigError(
            f"training diverged (non-finite loss at epoch {epoch}); lower train.lr or "
            "check the inputs for extreme values"
        )
    return {
        "epoch": epoch,
        "train_loss": loss_sum / max(total, 1),
        "train_accuracy": correct / max(total, 1),
    }


class Patience:
    """Early stopping of ``k`` models: model ``m`` stops once its monitored value has not
    dropped below its best by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, k: int, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = [math.inf] * k
        self.best_epoch: list[int | None] = [None] * k
        self.waited = [0] * k

    def improved(self, m: int, epoch: int, value: float) -> bool:
        """Record model ``m``'s value of ``epoch``; True when it is a new best."""
        if value < self.best[m] - self.min_delta:
            self.best[m], self.best_epoch[m], self.waited[m] = value, epoch, 0
            return True
        self.waited[m] += 1
        return False

    def stopped(self, m: int) -> bool:
        return self.waited[m] >= self.patience


def minibatch_epoch(
    optimizer: torch.optim.Optimizer,
    rows: torch.Tensor,
    batch_size: int,
    gen: torch.Generator,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """One epoch of plain mini-batch steps on ``rows`` in a fresh permutation from
    ``gen``: ``batch_loss(idx)`` is the loss of the rows ``idx`` (the small auxiliary
    networks of attacks and defences train with it)."""
    order = rows[torch.randperm(len(rows), generator=gen)]
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        optimizer.zero_grad(set_to_none=True)
        batch_loss(idx).backward()
        optimizer.step()


@dataclass
class Run:
    """What one training run is made of (see :func:`run_epochs`)."""

    learner: Learner
    batches: Batches
    gens: list[torch.Generator]  # each model's generator for augmentation
    objective: Objective
    step: Step
    validation: tuple[torch.Tensor, torch.Tensor] | None = None
    clip_noise: float | None = None  # per-sample clipping (single model) and its noise
    on_epoch: Callable[[int], None] | None = None


def run_epochs(config: TrainConfig, run: Run) -> list[TrainResult]:
    """Train ``run.learner``'s models for ``config.epochs`` epochs (or until each one's
    early stopping stops it); one result per model."""
    learner, size = run.learner, run.learner.size
    stopper = config.early_stopping
    patience = Patience(size, stopper.patience, stopper.min_delta) if stopper else None
    active = [True] * size
    history: list[list[dict[str, float]]] = [[] for _ in range(size)]
    for epoch in range(1, config.epochs + 1):
        learner.set_lr(config.lr * lr_factor(config, epoch - 1))
        trained = list(active)
        tally = _train_epoch(config, run, epoch, active)
        val = None if run.validation is None else learner.eval_logits(run.validation[0])
        for m in (m for m in range(size) if trained[m]):
            record = epoch_record(epoch, *tally.of(m))
            if val is not None:
                yv = run.validation[1]
                record["val_loss"] = F.cross_entropy(val[m], yv).item()
                record["val_accuracy"] = (val[m].argmax(1) == yv).float().mean().item()
            history[m].append(record)
            if patience is not None:
                value = record[stopper.monitor] * (1 if stopper.monitor == "val_loss" else -1)
                if patience.improved(m, epoch, value) and stopper.restore_best:
                    learner.keep_best(m)
                active[m] = not patience.stopped(m)
        if run.on_epoch is not None:
            run.on_epoch(epoch)
        if not any(active):
            break
    best = patience.best_epoch if patience is not None else [None] * size
    keep = [b is not None and stopper.restore_best for b in best]
    epsilon = learner.epsilon()
    return [
        TrainResult(learner.state_dict(m, keep[m]), history[m], len(history[m]), best[m], epsilon)
        for m in range(size)
    ]


class _Tally:
    """Per-model sums of one epoch's training loss, hits and samples."""

    def __init__(self, size: int) -> None:
        self.loss = torch.zeros(size, dtype=torch.float64)
        self.correct = torch.zeros(size, dtype=torch.long)
        self.total = torch.zeros(size, dtype=torch.long)

    @torch.no_grad()
    def add(self, logits: torch.Tensor, batch: Batch) -> None:
        flat = logits.flatten(0, 1)
        plain = F.cross_entropy(flat, batch.y.flatten(), reduction="none").view_as(batch.y)
        self.loss += (plain * batch.valid).sum(1).double().cpu()
        self.correct += ((logits.argmax(-1) == batch.y) & batch.valid).sum(1).cpu()
        self.total += batch.counts

    def of(self, m: int) -> tuple[float, int, int]:
        return self.loss[m].item(), int(self.correct[m].item()), int(self.total[m].item())


def _train_epoch(config: TrainConfig, run: Run, epoch: int, active: list[bool]) -> _Tally:
    learner = run.learner
    tally = _Tally(learner.size)
    learner.train_mode(True)
    for batch in run.batches.epoch(active):
        if config.augment is not None and batch.x.dim() == 5:
            for m, count in enumerate(batch.counts.tolist()):
                if count:
                    batch.x[m, :count] = random_augment(
                        batch.x[m, :count], config.augment.flip, config.augment.shift, run.gens[m]
                    )
        run.objective.prepare(learner)
        device = learner.device
        batch.y, batch.valid = batch.y.to(device), batch.valid.to(device)
        learner.zero_grad()
        if run.clip_noise is not None:
            logits = _clipped_backward(learner, batch, run, epoch)
        else:
            with run.step.autocast(device):
                logits = learner.forward(batch)
            run.objective.batch_loss(logits.float(), batch, epoch).sum().backward()
        learner.step((batch.counts > 0).tolist())
        tally.add(logits.detach().float(), batch)
    return tally


def _clipped_backward(learner, batch: Batch, run: Run, epoch: int) -> torch.Tensor:
    """Set ``.grad`` to ``(sum_i c_i g_i + N(0, s^2 I)) / B`` and return the logits.

    ``g_i`` is sample i's gradient of its own (weighted, smoothed) loss and
    ``c_i = min(1, C_i / ||g_i||)`` clips it to the sample's norm ``C_i`` (``inf``: kept
    as is): DP-SGD's per-sample clipping and Gaussian noise (Abadi et al. 2016, Alg. 1)
    applied to the flagged samples only, as individualised clipping does (Boenisch et
    al. 2023). With every ``C_i = inf`` and no noise it is the plain gradient step.
    The step's gradient hook sees the clipped ``c_i g_i`` and their sum before noise.
    """
    extras = batch.extras[0].to(learner.device)
    grads, logits = learner.per_sample_grads(run.objective.one_sample_loss(epoch), batch)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
    factor = (extras[:, 2] / norms.clamp(min=1e-12)).clamp(max=1.0)
    summed = {name: torch.einsum("b,b...->...", factor, g) for name, g in grads.items()}
    if run.step.grad_hook is not None:
        clipped = {name: factor.view(-1, *[1] * (g.dim() - 1)) * g for name, g in grads.items()}
        run.step.grad_hook(ClippedGradients(clipped, summed))
    for name, param in learner.trainable().items():
        total = summed[name]
        if run.clip_noise > 0:
            total = total + run.clip_noise * torch.randn_like(total)
        param.grad = total / int(batch.counts[0])
    return logits[None]
