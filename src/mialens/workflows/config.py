"""The configuration of the workflows: one validated document from YAML, overrides and
defaults, composing every layer's section model."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from mialens.analysis.settings import AnalysisSettings
from mialens.audit.settings import AuditSpec
from mialens.defenses.config import DefenseSettings
from mialens.errors import ConfigError


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


def validate_config(raw: dict[str, Any]) -> AuditConfig:
    """Validate a raw mapping; every problem is reported with its dotted path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"an audit configuration is a mapping; got {type(raw).__name__}")
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration:\n{format_errors(exc, AuditConfig)}") from None


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> AuditConfig:
    """Read a YAML file (or start empty), apply overrides and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path, "configuration") or {}
        if not isinstance(raw, dict):  # checked before overrides are applied to it
            raise ConfigError(
                f"{path}: an audit configuration is a mapping; got {type(raw).__name__}"
            )
    return validate_config(apply_overrides(raw, list(overrides)))
