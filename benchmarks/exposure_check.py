"""Secret-sharer exposure of one small LM on KJV verses: extrapolated against exact.

Trains one byte-level :class:`~mialens.models.causal_lm.CausalTransformer` on the first
``--verses`` verses of the King James Bible plus two sets of canaries, each canary
inserted 1, 4 and 16 times (``--per-repetition`` canaries per count):

- ``pin``: ``"my pin code is {secret}"`` with 4 digits, 10**4 candidates: every candidate
  is enumerated for the exact exposure (Carlini et al. 2019, Sec. 4), and the skew-normal
  extrapolation of Sec. 4.3, fitted to ``--compare-sample`` of them, is compared with it,
  for the canaries and for every candidate taken as the canary (by exact-exposure band);
- ``canary``: ``"my secret number is {secret}"`` with 6 digits, 10**6 candidates:
  extrapolated exposure from ``--sample`` sampled candidates.

The two templates differ so that no 4-digit candidate is a prefix of a 6-digit canary.
Writes the numbers as JSON and prints a table.

    python benchmarks/exposure_check.py --out results/exposure_check.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from mialens.attacks.exposure import (
    candidate_log_perplexities,
    exposures_from_space,
    extrapolated_canary_exposures,
    space_texts,
)
from mialens.data import load_dataset
from mialens.data.secret_canaries import SecretFormat, insert_canaries
from mialens.data.tokenizers import ByteTokenizer, encode_padded
from mialens.metrics.exposure import exact_exposure, extrapolated_exposure
from mialens.models.causal_lm import (
    CausalLMConfig,
    CausalTransformer,
    LMTrainConfig,
    train_causal_lm,
)

PIN = SecretFormat(template="my pin code is {secret}", length=4, exact_only=True)
SECRET = SecretFormat()  # "my secret number is {secret}", 6 digits
BANDS = [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)]


def train(args, tokenizer):
    """The verses plus both canary sets, and the model trained on all of it."""
    verses = load_dataset("kjv").subset(np.arange(args.verses))
    data, pins = insert_canaries(
        verses, (1, 4, 16), args.per_repetition, args.seed, PIN, name="pin"
    )
    data, secrets = insert_canaries(data, (1, 4, 16), args.per_repetition, args.seed, SECRET)
    tokens, lengths = encode_padded(tokenizer, list(data.texts), args.max_tokens)
    config = CausalLMConfig(
        vocab_size=tokenizer.vocab_size,
        layers=args.layers,
        width=args.width,
        heads=4,
        context=args.max_tokens,
    )
    recipe = LMTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    result = train_causal_lm(
        lambda: CausalTransformer(config),
        tokens,
        lengths,
        recipe,
        args.seed,
        tokenizer.vocab_size,
        args.device,
    )
    model = CausalTransformer(config).to(args.device)
    model.load_state_dict(result.state_dict)
    return model.eval(), data, pins, secrets, result


def compare_on_pins(model, tokenizer, pins, args) -> dict:
    """Exact exposure on all 10**4 candidates against the extrapolation from a sample."""
    logppl = candidate_log_perplexities(model, tokenizer, space_texts(pins), args.max_tokens)
    exact = exposures_from_space(pins, logppl)
    pool = np.setdiff1d(np.arange(logppl.size), pins.secret_indices)
    sample = np.random.default_rng(args.seed).choice(pool, args.compare_sample, replace=False)
    fitted = extrapolated_exposure(logppl, logppl[sample])
    every = exact_exposure(logppl, logppl[pool]).exposure  # each candidate vs the others
    error = fitted.exposure - every
    bands = []
    for low, high in BANDS:
        band = (every >= low) & (every < high)
        if band.any():
            bands.append(
                {
                    "exact_bits": [low, high],
                    "candidates": int(band.sum()),
                    "mean_error": float(error[band].mean()),
                    "max_abs_error": float(np.abs(error[band]).max()),
                }
            )
    canary_fit = fitted.exposure[pins.secret_indices]
    return {
        "space": PIN.space_size,
        "compare_sample": args.compare_sample,
        "fit": {"shape": fitted.shape, "loc": fitted.loc, "scale": fitted.scale},
        "ks_statistic": fitted.ks_statistic,
        "exact": exact.to_json(),
        "extrapolated": canary_fit.tolist(),
        "beyond_sample": fitted.beyond_sample[pins.secret_indices].tolist(),
        "bands": bands,
    }


def by_repetition(repetitions: list[int], values: list[float]) -> dict[str, float]:
    reps, vals = np.array(repetitions), np.array(values)
    return {str(r): float(vals[reps == r].mean()) for r in sorted(set(repetitions))}


def print_tables(results: dict) -> None:
    pins, secrets = results["pins"], results["secrets"]
    print(f"\n4-digit canaries ({pins['space']:,} candidates, fit on {pins['compare_sample']:,})")
    print(f"{'canary':<14}{'reps':>5}{'exact':>8}{'rank':>7}{'tied':>6}{'extrap':>8}{'diff':>7}")
    exact = pins["exact"]
    for i, name in enumerate(exact["canary_ids"]):
        e, x = exact["exposure"][i], pins["extrapolated"][i]
        print(
            f"{name:<14}{exact['repetitions'][i]:>5}{e:>8.2f}{exact['rank'][i]:>7}"
            f"{exact['tied'][i]!s:>6}{x:>8.2f}{x - e:>7.2f}"
        )
    print("\nevery candidate as the canary: extrapolated - exact, by exact exposure (bits)")
    for band in pins["bands"]:
        low, high = band["exact_bits"]
        print(
            f"  [{low:>2}, {high:>2}) {band['candidates']:>6} candidates  mean "
            f"{band['mean_error']:+.2f}  max |error| {band['max_abs_error']:.2f}"
        )
    print(f"\n6-digit canaries (10**6 candidates, fit on {secrets['fit']['sample_size']:,})")
    print(f"{'canary':<16}{'reps':>5}{'extrap':>8}{'beyond':>8}")
    for i, name in enumerate(secrets["canary_ids"]):
        print(
            f"{name:<16}{secrets['repetitions'][i]:>5}{secrets['exposure'][i]:>8.2f}"
            f"{secrets['beyond_sample'][i]!s:>8}"
        )
    print("\nmean exposure by repetition count (bits)")
    for key in ("pins_exact", "pins_extrapolated", "secrets_extrapolated"):
        print(f"  {key:<22}" + "  ".join(f"{r}: {v:.2f}" for r, v in results[key].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--verses", type=int, default=300)
    parser.add_argument("--per-repetition", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-tokens", type=int, default=272)
    parser.add_argument("--compare-sample", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    tokenizer = ByteTokenizer()
    start = time.perf_counter()
    model, data, pins, secrets, trained = train(args, tokenizer)
    trained_at = time.perf_counter()
    pin_results = compare_on_pins(model, tokenizer, pins, args)
    six = extrapolated_canary_exposures(
        model, tokenizer, secrets, args.max_tokens, args.sample, args.seed
    )
    exact = pin_results["exact"]
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "samples": len(data),
        "final_train_loss": trained.history[-1]["train_loss"],
        "seconds": {"train": trained_at - start, "exposure": time.perf_counter() - trained_at},
        "pins": pin_results,
        "secrets": {**six.to_json(), "space_bits_max": math.log2(SECRET.space_size)},
        "pins_exact": by_repetition(exact["repetitions"], exact["exposure"]),
        "pins_extrapolated": by_repetition(exact["repetitions"], pin_results["extrapolated"]),
        "secrets_extrapolated": by_repetition(six.repetitions.tolist(), six.exposure.tolist()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_tables(results)


if __name__ == "__main__":
    main()
