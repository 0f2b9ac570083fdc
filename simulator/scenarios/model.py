"""Scenarios as plain values: what each task does (scripts), which script a task gets (rules),
and the faults of a run.

Nothing here reads files or validates; :mod:`simulator.scenarios.loader` builds these values from
YAML and guarantees their invariants (see its docstring for the schema). Every value can be turned
back into the mapping it was parsed from with ``to_dict()``, so ``parse_scenario(s.to_dict())``
gives back ``s``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from simulator.tasks.model import TaskRequest, TaskStatus

# The statuses a script may end with; "cancelled" only ever comes from the client.
SCRIPT_TERMINALS: tuple[TaskStatus, ...] = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMEDOUT)

MATCH_KEYS: tuple[str, ...] = ("prompt_contains", "model", "kind", "header")


@dataclass(frozen=True)
class Step:
    """One step of a script: wait ``after`` seconds (from the previous step), then either report
    ``progress`` or end the task with ``status``.

    A ``completed`` step without ``result`` gets its result from the payload builder.
    """

    after: float
    progress: int | None = None
    status: TaskStatus | None = None
    message: str | None = None
    result: dict | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"after": self.after}
        if self.status is None:
            out["progress"] = self.progress
            if self.message is not None:
                out["message"] = self.message
        else:
            out["status"] = self.status.value
            if self.result is not None:
                out["result"] = self.result
            if self.error is not None:
                out["error"] = self.error
        return out


@dataclass(frozen=True)
class TaskScript:
    """A named sequence of steps; the last one, and only the last one, is terminal."""

    name: str
    steps: tuple[Step, ...]

    @property
    def duration(self) -> float:
        """Seconds from the task's creation to its terminal step (before any time scale)."""
        return sum(step.after for step in self.steps)

    @property
    def outcome(self) -> TaskStatus:
        status = self.steps[-1].status
        assert status is not None
        return status

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}


@dataclass(frozen=True)
class Rule:
    """Picks a script for the tasks it matches: ``script`` outright, or one of ``weights`` at random.

    Every match field that is set must match; a rule with no match field matches every task.
    ``headers`` names are lower-case (as in :class:`TaskRequest`); values compare exactly.
    """

    script: str | None = None
    weights: dict[str, float] | None = None
    prompt_contains: str | None = None
    model: str | None = None
    kind: str | None = None
    headers: dict[str, str] | None = None

    @property
    def catch_all(self) -> bool:
        return (self.prompt_contains is None and self.model is None and self.kind is None
                and not self.headers)

    def matches(self, request: TaskRequest) -> bool:
        if self.prompt_contains is not None and \
                self.prompt_contains.casefold() not in request.prompt.casefold():
            return False
        if self.model is not None and request.model != self.model:
            return False
        if self.kind is not None and request.kind != self.kind:
            return False
        return all(request.header(name) == value for name, value in (self.headers or {}).items())

    def pick(self, rng: random.Random) -> str:
        """The script name this rule gives a matching task (draws from ``rng`` for weights)."""
        if self.script is not None:
            return self.script
        assert self.weights
        names = sorted(self.weights)  # sorted: the same seed picks the same script whatever the file order
        total = sum(self.weights[name] for name in names)
        point = rng.random() * total
        for name in names:
            point -= self.weights[name]
            if point < 0:
                return name
        return names[-1]  # float rounding left a sliver at the top

    def to_dict(self) -> dict[str, Any]:
        match: dict[str, Any] = {}
        if self.prompt_contains is not None:
            match["prompt_contains"] = self.prompt_contains
        if self.model is not None:
            match["model"] = self.model
        if self.kind is not None:
            match["kind"] = self.kind
        if self.headers:
            match["header"] = dict(self.headers)
        out: dict[str, Any] = {"match": match} if match else {}
        if self.script is not None:
            out["script"] = self.script
        else:
            out["weights"] = dict(self.weights or {})
        return out


@dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault. ``at`` is seconds after the run starts (``None``: armed at start).

    ``params`` holds every parameter of the kind, defaults filled in, absent optional ones as
    ``None`` (so ``params["key"]`` always works).
    """

    kind: str
    at: float | None
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, **self.params}

    to_dict = to_json


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    scripts: dict[str, TaskScript]
    rules: tuple[Rule, ...]
    default: str
    faults: tuple[FaultSpec, ...]
    source: str

    def choose_script(self, request: TaskRequest, rng: random.Random) -> TaskScript:
        """The first matching rule decides; no match gives the default script.

        ``rng`` is drawn from only when a weights rule decides, so pass each task its own RNG
        (``PayloadFactory.for_task(i).rng``) to make a seeded run reproducible.
        """
        for rule in self.rules:
            if rule.matches(request):
                return self.scripts[rule.pick(rng)]
        return self.scripts[self.default]

    def to_dict(self) -> dict[str, Any]:
        """The mapping this scenario parses from (durations in seconds)."""
        return {
            "name": self.name,
            "description": self.description,
            "scripts": {name: script.to_dict() for name, script in self.scripts.items()},
            "rules": [rule.to_dict() for rule in self.rules],
            "default": self.default,
            "faults": [fault.to_json() for fault in self.faults],
        }
