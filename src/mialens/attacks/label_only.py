"""Label-only attacks: the adversary sees predicted labels only.

These attacks receive the target through an adapter that refuses scores
(:class:`mialens.targets.LabelOnlyTarget`) and counts every query.
"""

from __future__ import annotations

import numpy as np

from mialens.attacks.base import QueryAttack, QueryData


class GapAttack(QueryAttack):
    """Gap attack (Yeom et al. 2018, Sec. 3.3; the label-only baseline of Choquette-Choo
    et al. 2021, Sec. 3): a sample is called a member iff the target classifies it
    correctly. Its advantage equals the train-test accuracy gap."""

    name = "gap"
    summary = "gap: a correctly classified sample is called a member (label-only, 1 query)"
    paper = "Yeom et al. 2018 (CSF), Sec. 3.3; Choquette-Choo et al. 2021 (ICML), Sec. 3"
    threat_model = "label"

    def _score(self, target, data: QueryData) -> np.ndarray:
        return (target.labels(data.x) == data.labels).astype(np.float64)
