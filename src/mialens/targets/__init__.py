"""Queryable targets: adapters for torch modules, scikit-learn estimators and callables."""

from mialens.targets.adapters import (
    BlackBoxTarget,
    CallableTarget,
    LabelOnlyTarget,
    SklearnTarget,
    Target,
    TorchTarget,
    as_target,
    probabilities_to_logits,
    restrict,
)

__all__ = [
    "BlackBoxTarget",
    "CallableTarget",
    "LabelOnlyTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "as_target",
    "probabilities_to_logits",
    "restrict",
]
