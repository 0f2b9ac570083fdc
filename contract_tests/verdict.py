"""A rule's verdict, with the numbers that decided it, as data.

Every C-* and W-* check returns one :class:`Verdict`. What was expected, what was observed and
the tolerance used are :class:`Statement` objects: a sentence whose numbers are
:class:`Measure` values (a number and its unit) kept beside it, so the console, the JUnit file and
the HTML report read the same numbers (the report never parses prose) and the sentence cannot
disagree with them::

    Verdict("C-RETRY-AFTER", Outcome.judge(ok), "the next poll waited for Retry-After",
            expected=Statement("≥ {retry_after} after the 429", retry_after=in_ms(2.0)),
            observed=Statement("{gap}", gap=in_ms(2.013)), tolerance=tolerance.early_statement())

``to_json`` / ``from_json`` round-trip a verdict without loss (``verdicts.json``); ``from_json``
also reads the files of the first format (``passed``, texts, a ``numbers`` dict).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Number = int | float
SECONDS_PER = {"ms": 0.001, "s": 1.0}
_NO_SPACE = frozenset({"%"})  # units written right after the number


class Outcome(StrEnum):
    """What a check concluded. INCONCLUSIVE: what the rule needs to judge did not happen (it is
    never a pass); NOT_APPLICABLE: the rule does not concern this subject."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_APPLICABLE = "NOT_APPLICABLE"

    @classmethod
    def judge(cls, ok: bool) -> Outcome:
        return cls.PASS if ok else cls.FAIL


def number_text(value: Number) -> str:
    """A number for people: whole above 100, otherwise up to three significant digits."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if isinstance(value, int) or magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


@dataclass(frozen=True)
class Measure:
    """A number with its unit: ``ms``, ``s``, ``%``, or what is counted (``polls``, ``events``)."""

    value: Number
    unit: str = ""

    def __str__(self) -> str:
        unit = self.unit
        if self.value == 1 and unit.endswith("s") and unit not in SECONDS_PER:
            unit = unit[:-1]  # 1 poll, 2 polls
        if not unit:
            return number_text(self.value)
        return f"{number_text(self.value)}{'' if unit in _NO_SPACE else ' '}{unit}"

    def to(self, unit: str) -> float:
        """The value in another time unit (``ms`` ↔ ``s``); the same unit returns the value."""
        if unit == self.unit:
            return float(self.value)
        if unit in SECONDS_PER and self.unit in SECONDS_PER:
            return self.value * SECONDS_PER[self.unit] / SECONDS_PER[unit]
        raise ValueError(f"cannot express {self.unit!r} in {unit!r}")

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Any) -> Measure:
        if isinstance(data, Mapping) and _is_number(data.get("value")):
            return cls(data["value"], str(data.get("unit") or ""))
        if _is_number(data):
            return cls(data)
        raise ValueError(f"not a measure: {data!r}")


def in_ms(seconds: float) -> Measure:
    """A duration measured in seconds, as milliseconds (to the microsecond)."""
    return Measure(round(seconds * 1000, 3), "ms")


MeasureValue = Measure | tuple[Measure, ...]


class Statement:
    """A sentence with named numbers: ``Statement("≥ {interval} apart", interval=in_ms(0.4))``.

    ``{name}`` in the template is replaced by that measure when the statement is shown; any other
    brace is left as it is, so texts that contain JSON need no escaping. A tuple of measures is
    shown as a list (``[0, 300, 800] ms`` when they share a unit).
    """

    __slots__ = ("template", "measures")
    template: str
    measures: dict[str, MeasureValue]

    def __init__(self, template: str = "", /, **measures: MeasureValue | Iterable[Measure]) -> None:
        object.__setattr__(self, "template", str(template))
        object.__setattr__(self, "measures", {
            name: value if isinstance(value, Measure) else tuple(value) for name, value in measures.items()})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Statement is immutable")

    def __str__(self) -> str:
        text = self.template
        for name, value in self.measures.items():
            text = text.replace("{" + name + "}", _shown(value))
        return text

    def __repr__(self) -> str:
        return f"Statement({self.template!r}, **{self.measures!r})"

    def __bool__(self) -> bool:
        return bool(self.template or self.measures)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Statement) and self.template == other.template
                and self.measures == other.measures)

    def __hash__(self) -> int:
        return hash((self.template, tuple(self.measures.items())))

    def __contains__(self, text: str) -> bool:
        """Whether the statement, as shown, contains ``text``."""
        return text in str(self)

    def __getitem__(self, name: str) -> MeasureValue:
        return self.measures[name]

    def get(self, name: str) -> MeasureValue | None:
        return self.measures.get(name)

    def to_json(self) -> dict[str, Any]:
        measures = {name: value.to_json() if isinstance(value, Measure) else [m.to_json() for m in value]
                    for name, value in self.measures.items()}
        return {"template": self.template, "measures": measures,
                "text": str(self)}  # for readers other than from_json (which ignores it)

    @classmethod
    def from_json(cls, data: Any) -> Statement:
        if data is None:
            return cls()
        if isinstance(data, str):  # first format: a plain text
            return cls(data)
        if not isinstance(data, Mapping):
            raise ValueError(f"not a statement: {data!r}")
        raw = data.get("measures") or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"measures are not an object: {raw!r}")
        measures: dict[str, MeasureValue] = {}
        for name, value in raw.items():
            measures[str(name)] = (tuple(Measure.from_json(v) for v in value) if isinstance(value, list)
                                   else Measure.from_json(value))
        return cls(str(data.get("template", data.get("text", ""))), **measures)


def _shown(value: MeasureValue) -> str:
    if isinstance(value, Measure):
        return str(value)
    units = {m.unit for m in value}
    if len(units) == 1 and value:
        unit = next(iter(units))
        numbers = ", ".join(number_text(m.value) for m in value)
        return f"[{numbers}]{'' if unit in _NO_SPACE or not unit else ' '}{unit}"
    return "[" + ", ".join(str(m) for m in value) + "]"


@dataclass(frozen=True)
class Evidence:
    """One thing a verdict rests on, as the line a person reads (``text``), whether it met the
    rule (``ok``), and for a webhook check the request it sent and the answer it got."""

    text: str
    ok: bool = True
    request: str | None = None
    status: int | None = None  # None: no answer (see ``error``), or not a request
    latency_ms: float | None = None
    error: str | None = None

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "ok": self.ok}
        for name in ("request", "status", "latency_ms", "error"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Evidence:
        if isinstance(data, str):  # first format: a line
            return cls(data)
        if not isinstance(data, Mapping):
            return cls(str(data))
        status = data.get("status")
        latency = data.get("latency_ms")
        return cls(str(data.get("text", "")), data.get("ok", True) is True,
                   None if data.get("request") is None else str(data["request"]),
                   status if isinstance(status, int) and not isinstance(status, bool) else None,
                   latency if _is_number(latency) else None,
                   None if data.get("error") is None else str(data["error"]))


@dataclass(frozen=True)
class Verdict:
    """One check of one rule against one subject.

    ``label`` tells apart the cases of a rule checked more than once (``C-RETRY-AFTER[429]``); it
    is the rule id when there is one case. ``summary`` is the one sentence that says what was
    found. ``details`` holds what else a check found for programs (JSON values; bytes allowed; a
    mapping whose only key is ``$bytes`` is how bytes are written, so it is reserved).
    ``advisories`` are findings worth a person's attention that the rule does not judge (e.g. a
    receiver answering 500 to a signed body only a holder of the secret could send): shown with
    the verdict, never a change of its outcome.
    """

    rule: str
    outcome: Outcome
    summary: str
    expected: Statement = field(default_factory=Statement)
    observed: Statement = field(default_factory=Statement)
    tolerance: Statement = field(default_factory=Statement)
    evidence: tuple[Evidence, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    advisories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        object.__setattr__(self, "advisories", tuple(str(a) for a in self.advisories))
        object.__setattr__(self, "evidence", tuple(
            e if isinstance(e, Evidence) else Evidence(str(e)) for e in self.evidence))
        if not self.label:
            object.__setattr__(self, "label", self.rule)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def numbers(self) -> dict[str, str]:
        """The observed measures as text (``{"min_gap": "401 ms"}``), e.g. for JUnit properties."""
        return {name: _shown(value) for name, value in self.observed.measures.items()}

    def failures(self) -> list[Evidence]:
        return [e for e in self.evidence if not e.ok]

    def __str__(self) -> str:
        return f"{self.outcome} {self.label}: {self.summary}"

    def explain(self, *, all_evidence: bool = False, limit: int = 25) -> str:
        """The verdict for a person: the sentence, what was expected and observed, and the evidence
        (the pieces that broke the rule when some are marked, else all of it)."""
        lines = [str(self)]
        for name in ("expected", "observed", "tolerance"):
            statement = getattr(self, name)
            if statement:
                lines.append(f"  {name + ':':<10} {statement}")
        shown = list(self.evidence) if all_evidence else (self.failures() or list(self.evidence))
        lines += [f"  | {e}" for e in shown[:limit]]
        if len(shown) > limit:
            lines.append(f"  | ... {len(shown) - limit} more")
        lines += [f"  advisory: {a}" for a in self.advisories]
        return "\n".join(lines)

    def with_label(self, label: str) -> Verdict:
        return Verdict(self.rule, self.outcome, self.summary, self.expected, self.observed, self.tolerance,
                       self.evidence, self.details, label, advisories=self.advisories)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "label": self.label, "outcome": self.outcome.value,
            "passed": self.passed,  # for readers of the first format
            "summary": self.summary, "expected": self.expected.to_json(),
            "observed": self.observed.to_json(), "tolerance": self.tolerance.to_json(),
            "evidence": [e.to_json() for e in self.evidence], "details": _encode(self.details),
            "advisories": list(self.advisories),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict ``to_json`` wrote, or one of the first format. Raises ValueError when
        ``data`` is not a verdict at all."""
        if not isinstance(data, Mapping):
            raise ValueError(f"not a verdict: {data!r}")
        if isinstance(data.get("outcome"), str) and data["outcome"] in Outcome.__members__:
            outcome = Outcome(data["outcome"])
        else:
            outcome = Outcome.judge(data.get("passed") is True)
        evidence = data.get("evidence") or []
        details = _decode(data.get("details")) if isinstance(data.get("details"), Mapping) else {}
        observed = Statement.from_json(data.get("observed"))
        numbers = data.get("numbers")
        if isinstance(numbers, Mapping) and numbers:  # first format: {"min_gap_ms": 401.3, "gaps": 5}
            observed, details = _from_numbers(observed, numbers, details)
        return cls(
            rule=str(data.get("rule") or "?"), outcome=outcome, summary=str(data.get("summary") or ""),
            expected=Statement.from_json(data.get("expected")), observed=observed,
            tolerance=Statement.from_json(data.get("tolerance")),
            evidence=tuple(Evidence.from_json(e) for e in (evidence if isinstance(evidence, list)
                                                           else [evidence])),
            details=details, label=str(data.get("label") or ""),
            advisories=tuple(str(a) for a in data.get("advisories") or () if isinstance(a, str)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _from_numbers(observed: Statement, numbers: Mapping[str, Any],
                  details: dict[str, Any]) -> tuple[Statement, dict[str, Any]]:
    measures = dict(observed.measures)
    details = dict(details)
    for key, value in numbers.items():
        name, unit = (key[:-3], "ms") if key.endswith("_ms") else (key, "")
        if _is_number(value):
            measures[name] = Measure(value, unit)
        elif isinstance(value, list) and all(_is_number(v) for v in value):
            measures[name] = tuple(Measure(v, unit) for v in value)
        else:
            details[key] = value
    return Statement(observed.template, **measures), details


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {str(k): _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
