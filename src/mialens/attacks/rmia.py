"""Robust Membership Inference Attack (RMIA), Zarifzadeh, Liu & Shokri 2024, Low-Cost
High-Power Membership Inference Attacks (ICML).

With ``Pr(x | theta)`` the target's probability of the true label (softmax with
temperature ``T``) and ``Pr(x)`` its average over reference models, the pairwise
likelihood ratio against a population sample ``z`` is (Eq. 3)

    LR(x, z) = [Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)]

and the paper's score is the fraction of population samples it dominates (Eq. 4)

    Score(x) = Pr_z[ LR(x, z) >= gamma ].

Online, ``Pr(x) = (mean over IN references + mean over OUT references) / 2``: the
balanced mixture the paper's half-IN reference set estimates, made exact so that an
unequal IN/OUT count (as in leave-one-out audits) cannot leak membership. Offline
(App. B.2), ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` approximates the missing IN
models by a linear function of the OUT average. Population samples trained no model,
so ``Pr(z)`` is their reference average (offline: passed through the same formula).

**Ties.** The fraction takes only ``Z + 1`` values, and at gamma > 1 every sample whose
ratio ``r_x = Pr(x | theta) / Pr(x)`` exceeds ``gamma`` times the largest population
ratio scores exactly 1: well-fitted members then share one score, and TPR at low FPR
is decided by how ties are broken. The score here breaks ties of the fraction by the
ratio itself,

    score(x) = (Z * Score(x) + g(r_x)) / (Z + 1),   g(r) = 1/2 + arctan(log r) / pi,

which stays within ``1 / (Z + 1)`` of the paper's score and is strictly increasing in
``r_x`` (``g`` maps ``[0, inf)`` into ``[0, 1)``; arctan of the log keeps ratios many
orders of magnitude apart distinct in float64). With one query per sample and a
threshold per target, the ranking is therefore that of ``r_x`` alone: gamma and the
population matter only when several queries are averaged and when thresholds are
pooled over targets (where ``r_x`` is calibrated against each target's population).

The score is computed without the ``N x Z`` matrix of ratios: ``LR(x, z) >= gamma``
iff ``r_z <= r_x / gamma``, so sorting the ``Z`` population ratios once and
binary-searching each sample costs ``O((N + Z) log Z)`` time and ``O(N + Z)`` memory.
Every score depends on its own sample and the population only, so scoring chunks of
samples gives the same numbers. With several queries, per-query scores are averaged.
In a leave-one-out audit (:meth:`SignalAttack.fit_leaving_out`) the reference means
``Pr_IN``, ``Pr_OUT`` and ``Pr(z)`` are sums over all models minus the target's own
values (:mod:`mialens.signals.leave_one_out`), equal to the refit up to rounding.

**Defaults** follow the authors' released configurations (privacy_meter,
``research/2023_rmia/attack_configs``: ``temperature: 2.0``, ``gamma: 2.0``). Not
adopted from them: the Taylor soft-margin signal and the trimmed mean over references
(``proportiontocut: 0.2``). The paper reports that the softmax variants perform alike
(App. B), and the authors' maintained attack (privacy_meter's ``run_rmia``) uses the
plain softmax and the plain mean; a trimmed mean of the few OUT references a sample
has offline would also drop most of them. Offline ``a`` defaults to ``auto``: the
paper chooses ``a`` on reference models without training new ones, and the authors'
library (``tune_offline_a``) attacks one reference model with the others for ``a`` in
``0, 0.1, ..., 1`` and keeps the ``a`` of highest AUC (first on ties); so does
:class:`RMIAOffline`, which reports the chosen ``a`` per target in :meth:`extra`. The
released configurations' fixed ``offline_a: 0.33`` remains available as ``a: 0.33``,
and is what ``auto`` falls back to (and says so in ``extra``) when the references are
too few to attack one of them with the others.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from mialens.attacks.base import (
    AttackParams,
    ModelSignals,
    Needs,
    ReferenceSignals,
    SignalAttack,
    TargetSignals,
)
from mialens.signals.statistics import SignalSpec

_TINY = np.finfo(np.float64).tiny
A_GRID = np.arange(11) / 10
"""Candidate offline slopes for ``a: auto`` (the authors' grid 0, 0.1, ..., 1)."""
FALLBACK_A = 0.33
"""``a`` of the released configurations, used by ``a: auto`` when no reference model can
be attacked with the others: fewer than two references, or (as with one complementary
pair) the samples that have an OUT model among the others are all members, or all
non-members, of the first reference."""
_FALLBACK_NOTE = "too few reference models to choose a; the released configurations' 0.33"
_AUC_BINS = 1024
"""Score histogram bins for choosing ``a`` (exact while queries x population + 1 <= 1024)."""


class RMIAParams(AttackParams):
    gamma: float = Field(default=2.0, gt=0.0, description="threshold on the pairwise ratio")
    temperature: float = Field(default=2.0, gt=0.0, description="softmax temperature")


class RMIAOfflineParams(RMIAParams):
    a: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = Field(
        default="auto",
        description="offline IN-approximation slope in [0, 1], or auto: chosen on the "
        "reference models (highest AUC attacking one of them with the others)",
    )


def _mean_over(values: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Mean over the models selected by ``side`` (R, N) of ``values`` (R, N, Q)."""
    weights = side[:, :, None].astype(np.float64)
    return (values * weights).sum(axis=0) / weights.sum(axis=0)


def _offline_marginal(pr_out: np.ndarray, a: float) -> np.ndarray:
    """``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` (App. B.2)."""
    return 0.5 * ((1 + a) * pr_out + (1 - a))


def dominance_counts(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """``#{z : ratio_x / ratio_z >= gamma}`` for every x, by sorting, per query column.

    ``ratio_x`` is ``(N, Q)`` and ``ratio_z`` ``(Z, Q)`` (non-negative); each query column
    of ``x`` is compared with the same column of the population.
    """
    return _counts_below(ratio_x, np.sort(ratio_z, axis=0), gamma)


def _counts_below(ratio_x: np.ndarray, sorted_z: np.ndarray, gamma: float) -> np.ndarray:
    """:func:`dominance_counts` with each column of the population ratios sorted."""
    counts = np.empty(ratio_x.shape, dtype=np.int64)
    for q in range(ratio_x.shape[1]):
        counts[:, q] = np.searchsorted(sorted_z[:, q], ratio_x[:, q] / gamma, side="right")
    return counts


def histogram_bounds(sorted_z: np.ndarray, bins: int) -> np.ndarray:
    """What :func:`binned_histogram` needs of the population ratios ``(Z, Q)``, each query
    column sorted: with one query only the ``bins - 1`` ratios at which bins start (the
    ``e_b``-th smallest, ``e_b = ceil(b (Z + 1) / bins)``), else all of them."""
    z, q = sorted_z.shape
    if q > 1:
        return sorted_z
    return sorted_z[-(-np.arange(1, bins) * (z + 1) // bins) - 1, 0]


def binned_histogram(
    ratio_x: np.ndarray, bounds: np.ndarray, gamma: float, bins: int
) -> np.ndarray:
    """Histogram ``(bins,)`` of the summed dominance counts ``c`` (:func:`dominance_counts`
    summed over queries) in ``bins`` equal bins of their ``Q Z + 1`` levels,
    ``c * bins // (Q Z + 1)``; ``bounds`` is :func:`histogram_bounds` of the population.

    With one query no sample is searched for: ``c`` reaches bin ``b`` iff ``c >= e_b``,
    i.e. iff the ``e_b``-th smallest population ratio is at most ``ratio_x / gamma``, so
    the histogram follows from the sorted ``ratio_x / gamma`` by a search of the
    ``bins - 1`` bounds (the same comparisons of the same floats: the same histogram as
    binning every sample's own count)."""
    if bounds.ndim == 2:  # several queries: every sample's summed count
        levels = bounds.size + 1
        binned = _counts_below(ratio_x, bounds, gamma).sum(axis=1) * bins // levels
        return np.bincount(binned, minlength=bins)
    keys = np.sort(ratio_x[:, 0] / gamma)
    reached = len(keys) - np.searchsorted(keys, bounds, side="left")  # c >= e_b
    return -np.diff(np.concatenate([[len(keys)], reached, [0]]))


def dominance_fraction(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """The paper's score per query (Eq. 4): ``mean_z [ratio_x / ratio_z >= gamma]``."""
    return dominance_counts(ratio_x, ratio_z, gamma) / ratio_z.shape[0]


def tie_broken_score(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """``(count + g(ratio_x)) / (Z + 1)`` per sample, averaged over queries (module
    docstring): the dominance fraction with its ties broken by the ratio."""
    with np.errstate(divide="ignore"):  # a ratio of 0 has g = 0
        tie_break = 0.5 + np.arctan(np.log(ratio_x)) / np.pi
    counts = dominance_counts(ratio_x, ratio_z, gamma)
    return ((counts + tie_break) / (ratio_z.shape[0] + 1)).mean(axis=1)


def auc_from_histograms(negatives: np.ndarray, positives: np.ndarray) -> tuple[int, int]:
    """AUC of binned scores as the exact fraction ``(numerator, denominator)``: the
    Mann-Whitney count of (positive, negative) pairs ordered correctly, ties counting
    half, doubled so that it stays an integer."""
    below = np.concatenate([[0], np.cumsum(negatives)[:-1]])
    numerator = int(2 * (positives * below).sum() + (positives * negatives).sum())
    return numerator, 2 * int(positives.sum()) * int(negatives.sum())


def _population_bounds(z: np.ndarray, pr_out_z: np.ndarray) -> list[np.ndarray]:
    """For each ``a`` of :data:`A_GRID`, :func:`histogram_bounds` of the population ratios
    ``z / Pr(z)`` of the attacked reference (offline ``Pr(z)`` from the OUT means)."""
    bins = _bins(z)
    return [
        histogram_bounds(
            np.sort(z / np.maximum(_offline_marginal(pr_out_z, a), _TINY), axis=0), bins
        )
        for a in A_GRID
    ]


def _bins(z: np.ndarray) -> int:
    """Histogram bins for choosing ``a`` with the population values ``z`` ``(Z, Q)``."""
    return min(z.size + 1, _AUC_BINS)


class _RMIA(SignalAttack):
    paper = (
        "Zarifzadeh, Liu & Shokri 2024, Low-Cost High-Power Membership Inference Attacks "
        "(ICML), Eq. 3-4"
    )

    def signal(self) -> SignalSpec:
        return SignalSpec("probability", (("temperature", self.params.temperature),))

    @abstractmethod
    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        """``Pr(x)`` of the audit samples and ``Pr(z)`` of the population, each (., Q)."""

    @abstractmethod
    def _marginals_leaving_out(
        self, models: ModelSignals, target: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_marginals` of the references of ``target``, from sums over all models."""

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None and refs.population is not None
        self._set_marginals(*self._marginals(refs))

    def _fit_leaving_out(self, models: ModelSignals, target: int) -> None:
        self._set_marginals(*self._marginals_leaving_out(models, target))

    def _set_marginals(self, pr_x: np.ndarray, pr_z: np.ndarray) -> None:
        self.pr_x_ = np.maximum(pr_x, _TINY)
        self.pr_z_ = np.maximum(pr_z, _TINY)

    def _score(self, target: TargetSignals) -> np.ndarray:
        assert target.population is not None
        ratio_x = target.values / self.pr_x_
        ratio_z = target.population / self.pr_z_
        return tie_broken_score(ratio_x, ratio_z, self.params.gamma)


class RMIAOnline(_RMIA):
    """RMIA with IN and OUT reference models (see the module docstring)."""

    name = "rmia_online"
    summary = (
        "RMIA online: pairwise likelihood ratios against population samples, IN+OUT references"
    )
    needs = Needs(
        "signals", references="online", population=True, all_queries=True, chunking="samples"
    )
    Params = RMIAParams

    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        pr_x = 0.5 * (_mean_over(refs.values, refs.member) + _mean_over(refs.values, ~refs.member))
        return pr_x, refs.population.mean(axis=0)

    def _marginals_leaving_out(
        self, models: ModelSignals, target: int
    ) -> tuple[np.ndarray, np.ndarray]:
        sides = ("in", "out", "population")
        pr_in, pr_out, pr_z = (models.without(s, [target], "mean")[1] for s in sides)
        return 0.5 * (pr_in + pr_out), pr_z


class RMIAOffline(_RMIA):
    """RMIA with OUT reference models and the offline ``a`` approximation (module
    docstring). With ``a: auto``, the first reference model is attacked offline with the
    others (each sample's OUT models among them) for every ``a`` in :data:`A_GRID`; the
    ``a`` of highest AUC against its known membership is used. The AUC is taken from
    histograms of the dominance counts, which add up exactly over chunks of samples
    (:meth:`chunk_summary`), so the choice never depends on the chunk size."""

    name = "rmia_offline"
    summary = (
        "RMIA offline: pairwise likelihood ratios, OUT references with the linear IN approximation"
    )
    needs = Needs(
        "signals",
        references="offline",
        population=True,
        all_queries=True,
        chunking="samples",
        summary_pass=True,
    )
    Params = RMIAOfflineParams

    _preset: dict | None = None
    _population_bounds: tuple | None = None

    def chunk_summary(self, refs: ReferenceSignals) -> np.ndarray | None:
        """Per candidate ``a``: histograms ``(len(A_GRID), 2, bins)`` of the first
        reference model's summed dominance counts on its non-members and members."""
        if self.params.a != "auto":
            return None
        if refs.num_models < 2:  # nothing to attack the first reference with
            return np.zeros((len(A_GRID), 2, 1), dtype=np.int64)
        out = ~refs.member[1:]
        usable = out.any(axis=0)  # samples with an OUT model among the other references
        pr_out_x = _mean_over(refs.values[1:, usable], out[:, usable])
        pr_out_z = refs.population[1:].mean(axis=0)
        x, member = refs.values[0, usable], refs.member[0, usable]
        bounds = _population_bounds(refs.population[0], pr_out_z)
        return self._a_histograms(x, member, pr_out_x, bounds, _bins(refs.population[0]))

    def chunk_summary_leaving_out(self, models: ModelSignals, target: int) -> np.ndarray | None:
        """:meth:`chunk_summary` of the references of ``target``: the first of them is
        attacked with the others, whose OUT means leave out both from sums. The population
        side (:func:`histogram_bounds`) is kept for the next chunk of the same audit (the
        population is the same for every chunk)."""
        if self.params.a != "auto":
            return None
        if models.num_models < 3:
            return np.zeros((len(A_GRID), 2, 1), dtype=np.int64)
        first = 1 if target == 0 else 0
        count, pr_out_x, _ = models.without("out", [target, first], "mean")
        usable = count > 0
        kept = self._population_bounds
        if kept is None or kept[0] is not models.population or kept[1] != target:
            pr_out_z = models.without("population", [target, first], "mean")[1]
            bounds = _population_bounds(models.population[first], pr_out_z)
            self._population_bounds = kept = (models.population, target, bounds)
        x, member = models.values[first, usable], models.member[first, usable]
        bins = _bins(models.population[first])
        return self._a_histograms(x, member, pr_out_x[usable], kept[2], bins)

    def _a_histograms(
        self, x: np.ndarray, member: np.ndarray, pr_out_x: np.ndarray, bounds: list, bins: int
    ) -> np.ndarray:
        """The histograms of :meth:`chunk_summary`: the attacked reference's values ``x``
        and membership on the samples that have OUT models among the other references,
        those references' OUT means, and the population side for each ``a``
        (:func:`_population_bounds`)."""
        hist = np.zeros((len(A_GRID), 2, bins), dtype=np.int64)
        for side, rows in enumerate((~member, member)):
            x_side, pr_side = x[rows], pr_out_x[rows]
            for i, a in enumerate(A_GRID):
                ratio_x = x_side / np.maximum(_offline_marginal(pr_side, a), _TINY)
                hist[i, side] = binned_histogram(ratio_x, bounds[i], self.params.gamma, bins)
        return hist

    def use_summaries(self, summaries: list[np.ndarray | None]) -> None:
        """Fix ``a`` of every later fit from the histograms of all chunks of samples."""
        self._preset = self._choose_a(summaries)

    def _choose_a(self, summaries: list[np.ndarray | None]) -> dict | None:
        if self.params.a != "auto":
            return None
        hist = np.sum(summaries, axis=0)
        aucs = [auc_from_histograms(h[0], h[1]) for h in hist]
        if aucs[0][1] == 0:
            return {"a": FALLBACK_A, "a_reference_auc": None, "a_note": _FALLBACK_NOTE}
        best = max(range(len(aucs)), key=lambda i: (aucs[i][0], -i))  # first highest AUC
        return {"a": float(A_GRID[best]), "a_reference_auc": aucs[best][0] / aucs[best][1]}

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        self._set_a(self._preset or self._choose_a([self.chunk_summary(refs)]))
        super()._fit(refs)

    def _fit_leaving_out(self, models: ModelSignals, target: int) -> None:
        choice = self._preset or self._choose_a([self.chunk_summary_leaving_out(models, target)])
        self._set_a(choice)
        super()._fit_leaving_out(models, target)

    def _set_a(self, choice: dict | None) -> None:
        self.choice_ = choice
        self.a_ = float(self.params.a) if choice is None else choice["a"]

    def extra(self) -> dict:
        return dict(self.choice_ or {})

    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        pr_out_x = _mean_over(refs.values, ~refs.member)
        pr_out_z = refs.population.mean(axis=0)
        return _offline_marginal(pr_out_x, self.a_), _offline_marginal(pr_out_z, self.a_)

    def _marginals_leaving_out(
        self, models: ModelSignals, target: int
    ) -> tuple[np.ndarray, np.ndarray]:
        pr_out_x = models.without("out", [target], "mean")[1]
        pr_out_z = models.without("population", [target], "mean")[1]
        return _offline_marginal(pr_out_x, self.a_), _offline_marginal(pr_out_z, self.a_)
