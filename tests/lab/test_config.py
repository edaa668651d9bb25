"""Config dataclasses: one validation for CLI strings and typed values alike."""

from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.config import ConfigError, as_dict, fields, make_config, param, parse_assignments


@dataclass(frozen=True)
class Toy:
    steps: int = param(10, help="number of steps", ge=1, le=1000)
    beta: float = param(0.1, help="regularisation", gt=0.0, log=True)
    method: Literal["mp", "md"] = param("mp", help="algorithm")
    verbose: bool = param(False, help="talk")
    label: str = param("x", help="a name")

    def check(self):
        if self.method == "md" and self.steps > 100:
            raise ConfigError("steps", "method 'md' takes at most 100 steps")


def test_defaults_and_typed_values():
    assert as_dict(make_config(Toy)) == {"steps": 10, "beta": 0.1, "method": "mp", "verbose": False, "label": "x"}
    cfg = make_config(Toy, {"steps": 5, "beta": 2, "verbose": True})
    assert cfg.steps == 5 and cfg.beta == 2.0 and isinstance(cfg.beta, float) and cfg.verbose is True


def test_strings_from_a_command_line_are_coerced():
    cfg = parse_assignments(Toy, ["steps=7", "beta=1e-3", "method=md", "verbose=yes", "label= a b "])
    assert (cfg.steps, cfg.beta, cfg.method, cfg.verbose, cfg.label) == (7, 1e-3, "md", True, " a b ")


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({"steps": "ten"}, "steps", "expected an integer, got 'ten'"),
        ({"steps": 2.5}, "steps", "expected an integer"),
        ({"steps": True}, "steps", "expected an integer"),
        ({"steps": 0}, "steps", "expected a value >= 1 and <= 1000"),
        ({"beta": 0.0}, "beta", "> 0.0"),
        ({"beta": "nan"}, "beta", "finite"),
        ({"method": "sgd"}, "method", "expected one of 'mp', 'md'"),
        ({"verbose": "maybe"}, "verbose", "true or false"),
        ({"nope": 1}, "nope", "unknown field"),
        ({"method": "md", "steps": 500}, "steps", "at most 100"),
    ],
)
def test_bad_values_name_the_field(values, field, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        make_config(Toy, values)
    assert error.value.field == field and str(error.value).startswith(f"{field}: ")


def test_malformed_assignment():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_assignments(Toy, ["steps"])


def test_field_specs_describe_the_form():
    specs = {spec.name: spec for spec in fields(Toy)}
    assert specs["method"].choices == ("mp", "md") and specs["method"].type is str
    assert specs["beta"].log and specs["beta"].lower == 0.0 and specs["beta"].upper is None
    assert specs["steps"].describe_range() == ">= 1 and <= 1000"
    with pytest.raises(TypeError, match="config_cls"):
        fields(dict)


@given(st.integers())
def test_integer_bounds_hold_exactly(steps):
    if 1 <= steps <= 1000:
        assert make_config(Toy, {"steps": str(steps)}).steps == steps
    else:
        with pytest.raises(ConfigError, match="steps"):
            make_config(Toy, {"steps": str(steps)})
