"""A small causal transformer language model and its next-token trainer.

:class:`CausalTransformer` is a GPT-style decoder (Radford et al. 2019): learned token
and position embeddings, ``layers`` pre-LayerNorm blocks of causal multi-head
self-attention and a GELU MLP (4x width), a final LayerNorm and a linear head. Its
``forward(tokens)`` gives next-token logits ``(n, T, vocab)`` and ``features(tokens)``
the final hidden states ``(n, T, width)``. At the test sizes it trains on a CPU in
seconds.

:func:`train_causal_lm` trains any module with that ``forward`` (this model, or a
Hugging Face model through :mod:`mialens.models.hf_adapter`: fine-tuning a given LM on
the audit's member half is the reference recipe for such models) on the next-token
loss. It is its own loop rather than :func:`mialens.models.loop.run_epochs` because
the shared loop is built around one label per sample (class-balanced smoothing,
accuracy-based early stopping, per-sample clipping, image augmentation); next-token
training has a label per token and a padding mask, and none of those recipes apply.
Like the shared trainer it is deterministic: the seed fixes initialisation, batch order
and dropout, on :data:`~mialens.models.training.TORCH_THREADS` threads, and the global
torch RNG is left untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from mialens.errors import DataError
from mialens.models.training import fixed_threads
from mialens.seeding import rng


class CausalLMConfig(BaseModel):
    """Architecture of a :class:`CausalTransformer`."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(gt=1, description="tokens in the vocabulary (the tokenizer's)")
    layers: int = Field(default=2, ge=1, description="transformer blocks")
    width: int = Field(default=64, ge=1, description="embedding width")
    heads: int = Field(default=4, ge=1, description="attention heads (must divide width)")
    context: int = Field(default=128, ge=2, description="longest token sequence")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> CausalLMConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class LMTrainConfig(BaseModel):
    """Recipe of :func:`train_causal_lm` (AdamW on the mean next-token loss)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, t, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        h = h + self.proj(attended.transpose(1, 2).reshape(n, t, width))
        return h + self.mlp(self.norm2(h))


class CausalTransformer(nn.Module):
    """GPT-style decoder: ``tokens (n, T)`` int64 -> next-token logits ``(n, T, vocab)``."""

    def __init__(self, config: CausalLMConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.width)
        self.positions = nn.Embedding(config.context, config.width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            _Block(config.width, config.heads, config.dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(n, T, width)``."""
        t = tokens.shape[1]
        if t > self.config.context:
            raise DataError(f"{t} tokens exceed the model's context of {self.config.context}")
        h = self.drop(self.tokens(tokens) + self.positions.weight[:t])
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


@dataclass
class LMTrainResult:
    """Weights and record (mean training loss per epoch, in nats per token) of one run."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def next_token_loss(
    logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of predicting ``tokens[:, 1:]`` from ``logits[:, :-1]`` over the
    real (unpadded) positions of each row."""
    targets = tokens[:, 1:]
    real = torch.arange(targets.shape[1], device=tokens.device) < (lengths[:, None] - 1)
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    return (losses * real).sum() / real.sum().clamp(min=1)


def check_token_batch(tokens: np.ndarray, lengths: np.ndarray, vocab_size: int) -> None:
    """Refuse token matrices that do not fit the model, before any work."""
    if tokens.ndim != 2 or lengths.shape != (tokens.shape[0],):
        raise DataError(
            f"tokens must be (n, T) with n lengths; got {tokens.shape}, {lengths.shape}"
        )
    if len(tokens) == 0:
        raise DataError("no samples to train or score on")
    if lengths.min() < 2 or lengths.max() > tokens.shape[1]:
        raise DataError("every sample needs 2 to T tokens (its start token and at least one)")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise DataError(
            f"token ids must lie in [0, {vocab_size}); got {tokens.min()}..{tokens.max()}"
        )


@fixed_threads()
def train_causal_lm(
    build: Callable[[], nn.Module],
    tokens: np.ndarray,
    lengths: np.ndarray,
    config: LMTrainConfig,
    seed: int,
    vocab_size: int,
    device: str = "cpu",
) -> LMTrainResult:
    """Train a fresh ``build()`` on the next-token loss of ``tokens (n, T)`` (rows padded
    after ``lengths``; see :func:`mialens.data.tokenizers.encode_padded`)."""
    tokens, lengths = np.asarray(tokens, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    check_token_batch(tokens, lengths, vocab_size)
    start = time.perf_counter()
    order = rng(seed, "causal-lm", "batches")
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = build().to(device)
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        history = []
        num_batches = -(-len(tokens) // config.batch_size)
        for epoch in range(config.epochs):
            losses = []
            for batch in np.array_split(order.permutation(len(tokens)), num_batches):
                width = int(lengths[batch].max())
                x = torch.as_tensor(tokens[batch, :width], device=device)
                n = torch.as_tensor(lengths[batch], device=device)
                loss = next_token_loss(model(x), x, n)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses))})
        model.eval()
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return LMTrainResult(state, history, time.perf_counter() - start)
