"""Name -> (component class, typed config) lookup shared by attacks, tuning strategies and defenses,
and the one typed config field that names a registered component.

Registering is one decorator on the component class; a registry imports its package's modules on
its first lookup, so nothing has to "load" components first. In a config, a component is written
`{name: <registered name>, <field>: <value>, ...}` (or just its name); `component_field(registry)`
parses that into a `ComponentSpec` holding the component's validated typed config when the YAML
is loaded, and writes it back the same way. No `if name == ...` chains anywhere else."""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Generic, TypeVar

from pydantic import BaseModel, PlainSerializer, PlainValidator, ValidationError

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
    """A registry of one kind of component ("attack", "tuning strategy", ...) whose components
    live in the modules of `package`."""

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, Entry] = {}
        self._filled = False

    def register(self, name: str, config_class: type[BaseModel]) -> Callable[[type[T]], type[T]]:
        def decorate(component: type[T]) -> type[T]:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Entry(name, component, config_class)
            component.name = name  # type: ignore[attr-defined]
            component.config_class = config_class  # type: ignore[attr-defined]
            return component
        return decorate

    def _fill(self) -> None:
        """Import every module of the package once, so every component has registered."""
        if self._filled:
            return
        self._filled = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._fill()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        self._fill()
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

    def spec(self, value: Any, default: Mapping[str, Any] | None = None) -> "ComponentSpec":
        """Parse `name` or `{name: ..., <field>: ...}` into a ComponentSpec; fields given
        without a name change `default` (e.g. `--set tuning.r=64`)."""
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, Mapping) and "name" not in value and default is not None:
            value = {**default, **value}
        if not isinstance(value, Mapping) or "name" not in value:
            raise ConfigError(f"a {self.kind} is written as its name or as {{name: <{self.kind}>, "
                              f"<field>: <value>, ...}} (valid names: {', '.join(self.names())})")
        params = {k: v for k, v in value.items() if k != "name"}
        return ComponentSpec(value["name"], self.make_config(value["name"], params), self)


@dataclass
class ComponentSpec:
    """A registered component chosen in a config: its name and its validated typed config."""

    name: str
    config: BaseModel
    registry: Registry = field(repr=False, compare=False)

    def build(self) -> Any:
        return self.registry.entry(self.name).component(self.config)

    def dump(self) -> dict[str, Any]:
        """`{name, <every field>}`: what a resolved config records, and validates again."""
        return {"name": self.name, **self.config.model_dump(mode="json")}


def component_field(registry: Registry, default: Mapping[str, Any] | None = None) -> Any:
    """The annotation of a config field that names a component of `registry`: parsed and
    validated when the config is loaded, serialised back as `{name, <fields>}`."""
    return Annotated[ComponentSpec,
                     PlainValidator(lambda value: registry.spec(value, default)),
                     PlainSerializer(lambda spec: spec.dump(), return_type=dict)]


def validate_config(config_class: type[BaseModel], values: dict[str, Any], *, where: str) -> Any:
    """Validate `values`, turning pydantic's error into one line that names the field."""
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(config)"
            if err["type"] == "extra_forbidden":
                section = _model_at(config_class, err["loc"][:-1]) or config_class
                valid = ", ".join(section.model_fields)
                problems.append(f"unknown field '{field}' (valid: {valid})")
            else:
                problems.append(f"field '{field}': {err['msg']}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def _model_at(config_class: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that validated the value at `loc` (e.g. ('training',) -> TrainingConfig), so an
    unknown key lists the fields of its own section; None when the path cannot be followed.

    Follows model fields, Optional/Union members (pydantic puts a member's class name in the loc
    of a union of models), list/tuple indices and dict keys."""
    candidates: list[Any] = [config_class]
    for part in loc:
        following: list[Any] = []
        for annotation in _members(candidates):
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                if part in annotation.model_fields:
                    following.append(annotation.model_fields[part].annotation)
                elif part == annotation.__name__:
                    following.append(annotation)
                continue
            origin = typing.get_origin(annotation)
            args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
            if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
                following.append(args[1])
            elif (isinstance(part, int) and isinstance(origin, type)
                  and issubclass(origin, Sequence) and args):
                following.extend(args)
        if not following:
            return None
        candidates = following
    models = [a for a in _members(candidates)
              if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if models else None


def _members(annotations: list[Any]) -> list[Any]:
    """Annotations with Optional/Union (also `A | B`) and Annotated unwrapped into their members."""
    members = []
    for annotation in annotations:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            members.extend(_members([typing.get_args(annotation)[0]]))
        elif origin is typing.Union or origin is types.UnionType:
            members.extend(_members(list(typing.get_args(annotation))))
        else:
            members.append(annotation)
    return members
