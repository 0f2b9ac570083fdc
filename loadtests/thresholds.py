"""Pass/fail thresholds for a load run, checked against a summary dict as :mod:`loadtests.summary`
builds it (which imports this module, not the other way round).

Grammar (spaces around the operator are allowed; words are case-insensitive except a name)::

    threshold  :=  target OP value
    target     :=  "failures" | "requests" | "rps"                 every request of the run
                |  selector "." stat
                |  "storm." ("recovery" | "peak_rate" | "reconnected" | "dropped" | "gave_up")
    selector   :=  TYPE                                           every entry of that type
                |  TYPE "." METRIC                                 e.g. signalr.latency
                |  TYPE "." METRIC "[" DETAIL "]"                  one name: signalr.latency[TaskCompleted]
    TYPE       :=  signalr | poll | rest | webhook | all
    stat       :=  pN (p50, p95, p99, p99.9, ...) | min | max | mean | avg
                |  count | requests | failures | rps
    OP         :=  <  <=  >  >=  ==  !=
    value      :=  NUMBER [unit]

Units: times take ``ms`` (the default), ``s`` or ``m``; ``failures`` takes ``%`` (share of the
selected requests) or no unit (a number of failures); ``count``/``requests`` take none; ``rps`` and
``storm.peak_rate`` take none or ``/s``. ``storm.recovery`` is a time.

Metrics per type (the first word of a request name; an HTTP method counts as ``latency``):
SignalR: negotiate, connect, handshake, invoke, latency, gap, e2e, reconnect; Poll: latency,
delay, e2e; REST: latency; Webhook: latency.

Examples: ``signalr.latency.p95<100ms``, ``poll.latency.p99<=2s``, ``failures<1%``,
``requests>=10``, ``signalr.e2e[image completed].p50<5s``, ``storm.recovery<10s``.

A time or rate threshold over no samples is a breach ("no samples"): a check that silently passes
because nothing was measured would hide a broken run. A bad expression raises
:class:`ThresholdError` (a usage error, exit 2 in the runner).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conduit_core.durations import DurationError, parse_duration
from loadtests.metric_names import TYPE_WORDS, detail_of, metric_of

TYPES = {word: request_type for request_type, word in TYPE_WORDS.items()}
METRICS: dict[str, tuple[str, ...]] = {
    "signalr": ("negotiate", "connect", "handshake", "invoke", "latency", "latency_approx", "gap", "e2e",
                "reconnect"),
    "poll": ("latency", "delay", "e2e"),
    "rest": ("latency",),
    "webhook": ("latency",),
}
TIME_STATS = ("min", "max", "mean", "avg")
COUNT_STATS = ("count", "requests")
STORM_TARGETS = {"recovery": "time", "peak_rate": "rate", "reconnected": "count", "dropped": "count",
                 "gave_up": "count"}
GLOBAL_TARGETS = {"failures": "failures", "requests": "count", "rps": "rate"}

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": operator.ne,
}
EXAMPLES = "e.g. signalr.latency.p95<100ms, poll.latency.p99<=2s, failures<1%, requests>=10"

_EXPRESSION = re.compile(r"^\s*(?P<target>[^<>=!]+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>.*?)\s*$")
_SELECTOR = re.compile(
    r"^(?P<type>[A-Za-z]+)"
    r"(?:\.(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<detail>[^\]]+)\])?)?"
    r"\.(?P<stat>p[0-9]+(?:\.[0-9]+)?|[A-Za-z_]+)$", re.IGNORECASE)
_VALUE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    r"\s*(?P<unit>ms|s|m|%|/s)?$")
_TIME_UNITS = (None, "ms", "s", "m")  # read by conduit_core.durations; a bare number is ms


class ThresholdError(ValueError):
    """A threshold expression that cannot be read; the message says what and shows examples."""


@dataclass(frozen=True)
class Threshold:
    expression: str
    kind: str  # "entries", "global" or "storm"
    stat: str  # p95, min, max, mean, count, failures, rps; or the storm figure
    op: str
    limit: float  # ms for times, a ratio (0-1) for failures in %, else the number
    limit_text: str
    unit: str  # "ms", "ratio", "count", "rate"
    type_word: str | None = None
    metric: str | None = None
    detail: str | None = None

    @property
    def target(self) -> str:
        if self.kind == "global":
            return self.stat
        if self.kind == "storm":
            return f"storm.{self.stat}"
        text = self.type_word or ""
        if self.metric:
            text += f".{self.metric}"
        if self.detail:
            text += f"[{self.detail}]"
        return f"{text}.{self.stat}"

    def check(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.limit)


def _fail(expression: str, problem: str) -> ThresholdError:
    return ThresholdError(f"threshold {expression!r}: {problem} ({EXAMPLES})")


def _value(expression: str, text: str, unit_kind: str) -> tuple[float, str]:
    match = _VALUE.match(text)
    if not match:
        raise _fail(expression, f"{text!r} is not a number with an optional unit (ms, s, m, %, /s)")
    number = float(text[: match.start("unit")] if match.group("unit") else text)
    unit = match.group("unit")
    if not math.isfinite(number):
        raise _fail(expression, f"{text!r} is not a finite number")
    if unit_kind == "ms":
        if unit not in _TIME_UNITS:
            raise _fail(expression, f"a time takes ms, s or m, not {unit!r}")
        try:
            return parse_duration(text, number_unit="ms", bare_unit="ms") * 1000.0, "ms"
        except DurationError as exc:
            raise _fail(expression, str(exc)) from None
    if unit_kind == "failures":
        if unit == "%":
            return number / 100.0, "ratio"
        if unit is None:
            return number, "count"
        raise _fail(expression, f"failures take % (a share) or no unit (a number), not {unit!r}")
    if unit_kind == "count":
        if unit is not None:
            raise _fail(expression, f"a count takes no unit, not {unit!r}")
        return number, "count"
    if unit_kind == "rate":
        if unit not in (None, "/s"):
            raise _fail(expression, f"a rate takes /s or no unit, not {unit!r}")
        return number, "rate"
    raise AssertionError(unit_kind)


def parse(expression: str) -> Threshold:
    """One threshold; ThresholdError when it cannot be read."""
    if not isinstance(expression, str) or not expression.strip():
        raise ThresholdError(f"empty threshold ({EXAMPLES})")
    match = _EXPRESSION.match(expression)
    if not match:
        raise _fail(expression, "expected TARGET OPERATOR VALUE with an operator among < <= > >= == !=")
    target, op, value_text = match.group("target").strip(), match.group("op"), match.group("value")
    if not value_text:
        raise _fail(expression, "the value after the operator is missing")
    if any(c in value_text for c in "<>=!"):
        raise _fail(expression, "more than one comparison operator")
    lowered = target.lower()
    if lowered in GLOBAL_TARGETS:
        limit, unit = _value(expression, value_text, GLOBAL_TARGETS[lowered])
        return Threshold(expression.strip(), "global", lowered, op, limit, value_text, unit)
    if lowered.startswith("storm."):
        figure = lowered[len("storm."):]
        if figure not in STORM_TARGETS:
            raise _fail(expression, f"unknown storm figure {figure!r}; known: {', '.join(STORM_TARGETS)}")
        limit, unit = _value(expression, value_text, {"time": "ms"}.get(STORM_TARGETS[figure],
                                                                        STORM_TARGETS[figure]))
        return Threshold(expression.strip(), "storm", figure, op, limit, value_text, unit)
    selector = _SELECTOR.match(target)
    if not selector:
        raise _fail(expression, f"cannot read {target!r}: expected TYPE.STAT, TYPE.METRIC.STAT, "
                                "TYPE.METRIC[NAME].STAT, failures, requests, rps or storm.FIGURE")
    type_word = selector.group("type").lower()
    if type_word not in (*TYPES, "all"):
        raise _fail(expression, f"unknown request type {selector.group('type')!r}; known: "
                                f"{', '.join((*TYPES, 'all'))}")
    metric = selector.group("metric")
    metric = metric.lower() if metric else None
    if metric is not None:
        known = METRICS.get(type_word, tuple(sorted({m for ms in METRICS.values() for m in ms})))
        if metric not in known:
            raise _fail(expression, f"unknown metric {metric!r} for {type_word}; known: {', '.join(known)}")
    stat = selector.group("stat").lower()
    if stat == "avg":
        stat = "mean"
    if stat == "requests":
        stat = "count"
    if re.fullmatch(r"p[0-9]+(\.[0-9]+)?", stat):
        if not 0 < float(stat[1:]) <= 100:
            raise _fail(expression, f"percentile {stat} must be above p0 and at most p100")
        kind = "ms"
    elif stat in TIME_STATS:
        kind = "ms"
    elif stat == "count":
        kind = "count"
    elif stat == "failures":
        kind = "failures"
    elif stat == "rps":
        kind = "rate"
    else:
        raise _fail(expression, f"unknown statistic {stat!r}; use p50, p90, p95, p99 (any pN), min, max, "
                                "mean, count, failures or rps")
    limit, unit = _value(expression, value_text, kind)
    return Threshold(expression.strip(), "entries", stat, op, limit, value_text, unit,
                     type_word=type_word, metric=metric, detail=selector.group("detail"))


def split_expressions(text: str) -> list[str]:
    """``"a<1;b>2"`` or ``"a<1, b>2"`` → two expressions (separators inside ``[...]`` are kept)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char in ",;" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_all(expressions: Iterable[str]) -> list[Threshold]:
    """Every threshold (each string may hold several, separated by ``;`` or ``,``)."""
    out = []
    for text in expressions:
        for expression in split_expressions(text):
            out.append(parse(expression))
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation against a summary dict

def _selected(threshold: Threshold, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The stats block a selector refers to, or None when nothing matched."""
    if threshold.type_word == "all":
        if threshold.metric is None:
            return summary.get("total")
        if threshold.detail is None:
            return summary.get("metrics", {}).get(f"all.{threshold.metric}")
        return _combine([e for e in summary.get("entries", [])
                         if metric_of(e["type"], e["name"]).endswith("." + threshold.metric)
                         and (threshold.detail is None or detail_of(e["name"]) == threshold.detail)],
                        summary)
    group = threshold.type_word if threshold.metric is None else f"{threshold.type_word}.{threshold.metric}"
    if threshold.detail is None:
        return summary.get("metrics", {}).get(group)
    for entry in summary.get("entries", []):
        if metric_of(entry["type"], entry["name"]) == group and detail_of(entry["name"]) == threshold.detail:
            return entry
    return None


def _combine(entries: Sequence[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any] | None:
    """Counts of several entries (percentiles cannot be combined from a summary: None)."""
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0]
    count = sum(e["count"] for e in entries)
    failures = sum(e["failures"] for e in entries)
    duration = summary.get("run", {}).get("duration_s")
    return {"count": count, "failures": failures, "failure_ratio": failures / count if count else 0.0,
            "rps": count / duration if duration else None,
            "min": min((e["min"] for e in entries if e["min"] is not None), default=None),
            "max": max((e["max"] for e in entries if e["max"] is not None), default=None)}


def _format(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 10_000 else f"{value:.4g} ms"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit == "rate":
        return f"{value:.4g}/s"
    return f"{value:g}"


def evaluate(threshold: Threshold, summary: dict[str, Any]) -> dict[str, Any]:
    """One verdict: ``{"expression", "target", "actual", "actual_text", "ok", "reason"}``."""
    verdict: dict[str, Any] = {"expression": threshold.expression, "target": threshold.target,
                               "op": threshold.op, "limit": threshold.limit, "unit": threshold.unit,
                               "actual": None, "actual_text": None, "ok": False, "reason": None}
    actual: float | None
    if threshold.kind == "storm":
        storm = summary.get("storm") or {}
        renamed = {"recovery": "recovery_s", "peak_rate": "peak_reconnect_rate"}
        key = renamed.get(threshold.stat, threshold.stat)
        actual = storm.get(key)
        if actual is not None and threshold.stat == "recovery":
            actual = float(actual) * 1000.0
        if actual is None:
            verdict["reason"] = "no reconnect storm in this run" if not storm else "not measured"
            return verdict
    else:
        block = summary.get("total") if threshold.kind == "global" else _selected(threshold, summary)
        stat = threshold.stat
        if block is None:
            block = {"count": 0, "failures": 0, "failure_ratio": 0.0}
        if stat == "failures":
            ratio = threshold.unit == "ratio"
            actual = block.get("failure_ratio", 0.0) if ratio else block.get("failures", 0)
        elif stat in ("count", "requests"):
            actual = block.get("count", 0)
        else:
            actual = block.get(stat)
            if actual is None:
                verdict["reason"] = "no samples" if not block.get("count") else f"{stat} not available here"
                return verdict
    verdict["actual"] = actual
    verdict["actual_text"] = _format(float(actual), threshold.unit)
    verdict["ok"] = bool(threshold.check(float(actual)))
    return verdict


def evaluate_all(thresholds: Sequence[Threshold], summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [evaluate(t, summary) for t in thresholds]
