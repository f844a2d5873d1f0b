"""The configuration of the workflows: one validated document from YAML, overrides and
defaults, composing every layer's section model."""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mialens.analysis.settings import AnalysisSettings
from mialens.audit.settings import AuditSpec, check_device
from mialens.data.registry import DatasetConfig
from mialens.defenses.config import DefenseSettings
from mialens.errors import ConfigError
from mialens.models.model_config import ModelConfig
from mialens.models.recipe import TrainConfig

CanaryKind = Literal["mislabeled", "ood", "crafted", "dirac"]
GRADIENT_CANARIES = ("dirac",)
DPMethod = Literal["one_run", "one_run_fdp", "many_run", "gaussian_dp"]


def _default_grid() -> list[tuple[float, float]]:
    """The DP audit's default selection grid (its modules load scipy.stats when asked)."""
    from mialens.dp.selection import DEFAULT_GRID

    return list(DEFAULT_GRID)


class GuessSelection(BaseModel):
    """How the one-run audits choose k+, k- and the score (:mod:`mialens.dp.selection`)."""

    model_config = ConfigDict(extra="forbid")

    rule: Literal["fixed", "bonferroni", "split", "simulated"] = Field(
        default="bonferroni",
        description="fixed: k_plus, k_minus and score given here; bonferroni: the best of "
        "grid x scores, each at beta / their number; split: chosen on a seeded share of the "
        "canaries, audited on the rest; simulated (dirac): k+ = k- best on simulated ideal "
        "canaries of the run's q, steps and noise, so fixed before the scores are seen",
    )
    k_plus: int | None = Field(default=None, ge=0, description="fixed: IN guesses (top scores)")
    k_minus: int | None = Field(
        default=None, ge=0, description="fixed: OUT guesses (bottom scores)"
    )
    score: str | None = Field(default=None, description="fixed: the score (default: the first)")
    grid: list[tuple[float, float]] = Field(
        default_factory=_default_grid,
        description="bonferroni, split: [k+ share, k- share] pairs of the canaries",
    )
    share: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="split: the share of canaries that chooses"
    )

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: list[tuple[float, float]]) -> list[tuple[float, float]]:
        from mialens.dp.selection import check_grid

        return check_grid(grid)

    @model_validator(mode="after")
    def _fixed_needs_k(self) -> GuessSelection:
        if self.rule == "fixed" and (self.k_plus is None or self.k_minus is None):
            raise ValueError("rule fixed needs k_plus and k_minus (the guesses, set in advance)")
        if self.rule == "fixed" and self.k_plus + self.k_minus == 0:
            raise ValueError("rule fixed needs k_plus + k_minus >= 1")
        return self


class DPAuditSettings(BaseModel):
    """The `dp_audit:` section: canaries included independently with probability 1/2, the
    scores, and the bounds computed from them (mialens dp-audit; for mialens defend, the
    audit of every DP-SGD defence)."""

    model_config = ConfigDict(extra="forbid")

    kind: CanaryKind = Field(
        default="dirac",
        description="mislabeled, ood, crafted: input canaries; dirac: gradient canaries on "
        "one coordinate, inserted into DP-SGD's clipped-gradient sum",
    )
    count: int = Field(default=1000, ge=2, description="canaries m")
    seed: int = Field(default=0, ge=0, description="canaries, inclusion bits and training")
    view: Literal["final", "all_steps"] = Field(
        default="final", description="what the auditor sees (all_steps: dirac only)"
    )
    references: int = Field(
        default=0,
        ge=0,
        description="input canaries: reference models on their own independent inclusions "
        "(for the lira and rmia scores)",
    )
    scores: list[str] | None = Field(
        default=None, description="canary scores to use (default: every score of the kind)"
    )
    methods: list[DPMethod] = Field(
        default_factory=lambda: ["one_run", "one_run_fdp"],
        description="one_run (Steinke et al. 2023), one_run_fdp (Mahloujifar et al. 2024), "
        "many_run (Clopper-Pearson over runs), gaussian_dp (an estimate, all_steps only)",
    )
    runs: int = Field(
        default=1,
        ge=1,
        description="training runs (many_run needs >= 2: half choose the threshold, one "
        "canary of each other run is a trial)",
    )
    beta: float = Field(default=0.05, gt=0.0, lt=1.0, description="1 - confidence of the bounds")
    delta: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="the audited delta (default: train.dp.delta)"
    )
    selection: GuessSelection = Field(default_factory=GuessSelection)
    device: str = Field(default="cpu", description="torch device for training and scoring")
    cache_dir: Path | None = Field(
        default=None, description="model cache (default: $MIALENS_CACHE_DIR or ~/.cache/mialens)"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return check_device(device)

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        if not methods or len(set(methods)) != len(methods):
            raise ValueError("list each method once, at least one")
        return methods

    @model_validator(mode="after")
    def _consistent(self) -> DPAuditSettings:
        if self.view == "all_steps" and self.kind not in GRADIENT_CANARIES:
            raise ValueError(
                f"view all_steps sees every update, which only gradient canaries "
                f"({', '.join(GRADIENT_CANARIES)}) use; kind {self.kind!r} needs view final"
            )
        if "gaussian_dp" in self.methods and self.view != "all_steps":
            raise ValueError(
                "gaussian_dp (Nasr et al. 2023) reads a white-box audit of every step as "
                "Gaussian DP: it needs view all_steps (and kind dirac)"
            )
        if "many_run" in self.methods and self.runs < 2:
            raise ValueError(
                "many_run needs runs >= 2 (its threshold is chosen on other runs than the "
                "audited ones)"
            )
        rule = self.selection
        if rule.rule == "fixed" and rule.k_plus + rule.k_minus > self.count:
            raise ValueError(
                f"selection: k_plus + k_minus = {rule.k_plus + rule.k_minus} guesses exceed "
                f"the {self.count} canaries"
            )
        if rule.rule == "simulated" and self.kind not in GRADIENT_CANARIES:
            raise ValueError(
                "selection rule simulated picks k on simulated Dirac canaries: it needs kind "
                "dirac (use bonferroni or split for input canaries)"
            )
        if self.references and self.kind in GRADIENT_CANARIES:
            raise ValueError("references score input canaries; gradient canaries need none")
        return self

    def check_recipe(self, train: TrainConfig, where: str = "train") -> float:
        """The audited delta, after checking that ``train`` is a DP-SGD recipe these canaries
        can audit; a ValueError says what does not fit."""
        from mialens.audit.dp_game import available_scores  # these load PyTorch
        from mialens.dp.gradient_canaries import check_recipe as check_gradient_recipe

        if train.dp is None:
            raise ValueError(
                f"{where}.dp is missing: the DP audit checks a DP-SGD training (give "
                "train.dp with noise_multiplier or target_epsilon)"
            )
        if train.early_stopping is not None:
            raise ValueError(
                f"{where}.early_stopping: the DP audit trains for the planned epochs (the "
                "accountant's steps); remove it"
            )
        if self.kind in GRADIENT_CANARIES:
            try:
                check_gradient_recipe(train, self.view)  # plain SGD for the final-model score
            except ConfigError as exc:
                raise ValueError(f"{where} ({self.kind} canaries): {exc}") from None
        if self.references % 2:
            raise ValueError(
                f"references come in complementary pairs: give an even number, got "
                f"{self.references}"
            )
        available = available_scores(self.kind, self.view, self.references, train)
        unknown = [n for n in self.scores or () if n not in available]
        if unknown or self.scores == []:
            raise ValueError(
                f"dp_audit.scores {unknown or []} are not available for {self.kind} canaries "
                f"with view {self.view} and {self.references} references; available: "
                f"{', '.join(available)}"
            )
        chosen = self.selection.score
        if chosen is not None and chosen not in (self.scores or available):
            raise ValueError(
                f"dp_audit.selection.score {chosen!r} is not among the scores used: "
                f"{', '.join(self.scores or available)}"
            )
        delta = train.dp.delta if self.delta is None else self.delta
        if delta != train.dp.delta:
            raise ValueError(
                f"dp_audit.delta = {self.delta:g} differs from {where}.dp.delta = "
                f"{train.dp.delta:g}: the bound would not be comparable with the "
                "accountant's epsilon; omit dp_audit.delta to use the accountant's"
            )
        if "one_run" in self.methods and 2 * self.count * delta > 1:
            raise ValueError(
                f"one_run needs 2 * m * delta <= 1 (Steinke et al. 2023, Theorem 3), but "
                f"2 * {self.count} * {delta:g} = {2 * self.count * delta:g}: use fewer "
                "canaries or a smaller delta"
            )
        return delta


class DPAuditConfig(BaseModel):
    """A DP audit (mialens dp-audit): the data, the architecture, the DP-SGD training
    recipe and the `dp_audit:` section."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    dp_audit: DPAuditSettings = Field(default_factory=DPAuditSettings)

    @model_validator(mode="after")
    def _recipe_fits(self) -> DPAuditConfig:
        self.dp_audit.check_recipe(self.train)
        return self

    @property
    def delta(self) -> float:
        """The audited delta: the accountant's (train.dp.delta)."""
        return self.train.dp.delta


def merge_overrides(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``update`` merged in, section by section."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class AuditConfig(AuditSpec):
    """A complete audit: the :class:`~mialens.audit.settings.AuditSpec` (data,
    architecture, training recipe, design, executor), the defences to evaluate and the
    analysis."""

    defenses: DefenseSettings | None = Field(
        default=None,
        description="defences to evaluate as privacy-utility points (mialens defend)",
    )
    analysis: AnalysisSettings | None = Field(
        default=None,
        description="explain the leakage after the audit (written to OUT/analysis; {} for "
        "the defaults)",
    )
    dp_audit: DPAuditSettings | None = Field(
        default=None,
        description="mialens defend: audit every DP-SGD defence with independently included "
        "canaries (its real one-run bounds in defenses.json)",
    )

    @model_validator(mode="after")
    def _dp_audit_fits(self) -> AuditConfig:
        if self.dp_audit is None:
            return self
        if self.defenses is None:
            raise ValueError("dp_audit audits DP-SGD defences: it needs a defenses: section")
        base = self.train.model_dump(mode="json")
        recipes = [("undefended", {})] if self.defenses.include_undefended else []
        recipes += [(spec.name, spec.train) for spec in self.defenses.evaluate]
        for name, overrides in recipes:
            train = TrainConfig.model_validate(merge_overrides(base, overrides))
            if train.dp is not None:
                self.dp_audit.check_recipe(train, f"defence {name!r}: train")
        return self
        if self.defenses is None:
            raise ValueError("dp_audit audits DP-SGD defences: it needs a defenses: section")
        for spec in self.defenses.evaluate:
            dp = spec.train.get("dp")
            if dp is not None:
                train = TrainConfig.model_validate({**self.train.model_dump(), **spec.train})
                self.dp_audit.check_recipe(train, f"defence {spec.name!r}: train")
        return self

    @model_validator(mode="after")
    def _analysis_fits(self) -> AuditConfig:
        if self.analysis is None:
            return self
        if self.audit.num_models < 4:
            raise ValueError(
                "analysis needs audit.num_models >= 4 (every sample IN and OUT for at least "
                "two models)"
            )
        names = self.audit.attack_names
        if self.analysis.attack is not None and self.analysis.attack not in names:
            raise ValueError(
                f"analysis.attack {self.analysis.attack!r} is not among audit.attacks "
                f"({', '.join(names)})"
            )
        if self.model.kind == "estimator":
            self._analysis_of_estimators()
        if self.analysis.epoch_models > self.audit.num_models:
            raise ValueError(
                f"analysis.epoch_models ({self.analysis.epoch_models}) exceeds "
                f"audit.num_models ({self.audit.num_models})"
            )
        return self

    def _analysis_of_estimators(self) -> None:
        """An estimator has no penultimate layer and no epochs: the feature space is
        left out of the default spaces (refused when listed), epoch models refused."""
        analysis = self.analysis
        if analysis.epoch_models:
            raise ValueError(
                "analysis.epoch_models retrains PyTorch models epoch by epoch; a "
                "model.estimator has no epochs: set it to 0"
            )
        if "features" not in analysis.spaces:
            return
        if "spaces" in analysis.model_fields_set:
            raise ValueError(
                "analysis.spaces 'features' needs a network's penultimate layer, which a "
                "model.estimator has not; list input and logits only"
            )
        spaces = [s for s in analysis.spaces if s != "features"]
        self.analysis = analysis.model_copy(update={"spaces": spaces})


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe YAML loader, refusing a key given twice in one mapping (PyYAML would keep
    the last value silently; YAML 1.2 requires unique keys)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<` keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise _DuplicateKeyError(
                        f"key {key!r} is given twice in one mapping (line {first_line[key]} "
                        f"and line {line}); keep one of them"
                    )
            except TypeError:  # an unhashable key: the base class reports it
                break
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely (no Python objects), refusing duplicate keys; ``source``
    names the text in error messages."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except _DuplicateKeyError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The parsed YAML file ``path`` (a ``what``: configuration, study), with clear errors
    for a missing, unreadable or non-UTF-8 file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read {what} {path}: not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start : exc.start + 1]!r}); save it as UTF-8"
        ) from None
    return parse_yaml(text, str(path))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides on dotted paths; values are parsed as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {item!r} must look like KEY=VALUE, e.g. audit.num_models=8"
            )
        value = parse_yaml(text, f"the value of override {item!r}") if text.strip() else None
        node = raw
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return raw


def format_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _section(model, err["loc"][:-1])
            known = sorted(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = f"; valid keys here: {', '.join(known)}" if known else ""
            lines.append(f"  {path}: unknown key{hint}{valid}")
        else:
            lines.append(f"  {path}: {err['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _section(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` inside ``model``, if it is one."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return None
    return current


def _what(model: type[BaseModel]) -> str:
    return "a DP audit" if model is DPAuditConfig else "an audit"


def _text_audit(raw: dict[str, Any]) -> bool:
    """Whether ``raw`` audits a registered text data set (a language-model audit)."""
    from mialens.data.catalog import registered

    dataset = raw.get("dataset")
    info = registered().get(dataset.get("name")) if isinstance(dataset, dict) else None
    return info is not None and info.modality == "text"


def validate_config(raw: dict[str, Any], model: type[BaseModel] = AuditConfig) -> Any:
    """Validate a raw mapping as ``model`` (an audit by default); every problem is reported
    with its dotted path. An audit of a text data set is validated as a
    :class:`~mialens.audit.text_settings.TextAuditSpec` (a language-model audit)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{_what(model)} configuration is a mapping; got {type(raw).__name__}")
    what = ""
    if model is AuditConfig and _text_audit(raw):
        from mialens.audit.text_settings import TextAuditSpec

        model, what = (
            TextAuditSpec,
            f" (dataset {raw['dataset']['name']!r} holds text: an LM audit)",
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration{what}:\n{format_errors(exc, model)}") from None


def load_config(
    path: str | os.PathLike | None,
    overrides: list[str] = (),
    model: type[BaseModel] = AuditConfig,
) -> Any:
    """Read a YAML file (or start empty), apply overrides and validate as ``model``."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path, "configuration") or {}
        if not isinstance(raw, dict):  # checked before overrides are applied to it
            raise ConfigError(
                f"{path}: {_what(model)} configuration is a mapping; got {type(raw).__name__}"
            )
    return validate_config(apply_overrides(raw, list(overrides)), model)
