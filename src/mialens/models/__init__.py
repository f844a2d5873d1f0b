"""Models: architectures, the training recipe, the training loop and the model store.

The names below are imported on first use, so that importing one torch-free module of
this package (the model configuration, the recipe, the store) does not load PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DPConfig": "mialens.models.recipe",
    "EarlyStoppingConfig": "mialens.models.recipe",
    "ModelConfig": "mialens.models.model_config",
    "ModelStore": "mialens.models.store",
    "Step": "mialens.models.step",
    "TrainConfig": "mialens.models.recipe",
    "build_model": "mialens.models.architectures",
    "train_model": "mialens.models.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mialens.models' has no attribute {name!r}")
