"""Models: architectures, the training recipe, the training loop and the model store."""

from mialens.models.architectures import ModelConfig, build_model
from mialens.models.recipe import DPConfig, EarlyStoppingConfig, TrainConfig
from mialens.models.step import Step
from mialens.models.store import ModelStore
from mialens.models.training import train_model

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
