"""The trainer of one model (:func:`train_model`) on the shared loop of
:mod:`mialens.models.loop`; its recipe is :class:`~mialens.models.recipe.TrainConfig`.

The trainer is deterministic: the seed fixes initialisation, batch order, dropout,
augmentation and DP noise, and the global torch RNG is left untouched.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mialens.errors import ConfigError
from mialens.models.loop import (
    Run,
    ShuffledBatches,
    TrainResult,
    build_optimizer,
    device_run,
    module_to_device,
    recipe_step,
    run_epochs,
    to_device,
)
from mialens.models.objectives import AdversarialRegularizer, Objective
from mialens.models.recipe import TrainConfig
from mialens.models.step import Batch, ClippedGradients, GradHook, NoisyGradients, NoisyHook, Step
from mialens.threads import TORCH_THREADS as TORCH_THREADS  # re-exported
from mialens.threads import fixed_threads

log = logging.getLogger(__name__)

EpochHook = Callable[[int, nn.Module], None]


@fixed_threads()
@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 2048
) -> np.ndarray:
    """Logits of ``model`` on ``x`` in evaluation mode, as float32; on CUDA the model's
    convolution weights are made channels-last first, the layout training uses."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if device.type == "cuda":
        module_to_device(model, device)
    xt = torch.as_tensor(x)
    out = [
        model(to_device(xt[i : i + batch_size], device)).float().cpu()
        for i in range(0, len(xt), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


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
    step: Step | None = None,
) -> TrainResult:
    """Train a fresh model from ``build()`` on ``(x, y)`` with the recipe ``config``
    (the shared loop of :mod:`mialens.models.loop`, with one model).

    ``validation`` is required for early stopping and otherwise only logged;
    ``reference`` (non-member samples the defender holds) is required for adversarial
    regularisation. Sample-aware defences set per-sample treatment: ``sample_weight``
    scales each sample's loss, ``sample_smoothing`` sets its own label-smoothing
    strength, and ``sample_clip_norm`` clips its gradient (``inf``: not clipped), with
    Gaussian noise of standard deviation ``clip_noise`` added to every step's summed
    gradient. None of them combines with DP-SGD, whose sensitivity analysis assumes
    equal treatment. ``step`` sets the loss, the gradient and noise hooks and precision
    (:class:`~mialens.models.loop.Step`; ``train.mixed_precision`` switches its mixed
    precision on). On CUDA the data stay on the device for the whole run, image batches
    and convolutions are channels-last and cuDNN is deterministic.
    ``on_epoch(epoch, model)`` is called after every epoch with the model (in eval mode,
    outside any DP wrapper), e.g. to record per-epoch outputs; it must not change it.
    """
    step = recipe_step(step, config)
    per_sample = {"weight": sample_weight, "smoothing": sample_smoothing, "clip": sample_clip_norm}
    _check_inputs(len(x), config, validation, reference, per_sample, clip_noise, step)
    start = time.perf_counter()
    with device_run(device), warnings.catch_warnings():
        # Opacus' per-sample hooks make torch warn at every backward pass; nothing is wrong.
        warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
        torch.manual_seed(seed)
        model = module_to_device(build(), device)
        extras = _sample_extras(len(x), per_sample)
        clipping = None if sample_clip_norm is None else float(clip_noise)
        run = _single_run(model, x, y, config, seed, validation, device, reference, extras, step)
        run.clip_noise = clipping
        if on_epoch is not None:
            run.on_epoch = _eval_mode_hook(run.learner.inner, on_epoch)
        result = run_epochs(config, run)[0]
    result.seconds = time.perf_counter() - start
    return result


def _check_inputs(n, config, validation, reference, per_sample, clip_noise, step) -> None:
    """Refuse impossible combinations before any training (one ConfigError each)."""
    if config.early_stopping is not None and validation is None:
        raise ConfigError("train.early_stopping needs a validation split (audit.val_size > 0)")
    given = [a for a in per_sample.values() if a is not None]
    if step.mixed_precision and config.dp is not None:
        raise ConfigError(
            "train.mixed_precision cannot be combined with train.dp (Opacus computes the "
            "per-sample gradients in float32)"
        )
    if given and config.dp is not None:
        raise ConfigError(
            "per-sample weights, smoothing or clipping cannot be combined with train.dp"
        )
    if any(np.shape(a) != (n,) for a in given):
        raise ConfigError(
            "sample_weight, sample_smoothing and sample_clip_norm need one value per "
            "training sample"
        )
    if per_sample["clip"] is not None:
        if config.adversarial_regularization is not None or config.relaxloss is not None:
            raise ConfigError(
                "per-sample clipping cannot be combined with adversarial regularisation or "
                "RelaxLoss"
            )
        if not (np.asarray(per_sample["clip"]) > 0).all() or not clip_noise >= 0:
            raise ConfigError("per-sample clip norms must be positive and clip_noise >= 0")
    if given and config.relaxloss is not None:
        raise ConfigError("per-sample weights or smoothing cannot be combined with relaxloss")
    if step.grad_hook is not None and config.dp is None and per_sample["clip"] is None:
        raise ConfigError(
            "a gradient hook (Step.grad_hook) needs per-sample clipping: train.dp or "
            "sample_clip_norm"
        )
    if step.noisy_hook is not None and config.dp is None:
        raise ConfigError("a noise hook (Step.noisy_hook) needs DP-SGD: set train.dp")
    if step.loss is not None and (per_sample["smoothing"] is not None or config.relaxloss):
        raise ConfigError(
            "a custom loss (Step.loss) cannot be combined with sample_smoothing or "
            "train.relaxloss: it replaces the loss they change"
        )
    if config.adversarial_regularization is not None and reference is None:
        raise ConfigError(
            "train.adversarial_regularization needs a reference set of non-members "
            "(audit.val_size > 0: the validation split serves as the defender's reference set)"
        )
    if n == 0:
        raise ConfigError("cannot train on an empty training set")


def _sample_extras(n: int, per_sample: dict[str, np.ndarray | None]) -> torch.Tensor | None:
    """Per-sample ``(weight, smoothing, clip norm)`` columns (None without any)."""
    if all(a is None for a in per_sample.values()):
        return None
    weight, smooth, clip = (per_sample[k] for k in ("weight", "smoothing", "clip"))
    columns = [
        np.ones(n) if weight is None else np.asarray(weight, np.float64),
        np.zeros(n) if smooth is None else np.asarray(smooth, np.float64),
        np.ones(n) * np.inf if clip is None else np.asarray(clip),
    ]
    return torch.as_tensor(np.stack(columns, axis=1), dtype=torch.float32)


def _eval_mode_hook(inner: nn.Module, on_epoch: EpochHook) -> Callable[[int], None]:
    def after_epoch(epoch: int) -> None:
        inner.eval()
        with torch.random.fork_rng(devices=[]):
            on_epoch(epoch, inner)

    return after_epoch


def _single_run(model, x, y, config, seed, validation, device, reference, extras, step) -> Run:
    """The loop's parts for one model, set up in the order that fixes its random draws."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    optimizer = build_optimizer(config, model.parameters())
    engine = None
    if config.dp is not None:
        model, optimizer, loader, engine = _make_private(model, optimizer, xt, yt, config, gen)
        batches = _PoissonBatches(loader)
    else:
        rows = [torch.arange(len(yt))]  # the data live on the device, the indices on the CPU
        data = xt.to(device), yt.to(device)
        batches = ShuffledBatches(*data, rows, config.batch_size, [gen], extras, pad=False)
    val = None
    if validation is not None:
        val = (
            torch.as_tensor(validation[0], dtype=torch.float32),
            torch.as_tensor(validation[1], dtype=torch.long),
        )
    learner = _SingleLearner(model, optimizer, device, engine, config)
    regularizer = None
    if config.adversarial_regularization is not None:
        num_classes = int(learner.inner(xt[:1].to(device)).shape[1])
        regularizer = AdversarialRegularizer(
            config.adversarial_regularization, num_classes, (xt, yt), reference, gen, device
        )
    if step.grad_hook is not None and engine is not None:
        _hook_before_noise(optimizer, list(learner.trainable()), step.grad_hook)
    if step.noisy_hook is not None and engine is not None:
        _hook_after_noise(optimizer, list(learner.trainable()), step.noisy_hook)
    objective = Objective(config, step.loss, regularizer)
    return Run(learner, batches, [gen], objective, step, val)


class _SingleLearner:
    """One model (possibly inside Opacus' DP-SGD wrapper) as the loop's learner."""

    size = 1

    def __init__(self, model: nn.Module, optimizer, device: str, engine, config) -> None:
        self.model, self.optimizer, self.device, self.engine = model, optimizer, device, engine
        self.inner = getattr(model, "_module", model)  # the user's module
        self.delta = config.dp.delta if config.dp is not None else None
        self.best: dict[str, torch.Tensor] | None = None

    def train_mode(self, training: bool) -> None:
        self.model.train(training)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(to_device(batch.x[0], self.device))[None]

    def step(self, active: list[bool]) -> None:
        # always: when Poisson sampling drew no sample DP-SGD still takes a (pure-noise)
        # step, which the accountant counts, so the reported epsilon stays exact
        self.optimizer.step()

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(predict_logits(self.inner, x))[None]

    def keep_best(self, k: int) -> None:
        self.best = copy.deepcopy(self.inner.state_dict())

    def state_dict(self, k: int, best: bool) -> dict[str, torch.Tensor]:
        if best and self.best is not None:
            self.inner.load_state_dict(self.best)
        return {
            n: v.detach().cpu().contiguous().clone() for n, v in self.inner.state_dict().items()
        }

    def epsilon(self) -> float | None:
        return self.engine.get_epsilon(self.delta) if self.engine is not None else None

    def trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.inner.named_parameters() if p.requires_grad}

    def per_sample_grads(self, loss, batch: Batch):
        """Each sample's gradient of ``loss(logits (1, C), y (1,), extras (1, 3))``
        (``torch.func``: ``vmap`` of ``grad``) and its logits (detached)."""
        from torch.func import functional_call, grad, vmap

        params = {n: p.detach() for n, p in self.trainable().items()}
        buffers = dict(self.model.named_buffers())

        def one_loss(p, x, y, extra):
            logits = functional_call(self.model, (p, buffers), (x[None],))
            return loss(logits, y[None], extra[None]), logits[0].detach()

        xb, yb = batch.x[0].to(self.device), batch.y[0]
        extras = batch.extras[0].to(self.device)
        per_sample = vmap(grad(one_loss, has_aux=True), (None, 0, 0, 0), randomness="different")
        return per_sample(params, xb, yb, extras)


class _PoissonBatches:
    """DP-SGD's batches (Opacus' Poisson-sampled loader) as the loop's batches."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def epoch(self, active: list[bool]):
        for xb, yb in self.loader:
            valid = torch.ones((1, len(yb)), dtype=torch.bool)
            yield Batch(xb[None], yb[None], valid, torch.tensor([len(yb)]))


def _hook_before_noise(optimizer, names: list[str], hook: GradHook) -> None:
    """Call ``hook`` inside Opacus' ``DPOptimizer.pre_step`` between
    ``clip_and_accumulate`` (which sums the clipped per-sample gradients into
    ``p.summed_grad``) and ``add_noise``. The clipped per-sample gradients are
    ``p.grad_sample`` scaled by Opacus' clip factor ``min(1, C / (||g_i|| + 1e-6))``."""
    clip_and_accumulate = optimizer.clip_and_accumulate

    def clip_then_hook() -> None:
        clip_and_accumulate()
        samples = optimizer.grad_samples
        norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=-1) for g in samples], dim=1)
        factor = (optimizer.max_grad_norm / (norms.norm(2, dim=1) + 1e-6)).clamp(max=1.0)
        per_sample = {
            n: factor.view(-1, *[1] * (g.dim() - 1)) * g
            for n, g in zip(names, samples, strict=True)
        }
        summed = {n: p.summed_grad for n, p in zip(names, optimizer.params, strict=True)}
        hook(ClippedGradients(per_sample, summed))

    optimizer.clip_and_accumulate = clip_then_hook


def _hook_after_noise(optimizer, names: list[str], hook: NoisyHook) -> None:
    """Call ``hook`` inside Opacus' ``DPOptimizer.pre_step`` between ``add_noise`` (which
    sets ``p.grad`` to ``p.summed_grad`` plus the noise) and ``scale_grad`` (which divides
    it by the expected batch size)."""
    add_noise = optimizer.add_noise

    def noise_then_hook() -> None:
        add_noise()
        noisy = {n: p.grad for n, p in zip(names, optimizer.params, strict=True)}
        hook(
            NoisyGradients(
                noisy,
                float(optimizer.noise_multiplier),
                float(optimizer.max_grad_norm),
                int(optimizer.expected_batch_size),
            )
        )

    optimizer.add_noise = noise_then_hook


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
