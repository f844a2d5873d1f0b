"""Where per-model work runs: in this process, or on a Ray cluster.

The audit hands the executor one task per group of models (train or load them, then
compute their logits). A task is a module-level function of a shared context and the
group, and reads and writes nothing but the model store, so every executor gives the
same results as the local loop: which worker runs a group, and in which order, never
changes a number. The grouping itself (which models are trained together as one
batched ensemble) depends on the configuration only, never on the executor. Every
task runs torch on the same fixed number of threads (see
:func:`mialens.models.training.fixed_threads`), whatever the machine has or Ray gives a
worker (``num_cpus``): floating-point reductions split over threads round differently
for each count.

Ray workers read the audit's data from Ray's object store and its models from the
model store, whose path they receive as is: on a multi-node cluster the cache
directory (``audit.cache_dir`` or ``$MIALENS_CACHE_DIR``) must be on a file system that
every node mounts at the same path, and every node needs mialens installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mialens.errors import ConfigError
from mialens.threads import fixed_threads

log = logging.getLogger(__name__)

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741 - the conventional name of an item type
R = TypeVar("R")


class ExecutorConfig(BaseModel):
    """How per-model work is distributed, and whether models train as batched ensembles."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = Field(
        default="local", description="local: this process; ray: tasks on a Ray cluster"
    )
    address: str | None = Field(
        default=None,
        description="ray: cluster address ('auto', 'host:6379', 'ray://host:10001'); "
        "default: $RAY_ADDRESS, else a new local Ray instance",
    )
    num_cpus: float = Field(default=1.0, gt=0.0, description="ray: CPUs reserved per task")
    num_gpus: float = Field(
        default=0.0,
        ge=0.0,
        description="ray: GPUs reserved per task; a fraction (e.g. 0.25) lets that many "
        "tasks share one GPU, for small models with audit.device: cuda",
    )
    ensemble: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="train models of one recipe together as a batched ensemble: auto (small "
        "models), on (whenever the recipe allows), off (one by one)",
    )
    ensemble_size: int | None = Field(
        default=None,
        ge=1,
        description="most models per batched group (default: as many as memory allows); "
        "smaller groups give a Ray cluster more tasks to spread",
    )

    @field_validator("ensemble", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("num_gpus")
    @classmethod
    def _gpu_share(cls, gpus: float) -> float:
        if gpus > 1 and gpus != int(gpus):
            raise ValueError(
                f"Ray reserves a fraction of one GPU or whole GPUs, not {gpus}; use e.g. 0.5 or 2"
            )
        return gpus

    @model_validator(mode="after")
    def _ray_only(self) -> ExecutorConfig:
        if self.kind == "local":
            for name, default in (("address", None), ("num_cpus", 1.0), ("num_gpus", 0.0)):
                if getattr(self, name) != default:
                    raise ValueError(f"executor.{name} only applies to executor.kind: ray")
        return self


def map_tasks(
    fn: Callable[[C, I], R],
    context: C,
    items: Sequence[I],
    config: ExecutorConfig,
    on_done: Callable[[I, R], None] | None = None,
) -> list[R]:
    """``[fn(context, item) for item in items]`` on the configured executor, in order.

    ``fn`` must be a module-level function; on Ray, ``context`` is put into the object
    store once and shared by every task. ``on_done(item, result)`` is called in this
    process as each task finishes (in completion order on Ray).
    """
    if config.kind == "ray":
        return _map_ray(fn, context, items, config, on_done)
    results = []
    for item in items:
        result = _run_task(fn, context, item)
        if on_done is not None:
            on_done(item, result)
        results.append(result)
    return results


@fixed_threads()
def _run_task(fn: Callable[[C, I], R], context: C, item: I) -> R:
    """One task, on the fixed thread count (in this process or in a Ray worker)."""
    return fn(context, item)


def _map_ray(
    fn: Callable[[C, I], R],
    context: C,
    items: Sequence[I],
    config: ExecutorConfig,
    on_done: Callable[[I, R], None] | None,
) -> list[R]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "executor.kind: ray needs the ray package: pip install 'mialens[ray]'"
        ) from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=config.address, logging_level=logging.WARNING, log_to_driver=False)
        log.info("connected to Ray: %s", ray.cluster_resources())
    try:
        _check_gpus(ray, config.num_gpus)
        remote = ray.remote(_run_task).options(num_cpus=config.num_cpus, num_gpus=config.num_gpus)
        shared = ray.put(context)
        pending = {remote.remote(fn, shared, item): i for i, item in enumerate(items)}
        results: list[Any] = [None] * len(items)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            results[i] = ray.get(ready[0])  # re-raises a task's exception here
            if on_done is not None:
                on_done(items[i], results[i])
        return results
    finally:
        if started:
            ray.shutdown()


def _check_gpus(ray: Any, num_gpus: float) -> None:
    """A ConfigError when no live node of the Ray cluster has the ``num_gpus`` GPUs one
    task reserves: Ray would keep such tasks pending for ever instead of failing."""
    if num_gpus == 0:
        return
    per_node = [node["Resources"].get("GPU", 0.0) for node in ray.nodes() if node["Alive"]]
    if max(per_node, default=0.0) < num_gpus:
        total = ray.cluster_resources().get("GPU", 0.0)
        raise ConfigError(
            f"executor.num_gpus: {num_gpus:g} GPU(s) per task, but no node of the Ray cluster "
            f"has that many (GPUs per node: {per_node or 'no live node'}, {total:g} in all); "
            "start the cluster's GPU nodes first, lower executor.num_gpus, or run on the CPU "
            "(audit.device: cpu, executor.num_gpus: 0)"
        )
