"""Our summary of a load run: exact percentiles from every raw sample, per name and per metric.

Locust's own percentiles are bucketed (response times are rounded to 2 significant digits before
counting), so a p95 of 123 ms may be reported as 120. The locustfile therefore keeps every
response time of every request event (:mod:`loadtests.metrics`, also across workers) and writes
them to ``samples.json``; :func:`build_summary` turns that into ``summary.json`` and
:func:`to_markdown` into ``summary.md``.

Percentiles are exact nearest rank (:mod:`conduit_core.percentiles`): always a measured value.
Failed requests count, as in Locust's tables.

Every entry has a *metric* (:mod:`loadtests.metric_names`). Imports run one way: this module
uses :mod:`loadtests.thresholds` to judge the summary it builds, and neither imports Locust nor
gevent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from conduit_core.percentiles import percentile
from loadtests.metric_names import TYPE_WORDS, metric_of
from loadtests.thresholds import evaluate_all

SAMPLES_FORMAT = "conduit-harness-load-samples/1"
SUMMARY_FORMAT = "conduit-harness-load-summary/1"
PERCENTILES = (50, 90, 95, 99)
MAX_ERRORS_PER_ENTRY = 5


def stats(samples: Iterable[float], failures: int, duration_s: float | None,
          percentiles: Sequence[float] = PERCENTILES) -> dict[str, Any]:
    ordered = sorted(samples)
    count = len(ordered)
    out: dict[str, Any] = {
        "count": count,
        "failures": failures,
        "failure_ratio": (failures / count) if count else 0.0,
        "rps": (count / duration_s) if duration_s else None,
        "min": float(ordered[0]) if ordered else None,
        "mean": (math.fsum(ordered) / count) if count else None,
    }
    for p in percentiles:
        out[percentile_key(p)] = percentile(ordered, p)
    out["max"] = float(ordered[-1]) if ordered else None
    return out


def percentile_key(p: float) -> str:
    text = f"{p:g}"
    return "p" + text


def build_summary(samples_doc: dict[str, Any], run: dict[str, Any] | None = None,
                  thresholds: Sequence[Any] = ()) -> dict[str, Any]:
    """The summary of one run from its ``samples.json`` document, with threshold verdicts.

    ``thresholds`` are :class:`loadtests.thresholds.Threshold` objects (already parsed).
    """
    started = samples_doc.get("started")
    ended = samples_doc.get("ended")
    duration = (ended - started) if started is not None and ended is not None and ended > started else None
    entries = []
    groups: dict[str, dict[str, Any]] = {}
    all_samples: list[float] = []
    all_failures = 0
    for raw in sorted(samples_doc.get("entries", []), key=lambda e: (e["type"], e["name"])):
        samples = raw.get("samples", [])
        failures = int(raw.get("failures", 0))
        metric = metric_of(raw["type"], raw["name"])
        entry = {"type": raw["type"], "name": raw["name"], "metric": metric,
                 **stats(samples, failures, duration)}
        errors = raw.get("errors") or {}
        if errors:
            top = sorted(errors.items(), key=lambda kv: -kv[1])[:MAX_ERRORS_PER_ENTRY]
            entry["errors"] = dict(top)
        entries.append(entry)
        word = metric.split(".", 1)[1]
        for group in (metric, TYPE_WORDS.get(raw["type"], raw["type"].lower()), f"all.{word}"):
            bucket = groups.setdefault(group, {"samples": [], "failures": 0, "names": []})
            bucket["samples"].extend(samples)
            bucket["failures"] += failures
            bucket["names"].append(raw["name"])
        all_samples.extend(samples)
        all_failures += failures
    metrics = {
        group: {**stats(bucket["samples"], bucket["failures"], duration), "names": bucket["names"]}
        for group, bucket in sorted(groups.items())
    }
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "run": {**(run or {}), "started": started, "ended": ended, "duration_s": duration,
                "workers": samples_doc.get("workers")},
        "percentile_method": "nearest rank over every raw sample (failures included, as in Locust)",
        "entries": entries,
        "metrics": metrics,
        "total": stats(all_samples, all_failures, duration),
        "storm": storm_summary(samples_doc),
    }
    verdicts = evaluate_all(thresholds, summary)
    summary["thresholds"] = verdicts
    if not verdicts:
        summary["verdict"] = "no thresholds"
    else:
        summary["verdict"] = "pass" if all(v["ok"] for v in verdicts) else "fail"
    return summary


def storm_summary(samples_doc: dict[str, Any]) -> dict[str, Any] | None:
    """Recovery figures of a reconnect storm: the drop moment (from the shape) against the
    ``reconnect`` completions every client reported (their wall-clock times) and, when the shape
    could read it, the simulator's own negotiate records."""
    storm = samples_doc.get("storm")
    if not storm or storm.get("drop_at") is None:
        return storm or None
    drop_at = float(storm["drop_at"])
    points = []
    for timed in samples_doc.get("timed", []):
        if timed["type"] == "SignalR" and timed["name"] == "reconnect":
            points.extend(timed["points"])
    after = sorted((p for p in points if p[0] >= drop_at), key=lambda p: p[0])
    recovered = [p for p in after if not p[2]]
    gave_up = [p for p in after if p[2]]
    dropped = storm.get("dropped")
    out = dict(storm)
    out.update({
        "reconnected": len(recovered),
        "gave_up": len(gave_up),
        "all_recovered": dropped is not None and len(recovered) >= int(dropped),
        # Until the last client was back (wall clock from the drop), and each client's own time.
        "recovery_s": (recovered[-1][0] - drop_at) if recovered else None,
        "client_recovery_ms": stats([p[1] for p in recovered], 0, None, (50, 95, 99)),
        "peak_reconnect_rate": peak_rate([p[0] for p in recovered]),
    })
    negotiates = storm.get("server_negotiates")
    if negotiates is not None:
        out["server_peak_negotiate_rate"] = peak_rate([t for t in negotiates if t >= drop_at])
        out["server_negotiates_after_drop"] = sum(1 for t in negotiates if t >= drop_at)
        out.pop("server_negotiates", None)
    return out


def peak_rate(times: Sequence[float], window: float = 1.0) -> float:
    """Most events in any ``window``-second sliding window, per second."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best / window


# ---------------------------------------------------------------------------------------------
# Text output

def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def to_markdown(summary: dict[str, Any]) -> str:
    run = summary.get("run", {})
    lines = ["# Load run summary", ""]
    facts = [(k, run.get(k)) for k in ("host", "scenario", "shape", "users", "spawn_rate", "run_time",
                                          "user_classes", "workers", "duration_s") if run.get(k) is not None]
    for key, value in facts:
        if key == "duration_s":
            value = f"{value:.1f}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        lines.append(f"- {key}: {value}")
    lines += ["", f"Percentiles: {summary.get('percentile_method')}; times in ms.", "",
              "| type | name | count | failures | p50 | p95 | p99 | max |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for e in summary.get("entries", []):
        lines.append(f"| {e['type']} | {e['name']} | {e['count']} | {e['failures']} | {_fmt_ms(e['p50'])} | "
                     f"{_fmt_ms(e['p95'])} | {_fmt_ms(e['p99'])} | {_fmt_ms(e['max'])} |")
    total = summary.get("total", {})
    lines.append(f"| **all** | | {total.get('count', 0)} | {total.get('failures', 0)} | "
                 f"{_fmt_ms(total.get('p50'))} | {_fmt_ms(total.get('p95'))} | {_fmt_ms(total.get('p99'))} | "
                 f"{_fmt_ms(total.get('max'))} |")
    metrics = summary.get("metrics", {})
    if metrics:
        lines += ["", "| metric | count | failures | p50 | p95 | p99 |", "|---|---:|---:|---:|---:|---:|"]
        for name, m in metrics.items():
            if name.startswith("all."):
                continue  # in summary.json only: a metric word across request types
            lines.append(f"| {name} | {m['count']} | {m['failures']} | {_fmt_ms(m['p50'])} | "
                         f"{_fmt_ms(m['p95'])} | {_fmt_ms(m['p99'])} |")
    storm = summary.get("storm")
    if storm:
        lines += ["", "## Reconnect storm", ""]
        for key in ("mode", "dropped", "reconnected", "gave_up", "all_recovered", "recovery_s",
                    "peak_reconnect_rate", "server_peak_negotiate_rate", "server_negotiates_after_drop",
                    "error"):
            if key in storm and storm[key] is not None:
                value = storm[key]
                if isinstance(value, float):
                    value = f"{value:.3f}" if key == "recovery_s" else f"{value:g}"
                lines.append(f"- {key}: {value}")
        client = storm.get("client_recovery_ms") or {}
        if client.get("count"):
            lines.append(f"- per-client recovery ms: p50 {_fmt_ms(client['p50'])}, "
                         f"p95 {_fmt_ms(client['p95'])}, max {_fmt_ms(client['max'])}")
    verdicts = summary.get("thresholds", [])
    if verdicts:
        lines += ["", "## Thresholds", "", "| threshold | actual | verdict |", "|---|---:|---|"]
        for v in verdicts:
            verdict = "pass" if v["ok"] else "**FAIL**"
            actual = v.get("actual_text") or "-"
            if v.get("reason"):
                actual += f" ({v['reason']})"
            lines.append(f"| `{v['expression']}` | {actual} | {verdict} |")
    lines += ["", f"Verdict: **{summary.get('verdict', '-')}**", ""]
    return "\n".join(lines)
