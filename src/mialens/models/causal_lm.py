"""A small causal transformer language model and its next-token trainer.

:class:`CausalTransformer` is a GPT-style decoder (Radford et al. 2019): learned token
and position embeddings, ``layers`` pre-LayerNorm blocks of causal multi-head
self-attention (written out rather than fused, so that :func:`torch.func.vmap` batches
it for ensembles) and a GELU MLP (4x width), a final LayerNorm and a linear head. Its
``forward(tokens)`` gives next-token logits ``(n, T, vocab)`` and ``features(tokens)``
the final hidden states ``(n, T, width)``. At the test sizes it trains on a CPU in
seconds.

:func:`train_causal_lm` trains any module with that ``forward`` (this model, or a
Hugging Face model through :mod:`mialens.models.hf_adapter`: fine-tuning a given LM on
the audit's member half is the reference recipe for such models) on the next-token
loss. It is its own loop rather than :func:`mialens.models.loop.run_epochs` because
the shared loop is built around one class label per sample (label smoothing,
accuracy-based early stopping, per-sample weights and clipping, DP-SGD through Opacus,
image augmentation); next-token training has a label per token and a padding mask, and
none of those recipes carries over as it is (DP-SGD for language models is not here).
Like the shared trainer it is deterministic: the seed fixes initialisation, batch order
and dropout, on :data:`~mialens.models.training.TORCH_THREADS` threads, and the global
torch RNG is left untouched. :func:`train_causal_lm_ensemble` trains several models as
one stacked network (``torch.func.vmap`` over their stacked weights) with the same
epochs, batches and initialisation as one by one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mialens.errors import DataError
from mialens.models.lm_config import CausalLMConfig, LMTrainConfig
from mialens.models.training import fixed_threads
from mialens.seeding import rng


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
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        future = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        weights = F.dropout(
            scores.masked_fill(future, -math.inf).softmax(-1), self.dropout, self.training
        )
        h = h + self.proj((weights @ v).transpose(1, 2).reshape(n, t, width))
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


Step = Callable[[list[np.ndarray]], list[float]]


def _run_epochs(
    config: LMTrainConfig, seeds: list[int], rows: int, step: Step
) -> list[list[dict[str, float]]]:
    """The epochs of ``len(seeds)`` models on ``rows`` samples each: every epoch, each
    model's fresh permutation (its own stream) is cut into the same number of batches, and
    ``step`` takes one batch per model and returns each model's loss on it."""
    orders = [rng(seed, "causal-lm", "batches") for seed in seeds]
    num_batches = -(-rows // config.batch_size)
    history: list[list[dict[str, float]]] = [[] for _ in seeds]
    for epoch in range(config.epochs):
        batches = [np.array_split(order.permutation(rows), num_batches) for order in orders]
        losses = np.array([step([b[i] for b in batches]) for i in range(num_batches)])
        for k, record in enumerate(history):
            record.append({"epoch": epoch + 1, "train_loss": float(losses[:, k].mean())})
    return history


def _devices(device: str) -> list[torch.device]:
    return [torch.device(device)] if torch.device(device).type == "cuda" else []


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
    with torch.random.fork_rng(devices=_devices(device)):
        torch.manual_seed(seed)
        model = build().to(device).train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )

        def step(batch: list[np.ndarray]) -> list[float]:
            width = int(lengths[batch[0]].max())
            x = torch.as_tensor(tokens[batch[0], :width], device=device)
            loss = next_token_loss(model(x), x, torch.as_tensor(lengths[batch[0]], device=device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return [float(loss.detach())]

        history = _run_epochs(config, [seed], len(tokens), step)[0]
        model.eval()
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return LMTrainResult(state, history, time.perf_counter() - start)


@fixed_threads()
def train_causal_lm_ensemble(
    build: Callable[[], nn.Module],
    tokens: np.ndarray,
    lengths: np.ndarray,
    rows: list[np.ndarray],
    config: LMTrainConfig,
    seeds: list[int],
    vocab_size: int,
    device: str = "cpu",
) -> list[LMTrainResult]:
    """Train ``len(seeds)`` models at once as one stacked network (:func:`torch.func.vmap`),
    model ``k`` on ``tokens[rows[k]]`` with seed ``seeds[k]``: the initialisation, batches
    and recipe of ``train_causal_lm(build, tokens[rows[k]], ..., seeds[k])``, so the same
    weights up to float rounding (dropout masks, if any, are drawn differently). Every
    model needs as many rows as the others (the audit's halves have).

    It pays where the device has parallelism to spare (a GPU running small models); on
    one CPU thread the stacked matrix products are no faster than separate ones, and
    training 4 models of 2 layers x 64 together took 1.2-2x the CPU time of one by one.
    """
    tokens, lengths = np.asarray(tokens, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    check_token_batch(tokens, lengths, vocab_size)
    if len(rows) != len(seeds) or len({len(r) for r in rows}) != 1 or not len(rows[0]):
        raise DataError(
            "an ensemble needs one non-empty row set per seed, all of one size; train models "
            "with other sizes one by one (train_causal_lm)"
        )
    start = time.perf_counter()
    with torch.random.fork_rng(devices=_devices(device)):
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(build().to(device).train())
        params, buffers = torch.func.stack_module_state(models)
        optimizer = torch.optim.AdamW(
            params.values(), lr=config.lr, weight_decay=config.weight_decay
        )
        base = copy.deepcopy(models[0]).to("meta")
        picked = [(tokens[r], lengths[r]) for r in rows]
        step = _ensemble_step(base, params, buffers, optimizer, picked, device)
        history = _run_epochs(config, list(seeds), len(rows[0]), step)
    return _split_results({**params, **buffers}, history, time.perf_counter() - start)


def _split_results(
    stacked: dict[str, torch.Tensor], history: list[list[dict[str, float]]], seconds: float
) -> list[LMTrainResult]:
    return [
        LMTrainResult({n: t[k].detach().cpu().clone() for n, t in stacked.items()}, h, seconds)
        for k, h in enumerate(history)
    ]


def _ensemble_step(
    base: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    picked: list[tuple[np.ndarray, np.ndarray]],
    device: str,
) -> Step:
    """One optimizer step of every model on its own batch of its own ``(tokens, lengths)``
    (the gradient of the sum of the models' losses is each model's own gradient)."""

    def forward(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, (p, b), (x,))

    stacked_forward = torch.func.vmap(forward, randomness="different")

    def step(batch: list[np.ndarray]) -> list[float]:
        chosen = [(t[i], n[i]) for (t, n), i in zip(picked, batch, strict=True)]
        width = max(int(n.max()) for _, n in chosen)
        x = torch.as_tensor(np.stack([t[:, :width] for t, _ in chosen]), device=device)
        n = torch.as_tensor(np.stack([n for _, n in chosen]), device=device)
        logits = stacked_forward(params, buffers, x)
        losses = torch.stack([next_token_loss(logits[k], x[k], n[k]) for k in range(len(x))])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        return losses.detach().tolist()

    return step
