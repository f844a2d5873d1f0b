"""What an audit design will cost, estimated before any training: memory and time.

Memory (bytes), for ``K`` models, ``P`` pool and ``Q`` query samples (pool and test set),
``T`` queries per sample, ``C`` classes and ``A`` attacks:

- logits of every model: ``K·Q·T·C·4`` (float32), counted twice (each model's block and
  the stacked array exist together while they are gathered);
- what the attacks hold: per attack, a float64 signal of every model on every pool
  sample and query, and one float64 score per target and pool sample: ``A·K·P·(T+1)·8``;
- the design: the membership mask and each model's training positions, ``K·P·(1+4)``.

Time: training sees ``K · epochs · P/2`` samples, each costing three forward passes
(forward and backward, Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
Sec. 2.1) of the FLOPs torch counts on one sample, at 3·10^10 FLOP/s on a CPU (one
training thread) and 10^12 on an accelerator, plus 0.05 s per model (building, saving).
The CPU rate is measured: the WRN-16-2 models of ``benchmarks/wrn_fashion.py`` trained at
2.8·10^10 FLOP/s of one thread of a 2-core AMD EPYC (AVX2), whole runs with evaluation
and a busy machine included (10^10, assumed before, overstated their time 3-4x). A rough
figure: it only decides whether to warn. Models train in parallel on a Ray instance this
audit starts on its own machine (``executor.kind: ray`` without an address): as many at
once as its CPUs hold tasks of ``executor.num_cpus`` (GPUs of ``executor.num_gpus`` on an
accelerator), so the wall time is the total divided by that; on a cluster elsewhere, whose
size is unknown before it is reached, the warning gives the total of one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mialens.audit.executor import ExecutorConfig
from mialens.audit.settings import AuditSpec
from mialens.data.dataset import Dataset
from mialens.errors import ConfigError
from mialens.splits import Split

if TYPE_CHECKING:  # PyTorch loads only to estimate a training time (when there is training)
    import torch

log = logging.getLogger(__name__)

FLOPS_PER_SECOND = {"cpu": 3e10, "accelerator": 1e12}
SECONDS_PER_MODEL = 0.05
LONG_TRAINING_SECONDS = 3600.0


@dataclass(frozen=True)
class DesignSize:
    """The sizes an audit design multiplies together."""

    num_models: int
    pool: int
    queried: int
    queries: int
    classes: int
    attacks: int

    def memory_parts(self) -> dict[str, int]:
        """Estimated bytes of the logits, of what the attacks hold and of the design."""
        k, p = self.num_models, self.pool
        return {
            "logits": 2 * k * self.queried * self.queries * self.classes * 4,
            "attacks": self.attacks * k * p * (self.queries + 1) * 8,
            "design": k * p * 5,
        }


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (MemAvailable on Linux), if known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def check_memory(size: DesignSize, available: int | None = None) -> None:
    """Refuse a design whose estimated memory exceeds what this machine has available."""
    available = available_memory() if available is None else available
    parts = size.memory_parts()
    total = sum(parts.values())
    if available is None or total <= available:
        return
    raise ConfigError(
        f"this audit needs about {_gb(total)} of memory but this machine has {_gb(available)} "
        f"available: logits of {size.num_models} models x {size.queried} query samples x "
        f"{size.queries} queries x {size.classes} classes ({_gb(parts['logits'])}), signals "
        f"and scores of {size.attacks} attacks on {size.pool} pool samples "
        f"({_gb(parts['attacks'])}), membership and training sets ({_gb(parts['design'])}); "
        "lower audit.num_models (or audit.pool_size, audit.test_size or the attacks)"
    )


def forward_flops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one sample, as torch counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, *input_shape)))
    return int(counter.get_total_flops())


def training_seconds(num_models: int, epochs: int, pool: int, flops: int, device: str) -> float:
    """Estimated seconds to train every model (see the module docstring)."""
    import torch

    rate = FLOPS_PER_SECOND["cpu" if torch.device(device).type == "cpu" else "accelerator"]
    samples = num_models * epochs * pool / 2
    return samples * 3 * flops / rate + num_models * SECONDS_PER_MODEL


def parallel_trainers(executor: ExecutorConfig, to_train: int) -> int | None:
    """How many models train at once: 1 in this process, the tasks that fit a Ray instance
    started on this machine (at most ``to_train``), None on a Ray cluster elsewhere."""
    if executor.kind == "local":
        return 1
    if executor.address is not None or os.environ.get("RAY_ADDRESS"):
        return None
    if executor.num_gpus > 0:  # audit.device is cuda (AuditSpec checks)
        import torch

        slots = torch.cuda.device_count() / executor.num_gpus
    else:
        slots = (os.cpu_count() or 1) / executor.num_cpus
    return max(1, min(to_train, int(slots)))


def warn_long_training(seconds: float, num_models: int, device: str, parallel: int | None) -> None:
    """Log a warning when the estimated training time (``seconds`` of one process, over
    ``parallel`` processes at once; None: unknown) exceeds an hour of wall time."""
    wall = seconds / (parallel or 1)
    if wall <= LONG_TRAINING_SECONDS:
        return
    if parallel is None:
        spread = ", to be spread over the Ray cluster's workers"
    elif parallel > 1:
        spread = f" ({seconds / 3600:.1f} hours of one process, {parallel} at once)"
    else:
        spread = ""
    log.warning(
        "training the %d models is estimated at %.1f hours on %s%s (none cached; the "
        "estimate is rough, see mialens.audit.budget); lower audit.num_models, "
        "train.epochs or audit.pool_size for a quicker audit",
        num_models,
        wall / 3600,
        device,
        spread,
    )


def check_design_cost(config: AuditSpec, dataset: Dataset, split: Split, queries: int) -> None:
    """Refuse a design that cannot fit in memory."""
    settings = config.audit
    pool = len(split.pool)
    size = DesignSize(
        num_models=settings.num_models,
        pool=pool,
        queried=pool + len(split.test),
        queries=queries,
        classes=dataset.num_classes,
        attacks=len(settings.attacks),
    )
    check_memory(size)


def check_training_time(config: AuditSpec, dataset: Dataset, pool: int, to_train: int) -> None:
    """Warn when training the ``to_train`` models the cache lacks is very long; with
    nothing to train there is nothing to estimate (and no FLOP count, which loads much
    of torch)."""
    if to_train == 0 or config.model.kind == "estimator":  # estimator: no torch model
        return
    import torch

    from mialens.models.architectures import build_model

    device = config.audit.device
    with torch.random.fork_rng(devices=[]):  # leave the global generator as it was
        model = build_model(
            config.model, dataset.input_shape, dataset.num_classes, config.train.dropout
        )
    flops = forward_flops(model, dataset.input_shape)
    seconds = training_seconds(to_train, config.train.epochs, pool, flops, device)
    warn_long_training(seconds, to_train, device, parallel_trainers(config.executor, to_train))
