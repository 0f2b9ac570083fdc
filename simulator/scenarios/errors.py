"""The one error a scenario or fault mistake comes out as, and the pieces its messages are made of.

The loader, the fault schema and the control API all report a user's mistake the same way:
``"{source}: {field}: {problem}"``, where ``field`` is a path such as ``faults[2].nth``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.jsonsafe import short_repr

CONTROL_API = "<control API>"

PathT = tuple[str | int, ...]


class ScenarioError(ValueError):
    """A scenario or fault is invalid. ``str()`` is ``"{source}: {field}: {problem}"``.

    ``line`` is the 1-based line in the YAML file when it is known (files loaded with
    :func:`~simulator.scenarios.loader.load_scenario`), else ``None``.
    """

    def __init__(self, source: str, field: str, problem: str, *, line: int | None = None,
                 path: PathT = ()) -> None:
        super().__init__(f"{source}: {field}: {problem}")
        self.source = source
        self.field = field
        self.problem = problem
        self.line = line
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, e.g. across Locust worker processes
        return (type(self), (self.source, self.field, self.problem), {"line": self.line, "path": self.path})


class Invalid(Exception):
    """Raised deep in the parsers; the public functions add the source and the field's name."""

    def __init__(self, path: PathT, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def field_name(prefix: str, path: PathT) -> str:
    """``("faults", 2, "nth")`` → ``faults[2].nth`` (after ``prefix``)."""
    text = prefix
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else part
    return text or "(top level)"


def wrap(source: str, prefix: str, call: Callable[[], Any]) -> Any:
    """Run a parser; turn its :class:`Invalid` into a :class:`ScenarioError` naming ``source``."""
    try:
        return call()
    except Invalid as bad:
        raise ScenarioError(source, field_name(prefix, bad.path), bad.problem, path=bad.path) from None
    except RecursionError:
        raise ScenarioError(source, prefix or "(top level)", "nested too deeply") from None


def show(value: Any) -> str:
    """A short, always-printable picture of a user's value for an error message."""
    # short_repr never builds the whole repr: a value made of YAML aliases, or a huge int, is cut
    # while it is rendered, not after.
    text = short_repr(value, 200)
    return text if len(text) <= 60 else text[:57] + "..."


def type_name(value: Any) -> str:
    """``"an integer"``, ``"a mapping"``, ... as YAML and JSON users call their values."""
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
             str: "a string", list: "a list", dict: "a mapping"}
    return names.get(type(value), f"a {type(value).__name__}")
