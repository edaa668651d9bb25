"""Experiment configs: one dataclass drives the CLI flags, the notebook form and the stored config.

Declare each field with :func:`param` (default, help text, bounds or choices). Values from
any front end go through :func:`make_config`, which coerces strings, checks types, bounds
and choices, then calls the dataclass's optional ``check()`` for rules that tie fields
together. Every failure is a :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SCALAR_TYPES = (bool, int, float, str)


class ConfigError(ValueError):
    """A config value is wrong; ``field`` names it and the message says what was expected."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def param(
    default: Any,
    *,
    help: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    log: bool = False,
) -> Any:
    """A config field: ``default``, a one-line ``help``, inclusive (ge/le) or strict (gt/lt) bounds.

    ``log=True`` asks forms for a logarithmic slider. Choices come from a ``Literal[...]`` annotation.
    """
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    return dataclasses.field(default=default, metadata={"help": help, "log": log, **bounds})


@dataclass(frozen=True)
class FieldSpec:
    """A config field as front ends see it."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    log: bool = False

    @property
    def lower(self) -> float | None:
        return self.ge if self.ge is not None else self.gt

    @property
    def upper(self) -> float | None:
        return self.le if self.le is not None else self.lt

    def describe_range(self) -> str:
        parts = []
        if self.ge is not None:
            parts.append(f">= {self.ge}")
        if self.gt is not None:
            parts.append(f"> {self.gt}")
        if self.le is not None:
            parts.append(f"<= {self.le}")
        if self.lt is not None:
            parts.append(f"< {self.lt}")
        return " and ".join(parts)


def fields(config_cls: type) -> list[FieldSpec]:
    """The :class:`FieldSpec` of each field of a config dataclass, in declaration order."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls: expected a dataclass type, got {config_cls!r}")
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        hint, choices = hints[f.name], None
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            hint = type(choices[0])
        if hint not in SCALAR_TYPES:
            raise TypeError(f"{config_cls.__name__}.{f.name}: config fields must be bool, int, float, str or Literal")
        meta = f.metadata
        specs.append(
            FieldSpec(
                name=f.name,
                type=hint,
                default=f.default,
                help=meta.get("help", ""),
                choices=choices,
                ge=meta.get("ge"),
                gt=meta.get("gt"),
                le=meta.get("le"),
                lt=meta.get("lt"),
                log=meta.get("log", False),
            )
        )
    return specs


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Turn ``value`` (typed, or a string from a command line) into the field's type, checking its range."""
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[spec.type]
    if isinstance(value, str) and spec.type is not str:
        text = value.strip()
        try:
            if spec.type is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value = text.lower() in _TRUE
            elif spec.type is int:
                value = int(text)
            else:
                value = float(text)
        except ValueError:
            raise ConfigError(spec.name, f"expected {expected}, got {value!r}") from None
    if spec.type is bool:
        ok = isinstance(value, bool)
    elif spec.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(spec.name, f"expected {expected}, got {value!r}")
    if spec.type is float and not math.isfinite(value):
        raise ConfigError(spec.name, f"expected a finite number, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(spec.name, f"expected one of {', '.join(map(repr, spec.choices))}, got {value!r}")
    in_range = (
        (spec.ge is None or value >= spec.ge)
        and (spec.gt is None or value > spec.gt)
        and (spec.le is None or value <= spec.le)
        and (spec.lt is None or value < spec.lt)
    )
    if spec.type in (int, float) and not in_range:
        raise ConfigError(spec.name, f"expected a value {spec.describe_range()}, got {value!r}")
    return value


def make_config(config_cls: type, values: Mapping[str, Any] | None = None) -> Any:
    """Build a validated ``config_cls`` from defaults overridden by ``values`` (typed or strings)."""
    specs = {spec.name: spec for spec in fields(config_cls)}
    values = dict(values or {})
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(unknown[0], f"unknown field; {config_cls.__name__} has {', '.join(specs)}")
    kwargs = {name: coerce(spec, values.get(name, spec.default)) for name, spec in specs.items()}
    config = config_cls(**kwargs)
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def parse_assignments(config_cls: type, assignments: Iterable[str]) -> Any:
    """Build a config from command-line ``key=value`` strings."""
    values = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(assignment, "expected key=value")
        values[key.strip()] = value
    return make_config(config_cls, values)


def as_dict(config: Any) -> dict[str, Any]:
    """The config's field values, JSON-ready."""
    return dataclasses.asdict(config)
