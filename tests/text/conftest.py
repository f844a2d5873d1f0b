"""A tiny next-token corpus and the text-audit configuration writer shared by the
language-model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mialens.data.tokenizers import ByteTokenizer, encode_padded

PHRASES = ["for his mercy endureth for ever", "in the beginning", "let there be light"]


@pytest.fixture
def byte_corpus() -> tuple[np.ndarray, np.ndarray]:
    """Token ids and lengths of 24 short byte-level samples of uneven length."""
    texts = [PHRASES[i % 3][: 10 + i % 7] for i in range(24)]
    return encode_padded(ByteTokenizer(), texts, max_tokens=32)


def write_text_config(folder: Path, raw: dict) -> str:
    """Write the text-audit configuration ``raw`` to ``folder/audit.yaml``; its path."""
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)
