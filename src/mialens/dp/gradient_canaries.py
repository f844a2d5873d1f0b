"""White-box Dirac gradient canaries for DP-SGD (Steinke, Nasr & Jagielski 2023, Sec. 6-7).

A Dirac canary is a gradient of value ``C`` (the clipping norm) on one coordinate of the
model's parameters and 0 elsewhere: its norm is exactly ``C``, so it counts against the
same clipping as a training example. Each of the ``m`` canaries has its own coordinate
and an independent inclusion bit (:func:`~mialens.dp.canaries.inclusion_bits`). At every
step an included canary is Poisson-sampled with the loader's rate ``q`` (its own seeded
generator), exactly like a training example, and when sampled its gradient is added to
the summed clipped gradient before the noise: the accountant's epsilon covers it.

Coordinates (:func:`choose_coordinates`): among all trainable tensors, those that the
data's clipped per-sample gradients touch least at initialisation (smallest summed
magnitude on a probe of training samples; ties, e.g. of input features a probe never
activates, broken by a seeded permutation), so that the data barely moves them and the
canary's contribution stands out. The choice depends on the data and the seed only,
never on the inclusion bits, so any choice keeps the audit valid.

Scores (higher = IN), in units of ``C``:

* final model: ``-(theta_T - theta_0)[i] * B / (lr C)`` (:func:`final_scores`), which for
  plain SGD at a constant rate is the sum over steps of the noisy gradient at the
  coordinate (``B``: Opacus' expected batch size). A schedule weights the steps by
  their rates and keeps the score valid (any score gives a valid bound), only less
  powerful. Optimizers other than plain SGD are refused (:func:`check_recipe`): Adam's
  update is not the noisy gradient sum, and momentum or weight decay mix other steps'
  gradients and the parameter into it.
* every step (:func:`all_steps_scores`): with ``x_t`` the noisy gradient at the
  coordinate over ``C``, an OUT canary sees ``x_t ~ N(0, sigma^2)`` and an IN one the
  mixture ``(1 - q) N(0, sigma^2) + q N(1, sigma^2)`` (the data's gradient there is
  negligible by the choice of coordinates), so the log likelihood ratio of the steps,
  ``sum_t log(1 - q + q exp((2 x_t - 1) / (2 sigma^2)))``, is the most powerful test
  (Neyman-Pearson) of IN against OUT; the plain sum of ``x_t`` (the final view) treats
  the steps a canary was not sampled in as signal and loses power when ``q`` is small.
  The auditor reads the noisy sums themselves, so this view holds for any optimizer.
* every step, with the batches known: an auditor who also sees which other examples
  each step drew, and so their clipped gradients, subtracts their sum at the coordinate
  (:attr:`DiracInsertion.data_seen`) and is left with exactly the canary's contribution
  plus the noise: the mixture above with no approximation. DP-SGD's guarantee covers
  this auditor too: the accountant analyses each step as the subsampled Gaussian pair
  ``N(s, sigma^2 C^2)`` against ``(1 - q) N(s, .) + q N(s + g, .)`` for any sum ``s`` of
  the other examples' clipped gradients (Abadi et al. 2016, Sec. 3.1; Mironov, Talwar &
  Zhang 2019, Sec. 3), so revealing ``s`` spends nothing beyond the claimed epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import logsumexp
from torch import nn

from mialens.dp.canaries import canary_ids, check_count, inclusion_bits
from mialens.errors import ConfigError
from mialens.models.recipe import TrainConfig
from mialens.models.step import ClippedGradients, NoisyGradients, Step
from mialens.seeding import rng

View = Literal["final", "all_steps"]
VIEWS: tuple[str, ...] = ("final", "all_steps")
_PROBE_CHUNK = 64


def check_recipe(config: TrainConfig, view: str) -> None:
    """Refuse recipes the gradient-canary scores do not hold for (module docstring)."""
    if view not in VIEWS:
        raise ConfigError(f"unknown canary view {view!r}; choose one of {', '.join(VIEWS)}.")
    if config.dp is None:
        raise ConfigError("gradient canaries audit DP-SGD: set train.dp")
    if view == "all_steps":
        return
    if config.optimizer != "sgd" or config.momentum > 0 or config.weight_decay > 0:
        raise ConfigError(
            "the final-model gradient-canary score needs plain SGD, whose update is the noisy "
            "gradient sum: set train.optimizer: sgd, train.momentum: 0, train.weight_decay: 0 "
            f"(got optimizer {config.optimizer}, momentum {config.momentum}, weight_decay "
            f"{config.weight_decay}); or audit with every step visible (view: all_steps)"
        )


def dp_sample_rate(n: int, batch_size: int) -> float:
    """The Poisson sampling rate of Opacus' loader on ``n`` samples: ``1 / ceil(n / B)``."""
    return 1.0 / -(-n // batch_size)


@dataclass(frozen=True, eq=False)
class DiracCanaries:
    """``m`` Dirac canaries: canary ``i`` adds ``clip_norm`` to coordinate ``flat_index[i]``
    of tensor ``tensors[i]`` (a trainable parameter's name) when included and sampled."""

    ids: np.ndarray
    tensors: tuple[str, ...]
    flat_index: np.ndarray
    included: np.ndarray
    clip_norm: float
    seed: int

    def __len__(self) -> int:
        return len(self.ids)

    def hook(self, q: float, seed: int) -> DiracInsertion:
        """The insertion of these canaries into one training run at sampling rate ``q``."""
        if not 0.0 < q <= 1.0:
            raise ConfigError(f"the sampling rate q must lie in (0, 1], got {q}.")
        return DiracInsertion(self, float(q), rng(seed, "dirac-sampling"))

    @cached_property
    def by_tensor(self) -> dict[str, np.ndarray]:
        """The canaries (a boolean mask over them) on each tensor."""
        names = np.asarray(self.tensors)
        return {name: names == name for name in sorted(set(self.tensors))}

    def values(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        """Each canary's coordinate in the parameters ``state`` (float64, ``(m,)``)."""
        out = np.empty(len(self))
        for name, mine in self.by_tensor.items():
            index = torch.as_tensor(self.flat_index[mine], device=state[name].device)
            out[mine] = state[name].detach().reshape(-1)[index].double().cpu().numpy()
        return out

    def to_json(self) -> dict[str, Any]:
        """The record of the canary set: its seed, coordinates' tensors and the bits."""
        return {
            "kind": "dirac",
            "seed": self.seed,
            "m": len(self),
            "clip_norm": self.clip_norm,
            "tensors": sorted(set(self.tensors)),
            "included": int(self.included.sum()),
            "inclusion_bits": "".join("1" if b else "0" for b in self.included),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the set under a name, for ``np.savez`` (no object arrays)."""
        return {
            "ids": self.ids.astype(str),
            "tensors": np.asarray(self.tensors, dtype=str),
            "flat_index": self.flat_index,
            "included": self.included,
        }


@dataclass(eq=False)
class DiracInsertion:
    """One run's insertion (the :attr:`Step.grad_hook`, by calling it) and record of the
    canaries (:meth:`observe`, the :attr:`Step.noisy_hook`). ``sampled`` holds, per step,
    which included canaries were added; ``data_seen`` the other examples' summed clipped
    gradient, and ``observed`` the noisy gradient, over ``C`` at every canary's
    coordinate."""

    canaries: DiracCanaries
    q: float
    gen: np.random.Generator
    sampled: list[np.ndarray] = field(default_factory=list)
    data_seen: list[np.ndarray] = field(default_factory=list)
    observed: list[np.ndarray] = field(default_factory=list)
    noise_multiplier: float | None = None

    def step(self) -> Step:
        """A training step that inserts the canaries and records every noisy gradient."""
        return Step(grad_hook=self, noisy_hook=self.observe)

    def __call__(self, grads: ClippedGradients) -> None:
        c = self.canaries
        drawn = (self.gen.random(len(c)) < self.q) & c.included
        self.sampled.append(drawn)
        self.data_seen.append(c.values(grads.summed) / c.clip_norm)
        for name, on_tensor in c.by_tensor.items():
            mine = drawn & on_tensor
            summed = grads.summed[name]
            index = torch.as_tensor(c.flat_index[mine], device=summed.device)
            value = torch.full((len(index),), c.clip_norm, dtype=summed.dtype, device=index.device)
            summed.view(-1).index_add_(0, index, value)

    def observe(self, grads: NoisyGradients) -> None:
        if grads.max_grad_norm != self.canaries.clip_norm:
            raise ConfigError(
                f"the Dirac canaries have value {self.canaries.clip_norm}, the run clips at "
                f"{grads.max_grad_norm}: build them with the recipe's max_grad_norm"
            )
        self.noise_multiplier = grads.noise_multiplier
        self.observed.append(self.canaries.values(grads.noisy) / grads.max_grad_norm)

    def observations(self) -> np.ndarray:
        """The noisy gradients over ``C`` at the canaries' coordinates, ``(steps, m)``."""
        return _stacked(self.observed, len(self.canaries))

    def data_gradients(self) -> np.ndarray:
        """The other examples' summed clipped gradients over ``C`` there, ``(steps, m)``."""
        return _stacked(self.data_seen, len(self.canaries))


def _stacked(rows: list[np.ndarray], m: int) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, m))


def choose_coordinates(
    model: nn.Module,
    x_probe: np.ndarray,
    y_probe: np.ndarray,
    *,
    count: int,
    seed: int,
    clip_norm: float,
) -> DiracCanaries:
    """``count`` Dirac canaries on the coordinates the probe's clipped per-sample
    gradients touch least at ``model``'s current (initial) weights (module docstring),
    with independent inclusion bits drawn from ``seed``."""
    count = check_count(count)
    if not clip_norm > 0:
        raise ConfigError(
            f"the canaries' value (the clipping norm) must be positive, got {clip_norm}."
        )
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    size = sum(p.numel() for p in params.values())
    if count > size:
        raise ConfigError(
            f"{count} Dirac canaries need {count} distinct coordinates; the model has {size} "
            "trainable parameters"
        )
    activity = _gradient_activity(model, params, x_probe, y_probe, clip_norm)
    tie_break = rng(seed, "dirac-coordinates").permutation(size)
    chosen = np.sort(np.lexsort((tie_break, activity))[:count])
    offsets = np.cumsum([0] + [p.numel() for p in params.values()])
    which = np.searchsorted(offsets, chosen, side="right") - 1
    names = list(params)
    return DiracCanaries(
        ids=canary_ids(count),
        tensors=tuple(names[k] for k in which),
        flat_index=(chosen - offsets[which]).astype(np.int64),
        included=inclusion_bits(count, seed),
        clip_norm=float(clip_norm),
        seed=int(seed),
    )


def _gradient_activity(model, params, x_probe, y_probe, clip_norm) -> np.ndarray:
    """Summed magnitude of the probe samples' clipped gradients, per flat coordinate."""
    from torch.func import functional_call, grad, vmap

    buffers = dict(model.named_buffers())
    device = next(iter(params.values())).device

    def one_loss(p, x, y):
        logits = functional_call(model, (p, buffers), (x[None],))
        return nn.functional.cross_entropy(logits, y[None])

    per_sample = vmap(grad(one_loss), (None, 0, 0))
    total = torch.zeros(sum(p.numel() for p in params.values()), dtype=torch.float64)
    was_training = model.training
    model.eval()
    for i in range(0, len(x_probe), _PROBE_CHUNK):
        xb = torch.as_tensor(x_probe[i : i + _PROBE_CHUNK], dtype=torch.float32, device=device)
        yb = torch.as_tensor(y_probe[i : i + _PROBE_CHUNK], dtype=torch.long, device=device)
        grads = per_sample(params, xb, yb)
        flat = torch.cat([g.reshape(len(xb), -1) for g in grads.values()], dim=1)
        factor = (clip_norm / flat.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
        total += (factor[:, None] * flat).abs().sum(0).double().cpu()
    model.train(was_training)
    return total.numpy()


def final_scores(
    canaries: DiracCanaries,
    initial: dict[str, torch.Tensor],
    final: dict[str, torch.Tensor],
    *,
    lr: float,
    expected_batch_size: int,
) -> np.ndarray:
    """``-(theta_T - theta_0)[i] * B / (lr C)`` per canary (higher = IN, units of ``C``)."""
    change = canaries.values(final) - canaries.values(initial)
    return -change * expected_batch_size / (lr * canaries.clip_norm)


def step_log_likelihood_ratio(x: np.ndarray, q: float, noise_multiplier: float) -> np.ndarray:
    """``log(1 - q + q exp((2x - 1) / (2 sigma^2)))`` elementwise (module docstring),
    computed as a log-sum-exp so that large ``x`` does not overflow."""
    if not 0.0 < q <= 1.0 or not noise_multiplier > 0:
        raise ConfigError(f"need 0 < q <= 1 and sigma > 0, got q={q}, sigma={noise_multiplier}.")
    exponent = (2.0 * np.asarray(x, dtype=np.float64) - 1.0) / (2.0 * noise_multiplier**2)
    if q == 1.0:
        return exponent
    terms = np.stack([np.full_like(exponent, np.log1p(-q)), np.log(q) + exponent])
    return logsumexp(terms, axis=0)


def all_steps_scores(observations: np.ndarray, q: float, noise_multiplier: float) -> np.ndarray:
    """The summed per-step log likelihood ratios of ``observations (steps, m)``."""
    return step_log_likelihood_ratio(observations, q, noise_multiplier).sum(axis=0)
