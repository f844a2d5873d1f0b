"""Models: architectures, the training recipe, the training loop and the model store."""

from mialens.models.architectures import ModelConfig, build_model
from mialens.models.loop import Step
from mialens.models.store import ModelStore
from mialens.models.training import DPConfig, EarlyStoppingConfig, TrainConfig, train_model

__all__ = [
    "DPConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "ModelStore",
    "Step",
    "TrainConfig",
    "build_model",
    "train_model",
]
