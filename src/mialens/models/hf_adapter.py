"""Any Hugging Face causal language model saved with ``save_pretrained`` in a local
folder, behind the same ``forward(tokens) -> logits`` as
:class:`~mialens.models.causal_lm.CausalTransformer`.

``transformers`` is an optional extra (``pip install 'mialens[transformers]'``). Models
load from the folder only (never the network) and only from safetensors weights (a
``pytorch_model.bin`` is a pickle and is refused). The reference recipe for such a model
is fine-tuning it on the audit's member half:
``train_causal_lm(lambda: load_hf_causal_lm(folder), tokens, lengths, recipe, seed, ...)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mialens.errors import ConfigError
from mialens.models.hf_folder import CONTEXT_FIELDS, INSTALL_HINT, check_weights


def import_transformers():
    """The ``transformers`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"Hugging Face models need the `transformers` package: {INSTALL_HINT}"
        ) from exc
    return transformers


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM: ``tokens (n, T)`` -> next-token logits ``(n, T, V)``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def vocab_size(self) -> int:
        return int(self.inner.config.vocab_size)

    @property
    def context(self) -> int | None:
        """The longest sequence its positions allow (None when its config does not say)."""
        config = self.inner.config
        for name in CONTEXT_FIELDS:
            if isinstance(getattr(config, name, None), int):
                return int(getattr(config, name))
        return None

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last hidden states ``(n, T, width)``."""
        return self.inner(input_ids=tokens, output_hidden_states=True).hidden_states[-1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids=tokens).logits


def load_hf_causal_lm(folder: str | Path) -> HFCausalLM:
    """The causal LM saved in ``folder`` (``config.json`` and ``model.safetensors``)."""
    folder = Path(folder)
    check_weights(folder)
    transformers = import_transformers()
    try:
        inner = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load a causal language model from {folder}: {exc}") from exc
    inner.eval()
    return HFCausalLM(inner)
