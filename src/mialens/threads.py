"""The fixed intra-op thread count of PyTorch in every mialens computation.

Floating-point reductions split over threads round differently for each thread count,
so the count is fixed rather than left to the machine (or to Ray, which gives a worker
``num_cpus`` threads): same seed, same numbers, on any executor and any machine.
Parallelism comes from batched ensembles and from executor tasks instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

TORCH_THREADS = 1
"""Intra-op threads of every training and inference run."""


@contextmanager
def fixed_threads() -> Iterator[None]:
    """Run torch on :data:`TORCH_THREADS` intra-op threads, restoring the caller's count
    afterwards (usable as a decorator).

    A block entered before PyTorch is imported leaves it unloaded (a cached audit that
    only reads logits needs none): the functions that import it to compute (training,
    inference, :class:`~mialens.targets.adapters.TorchTarget`) fix the count themselves,
    and a configuration's PyTorch attacks are imported when it is validated."""
    torch = sys.modules.get("torch")
    previous = None if torch is None else torch.get_num_threads()
    if previous is None or previous == TORCH_THREADS:  # nothing to change
        yield
        return
    torch.set_num_threads(TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
