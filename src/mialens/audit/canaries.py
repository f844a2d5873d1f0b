"""Canaries: deliberately atypical samples injected into the audit pool.

Aerni et al. (2024), "Evaluations of Machine Learning Privacy Defenses are Misleading"
(CCS), audit a training recipe on its most vulnerable samples rather than on the
average one: a small set of canaries, each a member of a random half of the models, and
the attack's TPR at a low FPR on the canaries alone. mialens replaces a random
``fraction`` of the pool by canaries, so the keep mask makes every canary IN for
exactly half of the models, and gives each an id ``canary-<kind>-<original id>``:

* ``mislabel``: the sample with a label drawn uniformly from the other classes (the
  canary type Aerni et al. use for most of their evaluations);
* ``ood``: an out-of-distribution point: the sample's features (pixels) in a random
  order, so the values' distribution is kept but its structure is lost, with a
  uniformly random label.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mialens.data.dataset import Dataset
from mialens.errors import ConfigError
from mialens.metrics.leakage import CanaryLeakage, CaughtShares, PooledLevel
from mialens.metrics.roc import attack_metrics, flags_at_fpr, fpr_resolvable
from mialens.seeding import rng

CANARY_PREFIX = "canary-"


class CanaryConfig(BaseModel):
    """Canaries replacing part of the audit pool."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mislabel", "ood"] = Field(
        default="mislabel", description="mislabel: a wrong label; ood: shuffled features"
    )
    fraction: float = Field(
        default=0.02, gt=0.0, le=0.5, description="share of the pool replaced by canaries"
    )


def inject_canaries(
    dataset: Dataset, pool: np.ndarray, config: CanaryConfig, seed: int
) -> tuple[Dataset, np.ndarray]:
    """Replace a random ``config.fraction`` of the pool positions by canaries.

    Returns the new data set (every id becomes a string) and a boolean mask over
    ``pool`` marking the canaries. Deterministic given ``seed``.
    """
    count = round(config.fraction * len(pool))
    if count < 1:
        raise ConfigError(
            f"audit.canaries.fraction {config.fraction} of a pool of {len(pool)} gives no "
            "canary; raise the fraction or the pool size"
        )
    gen = rng(seed, "canaries", config.kind)
    chosen = np.sort(gen.choice(len(pool), count, replace=False))
    positions = pool[chosen]
    x, y = dataset.x.copy(), dataset.y.copy()
    c = dataset.num_classes
    if config.kind == "mislabel":
        y[positions] = (y[positions] + gen.integers(1, c, size=count)) % c
    else:
        flat = x[positions].reshape(count, -1)
        x[positions] = np.stack([row[gen.permutation(row.size)] for row in flat]).reshape(
            x[positions].shape
        )
        y[positions] = gen.integers(0, c, size=count)
    ids = dataset.ids.astype(str).astype(object)
    ids[positions] = [f"{CANARY_PREFIX}{config.kind}-{v}" for v in ids[positions]]
    mask = np.zeros(len(pool), dtype=bool)
    mask[chosen] = True
    injected = Dataset(
        name=dataset.name,
        x=x,
        y=y,
        ids=ids.astype(str),
        num_classes=c,
        modality=dataset.modality,
        class_names=dataset.class_names,
    )
    return injected, mask


def canary_metrics(
    scores: np.ndarray, members: np.ndarray, canary: np.ndarray, levels: list[float]
) -> CanaryLeakage:
    """An attack's leakage on the canaries of targets with scores ``(T, N)``.

    ``pooled``: the ROC of the canary scores alone, pooled over targets (positives: a
    canary scored by a target it trained; negatives: by a target it did not), as in
    Aerni et al. 2024; its TPR at an FPR below ``1 / negatives`` is flagged unresolved.
    ``global_threshold``: the share of IN canaries, and of the other IN samples, that
    each target's threshold for FPR ``a`` on all its non-members accepts (pooled over
    targets), i.e. how much more often the audit's own low-FPR test catches a canary.
    """
    s = scores[:, canary].ravel()
    m = members[:, canary].ravel()
    pooled = attack_metrics(s, m, levels)
    global_ = {}
    for level in levels:
        caught = flags_at_fpr(scores, members, level) & members
        global_[float(level)] = CaughtShares(
            canaries=float(caught[:, canary].sum() / members[:, canary].sum()),
            natural=float(caught[:, ~canary].sum() / members[:, ~canary].sum()),
        )
    return CanaryLeakage(
        count=int(canary.sum()),
        auc=pooled.auc,
        n_members=pooled.n_members,
        n_nonmembers=pooled.n_nonmembers,
        tpr_at_fpr={
            float(v): PooledLevel(
                value=pooled.tpr_at_fpr[v], resolved=fpr_resolvable(pooled.n_nonmembers, v)
            )
            for v in levels
        },
        global_threshold=global_,
    )
