"""Name -> (component class, typed config) lookup shared by attacks, tuning strategies and defenses.

Registering is one decorator on the component class; building is one call. No `if name == ...`
chains anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from poisonlab.errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    component: type
    config_class: type[BaseModel]

    @property
    def summary(self) -> str:
        doc = (self.component.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """A registry of one kind of component ("attack", "tuning strategy", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config_class: type[BaseModel]) -> Callable[[type[T]], type[T]]:
        def decorate(component: type[T]) -> type[T]:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(name, component, config_class)
            component.name = name  # type: ignore[attr-defined]
            component.config_class = config_class  # type: ignore[attr-defined]
            return component
        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'; valid: {', '.join(self.names())}")
        return self._entries[name]

    def make_config(self, name: str, values: dict[str, Any] | BaseModel | None = None,
                    *, where: str = "") -> BaseModel:
        config_class = self.entry(name).config_class
        if isinstance(values, config_class):
            return values
        return validate_config(config_class, dict(values or {}),
                               where=where or f"{self.kind} '{name}'")

    def build(self, name: str, values: dict[str, Any] | BaseModel | None = None,
              *, where: str = "") -> T:
        config = self.make_config(name, values, where=where)
        return self.entry(name).component(config)


def validate_config(config_class: type[BaseModel], values: dict[str, Any], *, where: str) -> Any:
    """Validate `values`, turning pydantic's error into one line that names the field."""
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(config)"
            if err["type"] == "extra_forbidden":
                valid = ", ".join(config_class.model_fields)
                problems.append(f"unknown field '{field}' (valid: {valid})")
            else:
                problems.append(f"field '{field}': {err['msg']}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None
