"""Training recipe (:class:`TrainConfig`) and the trainer for one model.

The trainer is deterministic: the seed fixes initialisation, batch order, dropout,
augmentation and DP noise, and the global torch RNG is left untouched.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from mialens.augment import random_augment
from mialens.errors import ConfigError

log = logging.getLogger(__name__)

TORCH_THREADS = 1
"""Intra-op threads of every training and inference run. Floating-point reductions
split over threads round differently for each thread count, so the count is fixed
rather than left to the machine (or to Ray, which gives a worker ``num_cpus``
threads): same seed, same numbers, on any executor and any machine. Parallelism
comes from batched ensembles and from executor tasks instead."""


@contextmanager
def fixed_threads() -> Iterator[None]:
    """Run torch on :data:`TORCH_THREADS` intra-op threads, restoring the caller's count
    afterwards (usable as a decorator)."""
    previous = torch.get_num_threads()
    if previous == TORCH_THREADS:  # nested or already set: nothing to change
        yield
        return
    torch.set_num_threads(TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class EarlyStoppingConfig(BaseModel):
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(default=5, ge=1)
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best: bool = Field(default=True, description="keep the weights of the best epoch")


class DPConfig(BaseModel):
    """DP-SGD through Opacus (Abadi et al. 2016) with Poisson sampling.

    Give either ``noise_multiplier`` or ``target_epsilon`` (the noise is then calibrated
    so that the planned epochs spend exactly that budget).
    """

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float | None = Field(default=None, gt=0.0)
    target_epsilon: float | None = Field(default=None, gt=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="per-sample clipping norm C")
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"

    @model_validator(mode="after")
    def _one_budget(self) -> DPConfig:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("train.dp needs exactly one of noise_multiplier or target_epsilon")
        return self


class AugmentConfig(BaseModel):
    """Training-time image augmentation: random horizontal flips and shifts."""

    model_config = ConfigDict(extra="forbid")

    flip: bool = False
    shift: int = Field(default=0, ge=0, description="largest shift in pixels")


class RelaxLossConfig(BaseModel):
    """RelaxLoss (Chen, Yu & Fritz 2022, Alg. 1): keep the training loss near ``alpha``."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(gt=0.0, description="target mean training loss")
    upper: float = Field(
        default=1.0, gt=0.0, le=1.0, description="cap on the true-class confidence when flattening"
    )


class AdversarialRegularizationConfig(BaseModel):
    """Adversarial regularisation (Nasr, Shokri & Houmansadr 2018, Alg. 1)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=1.0, ge=0.0, description="weight lambda of the privacy gain")
    attack_steps: int = Field(default=1, ge=1, description="inference-model steps per step")
    attack_lr: float = Field(default=1e-3, gt=0.0)


class TrainConfig(BaseModel):
    """How every target and reference model is trained."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(default=0.0, ge=0.0, description="L2 penalty")
    schedule: Literal["constant", "cosine", "step"] = Field(
        default="constant", description="step: lr x0.1 at 50% and 75% of the epochs"
    )
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    augment: AugmentConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    dp: DPConfig | None = None
    relaxloss: RelaxLossConfig | None = None
    adversarial_regularization: AdversarialRegularizationConfig | None = None

    @model_validator(mode="after")
    def _one_objective(self) -> TrainConfig:
        chosen = [k for k in ("dp", "relaxloss", "adversarial_regularization") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"train.{chosen[0]} and train.{chosen[1]} cannot be combined")
        if self.relaxloss is not None and self.label_smoothing > 0:
            raise ValueError("train.relaxloss replaces the loss: set label_smoothing to 0")
        return self


EpochHook = Callable[[int, nn.Module], None]


@dataclass
class TrainResult:
    """Weights and record of one training run."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int | None = None
    epsilon: float | None = None
    seconds: float = 0.0


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _lr_factor(config: TrainConfig, epoch: int) -> float:
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "step":
        return 0.1 ** (int(epoch >= config.epochs // 2) + int(epoch >= (3 * config.epochs) // 4))
    return 1.0


@fixed_threads()
@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 2048
) -> np.ndarray:
    """Logits of ``model`` on ``x`` in evaluation mode, as float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xt = torch.as_tensor(x)
    out = [
        model(xt[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(xt), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = torch.as_tensor(predict_logits(model, x))
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


@fixed_threads()
def train_model(
    build: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    device: str = "cpu",
    on_epoch: EpochHook | None = None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weight: np.ndarray | None = None,
    sample_smoothing: np.ndarray | None = None,
    sample_clip_norm: np.ndarray | None = None,
    clip_noise: float = 0.0,
) -> TrainResult:
    """Train a fresh model from ``build()`` on ``(x, y)`` with the recipe ``config``.

    ``validation`` is required for early stopping and otherwise only logged;
    ``reference`` (non-member samples the defender holds) is required for adversarial
    regularisation. Sample-aware defences set per-sample treatment: ``sample_weight``
    scales each sample's loss, ``sample_smoothing`` sets its own label-smoothing
    strength, and ``sample_clip_norm`` clips its gradient (``inf``: not clipped), with
    Gaussian noise of standard deviation ``clip_noise`` added to every step's summed
    gradient (see :func:`_clipped_step`). None of them combines with DP-SGD, whose
    sensitivity analysis assumes equal treatment.
    ``on_epoch(epoch, model)`` is called after every epoch with the model (in eval mode,
    outside any DP wrapper), e.g. to record per-epoch outputs; it must not change it.
    """
    if config.early_stopping is not None and validation is None:
        raise ConfigError("train.early_stopping needs a validation split (audit.val_size > 0)")
    per_sample = [a for a in (sample_weight, sample_smoothing, sample_clip_norm) if a is not None]
    if per_sample and config.dp is not None:
        raise ConfigError(
            "per-sample weights, smoothing or clipping cannot be combined with train.dp"
        )
    if any(np.shape(a) != (len(x),) for a in per_sample):
        raise ConfigError(
            "sample_weight, sample_smoothing and sample_clip_norm need one value per "
            "training sample"
        )
    if sample_clip_norm is not None:
        if config.adversarial_regularization is not None or config.relaxloss is not None:
            raise ConfigError(
                "per-sample clipping cannot be combined with adversarial regularisation or "
                "RelaxLoss"
            )
        if not (np.asarray(sample_clip_norm) > 0).all() or not clip_noise >= 0:
            raise ConfigError("per-sample clip norms must be positive and clip_noise >= 0")
    if config.adversarial_regularization is not None and reference is None:
        raise ConfigError(
            "train.adversarial_regularization needs a reference set of non-members "
            "(audit.val_size > 0: the validation split serves as the defender's reference set)"
        )
    if len(x) == 0:
        raise ConfigError("cannot train on an empty training set")
    start = time.perf_counter()
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), warnings.catch_warnings():
        # Opacus' per-sample hooks make torch warn at every backward pass; nothing is wrong.
        warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
        torch.manual_seed(seed)
        model = build().to(device)
        extras = None
        clipping = None
        if per_sample:
            ones, zeros = np.ones(len(x)), np.zeros(len(x))
            weight = ones if sample_weight is None else np.asarray(sample_weight, np.float64)
            smooth = zeros if sample_smoothing is None else np.asarray(sample_smoothing, np.float64)
            clip = ones * np.inf if sample_clip_norm is None else np.asarray(sample_clip_norm)
            extras = torch.as_tensor(np.stack([weight, smooth, clip], axis=1), dtype=torch.float32)
            if sample_clip_norm is not None:
                clipping = float(clip_noise)
        result = _fit(
            model, x, y, config, seed, validation, device, on_epoch, reference, extras, clipping
        )
    result.seconds = time.perf_counter() - start
    return result


def _fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None,
    device: str,
    on_epoch: EpochHook | None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    extras: torch.Tensor | None = None,
    clip_noise: float | None = None,
) -> TrainResult:
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(config, model.parameters())
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    engine = None
    if config.dp is not None:
        model, optimizer, batches, engine = _make_private(model, optimizer, xt, yt, config, gen)
    else:
        batches = _ShuffledBatches(xt, yt, config.batch_size, gen, extras)

    val = None
    if validation is not None:
        val = (
            torch.as_tensor(validation[0], dtype=torch.float32),
            torch.as_tensor(validation[1], dtype=torch.long),
        )
    objective = _Objective(config)
    regularizer = None
    if config.adversarial_regularization is not None:
        assert reference is not None
        num_classes = int(_unwrap(model)(xt[:1].to(device)).shape[1])
        regularizer = _AdversarialRegularizer(
            config.adversarial_regularization, num_classes, (xt, yt), reference, gen, device
        )
    stopper = config.early_stopping
    best_value, best_state, best_epoch, waited = math.inf, None, None, 0
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * _lr_factor(config, epoch - 1)
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for batch in batches:
            xb, yb = batch[0].to(device), batch[1].to(device)
            per_sample = batch[2].to(device) if len(batch) > 2 else None
            if config.augment is not None and xb.dim() == 4:
                xb = random_augment(xb, config.augment.flip, config.augment.shift, gen)
            if regularizer is not None:
                regularizer.train_attack(model, config.batch_size)
                model.train()
            optimizer.zero_grad(set_to_none=True)
            if clip_noise is not None:
                logits = _clipped_step(model, xb, yb, per_sample, config, clip_noise)
            else:
                logits = model(xb)
                if len(yb) == 0:
                    # Poisson sampling drew no sample: DP-SGD still takes a (pure-noise)
                    # step, which the accountant counts, so the reported epsilon stays exact.
                    logits.sum().mul(0.0).backward()
                    optimizer.step()
                    continue
                loss = objective(logits, yb, epoch, per_sample)
                if regularizer is not None:
                    loss = loss + regularizer.penalty(logits, yb)
                loss.backward()
            optimizer.step()
            loss_sum += F.cross_entropy(logits.detach(), yb).item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            total += len(yb)
        record = epoch_record(epoch, loss_sum, correct, total)
        if val is not None:
            record["val_loss"], record["val_accuracy"] = _evaluate(_unwrap(model), *val)
        history.append(record)
        if on_epoch is not None:
            inner = _unwrap(model)
            inner.eval()
            with torch.random.fork_rng(devices=[]):
                on_epoch(epoch, inner)
        if stopper is not None:
            value = record[stopper.monitor] * (1 if stopper.monitor == "val_loss" else -1)
            if value < best_value - stopper.min_delta:
                best_value, best_epoch, waited = value, epoch, 0
                if stopper.restore_best:
                    best_state = copy.deepcopy(_unwrap(model).state_dict())
            else:
                waited += 1
                if waited >= stopper.patience:
                    break
    final = _unwrap(model)
    if best_state is not None:
        final.load_state_dict(best_state)
    epsilon = engine.get_epsilon(config.dp.delta) if engine is not None else None
    state = {k: v.detach().cpu().contiguous().clone() for k, v in final.state_dict().items()}
    return TrainResult(state, history, epoch, best_epoch, epsilon)


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


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside an Opacus wrapper (or the module itself)."""
    return getattr(model, "_module", model)


class _Objective:
    """The per-batch loss: cross-entropy (with label smoothing), or RelaxLoss.

    RelaxLoss (Chen, Yu & Fritz 2022, Alg. 1, as in the authors' code): on even epochs
    (counting from 0) minimise ``|L - alpha|``, i.e. gradient ascent once the mean loss
    ``L`` falls below ``alpha``; on odd epochs minimise ``L`` while it exceeds
    ``alpha``, else *flatten the posterior*: cross-entropy against soft labels that keep
    the (detached, capped at ``upper``) true-class confidence and spread the rest
    uniformly over the other classes.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def __call__(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
        per_sample: torch.Tensor | None = None,
    ) -> torch.Tensor:
        relax = self.config.relaxloss
        if per_sample is not None:
            return _weighted_smoothed_ce(logits, y, per_sample[:, 0], per_sample[:, 1], self.config)
        if relax is None:
            return F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        loss = F.cross_entropy(logits, y)
        if (epoch - 1) % 2 == 0:
            return (loss - relax.alpha).abs()
        if loss.item() > relax.alpha:
            return loss
        c = logits.shape[1]
        p_true = torch.softmax(logits, dim=1).gather(1, y[:, None]).detach().clamp(max=relax.upper)
        soft = ((1 - p_true) / (c - 1)).expand(-1, c).clone()
        soft.scatter_(1, y[:, None], p_true)
        return -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _clipped_step(
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    per_sample: torch.Tensor,
    config: TrainConfig,
    noise_std: float,
) -> torch.Tensor:
    """Set ``.grad`` to ``(sum_i c_i g_i + N(0, noise_std^2 I)) / B`` and return the
    batch's logits from the same forward pass (detached).

    ``g_i`` is sample i's gradient of its own (weighted, smoothed) loss and
    ``c_i = min(1, C_i / ||g_i||)`` clips it to the sample's norm ``C_i`` (``inf``: kept
    as is): DP-SGD's per-sample clipping and Gaussian noise (Abadi et al. 2016, Alg. 1)
    applied to the flagged samples only, as individualised clipping does (Boenisch et
    al. 2023). With every ``C_i = inf`` and no noise it is the plain gradient step.
    """
    from torch.func import functional_call, grad, vmap

    live = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = {n: p.detach() for n, p in live.items()}
    buffers = dict(model.named_buffers())

    def one_loss(p, x, y, extra):
        logits = functional_call(model, (p, buffers), (x[None],))
        loss = _weighted_smoothed_ce(logits, y[None], extra[None, 0], extra[None, 1], config)
        return loss, logits[0].detach()

    grads, logits = vmap(
        grad(one_loss, has_aux=True), in_dims=(None, 0, 0, 0), randomness="different"
    )(params, xb, yb, per_sample)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
    factor = (per_sample[:, 2] / norms.clamp(min=1e-12)).clamp(max=1.0)
    for name, param in live.items():
        total = torch.einsum("b,b...->...", factor, grads[name])
        if noise_std > 0:
            total = total + noise_std * torch.randn_like(total)
        param.grad = total / len(yb)
    return logits


def _weighted_smoothed_ce(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    smoothing: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    """``mean_i w_i [(1 - e_i) CE_i + e_i * mean_j(-log p_ij)]``, with ``e_i`` the sample's
    smoothing added to the recipe's; equals smoothed cross-entropy when all ``w_i = 1``."""
    if config.relaxloss is not None:
        raise ConfigError("per-sample weights or smoothing cannot be combined with relaxloss")
    logp = torch.log_softmax(logits, dim=1)
    eps = (smoothing + config.label_smoothing).clamp(max=1.0)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    uniform = -logp.mean(dim=1)
    return (weight * ((1 - eps) * nll + eps * uniform)).mean()


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


class _AdversarialRegularizer:
    """Adversarial regularisation (Nasr, Shokri & Houmansadr 2018, Eq. 7 and Alg. 1).

    Before each classifier step the inference model ``h`` takes ``attack_steps`` ascent
    steps on the gain ``E_D[log h(f(x), y)] + E_D'[log(1 - h(f(x'), y'))]`` with batches
    from the training set ``D`` and the reference set ``D'``; the classifier then
    minimises ``CE + alpha * E_batch[log h(f(x), y)]``.
    """

    def __init__(self, config, num_classes, members, reference, gen, device) -> None:
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


class _ShuffledBatches:
    """Mini-batches of a fresh random permutation each epoch (faster than a DataLoader).

    With ``extras`` (per-sample values such as weights), batches are ``(x, y, extras)``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        gen: torch.Generator,
        extras: torch.Tensor | None = None,
    ):
        self.x, self.y, self.batch_size, self.gen, self.extras = x, y, batch_size, gen, extras

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            if self.extras is None:
                yield self.x[idx], self.y[idx]
            else:
                yield self.x[idx], self.y[idx], self.extras[idx]


def _make_private(model, optimizer, xt, yt, config: TrainConfig, gen: torch.Generator):
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"this architecture cannot be trained with DP-SGD: {errors[0]}")
    dp = config.dp
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xt, yt), batch_size=config.batch_size, generator=gen
    )
    noise_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    common = dict(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise_gen,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure.*")
        warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
        engine = PrivacyEngine(accountant=dp.accountant)  # warns about its insecure RNG
        if dp.target_epsilon is not None:
            model, optimizer, loader = engine.make_private_with_epsilon(
                target_epsilon=dp.target_epsilon,
                target_delta=dp.delta,
                epochs=config.epochs,
                **common,
            )
        else:
            model, optimizer, loader = engine.make_private(
                noise_multiplier=dp.noise_multiplier, **common
            )
    return model, optimizer, loader, engine
