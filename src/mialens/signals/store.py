"""Signals of many models on many samples, on disk and read in chunks of samples.

A :class:`SignalStore` keeps, for every signal an audit's attacks read, one float32
array ``(models, samples, queries)`` and one ``(models, population, queries)`` as
``.npy`` files (memory-mappable, no pickles). Models are written one at a time, as their
outputs become available, and attacks read chunks of samples across all models, so
neither the logits nor the signals of all models need to fit in memory: 10^6 samples x
64 models take 256 MB of disk per signal and a chunk's worth of memory.

The design (``member.npy``, ``labels.npy``, ``population_labels.npy``) is written
atomically with its sha256 in ``signals.json`` and verified when the store is opened.

Signals are computed in float64 from the logits and stored as float32, the precision
of the logits they derive from. Chunks are multiples of :data:`SAMPLE_BLOCK` samples;
sums over all samples (e.g. LiRA's pooled variance) are taken block by block
(:func:`block_sums`) and combined exactly, so that no result depends on the chunking.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mialens.errors import DataError
from mialens.io import write_bytes, write_json
from mialens.signals.statistics import SignalSpec, compute_signal
from mialens.validation import check_finite, check_labels, check_member_mask

SAMPLE_BLOCK = 4096
_FORMAT = 1


def block_sums(per_sample: np.ndarray) -> np.ndarray:
    """Sums of consecutive blocks of :data:`SAMPLE_BLOCK` values (the last may be short).

    A global sum taken as ``math.fsum(block_sums(...))`` is correctly rounded, so it is
    the same whether the samples arrive at once or in chunks that start at multiples of
    :data:`SAMPLE_BLOCK`.
    """
    values = np.asarray(per_sample, dtype=np.float64)
    return np.array(
        [values[i : i + SAMPLE_BLOCK].sum() for i in range(0, len(values), SAMPLE_BLOCK)]
    )


def exact_total(blocks: Iterable[np.ndarray]) -> float:
    """The correctly rounded sum of all block sums (independent of their order)."""
    return math.fsum(float(v) for b in blocks for v in np.ravel(b))


def spec_filename(spec: SignalSpec) -> str:
    """A file-name-safe name of a signal spec, e.g. ``probability-temperature=2.0``."""
    return "-".join([spec.name, *(f"{k}={float(v)!r}" for k, v in spec.params)])


def _save_design(path: Path, array: np.ndarray) -> str:
    """Write ``array`` atomically as ``.npy``; returns the sha256 of the file."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


class SignalStore:
    """Per-model signals of ``M`` models on ``N`` samples (and ``Z`` population samples).

    Create one with :meth:`create`, fill it model by model with :meth:`add_logits` (or
    :meth:`write` for precomputed signals), reopen it with ``SignalStore(root)``, and hand it to
    :func:`mialens.audit.engine.score_targets` in place of in-memory model outputs.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        try:
            meta = json.loads((self.root / "signals.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.root} is not a readable signal store: {exc}") from exc
        if meta.get("format") != _FORMAT:
            raise DataError(f"{self.root}: unsupported signal store format {meta.get('format')}")
        self.specs = [SignalSpec(s["name"], tuple(map(tuple, s["params"]))) for s in meta["specs"]]
        self.num_models, self.num_samples = meta["num_models"], meta["num_samples"]
        self.num_queries, self.num_population = meta["num_queries"], meta["num_population"]
        checksums = meta.get("checksums", {})  # stores written before checksums: none
        self.member = self._design("member.npy", checksums)
        self.labels = self._design("labels.npy", checksums)
        has_pop = (self.root / "population_labels.npy").is_file()
        self.population_labels = (
            self._design("population_labels.npy", checksums) if has_pop else None
        )

    def _design(self, name: str, checksums: dict[str, str]) -> np.ndarray:
        """A design array, verified against the checksum recorded when it was written."""
        path = self.root / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{self.root} is not a readable signal store: {exc}") from exc
        recorded = checksums.get(name)
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
            raise DataError(
                f"signal store {self.root}: {name} does not match the checksum recorded when "
                "the store was created (the file was damaged or replaced); create the store again"
            )
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"signal store {self.root}: {name} is unreadable ({exc})") from exc

    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        specs: Iterable[SignalSpec],
        member: np.ndarray,
        labels: np.ndarray,
        num_queries: int = 1,
        population_labels: np.ndarray | None = None,
    ) -> SignalStore:
        """An empty store (zero-filled files) for the given signals and design."""
        labels = check_labels(labels, name="labels")
        member = check_member_mask(member, (np.shape(member)[0], len(labels)), "member")
        specs = list(dict.fromkeys(specs))
        if not specs:
            raise DataError("a signal store needs at least one signal")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        m, n = member.shape
        design = {"member.npy": member, "labels.npy": labels}
        if population_labels is not None:
            population_labels = check_labels(population_labels, name="population labels")
            design["population_labels.npy"] = population_labels
        z = 0 if population_labels is None else len(population_labels)
        checksums = {name: _save_design(root / name, arr) for name, arr in design.items()}
        for spec in specs:
            name = spec_filename(spec)
            np.lib.format.open_memmap(
                root / f"{name}.npy", "w+", np.float32, (m, n, num_queries)
            ).flush()
            if z:
                np.lib.format.open_memmap(
                    root / f"{name}.population.npy", "w+", np.float32, (m, z, num_queries)
                ).flush()
        meta = {
            "format": _FORMAT,
            "num_models": m,
            "num_samples": n,
            "num_queries": num_queries,
            "num_population": z,
            "specs": [{"name": s.name, "params": [list(p) for p in s.params]} for s in specs],
            "checksums": checksums,
        }
        write_json(root / "signals.json", meta)  # last: a store without it is incomplete
        return cls(root)

    @property
    def has_population(self) -> bool:
        return self.num_population > 0

    def _path(self, spec: SignalSpec, population: bool = False) -> Path:
        if spec not in self.specs:
            raise DataError(
                f"signal {spec_filename(spec)!r} is not in the store at {self.root} (it holds "
                f"{', '.join(map(spec_filename, self.specs))}); create it with every signal "
                "the attacks read"
            )
        suffix = ".population.npy" if population else ".npy"
        return self.root / f"{spec_filename(spec)}{suffix}"

    def write(
        self, k: int, spec: SignalSpec, values: np.ndarray, population: np.ndarray | None = None
    ) -> None:
        """Store model ``k``'s signal ``values (N, Q)`` (and ``population (Z, Q)``)."""
        for arr, pop in ((values, False), (population, True)):
            if arr is None:
                if pop and self.has_population:
                    raise DataError("this store holds population signals; pass population")
                continue
            if not 0 <= k < self.num_models:
                raise DataError(f"model {k} is out of range: the store has {self.num_models}")
            mm = np.load(self._path(spec, pop), mmap_mode="r+")
            expected = mm.shape[1:]
            if np.shape(arr) != expected:
                del mm
                raise DataError(
                    f"signal of model {k} has shape {np.shape(arr)}, expected {expected}"
                )
            with np.errstate(over="ignore"):  # a float32 overflow is reported just below
                arr32 = np.asarray(arr, dtype=np.float32)
            what = "population signal" if pop else "signal"
            check_finite(arr32, f"{what} {spec_filename(spec)!r} of model {k}")
            mm[k] = arr32
            mm.flush()
            del mm

    def add_logits(
        self, k: int, logits: np.ndarray, population_logits: np.ndarray | None = None
    ) -> None:
        """Compute and store every signal of model ``k`` from its logits ``(N, Q, C)``
        (and ``(Z, Q, C)`` on the population)."""
        for spec in self.specs:
            values = compute_signal(spec.name, logits, self.labels[:, None], **spec.kwargs)
            pop = None
            if population_logits is not None:
                pop = compute_signal(
                    spec.name, population_logits, self.population_labels[:, None], **spec.kwargs
                )
            self.write(k, spec, values, pop)

    def values(self, spec: SignalSpec, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Signal of every model on samples ``start:stop``: ``(M, stop - start, Q)`` float64."""
        mm = np.load(self._path(spec), mmap_mode="r")
        try:
            return np.array(mm[:, start:stop], dtype=np.float64)
        finally:
            del mm  # unmap: the pages read stop counting towards this process's memory

    def population(self, spec: SignalSpec) -> np.ndarray:
        """Signal of every model on the population: ``(M, Z, Q)`` float64."""
        if not self.has_population:
            raise DataError("this signal store holds no population signals")
        mm = np.load(self._path(spec, population=True), mmap_mode="r")
        try:
            return np.array(mm, dtype=np.float64)
        finally:
            del mm
