"""Per-epoch outputs of the audit's models, for member/non-member distributions over training.

The audit caches only final weights. :func:`epoch_logits` retrains model ``k`` with the
trainer's ``on_epoch`` hook and records its logits on the pool after every epoch; the
trainer is deterministic, so this is the audit's own model (checked against its cached
final logits). The records are cached in the model's store entry, so a second analysis
reads them instead of training again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from mialens.audit.training_plan import query_key
from mialens.augment import Transform
from mialens.models.store import spec_key
from mialens.models.training import predict_logits, train_model

if TYPE_CHECKING:
    from mialens.audit.design import AuditSetup

log = logging.getLogger(__name__)


def epoch_logits(
    setup: AuditSetup, k: int, final: np.ndarray | None = None, device: str = "cpu"
) -> np.ndarray:
    """Logits ``(epochs, pool, classes)`` of model ``k`` after each epoch on the pool.

    ``final`` (``(pool, classes)``, the cached logits of the trained model), if given,
    is compared with the retrained model's final logits; a mismatch (non-deterministic
    hardware) is logged.
    """
    plan, store, pool = setup.plan, setup.store, setup.split.pool
    key = spec_key(plan.spec(k))
    name = "epochs-" + query_key(plan.dataset, pool, [Transform()]).removeprefix("logits-")
    cached = store.load_array(key, name) if store.has(key) else None
    if cached is not None:
        return cached
    ds = plan.dataset
    x_pool = ds.x[pool]
    records: list[np.ndarray] = []

    def record(epoch: int, model) -> None:
        records.append(predict_logits(model, x_pool))

    validation = None
    if plan.train.early_stopping is not None:
        validation = (ds.x[plan.validation_positions], ds.y[plan.validation_positions])
    train_idx = plan.train_positions[k]
    log.info("retraining model %d to record its outputs after every epoch", k)
    result = train_model(
        plan.build,
        ds.x[train_idx],
        ds.y[train_idx],
        plan.train,
        plan.seeds[k],
        validation,
        device,
        on_epoch=record,
    )
    out = np.stack(records)
    stopper = plan.train.early_stopping
    kept = result.best_epoch if stopper and stopper.restore_best and result.best_epoch else None
    last = out[(kept or len(out)) - 1]
    if final is not None and not np.allclose(last, final, rtol=1e-4, atol=1e-4):
        log.warning(
            "model %d retrained for per-epoch outputs differs from the cached model "
            "(non-deterministic training?); its epochs describe a near-identical model",
            k,
        )
    if store.has(key):
        store.save_array(key, name, out)
    return out
