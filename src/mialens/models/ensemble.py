"""Batched training and inference of many models of one architecture at once.

``K`` models that share an architecture and a recipe but have their own seeds and
training sets are trained in lock-step as one stacked network: every parameter gets a
leading model axis and one :func:`torch.vmap` of the module's forward pass evaluates all
models, so that ``K`` small matrix products become one batched product.

Each model gets exactly what :func:`~mialens.models.training.train_model` gives it: its
initialisation (built under its own seed, then stacked), its batch order (its own
generator over its own training set), its augmentation draws, its dropout masks (drawn
from the RNG state the one-by-one trainer would use, so they are the same masks on CPU),
its optimizer state, the learning-rate schedule and its own early stopping (each model
stops and restores its best weights independently). Training sets may differ in size:
batches are padded and the padding is masked out of the loss, and a model with no
batch left in an epoch, or already stopped, takes no optimizer step. The result equals
one-by-one training up to floating-point rounding (a batched product may sum in another
order than a single one).

The training itself is the shared loop of :mod:`mialens.models.loop` (the same code as
one model's), with this module's stacked learner. Recipes the loop runs on one model
only (DP-SGD, RelaxLoss, adversarial regularisation, per-sample treatment:
:func:`mialens.models.loop.batching_blocker`) and architectures that cannot be stacked
are reported by :func:`ensemble_blocker`; the caller then trains one by one. On CUDA
the one-by-one trainer draws dropout masks from the CUDA
generator, so there the two agree only without dropout.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from mialens.augment import Transform
from mialens.errors import ConfigError
from mialens.models.loop import (
    Run,
    ShuffledBatches,
    TrainResult,
    batching_blocker,
    build_optimizer,
    run_epochs,
)
from mialens.models.objectives import Objective
from mialens.models.recipe import TrainConfig
from mialens.models.step import Batch, Step
from mialens.models.training import fixed_threads
from mialens.validation import check_finite

log = logging.getLogger(__name__)

# "auto" batches models whose forward pass over one mini-batch costs at most this many
# multiply-adds on a CPU: below it a one-by-one step is dominated by per-step overhead
# (Python, autograd, optimizer), which a batched step pays once for all models.
_CPU_SMALL_MACS = 10**8
# Memory one batched group may use for parameters, gradients, optimizer state and
# activations (a model's share is estimated by :func:`_model_bytes`).
_GROUP_BYTES = 2 * 2**30
_INFER_ROWS = 2**17  # samples x models per inference chunk


@dataclass(frozen=True)
class _Probe:
    """What one forward pass of a single sample reveals about an architecture."""

    dropouts: list[str]  # names of the nn.Dropout modules, in call order
    dropout_shapes: list[tuple[int, ...]]  # their per-sample input shapes
    dropout_rates: list[float]  # their drop probabilities p
    macs: int  # multiply-adds of Linear and Conv2d layers per sample
    parameters: int
    activations: int  # floats produced by all leaf modules per sample


def _probe(build: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> _Probe:
    with torch.random.fork_rng(devices=[]):
        model = build()
    model.eval()
    calls: list[tuple[str, tuple[int, ...], float]] = []
    counts = {"macs": 0, "activations": 0}

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            if isinstance(module, nn.Dropout):
                calls.append((name, tuple(inputs[0].shape[1:]), float(module.p)))
            if isinstance(module, nn.Linear):
                counts["macs"] += module.in_features * module.out_features
            elif isinstance(module, nn.Conv2d):
                per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
                counts["macs"] += output[0].numel() * per_output
            if isinstance(output, torch.Tensor):
                counts["activations"] += output[0].numel()

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
    return _Probe(
        dropouts=[name for name, _, _ in calls],
        dropout_shapes=[shape for _, shape, _ in calls],
        dropout_rates=[p for _, _, p in calls],
        macs=counts["macs"],
        parameters=sum(p.numel() for p in model.parameters()),
        activations=counts["activations"],
    )


def architecture_blocker(
    build: Callable[[], nn.Module], input_shape: tuple[int, ...]
) -> str | None:
    """Why models from ``build()`` cannot be stacked and vmapped (None when they can)."""
    with torch.random.fork_rng(devices=[]):
        model = build()
    if any(True for _ in model.buffers()):
        return "the architecture has buffers (e.g. batch-norm statistics)"
    if set(model.state_dict()) != {name for name, _ in model.named_parameters()}:
        return "the architecture shares parameters between layers"
    for name, module in model.named_modules():
        is_dropout = isinstance(module, nn.modules.dropout._DropoutNd)
        if is_dropout and type(module) is not nn.Dropout:
            return f"layer {name!r} is a {type(module).__name__}; only nn.Dropout is batched"
    try:
        probe = _probe(build, input_shape)
        if len(set(probe.dropouts)) != len(probe.dropouts):
            return "a dropout layer is called twice in one forward pass"
        pair = _Stack.from_states(build, [model.state_dict()] * 2, probe, "cpu")
        pair.train_mode(True)
        masks = [torch.ones((2, 2, *s)) for s in probe.dropout_shapes]
        pair.forward(torch.zeros((2, 2, *input_shape)), masks).sum().backward()
    except Exception as exc:  # any failure means: not vmappable as is
        return f"the architecture cannot be vmapped ({type(exc).__name__}: {exc})"
    return None


def ensemble_blocker(
    build: Callable[[], nn.Module],
    config: TrainConfig,
    input_shape: tuple[int, ...],
    per_sample: bool = False,
) -> str | None:
    """Why this recipe (with ``per_sample`` treatment or not) and architecture must be
    trained one by one (None if batchable); the recipe's rule is
    :func:`mialens.models.loop.batching_blocker`."""
    return batching_blocker(config, per_sample) or architecture_blocker(build, input_shape)


def _model_bytes(probe: _Probe, batch_size: int) -> int:
    """Estimated training memory of one model: weights, gradient and two optimizer
    states, and the activations of a forward and backward pass of a mini-batch."""
    return 4 * (4 * probe.parameters + 3 * batch_size * probe.activations)


def group_size(
    build: Callable[[], nn.Module],
    config: TrainConfig,
    input_shape: tuple[int, ...],
    num_models: int,
    device: str,
    mode: str = "auto",
    max_size: int | None = None,
    per_sample: bool = False,
) -> tuple[int, str]:
    """How many models to train together (1: one by one) and why (``per_sample``: the
    models have per-sample weights, smoothing or clipping).

    ``mode`` ``off`` always trains one by one; ``on`` batches whenever the recipe and the
    architecture allow it; ``auto`` also requires small models (on CPU, at most 10^8
    multiply-adds per mini-batch; on an accelerator, any size). Groups are as large as
    ``max_size`` and the memory estimate (2 GiB per group) allow. The answer depends on
    the configuration only, never on the machine's load or the executor, so that the
    same audit always groups its models the same way.
    """
    if mode == "off" or num_models < 2:
        return 1, "ensemble training is off" if mode == "off" else "a single model"
    blocker = ensemble_blocker(build, config, input_shape, per_sample)
    if blocker is not None:
        return 1, blocker
    probe = _probe(build, input_shape)
    batch_macs = probe.macs * config.batch_size
    if mode == "auto" and torch.device(device).type == "cpu" and batch_macs > _CPU_SMALL_MACS:
        return 1, (
            f"the model is not small ({batch_macs:.2g} multiply-adds per mini-batch > "
            f"{_CPU_SMALL_MACS:.0e} on CPU); set executor.ensemble: on to batch it anyway"
        )
    size = min(num_models, max(1, _GROUP_BYTES // _model_bytes(probe, config.batch_size)))
    if max_size is not None:
        size = min(size, max_size)
    return size, f"groups of up to {size} models"


class _MaskedDropout(nn.Module):
    """Dropout whose (pre-scaled) mask is supplied from outside; identity without one."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mask is None else x * self.mask


class _TransposedLinear(nn.Module):
    """nn.Linear with its weight stored transposed, ``(in, out)``: batched over models,
    the weight gradient ``x^T g`` then comes out in the weight's own layout, where
    nn.Linear's needs a transposing copy of the whole stack at every step."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.matmul(self.weight)
        return out if self.bias is None else out + self.bias


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class _Stack:
    """``K`` models of one architecture as stacked parameters and a vmapped forward."""

    def __init__(self, models: Sequence[nn.Module], probe: _Probe, device: str) -> None:
        template = copy.deepcopy(models[0])
        self.dropouts: list[_MaskedDropout] = []
        for name in probe.dropouts:
            self.dropouts.append(_MaskedDropout())
            _replace(template, name, self.dropouts[-1])
        self.transposed = set()  # names of weights kept transposed while stacked
        for name, module in list(template.named_modules()):
            if type(module) is nn.Linear:
                _replace(template, name, _TransposedLinear(module))
                self.transposed.add(f"{name}.weight" if name else "weight")
        self.template = template.to("meta")
        self.names = list(models[0].state_dict())
        self.params = {
            name: torch.stack([self._layout(name, m.state_dict()[name]) for m in models])
            .to(device)
            .requires_grad_()
            for name in self.names
        }
        self.device = device

    def _layout(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """A model's tensor in the stack's layout (and back: transposing is its inverse)."""
        return tensor.detach().t().contiguous() if name in self.transposed else tensor.detach()

    @classmethod
    def from_states(
        cls,
        build: Callable[[], nn.Module],
        states: Sequence[dict[str, torch.Tensor]],
        probe: _Probe,
        device: str,
    ) -> _Stack:
        models = []
        with torch.random.fork_rng(devices=[]):
            for state in states:
                model = build()
                model.load_state_dict(state)
                models.append(model)
        return cls(models, probe, device)

    @property
    def size(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    def train_mode(self, training: bool) -> None:
        self.template.train(training)

    def forward(
        self, x: torch.Tensor, masks: Sequence[torch.Tensor] = (), shared: bool = False
    ) -> torch.Tensor:
        """Logits ``(K, B, C)`` of every model on its batch ``x (K, B, ...)`` (or on the
        same batch ``x (B, ...)`` when ``shared``), with dropout masks ``(K, B, ...)``."""

        if masks and len(masks) != len(self.dropouts):
            raise ValueError(f"expected {len(self.dropouts)} dropout masks, got {len(masks)}")

        def one(params, xb, *model_masks):
            # no masks in evaluation mode: every layer keeps mask None (identity)
            for layer, mask in zip(self.dropouts, model_masks, strict=False):
                layer.mask = mask
            try:
                return functional_call(self.template, params, (xb,))
            finally:
                for layer in self.dropouts:
                    layer.mask = None

        dims = (0, None if shared else 0, *([0] * len(masks)))
        return torch.vmap(one, in_dims=dims)(self.params, x, *masks)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode logits ``(K, N, C)`` of every model on the samples ``x``."""
        self.train_mode(False)
        step = max(1, _INFER_ROWS // self.size)
        out = [
            self.forward(x[i : i + step].to(self.device), shared=True).float().cpu()
            for i in range(0, len(x), step)
        ]
        return torch.cat(out, dim=1)

    def state_dict(self, k: int, source: dict[str, torch.Tensor] | None = None):
        params = self.params if source is None else source
        return {n: self._layout(n, params[n][k]).cpu().contiguous().clone() for n in self.names}


class _StackedOptimizer:
    """The recipe's torch.optim optimizer (fused kernels) on the stacked parameters.

    Adam, AdamW and SGD act elementwise, so one optimizer over a stack equals one per
    model as long as every model steps at every step (``lockstep``). Otherwise each
    model's slice of each stacked tensor is a parameter of its own, so that step counts,
    moments and momentum buffers stay per model, and a model that is not active at a
    step gets no gradient, which torch.optim skips.
    """

    def __init__(self, config: TrainConfig, params: list[torch.Tensor], lockstep: bool) -> None:
        self.params, self.lockstep = params, lockstep
        k = params[0].shape[0]
        self.views = [] if lockstep else [[p.detach()[i] for p in params] for i in range(k)]
        targets = params if lockstep else [v for views in self.views for v in views]
        self.optimizer = build_optimizer(config, targets, fused=True)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def step(self, active: list[bool]) -> None:
        if self.lockstep:
            if not all(active):
                raise AssertionError("a lock-step optimizer needs every model at every step")
        else:
            for k, views in enumerate(self.views):
                for view, p in zip(views, self.params, strict=True):
                    view.grad = p.grad[k] if active[k] else None
        self.optimizer.step()


@fixed_threads()
def train_ensemble(
    build: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    subsets: Sequence[np.ndarray],
    config: TrainConfig,
    seeds: Sequence[int],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    device: str = "cpu",
    on_epoch: Callable[[int], None] | None = None,
    step: Step | None = None,
) -> list[TrainResult]:
    """Train model ``k`` on ``(x[subsets[k]], y[subsets[k]])`` with seed ``seeds[k]``,
    all models at once in the shared loop (:mod:`mialens.models.loop`); the same
    results as :func:`train_model` one by one (up to floating-point rounding).
    ``result.seconds`` is each model's share of the time; ``on_epoch(epoch)`` is called
    after every epoch of the group (for progress); ``step`` as in :func:`train_model`."""
    step = step or Step()
    blocker = ensemble_blocker(build, config, tuple(x.shape[1:]))
    if blocker is not None:
        raise ConfigError(f"this recipe cannot be trained as an ensemble: {blocker}")
    if len(subsets) != len(seeds) or not seeds:
        raise ConfigError("give one training subset per seed (at least one model)")
    if config.early_stopping is not None and validation is None:
        raise ConfigError("train.early_stopping needs a validation split (audit.val_size > 0)")
    if any(len(s) == 0 for s in subsets):
        raise ConfigError("cannot train on an empty training set")
    if step.grad_hook is not None:
        raise ConfigError(
            "a gradient hook (Step.grad_hook) needs per-sample clipping, which trains one "
            "model at a time (train_model)"
        )
    if step.noisy_hook is not None:
        raise ConfigError("a noise hook (Step.noisy_hook) needs DP-SGD: set train.dp")
    start = time.perf_counter()
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        run = _stacked_run(build, x, y, subsets, config, seeds, validation, device, step)
        run.on_epoch = on_epoch
        results = run_epochs(config, run)
    share = (time.perf_counter() - start) / len(seeds)
    for result in results:
        result.seconds = share
    return results


def _stacked_run(build, x, y, subsets, config, seeds, validation, device, step: Step) -> Run:
    """The loop's parts for a stack of models, each seeded as :func:`train_model` seeds it."""
    used = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in subsets]))
    xt = torch.as_tensor(x[used], dtype=torch.float32)
    yt = torch.as_tensor(y[used], dtype=torch.long)
    rows = [torch.as_tensor(np.searchsorted(used, s)) for s in subsets]
    learner = _StackedLearner(build, seeds, _probe(build, tuple(x.shape[1:])), device)
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    bs = config.batch_size
    # every model steps at every step when all have as many batches and none stops early
    lockstep = config.early_stopping is None and len({math.ceil(len(r) / bs) for r in rows}) == 1
    params = [learner.stack.params[n] for n in learner.stack.names]
    learner.optimizer = _StackedOptimizer(config, params, lockstep)
    val = None
    if validation is not None:
        val = (
            torch.as_tensor(validation[0], dtype=torch.float32),
            torch.as_tensor(validation[1], dtype=torch.long),
        )
    batches = ShuffledBatches(xt, yt, rows, bs, gens, pad=True)
    return Run(learner, batches, gens, Objective(config, step.loss), step, val)


class _StackedLearner:
    """``K`` stacked models as the loop's learner: built under their seeds, with each
    model's dropout masks drawn from the RNG stream :func:`train_model` would use."""

    optimizer: _StackedOptimizer

    def __init__(self, build, seeds: Sequence[int], probe: _Probe, device: str) -> None:
        models, self.dropout_gens = [], []
        for seed in seeds:  # as train_model: build under the seed; dropout continues its stream
            torch.manual_seed(seed)
            models.append(build())
            gen = torch.Generator()
            gen.set_state(torch.get_rng_state())
            self.dropout_gens.append(gen)
        self.stack = _Stack(models, probe, device)
        self.probe, self.device, self.size = probe, device, len(models)
        self.best: dict[str, torch.Tensor] | None = None

    def train_mode(self, training: bool) -> None:
        self.stack.train_mode(training)

    def set_lr(self, lr: float) -> None:
        self.optimizer.set_lr(lr)

    def zero_grad(self) -> None:
        for p in self.stack.params.values():
            p.grad = None

    def forward(self, batch: Batch) -> torch.Tensor:
        masks = self._masks(batch.counts.tolist(), batch.x.shape[1]) if self.stack.dropouts else []
        return self.stack.forward(batch.x.to(self.device), masks)

    def step(self, active: list[bool]) -> None:
        self.optimizer.step(active)

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack.logits(x)

    @torch.no_grad()
    def keep_best(self, k: int) -> None:
        if self.best is None:
            self.best = {n: p.detach().clone() for n, p in self.stack.params.items()}
        for name, p in self.stack.params.items():
            self.best[name][k] = p[k]

    def state_dict(self, k: int, best: bool) -> dict[str, torch.Tensor]:
        return self.stack.state_dict(k, self.best if best else None)

    def epsilon(self) -> None:
        return None

    def _masks(self, counts: list[int], batch: int) -> list[torch.Tensor]:
        """Dropout masks ``(K, batch, ...)`` per layer, each model's from its own stream,
        drawn as nn.Dropout draws them (model by model, layer after layer, with the
        layer's own ``p``; at ``p`` 0 or 1 nn.Dropout draws nothing)."""
        shapes, rates = self.probe.dropout_shapes, self.probe.dropout_rates
        masks = [torch.zeros((self.size, batch, *s)) for s in shapes]
        for k, count in enumerate(counts):
            for mask, shape, p in zip(masks, shapes, rates, strict=True):
                if not count or p == 1:
                    continue
                if p == 0:
                    mask[k, :count] = 1.0
                    continue
                drawn = torch.empty((count, *shape)).bernoulli_(
                    1 - p, generator=self.dropout_gens[k]
                )
                mask[k, :count] = drawn.div_(1 - p)
        return [m.to(self.device) for m in masks]


@fixed_threads()
@torch.no_grad()
def ensemble_logits(
    build: Callable[[], nn.Module],
    states: Sequence[dict[str, torch.Tensor]],
    x: np.ndarray,
    transforms: Sequence[Transform],
    device: str = "cpu",
    batch_size: int = 4096,
) -> np.ndarray:
    """Logits ``(K, n, n_views, C)`` of the models with weights ``states`` on every view
    of every sample, in evaluation mode (what :func:`collect_logits` gives per model)."""
    probe = _probe(build, tuple(x.shape[1:]))
    stack = _Stack.from_states(build, states, probe, device)
    views = []
    for view in transforms:
        parts = [
            stack.logits(torch.as_tensor(np.ascontiguousarray(view(x[i : i + batch_size]))))
            for i in range(0, len(x), batch_size)
        ]
        views.append(torch.cat(parts, dim=1))
    out = torch.stack(views, dim=2).numpy()
    return check_finite(out, "model output")
