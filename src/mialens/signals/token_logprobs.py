"""Per-token log-probabilities of a causal language model: the one signal of every text
attack, computed once per model and query set, in batches, and cached.

For a sample ``x_0 x_1 ... x_L`` (``x_0`` the tokenizer's start token) and each position
``t = 1..L`` the model's next-token distribution ``p(. | x_<t)`` gives

- ``logprob[t-1] = log p(x_t | x_<t)``, the token's log-probability (LOSS, Zlib,
  reference-model and Min-K% scores read it);
- ``mean[t-1] = mu_t = E_{z ~ p(.|x_<t)} [log p(z | x_<t)]`` and
  ``var[t-1] = sigma_t^2 = E_{z ~ p(.|x_<t)} [(log p(z | x_<t) - mu_t)^2]``, the
  statistics of Min-K%++ (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting
  Pre-Training Data from Large Language Models", Eq. 2-3: the token score
  ``(log p(x_t | x_<t) - mu_t) / sigma_t``, averaged over the lowest k% of tokens). The
  authors' released code takes ``sigma^2 = E[log p^2] - mu^2``; the centred sum used here
  is equal in exact arithmetic and free of its cancellation.

Everything is computed in float64 from the logits and stored as float32, ``(n, T-1)``
with zeros after each row's ``length - 1`` scored positions. The cache lives in the
model's :class:`~mialens.models.store.ModelStore` entry, like its logits: one ``.npy``
(never pickled) with its sha256, named by a digest of the token matrix, so a second
attack on the same model and query set reads it instead of running the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mialens.errors import DataError
from mialens.models.causal_lm import check_token_batch
from mialens.models.store import ModelStore
from mialens.models.training import fixed_threads
from mialens.signals.token_stats import TokenLogProbs


def token_statistics(
    logits: torch.Tensor | np.ndarray, tokens: np.ndarray, lengths: np.ndarray
) -> TokenLogProbs:
    """The statistics of the module docstring from next-token ``logits (n, T, V)`` of
    ``tokens (n, T)``, whose rows hold ``lengths`` real tokens each."""
    logp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64)[:, :-1], dim=-1)
    targets = torch.as_tensor(np.asarray(tokens, dtype=np.int64)[:, 1:])
    p = logp.exp()
    # Below -1e100, p is exactly 0 in float64 (it underflows at -745): clamping changes no
    # term p f(log p) but keeps 0 * (-inf) (a -inf logit) from making a NaN.
    finite = logp.clamp(min=-1e100)
    mean = (p * finite).sum(-1)
    var = (p * (finite - mean[..., None]).square_()).sum(-1)
    scored = np.asarray(lengths, dtype=np.int64) - 1
    real = torch.as_tensor(np.arange(targets.shape[1]) < scored[:, None])
    padded_as_zero = torch.where(real, targets, torch.zeros_like(targets))  # pads may be any id
    token_logp = logp.gather(-1, padded_as_zero[..., None])[..., 0]
    as32 = [torch.where(real, v, 0.0).numpy().astype(np.float32) for v in (token_logp, mean, var)]
    return TokenLogProbs(*as32, lengths=scored)


@fixed_threads()
@torch.no_grad()
def compute_token_logprobs(
    model: nn.Module,
    tokens: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    batch_size: int = 16,
) -> TokenLogProbs:
    """:func:`token_statistics` of ``model`` on every row of ``tokens``, in evaluation
    mode, ``batch_size`` rows of similar length at a time (each cut to its longest row)."""
    tokens, lengths = np.asarray(tokens, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    check_token_batch(tokens, lengths, vocab_size)
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((3, len(tokens), tokens.shape[1] - 1), dtype=np.float32)
    by_length = np.argsort(lengths, kind="stable")  # batches of similar length: little padding
    for start in range(0, len(tokens), batch_size):
        rows = by_length[start : start + batch_size]
        t = int(lengths[rows].max())
        logits = model(torch.as_tensor(tokens[rows, :t], device=device)).float().cpu()
        out[:, rows, : t - 1] = token_statistics(logits, tokens[rows, :t], lengths[rows]).stacked()
    model.train(was_training)
    return TokenLogProbs(out[0], out[1], out[2], lengths - 1)


def query_name(tokens: np.ndarray, lengths: np.ndarray) -> str:
    """Cache name of the statistics on a query set: a digest of its tokens and lengths."""
    h = hashlib.sha256()
    for arr in (np.asarray(tokens, dtype=np.int64), np.asarray(lengths, dtype=np.int64)):
        h.update(f"{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return "tokenlogprobs-" + h.hexdigest()[:24]


def cached_token_logprobs(
    store: ModelStore,
    key: str,
    load_model: Callable[[], nn.Module],
    tokens: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    batch_size: int = 16,
) -> TokenLogProbs:
    """The statistics of model ``key`` of ``store`` on ``tokens``: read from its entry when
    cached (and intact), else computed with ``load_model()`` (called only then) and saved
    in the entry (a model not in the store is scored but nothing is cached)."""
    tokens, lengths = np.asarray(tokens, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    name = query_name(tokens, lengths)
    expected = (3, len(tokens), tokens.shape[1] - 1)
    cached = store.load_array(key, name) if store.has(key) else None
    if cached is not None and cached.shape == expected and cached.dtype == np.float32:
        return TokenLogProbs(cached[0], cached[1], cached[2], lengths - 1)
    stats = compute_token_logprobs(load_model(), tokens, lengths, vocab_size, batch_size)
    if store.has(key):
        store.save_array(key, name, stats.stacked())
    return stats


def models_token_logprobs(
    store: ModelStore,
    keys: list[str],
    load_model: Callable[[str], nn.Module],
    tokens: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    batch_size: int = 16,
) -> TokenLogProbs:
    """:func:`cached_token_logprobs` of every model in ``keys``, stacked: arrays
    ``(models, n, T-1)`` (``load_model(key)`` builds a model whose statistics are missing)."""
    per_model = [
        cached_token_logprobs(
            store, key, lambda key=key: load_model(key), tokens, lengths, vocab_size, batch_size
        )
        for key in keys
    ]
    stack = [np.stack([getattr(s, f) for s in per_model]) for f in ("logprob", "mean", "var")]
    return TokenLogProbs(*stack, lengths=per_model[0].lengths)
