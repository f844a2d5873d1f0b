"""Queryable targets: adapters for torch modules, scikit-learn estimators and callables."""

from mialens.targets.adapters import (
    CallableTarget,
    SklearnTarget,
    Target,
    TorchTarget,
    as_target,
    probabilities_to_logits,
)

__all__ = [
    "CallableTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "as_target",
    "probabilities_to_logits",
]
