"""Where per-model work runs: in this process, or on a Ray cluster.

The audit hands the executor one task per model (train or load it, then compute its
logits); a task is a plain function of the model index, so any executor that maps it
over indices gives the same results as the local loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class ExecutorConfig(BaseModel):
    """How per-model work is distributed."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local"] = Field(default="local", description="local: one process")


def map_models(
    task: Callable[[int], T],
    indices: Sequence[int],
    config: ExecutorConfig,
    on_done: Callable[[int, T], None] | None = None,
) -> list[T]:
    """``[task(k) for k in indices]`` on the configured executor, in index order."""
    results = []
    for k in indices:
        result = task(k)
        if on_done is not None:
            on_done(k, result)
        results.append(result)
    return results
