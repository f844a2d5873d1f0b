"""Wall and CPU time of an audit's phases, for benchmarks and profiling.

    with timed_phases() as times:
        run_audit(config, out_dir)
    times.wall  # {"design": ..., "load": ..., "scoring": ..., "metrics": ..., ...}
    times.cpu   # the same phases in CPU seconds of this process (steadier on a busy machine)

:func:`phase` marks a block of the workflow; it records only inside :func:`timed_phases`
(a context variable, so concurrent audits in other threads or tasks record nothing) and
costs nothing otherwise. Phases do not nest; a phase entered twice adds up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class PhaseTimes:
    """Seconds per phase: ``wall`` (elapsed) and ``cpu`` (this process, all threads)."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


_RECORDING: ContextVar[PhaseTimes | None] = ContextVar("mialens_phases", default=None)


@contextmanager
def timed_phases() -> Iterator[PhaseTimes]:
    """Record the times of every :func:`phase` run inside the block."""
    times = PhaseTimes()
    token = _RECORDING.set(times)
    try:
        yield times
    finally:
        _RECORDING.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase ``name`` when :func:`timed_phases` records."""
    times = _RECORDING.get()
    if times is None:
        yield
        return
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        times.wall[name] = times.wall.get(name, 0.0) + time.perf_counter() - wall
        times.cpu[name] = times.cpu.get(name, 0.0) + time.process_time() - cpu
