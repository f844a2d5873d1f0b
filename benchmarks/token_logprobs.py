"""Throughput of the per-token log-probability pass: tokens per second, cold and cached.

Scores the first ``--samples`` verses of the King James Bible (Debian's bible-kjv; a
synthetic corpus of the same length profile when it is not installed) with a freshly
initialised :class:`~mialens.models.causal_lm.CausalTransformer` on byte tokens, and
records scored tokens per second of :func:`~mialens.signals.token_logprobs.compute_token_logprobs`
(the model pass plus the Min-K%++ statistics) and of a second, cached call that reads
the model store instead. Every model size is timed ``--repeats`` times; the best run is
reported (other processes on a shared machine only ever slow a run down), with its CPU
time (on one torch thread, wall time over CPU time shows how much the machine was shared).

    python benchmarks/token_logprobs.py --out results/token_logprobs.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mialens.data import load_dataset
from mialens.data.sources.kjv import DEBIAN_DATA
from mialens.data.tokenizers import ByteTokenizer, encode_padded
from mialens.models.causal_lm import CausalLMConfig, CausalTransformer
from mialens.models.store import ModelStore
from mialens.signals.token_logprobs import cached_token_logprobs, compute_token_logprobs

SIZES = {"tiny": (2, 64, 4), "small": (4, 128, 4), "medium": (6, 256, 8)}  # layers, width, heads


def corpus(samples: int) -> tuple[str, list[str]]:
    """The first ``samples`` verses, or random words of verse-like lengths."""
    if DEBIAN_DATA.is_file():
        return "kjv", list(load_dataset("kjv").texts[:samples])
    generator = np.random.default_rng(0)
    words = ["and", "the", "lord", "said", "unto", "moses", "for", "his", "mercy", "ever"]
    lengths = generator.integers(5, 40, samples)
    return "synthetic", [" ".join(generator.choice(words, n)) for n in lengths]


def run(size: str, tokens: np.ndarray, lengths: np.ndarray, args) -> dict:
    layers, width, heads = SIZES[size]
    config = CausalLMConfig(
        vocab_size=257, layers=layers, width=width, heads=heads, context=tokens.shape[1]
    )
    torch.manual_seed(0)
    model = CausalTransformer(config).to(args.device)
    scored = int((lengths - 1).sum())
    cold, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        compute_token_logprobs(model, tokens, lengths, 257, args.batch_size)
        cold.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    with tempfile.TemporaryDirectory() as folder:
        store = ModelStore(folder)
        store.save("m", model.state_dict(), {"size": size})
        cached_token_logprobs(store, "m", lambda: model, tokens, lengths, 257, args.batch_size)
        start = time.perf_counter()
        cached_token_logprobs(store, "m", lambda: model, tokens, lengths, 257, args.batch_size)
        warm = time.perf_counter() - start
    return {
        "size": size,
        "layers": layers,
        "width": width,
        "heads": heads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "scored_tokens": scored,
        "seconds": min(cold),
        "all_seconds": cold,
        "tokens_per_second": scored / min(cold),
        "cpu_seconds": min(cpu),
        "tokens_per_cpu_second": scored / min(cpu),
        "cached_seconds": warm,
        "cached_tokens_per_second": scored / warm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    source, texts = corpus(args.samples)
    tokens, lengths = encode_padded(ByteTokenizer(), texts, args.max_tokens)
    results = {
        "corpus": source,
        "samples": len(texts),
        "tokenizer": "bytes",
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": 1,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": [run(size, tokens, lengths, args) for size in args.sizes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for r in results["runs"]:
        print(
            f"{r['size']:>7} ({r['parameters']:,} parameters): {r['tokens_per_second']:,.0f} "
            f"tokens/s ({r['tokens_per_cpu_second']:,.0f} per CPU second); cached "
            f"{r['cached_tokens_per_second']:,.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
