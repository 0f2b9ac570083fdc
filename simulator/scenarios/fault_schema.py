"""The fault schema: one pydantic model per fault kind, and everything derived from them.

A fault reaches the simulator three ways — a scenario file's ``faults`` list, a ``POST`` to the
control API's ``/_sim/faults``, and ``Simulator.inject`` from Python — and all three are checked
by :func:`validate_fault` against the models below. The control API's OpenAPI document
(:func:`fault_json_schemas`), the table of parameters (:data:`FAULT_PARAMS`) and the
``--help`` text (:func:`fault_kinds_doc`) are read off the same models, so a parameter added here
is accepted, documented and described everywhere at once.

Errors keep the loader's form, ``{source}: {field path}: {problem}``: pydantic's errors are
translated (:func:`_problem`) rather than shown raw, so a user reads "count: must be at least 1,
not 0" whichever door the fault came through. ``at`` (when a scheduled fault is armed) is not a
parameter of any kind: a scenario schedules, the control API arms now, so it is read here but is
not part of the models or of the control API's schema.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from conduit_core.durations import DurationError, parse_duration
from simulator.scenarios.errors import Invalid, PathT, show, type_name
from simulator.scenarios.model import FaultSpec

# A scenario's durations: ms, s or m (hours are for load runs, not for a task's steps).
SCENARIO_UNITS = ("ms", "s", "m")
WEBHOOK_SLOW_DELAY = 5.0


def _problem_error(problem: str, field: str | None = None) -> PydanticCustomError:
    """An error whose message is ours, verbatim (the message goes in ``ctx``, not the template,
    so braces in a user's value are not read as placeholders)."""
    ctx: dict[str, Any] = {"problem": problem}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError("problem", "{problem}", ctx)


def scenario_duration(value: Any) -> float:
    """Seconds, from a number or a written duration (``250ms``, ``1.5s``, ``2m``); a scenario's
    durations everywhere (steps' ``after``, faults' ``at``, ``delay``, ``duration``)."""
    return parse_duration(value, units=SCENARIO_UNITS)


def _duration_field(value: Any) -> float:
    try:
        return scenario_duration(value)
    except DurationError as exc:
        raise _problem_error(str(exc)) from None


_DURATION_PATTERN = r"^\s*(([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m)\s*)+$"
Duration = Annotated[float, PlainValidator(_duration_field), WithJsonSchema({
    "description": "seconds, or a string with a unit: \"250ms\", \"1.5s\", \"2m\"",
    "oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION_PATTERN}]})]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise _problem_error("must not be empty")
    return text


_HUB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?:/[a-z0-9]+(?:-[a-z0-9]+)*)*", re.ASCII)


def _hub_path(text: str) -> str:
    """A hub path (``/hubs/image-generation``) or name (``image-generation``), as the path.

    Which hubs exist depends on the profile, so the server checks the name; this checks the shape.
    """
    name = text.removeprefix("/hubs/") if text.startswith("/hubs/") else text
    if not text.strip() or not _HUB.fullmatch(name):
        raise _problem_error(f"{show(text)} is not a hub: write /hubs/NAME or NAME, "
                             "e.g. /hubs/image-generation")
    return f"/hubs/{name}"


Key = Annotated[str | None, AfterValidator(lambda v: v if v is None else _not_blank(v)),
                Field(description="only this virtual key's connections / polls")]
Count = Annotated[int, Field(ge=1)]
Channel = Annotated[Literal["signalr", "webhook", "all"],
                    Field(description="which channel's events count and are affected")]


class _Fault(BaseModel):
    # strict: "503" is not 503 and true is not 1; forbid: a typo must not pass silently.
    model_config = ConfigDict(strict=True, extra="forbid")


class DropConnections(_Fault):
    """End SignalR connections now (abortive, clean close, or a Close message)."""

    kind: Literal["drop_connections"]
    mode: Literal["abort", "clean", "close", "close_reconnect"] = "abort"
    key: Key = None
    hub: Annotated[str | None, AfterValidator(lambda v: v if v is None else _hub_path(v)),
                   Field(description="/hubs/NAME or NAME; default: every hub")] = None


class RefuseReconnects(_Fault):
    """Refuse the next N connection attempts (negotiate answers 503, or the upgrade is refused)."""

    kind: Literal["refuse_reconnects"]
    count: Count
    how: Literal["negotiate_503", "upgrade_refused"] = "negotiate_503"
    key: Key = None


class StopPings(_Fault):
    """Stop keep-alive pings, for a while or until the faults are cleared."""

    kind: Literal["stop_pings"]
    duration: Annotated[Duration | None, Field(description="how long; absent: until cleared")] = None


class DelayEvent(_Fault):
    """Hold the Nth task event (counted from arming) back for a while."""

    kind: Literal["delay_event"]
    nth: Count
    delay: Duration
    channel: Channel = "signalr"


class DropEvent(_Fault):
    """Never send the Nth task event (counted from arming)."""

    kind: Literal["drop_event"]
    nth: Count
    channel: Channel = "signalr"


TaskId = Annotated[str | None, AfterValidator(lambda v: v if v is None else _not_blank(v)),
                   Field(description="only this task's events; default: every task's")]
Events = Annotated[Literal["any", "progress", "terminal"],
                   Field(description="which events count: any, progress only, or the terminal one")]


class DuplicateEvent(_Fault):
    """Send a SignalR event twice, back to back (as an at-least-once relay would): the Nth matching
    event counted from arming, or every matching event until the faults are cleared."""

    kind: Literal["duplicate_event"]
    nth: Annotated[int | None, Field(ge=1, description="only the Nth matching event, counted from "
                                                       "arming; absent: every matching event")] = None
    task_id: TaskId = None
    events: Events = "any"


class ReorderEvents(_Fault):
    """Hold a SignalR event back and send it after what follows it: right after the task's next
    SignalR event (``after: event``, two consecutive events swapped), or together with the answer
    to the task's next status poll (``after: poll``, so a terminal event reaches a client both by
    SignalR and by its catch-up poll). A task's terminal event has no next event: with
    ``after: event`` it is never held, only sent in its turn. Events the profile sends nothing
    for (conduit-2025.08: an unchanged image count, a timeout) are neither held nor overtake a
    held event; a task ending with nothing sent releases what is held, unswapped."""

    kind: Literal["reorder_events"]
    after: Annotated[Literal["event", "poll"],
                     Field(description="what the held event is sent after")] = "event"
    nth: Annotated[int, Field(ge=1, description="the first held event is the Nth matching one, "
                                                "counted from arming")] = 1
    count: Annotated[int, Field(ge=1, description="how many events to hold, one at a time per task")] = 1
    task_id: TaskId = None
    events: Events = "any"

    @model_validator(mode="after")
    def _terminal_needs_poll(self) -> ReorderEvents:
        if self.after == "event" and self.events == "terminal":
            raise _problem_error("a terminal event has no next event to be swapped with; "
                                 "write after: poll", field="events")
        return self


class PollErrors(_Fault):
    """Answer the next N status polls with an error status (and Retry-After)."""

    kind: Literal["poll_errors"]
    count: Count
    status: Literal[500, 502, 503, 429] = 503
    retry_after: Annotated[int | None, Field(ge=0, description="Retry-After seconds")] = None
    key: Key = None


class Webhook(_Fault):
    """Corrupt, repeat, reorder or slow webhook deliveries."""

    kind: Literal["webhook"]
    mode: Literal["bad_signature", "wrong_secret", "truncated_body", "duplicate", "out_of_order", "slow"]
    count: Count = 1
    nth: Annotated[int, Field(ge=1, description="first affected delivery, counted from arming")] = 1
    delay: Annotated[Duration | None,
                     Field(description=f"mode slow only; default {WEBHOOK_SLOW_DELAY:g} s")] = None

    @model_validator(mode="after")
    def _delay_only_when_slow(self) -> Webhook:
        if self.mode == "slow":
            if self.delay is None:
                self.delay = WEBHOOK_SLOW_DELAY
        elif self.delay is not None:
            raise _problem_error(f"only mode slow takes a delay (mode is {self.mode})", field="delay")
        return self


FaultModel = (DropConnections | RefuseReconnects | StopPings | DelayEvent | DropEvent | DuplicateEvent
              | ReorderEvents | PollErrors | Webhook)
# kind -> its model, in the order the kinds are documented.
FAULT_MODELS: dict[str, type[_Fault]] = {
    get_args(model.model_fields["kind"].annotation)[0]: model for model in get_args(FaultModel)}
FAULT_KINDS: tuple[str, ...] = tuple(FAULT_MODELS)


@dataclass(frozen=True)
class Param:
    """One parameter of a fault kind, as the models declare it."""

    required: bool
    default: Any = None


FAULT_PARAMS: dict[str, dict[str, Param]] = {
    kind: {name: Param(info.is_required(), None if info.is_required() else info.default)
           for name, info in model.model_fields.items() if name != "kind"}
    for kind, model in FAULT_MODELS.items()}


# ---------------------------------------------------------------------------------------------
# Validation, with pydantic's errors in our words


def _choices(model: type[_Fault], name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field allows, as written in the model."""
    return get_args(model.model_fields[name].annotation)


def _problem(error: ErrorDetails, model: type[_Fault], kind: str) -> tuple[PathT, str]:
    """The field path and our message for one pydantic error."""
    path: PathT = tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    kind_of = error["type"]
    if kind_of == "problem":
        return path + ((ctx["field"],) if "field" in ctx else ()), str(ctx["problem"])
    if kind_of == "missing":
        return path, f"required for a {kind} fault"
    if kind_of == "extra_forbidden":
        allowed = ("kind", "at", *FAULT_PARAMS[kind])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return path, f"unknown key for a {kind} fault; {hint}expected one of: {', '.join(allowed)}"
    if kind_of == "literal_error":
        listed = ", ".join(str(choice) for choice in _choices(model, str(path[0])))
        return path, f"must be one of {listed}, not {show(value)}"
    if kind_of == "int_type":
        return path, f"must be an integer, not {type_name(value)} {show(value)}"
    if kind_of == "string_type":
        return path, f"must be a string, not {type_name(value)} {show(value)}"
    if kind_of == "greater_than_equal":
        return path, f"must be at least {ctx['ge']}, not {show(value)}"
    return path, str(error["msg"])


def validate_fault(data: Any, path: PathT = ()) -> FaultSpec:
    """One fault from its mapping (kind, ``at``, parameters); raises :class:`Invalid`.

    An optional key given as ``null`` counts as absent.
    """
    if not isinstance(data, dict):
        raise Invalid(path, f"a fault must be a mapping with a kind, not {type_name(data)} {show(data)}")
    for key in data:
        if not isinstance(key, str):
            raise Invalid(path, f"keys must be strings, not {type_name(key)} {show(key)}")
    given = {key: value for key, value in data.items() if value is not None}
    kind = given.get("kind")
    if kind is None:
        raise Invalid(path + ("kind",), f"required; one of: {', '.join(FAULT_KINDS)}")
    if not isinstance(kind, str) or kind not in FAULT_MODELS:
        close = difflib.get_close_matches(kind, FAULT_KINDS, n=1) if isinstance(kind, str) else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise Invalid(path + ("kind",), f"unknown fault kind {show(kind)}; {hint}"
                                        f"expected one of: {', '.join(FAULT_KINDS)}")
    model = FAULT_MODELS[kind]
    at_value = given.pop("at", None)
    try:
        fault = model.model_validate(given)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # An unknown key first: a typo explains the "required" error it usually comes with.
        errors.sort(key=lambda error: error["type"] != "extra_forbidden")
        where, problem = _problem(errors[0], model, kind)
        raise Invalid(path + where, problem) from None
    at = None
    if at_value is not None:
        try:
            at = scenario_duration(at_value)
        except DurationError as exc:
            raise Invalid(path + ("at",), str(exc)) from None
    return FaultSpec(kind=kind, at=at, params=fault.model_dump(exclude={"kind"}))


# ---------------------------------------------------------------------------------------------
# Documents derived from the models


def fault_json_schemas() -> dict[str, dict[str, Any]]:
    """``Fault_{kind}`` → its JSON schema, plus ``Fault``: the union, discriminated on ``kind``."""
    schemas: dict[str, dict[str, Any]] = {}
    for kind, model in FAULT_MODELS.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema["properties"].values():
            prop.pop("title", None)
        schemas[f"Fault_{kind}"] = schema
    schemas["Fault"] = {
        "oneOf": [{"$ref": f"#/components/schemas/Fault_{kind}"} for kind in FAULT_KINDS],
        "discriminator": {"propertyName": "kind", "mapping": {
            kind: f"#/components/schemas/Fault_{kind}" for kind in FAULT_KINDS}}}
    return schemas


def fault_kinds_doc() -> str:
    """One line per fault kind with its parameters and defaults (for ``--help`` and the README)."""
    lines = []
    for kind, table in FAULT_PARAMS.items():
        params = []
        for name, param in table.items():
            params.append(f"{name} (required)" if param.required else
                          f"{name}={json.dumps(param.default)}" if param.default is not None else f"{name}?")
        lines.append(f"{kind}: {', '.join(params)}")
    return "\n".join(lines)
