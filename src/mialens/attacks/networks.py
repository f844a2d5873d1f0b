"""How the query attacks reach and run networks: the target's torch module, counted
white-box passes, evaluation mode, seeded initialisation, one torch thread, small MLPs and
batched logits."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
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
