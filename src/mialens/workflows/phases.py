"""Wall time of an audit's phases, for benchmarks and profiling.

    with timed_phases() as seconds:
        run_audit(config, out_dir)
    seconds  # {"design": ..., "load": ..., "scoring": ..., "metrics": ..., ...}

:func:`phase` marks a block of the workflow; it records only inside :func:`timed_phases`
(a context variable, so concurrent audits in other threads or tasks record nothing) and
costs nothing otherwise. Phases do not nest; a phase entered twice adds up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_RECORDING: ContextVar[dict[str, float] | None] = ContextVar("mialens_phases", default=None)


@contextmanager
def timed_phases() -> Iterator[dict[str, float]]:
    """Record the wall seconds of every :func:`phase` run inside the block."""
    seconds: dict[str, float] = {}
    token = _RECORDING.set(seconds)
    try:
        yield seconds
    finally:
        _RECORDING.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase ``name`` when :func:`timed_phases` records."""
    seconds = _RECORDING.get()
    if seconds is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
