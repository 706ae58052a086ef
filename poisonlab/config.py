"""Typed-config base class and safe YAML reading."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Sequence, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict

from poisonlab.errors import ConfigError


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,@-]*")


def check_run_name(name: str, where: str = "name") -> str:
    """`name` if it is one safe path component (so a run can never be written outside its
    output folder); otherwise a ConfigError naming the field."""
    if not isinstance(name, str) or len(name) > 200 or not _SAFE_NAME.fullmatch(name):
        raise ConfigError(f"field '{where}': {name!r} is not a safe run name: use one folder "
                          "name of letters, digits and . _ - + = , @ (no '/', not starting "
                          "with '.'), at most 200 characters")
    return name


ConfigT = TypeVar("ConfigT", bound=BaseModel)
RunName = Annotated[str, AfterValidator(check_run_name)]
"""A config field that names a folder: one safe path component."""


class StrictConfig(BaseModel):
    """Base of every component config: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return data


def set_dotted(config: dict[str, Any], assignment: str) -> None:
    """Apply one `--set a.b=value` override (value parsed as YAML: numbers, lists, null)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got '{assignment}'")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    example = "(e.g. --set training.epochs=1)"
    if not key:
        raise ConfigError(f"--set '{assignment}': the key before '=' is empty {example}")
    parts = [part.strip() for part in key.split(".")]
    if not all(parts):
        raise ConfigError(f"--set '{assignment}': the key '{key}' has an empty part between "
                          f"dots {example}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if isinstance(child, str):  # a component written by its name: `tuning: lora`
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def load_config(config_class: type[ConfigT], path: str | Path | None = None,
                overrides: Sequence[str] = (), base: dict[str, Any] | None = None) -> ConfigT:
    """The one way a config is loaded: `base` values, then the YAML file, then `--set`
    overrides, validated against `config_class` (errors name the file and the field)."""
    from poisonlab.registry import validate_config
    raw = dict(base or {})
    if path is not None:
        raw.update(read_yaml(path))
    for assignment in overrides:
        set_dotted(raw, assignment)
    return validate_config(config_class, raw, where=str(path or config_class.__name__))


def deep_merge(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """`base` with `fragment` merged in; a mapping with a `name` (a component) replaces the
    whole section instead of merging into it."""
    merged = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "name" not in value:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Fields added to nested sections after run folders were written, with the default that every
# older run used: at that value they are not part of a run's identity (wherever they occur).
LATER_FIELDS: dict[str, Any] = {"group_by_length": False, "aggregation": "log-mean-prob",
                                "tokenization": "whole", "test_sampling": "random"}
# Fields that say where a run also reports, not what it computes: never part of its identity
# (wherever they occur), so turning a tracker on for a finished study reuses its cells.
REPORTING_FIELDS = ("report_to",)


def stable_identity(value: Any) -> Any:
    """A config dump without null fields, reporting fields and later fields at their default
    (`LATER_FIELDS`): what stays the same when poisonlab adds an optional field, so run folders
    and released models keep their identity (and names) across versions."""
    if isinstance(value, dict):
        return {k: stable_identity(v) for k, v in value.items() if v is not None
                and k not in REPORTING_FIELDS
                and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    return value
