"""The text attacks of a language-model audit, by name, with their parameters and needs.

Every attack scores the pool samples of one target LM from the cached per-token
statistics of the audit's LMs (:class:`TextSignals`), with the other LMs as its
references (leave-one-out, like the classifier audit): ``needs.references`` is
``none`` (the target's statistics alone), ``offline`` (references that did not train
the sample) or ``online`` (IN and OUT references). ``needs.queries`` names the query
sets it reads: ``plain`` (the texts), ``lower`` (the texts lowercased) and ``recall``
(the texts after a non-member prefix). The formulas are those of
:mod:`mialens.attacks.text_scores`; LiRA and RMIA reuse the classifier attacks' code on
a sequence-level statistic. Higher score = more likely member.

Defaults follow the papers' released configurations: Min-K% and Min-K%++ ``k = 0.2``
(Shi et al. 2024 and Zhang et al. 2024 recommend 20%); LiRA's variance ``auto`` and
RMIA's ``gamma = 2`` and offline ``a = auto`` as the classifier attacks (see
:mod:`mialens.attacks.lira`, :mod:`mialens.attacks.rmia`). ReCaLL's ``shots = 1`` is
not a released setting: the paper varies the non-member shots of its prefix (Xie et al.
2024, Sec. 5) on LMs with long contexts; one shot keeps the prefix within a small
audit LM's context.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationError

from mialens.attacks.base import AttackParams, ReferenceSignals, TargetSignals
from mialens.attacks.rmia import RMIAOffline, RMIAOnline
from mialens.attacks.text_scores import (
    loss_score,
    lowercase_ratio,
    min_k,
    min_k_plus_plus,
    recall_score,
    reference_ratio,
    sequence_lira,
    zlib_ratio,
)
from mialens.errors import ConfigError, DataError, unknown_name
from mialens.signals.token_stats import TokenLogProbs

QUERY_SETS = ("plain", "lower", "recall")


@dataclass(frozen=True)
class TextNeeds:
    """What a text attack reads: reference LMs, population samples, query sets."""

    references: Literal["none", "offline", "online"] = "none"
    population: bool = False
    queries: tuple[str, ...] = ("plain",)


@dataclass(frozen=True)
class TextSignals:
    """The per-token statistics of ``M`` LMs on the audit pool: ``plain``, ``lower`` and
    ``recall`` are stacked :class:`TokenLogProbs` ``(M, n, T-1)`` of the query sets (None
    when no attack reads them; ``recall`` holds only the samples' own tokens, scored
    after the prefix), ``population`` the ``plain`` statistics of the population
    samples; ``member (M, n)`` the LMs' training membership, ``texts`` the pool texts."""

    texts: tuple[str, ...]
    member: np.ndarray
    plain: TokenLogProbs
    population: TokenLogProbs | None = None
    lower: TokenLogProbs | None = None
    recall: TokenLogProbs | None = None

    @property
    def num_models(self) -> int:
        return int(self.member.shape[0])

    def of(self, query: str, k: int) -> TokenLogProbs:
        """The statistics of LM ``k`` on query set ``query`` (``plain``, ``lower``,
        ``recall`` or ``population``)."""
        stats = getattr(self, query)
        if stats is None:
            raise DataError(f"the {query!r} query set was not computed")
        return TokenLogProbs(stats.logprob[k], stats.mean[k], stats.var[k], stats.lengths)

    @cached_property
    def mean_ll(self) -> np.ndarray:
        """``LL(x)``, the per-token mean log-likelihood, of every LM on every pool sample
        ``(M, n)`` (the sequence-level statistic of LiRA, RMIA and the reference ratio)."""
        return np.stack([loss_score(self.of("plain", k)) for k in range(self.num_models)])

    @cached_property
    def population_ll(self) -> np.ndarray:
        """``LL(z)`` of every LM on every population sample ``(M, Z)``."""
        return np.stack([loss_score(self.of("population", k)) for k in range(self.num_models)])


def others(num_models: int, target: int) -> np.ndarray:
    """The reference LMs of ``target``: every other LM."""
    return np.array([m for m in range(num_models) if m != target], dtype=np.int64)


class NoParams(AttackParams):
    pass


class KParams(AttackParams):
    k: float = Field(default=0.2, gt=0.0, le=1.0, description="fraction of lowest tokens")


class LiRAParams(AttackParams):
    variance: Literal["auto", "global", "per_example"] = Field(
        default="auto",
        description="per-sample variances once every sample has 32 models per side, else "
        "one pooled variance",
    )


class RMIAParams(AttackParams):
    gamma: float = Field(default=2.0, gt=0.0, description="threshold on the pairwise ratio")


class RMIAOfflineParams(RMIAParams):
    a: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = Field(
        default="auto", description="offline IN-approximation slope, or auto"
    )


class RecallParams(AttackParams):
    shots: int = Field(default=1, ge=1, description="population samples in the prefix")


class TextAttack(ABC):
    """One text attack: ``score(signals, target)`` gives the target LM's scores on the
    pool, the other LMs as references. Its ``summary``, ``paper``, ``threat_model``,
    ``needs`` and ``params`` are what :func:`mialens.audit.results.attack_info` reports."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    threat_model: ClassVar[str] = "score"
    needs: ClassVar[TextNeeds] = TextNeeds()
    Params: ClassVar[type[AttackParams]] = NoParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(f"invalid parameters for attack {self.name!r}:\n{exc}") from exc

    @abstractmethod
    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        """Scores ``(n,)`` of LM ``target`` on the pool, higher = more likely member."""


class TextLoss(TextAttack):
    name = "loss"
    summary = "LOSS: the target's mean token log-likelihood (minus log-perplexity)"
    paper = "Yeom et al. 2018, Privacy Risk in Machine Learning (CSF)"

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return loss_score(signals.of("plain", target))


class TextZlib(TextAttack):
    name = "zlib"
    summary = "Zlib: minus log-perplexity over the zlib entropy of the text"
    paper = "Carlini et al. 2021, Extracting Training Data from Large Language Models, Sec. 6.1"

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return zlib_ratio(signals.of("plain", target), signals.texts)


class TextLowercase(TextAttack):
    name = "lowercase"
    summary = "Lowercase: log-perplexity of the lowercased text over that of the text"
    paper = "Carlini et al. 2021, Extracting Training Data from Large Language Models, Sec. 6.1"
    needs = TextNeeds(queries=("plain", "lower"))

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return lowercase_ratio(signals.of("plain", target), signals.of("lower", target))


class TextReference(TextAttack):
    """Reference-model ratio (Carlini et al. 2021, Sec. 6.1): ``log PPL_ref(x) / log
    PPL_target(x)``. The paper's reference is a separate LM trained on other data; here
    it is the audit's OUT reference LMs of each sample (offline, like difficulty
    calibration): ``log PPL_ref(x) = -mean_{r OUT} LL_r(x)``, the reference LMs' mean
    log-perplexity, over ``LL`` the per-token mean log-likelihood."""

    name = "reference"
    summary = "Reference ratio: the OUT reference LMs' log-perplexity over the target's"
    paper = "Carlini et al. 2021, Extracting Training Data from Large Language Models, Sec. 6.1"
    needs = TextNeeds(references="offline")

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        refs = others(signals.num_models, target)
        out = ~signals.member[refs]
        reference_ll = (signals.mean_ll[refs] * out).sum(axis=0) / out.sum(axis=0)
        ones = np.ones(len(reference_ll), dtype=np.int64)
        return reference_ratio(signals.of("plain", target), (reference_ll[:, None], ones))


class TextMinK(TextAttack):
    name = "min_k"
    summary = "Min-K%: mean log-probability of the k lowest-probability tokens"
    paper = "Shi et al. 2024, Detecting Pretraining Data from Large Language Models (ICLR)"
    Params = KParams

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return min_k(signals.of("plain", target), self.params.k)


class TextMinKPlusPlus(TextAttack):
    name = "min_k_plus_plus"
    summary = "Min-K%++: standardised token log-probabilities, mean of the k lowest"
    paper = "Zhang et al. 2024, Min-K%++: Improved Baseline for Detecting Pre-Training Data"
    Params = KParams

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return min_k_plus_plus(signals.of("plain", target), self.params.k)


class TextRecall(TextAttack):
    name = "recall"
    summary = "ReCaLL: log-likelihood after a non-member prefix over that without it"
    paper = "Xie et al. 2024, ReCaLL: Membership Inference via Relative Conditional Log-Likelihoods"
    needs = TextNeeds(population=True, queries=("plain", "recall"))
    Params = RecallParams

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        return recall_score(signals.of("recall", target), signals.of("plain", target))


class TextLiRA(TextAttack):
    """LiRA (Carlini et al. 2022, Algorithm 1) on ``LL(x)``, the per-token mean
    log-likelihood, with the target's IN and OUT reference LMs
    (:func:`~mialens.attacks.text_scores.sequence_lira`)."""

    online: ClassVar[bool]
    Params = LiRAParams

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        refs = others(signals.num_models, target)
        return sequence_lira(
            signals.mean_ll[target],
            signals.mean_ll[refs],
            signals.member[refs],
            online=self.online,
            variance=self.params.variance,
        )


class TextLiRAOnline(TextLiRA):
    name = "lira_online"
    summary = "LiRA online: Gaussian likelihood ratio of LL(x) under IN and OUT LMs"
    paper = "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P)"
    needs = TextNeeds(references="online")
    online = True


class TextLiRAOffline(TextLiRA):
    name = "lira_offline"
    summary = "LiRA offline: one-sided test of LL(x) against the OUT LMs"
    paper = "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P)"
    needs = TextNeeds(references="offline")
    online = False


def sequence_rmia(
    target_ll: np.ndarray,
    ref_ll: np.ndarray,
    ref_in: np.ndarray,
    target_population_ll: np.ndarray,
    ref_population_ll: np.ndarray,
    online: bool = True,
    gamma: float = 2.0,
    a: float | Literal["auto"] = "auto",
) -> np.ndarray:
    """RMIA (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks",
    ICML, Eq. 3-4) on sequences: ``Pr(x | theta) = exp(LL(x))``, the geometric mean of
    the target's token probabilities, ``Pr(x)`` its average over the reference LMs
    (online: the mean of the IN and OUT means; offline: ``((1 + a) Pr_OUT(x) + (1 -
    a)) / 2``, App. B.2), and the score the fraction of population samples ``z`` with
    ``[Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)] >= gamma`` (ties broken by the
    ratio): exactly :class:`~mialens.attacks.rmia.RMIAOnline` /
    :class:`~mialens.attacks.rmia.RMIAOffline` on one query of that probability.

    The per-token mean, not the sequence probability ``exp(L LL(x))``, because the latter
    falls exponentially with the length ``L``: a ratio of it between two LMs multiplies
    per-token differences by ``L``, so long texts would dominate the pairwise test
    against the population whatever their membership, and long texts underflow float64.
    """
    target, refs = np.asarray(target_ll, np.float64), np.asarray(ref_ll, np.float64)
    pop, ref_pop = np.asarray(target_population_ll, np.float64), np.asarray(ref_population_ll)
    if refs.shape != (len(ref_in), len(target)) or ref_pop.shape != (len(refs), len(pop)):
        raise DataError(
            f"ref_ll must be (R, n) and ref_population_ll (R, Z); got {refs.shape}, "
            f"{ref_pop.shape} for n = {len(target)}, Z = {len(pop)}"
        )
    attack = RMIAOnline(gamma=gamma) if online else RMIAOffline(gamma=gamma, a=a)
    labels, pop_labels = np.zeros(len(target), np.int64), np.zeros(len(pop), np.int64)
    attack.fit(
        ReferenceSignals(
            values=np.exp(refs)[:, :, None],
            member=np.asarray(ref_in, dtype=bool),
            labels=labels,
            population=np.exp(ref_pop)[:, :, None],
            population_labels=pop_labels,
        )
    )
    return attack.score(
        TargetSignals(np.exp(target)[:, None], labels, np.exp(pop)[:, None], pop_labels)
    )


class TextRMIA(TextAttack):
    """RMIA on the per-token mean log-likelihood (:func:`sequence_rmia`), population
    samples ``z`` from the audit's population (texts that trained no LM)."""

    online: ClassVar[bool]
    Params = RMIAParams

    def score(self, signals: TextSignals, target: int) -> np.ndarray:
        refs = others(signals.num_models, target)
        return sequence_rmia(
            signals.mean_ll[target],
            signals.mean_ll[refs],
            signals.member[refs],
            signals.population_ll[target],
            signals.population_ll[refs],
            online=self.online,
            gamma=self.params.gamma,
            a=getattr(self.params, "a", "auto"),
        )


class TextRMIAOnline(TextRMIA):
    name = "rmia_online"
    summary = "RMIA online: pairwise likelihood ratios against population texts"
    paper = "Zarifzadeh et al. 2024, Low-Cost High-Power Membership Inference Attacks (ICML)"
    needs = TextNeeds(references="online", population=True)
    online = True


class TextRMIAOffline(TextRMIA):
    name = "rmia_offline"
    summary = "RMIA offline: pairwise likelihood ratios, OUT references only"
    paper = "Zarifzadeh et al. 2024, Low-Cost High-Power Membership Inference Attacks (ICML)"
    needs = TextNeeds(references="offline", population=True)
    Params = RMIAOfflineParams
    online = False


TEXT_ATTACKS: dict[str, type[TextAttack]] = {
    cls.name: cls
    for cls in (
        TextLoss,
        TextZlib,
        TextLowercase,
        TextReference,
        TextMinK,
        TextMinKPlusPlus,
        TextRecall,
        TextLiRAOnline,
        TextLiRAOffline,
        TextRMIAOnline,
        TextRMIAOffline,
    )
}
DEFAULT_TEXT_ATTACKS: tuple[str, ...] = tuple(TEXT_ATTACKS)
"""Every text attack: a text audit runs all of them unless told otherwise."""


def build_text_attack(spec: str | dict[str, Any]) -> TextAttack:
    """A text attack from a name or a mapping ``{name: ..., **params}``; a classifier
    attack's name is refused with the list of text attacks."""
    if isinstance(spec, dict) and "name" in spec:
        name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    elif isinstance(spec, str):
        name, params = spec, {}
    else:
        raise ConfigError(f"an attack is a name or a mapping with a 'name' key; got {spec!r}")
    if name not in TEXT_ATTACKS:
        from mialens.attacks.registry import ATTACKS  # only to say why a name is refused

        if name in ATTACKS:
            raise ConfigError(
                f"attack {name!r} scores classifiers (their logits on class labels), not "
                f"language models; a text audit runs the text attacks: {', '.join(TEXT_ATTACKS)}"
            )
        raise unknown_name("text attack", str(name), list(TEXT_ATTACKS))
    return TEXT_ATTACKS[name](**params)


def score_text_attacks(
    attacks: list[TextAttack], signals: TextSignals, on_step: Callable[[], None] | None = None
) -> dict[str, np.ndarray]:
    """Scores ``(M, n)`` of every attack: row ``t`` attacks LM ``t`` with every other LM
    as its references (leave-one-out)."""
    scores = {}
    for attack in attacks:
        rows = []
        for target in range(signals.num_models):
            rows.append(attack.score(signals, target))
            if on_step is not None:
                on_step()
        scores[attack.name] = np.stack(rows)
    return scores
