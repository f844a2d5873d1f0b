"""Transfer attack (Li & Zhang 2021, Membership Leakage in Label-Only Exposures, CCS).

A label-only adversary relabels a shadow data set with the target's predicted labels
(one query per shadow sample), trains a shadow model on it, and, since the shadow
inherits the target's decisions, attacks the shadow model with full access: the score
of a candidate ``(x, y)`` is the negated cross-entropy of the shadow model (``loss``,
the paper's choice) or its confidence in ``y`` (``confidence``). The shadow data are
the audit's population samples (they trained no model), by default half as many as
audited samples; the shadow is trained with the audit's recipe. No query is spent on
the candidates themselves.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData
from mialens.attacks.networks import single_thread, single_threaded
from mialens.errors import DataError
from mialens.seeding import int_seed
from mialens.signals.statistics import confidence, loss


class TransferParams(AttackParams):
    statistic: Literal["loss", "confidence"] = "loss"
    shadow_size: int | None = Field(
        default=None,
        ge=2,
        description="population samples relabelled and trained on (default: half as many "
        "as audited samples, the size of a target's training set in the audit's design)",
    )


class TransferAttack(QueryAttack):
    """Li & Zhang's transfer attack (see the module docstring).

    Per-target step (:meth:`prepare`): query the target's labels on the shadow data
    (one label query per shadow sample, the attack's only target queries), train the
    shadow model on them and keep its logits on the candidates. :meth:`score` turns
    those into the statistic and makes no query.
    """

    name = "transfer"
    summary = (
        "transfer: shadow model trained on population data relabelled by the target, "
        "scored by its loss (label-only)"
    )
    paper = "Li & Zhang 2021, Membership Leakage in Label-Only Exposures (CCS), transfer attack"
    threat_model = "label"
    needs = Needs("queries", population=True, target_step=True)
    Params = TransferParams

    @single_threaded
    def _prepare(self, target, data: QueryData) -> None:
        if data.train_model is None:
            raise DataError(f"attack {self.name!r} trains a shadow model: it needs a recipe")
        size = self.params.shadow_size or max(2, len(data.x) // 2)
        pop_x = data.population_x[:size]
        relabelled = np.asarray(target.labels(pop_x), dtype=np.int64)
        self.shadow_agreement_ = float((relabelled == data.population_labels[:size]).mean())
        with single_thread():
            shadow = data.train_model(pop_x, relabelled, int_seed(data.seed, "transfer-shadow"))
        self.shadow_logits_ = shadow.logits(data.x)

    def _score(self, target, data: QueryData) -> np.ndarray:
        if self.params.statistic == "loss":
            return -loss(self.shadow_logits_, data.labels)
        return confidence(self.shadow_logits_, data.labels)

    def extra(self) -> dict:
        return {"target_accuracy_on_shadow_data": self.shadow_agreement_}
