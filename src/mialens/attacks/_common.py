"""Machinery shared by the query attacks: model access, torch helpers, scaling.

Nothing here is an attack. The attack models (member/non-member classifiers trained on
reference models' outputs) live in :mod:`mialens.attacks.attack_models`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from mialens.errors import DataError


def module_of(model: Any, who: str) -> nn.Module:
    """The torch module behind a queryable model, or a clear error."""
    module = getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise DataError(
            f"attack {who!r} needs PyTorch models (it computes gradients or trains networks "
            f"of the same architecture); got a {type(model).__name__}"
        )
    return module


def count_passes(target: Any, n: int) -> None:
    """Count ``n`` samples passed through a white-box target's module directly (one
    forward and backward pass each), as the query adapters count their queries."""
    target.queries = getattr(target, "queries", 0) + int(n)


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block and restore their previous mode."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for the block (weight initialisation) and restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) % (2**63))
        yield


def device_of(module: nn.Module) -> torch.device:
    params = list(module.parameters())
    return params[0].device if params else torch.device("cpu")


def num_classes_of(target: Any, *label_arrays: np.ndarray | None) -> int:
    """The number of classes: the target's if it knows it, else from the labels."""
    known = getattr(target, "num_classes", None)
    if known:
        return int(known)
    return int(max(int(np.max(a)) for a in label_arrays if a is not None and len(a)) + 1)


def data_box(x: np.ndarray) -> tuple[float, float]:
    """The range ``[min, max]`` of the features (the box searches and noise stay in)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def is_binary(x: np.ndarray) -> bool:
    """True when every feature value is 0 or 1."""
    return bool(np.isin(np.unique(x[: min(len(x), 2000)]), (0.0, 1.0)).all())


def auc(scores: np.ndarray, member: np.ndarray) -> float:
    """ROC AUC (0.5 when one class is missing)."""
    member = np.asarray(member, bool)
    if member.all() or not member.any():
        return 0.5
    return float(roc_auc_score(member, np.asarray(scores, np.float64)))


def balanced_rows(member: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_rows`` flat indices into ``member (R, N)``, half members, half not."""
    flat = np.asarray(member, bool).ravel()
    ins, outs = np.flatnonzero(flat), np.flatnonzero(~flat)
    half = max(1, max_rows // 2)
    take_in = rng.choice(ins, size=min(half, ins.size), replace=False)
    take_out = rng.choice(outs, size=min(half, outs.size), replace=False)
    return np.sort(np.concatenate([take_in, take_out]))


def stable_log_odds(p: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)`` with probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- torch helpers


def mlp(in_features: int, hidden: tuple[int, ...], out: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for the block (and restore the setting).

    Attacks run many small tensor operations (small networks, small batches, bisection
    steps), where thread synchronisation costs more than a second core saves; on a
    shared machine a thread waiting for a busy core stalls every operation (we measured
    the batched boundary search 9x slower with two threads than with one on a loaded
    two-core machine, and at most 2x faster on an idle one).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def single_threaded(method):
    """Decorator: run an attack's ``_fit``/``_score`` under :func:`single_thread`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with single_thread():
            return method(*args, **kwargs)

    return wrapper


@torch.no_grad()
def predict_logit(
    net: nn.Module, inputs: tuple[torch.Tensor, ...], batch: int = 8192
) -> np.ndarray:
    """``net``'s logits in eval mode, as float64."""
    net.eval()
    n = len(inputs[0])
    out = [net(*(t[i : i + batch] for t in inputs)).double() for i in range(0, n, batch)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@dataclass
class Standardizer:
    """Per-feature z-scores with the training rows' mean and standard deviation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, np.float64)
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-8))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)
