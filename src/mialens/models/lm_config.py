"""The configuration of a causal language model and of its training
(:mod:`mialens.models.causal_lm` builds and trains it with PyTorch; reading a text
audit's configuration needs no PyTorch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LMArchitecture(BaseModel):
    """The shape of a :class:`~mialens.models.causal_lm.CausalTransformer` apart from its
    vocabulary (a text audit's ``model:`` section: the vocabulary is the tokenizer's)."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(default=2, ge=1, description="transformer blocks")
    width: int = Field(default=64, ge=1, description="embedding width")
    heads: int = Field(default=4, ge=1, description="attention heads (must divide width)")
    context: int = Field(default=128, ge=2, description="longest token sequence")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LMArchitecture:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class CausalLMConfig(LMArchitecture):
    """Architecture of a :class:`~mialens.models.causal_lm.CausalTransformer`."""

    vocab_size: int = Field(gt=1, description="tokens in the vocabulary (the tokenizer's)")


class LMTrainConfig(BaseModel):
    """Recipe of :func:`~mialens.models.causal_lm.train_causal_lm` (AdamW on the mean
    next-token loss)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
