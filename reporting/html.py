"""The run report page: one self-contained HTML file (inline CSS and SVG, a few lines of optional
script), nothing fetched from anywhere.

Sections: header (run, times, command, simulator, overall verdict), contract matrix (references,
then mutants with the mutation score), reconnect schedule charts, latency (histograms and
percentiles per channel), load (charts over time, thresholds, reconnect storm), webhooks
(deliveries from the timeline) and a timeline overview.

The markup is in Jinja2 templates (``reporting/templates/*.html.j2``, package data, autoescaped);
this module only decides what each section shows, as plain data. ``report.css`` and ``report.js``
are read at render time and inlined, so the page stays one file. Chart SVG comes from
:mod:`reporting.charts`, which escapes its own text, and is the only markup passed in as safe.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from conduit_core.percentiles import percentile
from contract_tests.timing import Tolerance
from contract_tests.verdict import Measure, Outcome, Verdict
from loadtests.metric_names import metric_of
from reporting import charts
from reporting.charts import BLUE, GREY, ORANGE, PURPLE, VERMILLION, Series, fmt
from reporting.profile_facts import BASELINE, facts_for
from reporting.run_dir import Run, Subject

CHANNELS = ("signalr", "poll", "webhook", "rest")
CHANNEL_NAMES = {"signalr": "SignalR", "poll": "Polling", "webhook": "Webhook", "rest": "REST"}
PERCENTILES = (50, 90, 95, 99)
# Rule order of the contract (contract_tests/client_rules.CHECKS, webhook_rules.RULE_IDS); rules
# not listed here follow in alphabetical order.
RULE_ORDER = (
    "C-POLL-INTERVAL", "C-POLL-LIMIT", "C-POLL-STOP", "C-POLL-ERRORS", "C-RETRY-AFTER",
    "C-RECONNECT-SCHEDULE", "C-RECONNECT-CLOSE", "C-RESUBSCRIBE", "C-NO-LOST-TERMINAL", "C-FALLBACK",
    "C-OUTCOME", "C-LATENCY", "C-AUTH", "C-POOL", "C-CLEANUP",
    "W-ACCEPT", "W-RAW-BODY", "W-REJECT", "W-NO-CRASH", "W-DUPLICATE", "W-FAST-ACK", "W-METHOD",
)
RECONNECT_RULE = "C-RECONNECT-SCHEDULE"
MAX_EVIDENCE = 60
SECTIONS = (("summary", "Summary"), ("contract", "Contract"), ("reconnect", "Reconnect"),
            ("latency", "Latency"), ("load", "Load"), ("webhooks", "Webhooks"), ("timeline", "Timeline"))
OUTCOME_BADGES = {Outcome.PASS: ("pass", "PASS"), Outcome.FAIL: ("fail", "FAIL"),
                  Outcome.INCONCLUSIVE: ("inconclusive", "INCONCLUSIVE"),
                  Outcome.NOT_APPLICABLE: ("na", "N/A")}


# -- what the templates receive ------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One table cell: plain text, ``code``, or a ``badge`` (``tone``: pass, fail, inconclusive, na)."""

    text: str = ""
    kind: str = "text"
    tone: str = ""


@dataclass(frozen=True)
class Table:
    head: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    cls: str = ""
    numeric: Sequence[int] = ()  # right-aligned columns
    caption: str = ""


@dataclass(frozen=True)
class HeaderLine:
    """A line of the overall verdict: a badge, a text, and a figure shown in bold after it."""

    badge: Cell
    text: str
    score: str = ""
    after: str = ""


def badge(ok: bool | None, yes: str = "PASS", no: str = "FAIL", none: str = "—") -> Cell:
    if ok is None:
        return Cell(none, "badge", "na")
    return Cell(yes if ok else no, "badge", "pass" if ok else "fail")


def outcome_badge(outcome: Outcome) -> Cell:
    tone, text = OUTCOME_BADGES[outcome]
    return Cell(text, "badge", tone)


def text(value: Any) -> Cell:
    return Cell("" if value is None else str(value))


def code(value: Any) -> Cell:
    return Cell("" if value is None else str(value), "code")


def ms_cell(value: Any) -> Cell:
    return Cell(fmt(value) if isinstance(value, int | float) else "–")


def counts_table(title: str, counter: Counter, head: str) -> dict[str, Any]:
    rows = [[text(k), text(v)] for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return {"title": title, "table": Table([head, "count"], rows, "compact", (1,))}


def figure(svg: str, caption: str = "") -> dict[str, Any]:
    return {"svg": Markup(svg), "caption": caption}  # charts.py escapes its own text


# -- the page ------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("reporting", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _asset(name: str) -> Markup:
    """A stylesheet or script of the package, inlined as it is (our own file, not run data)."""
    return Markup(resources.files("reporting").joinpath("templates", name).read_text(encoding="utf-8"))


def build_html(run: Run) -> str:
    charts._ids["n"] = 0
    context = {
        "run_id": run.run_id, "sections": SECTIONS, "problems": run.problems, "max_evidence": MAX_EVIDENCE,
        "head": _header(run), "contract": _contract(run), "reconnect": _reconnect(run),
        "reconnect_rule": RECONNECT_RULE, "latency": _latency(run), "load": _load(run),
        "webhooks": _webhooks(run), "timeline": _timeline(run),
        "rendered_at": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"), "run_dir": run.path.name,
        "css": _asset("report.css"), "script": _asset("report.js"),
    }
    return _environment().get_template("report.html.j2").render(context)


# -- helpers -------------------------------------------------------------------------------------
def _stats(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(v for v in values if isinstance(v, int | float) and math.isfinite(v))
    out: dict[str, float | None] = {"count": float(len(ordered))}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(ordered, p)
    out["max"] = ordered[-1] if ordered else None
    return out


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def rule_sort_key(rule: str) -> tuple[int, str]:
    return (RULE_ORDER.index(rule), rule) if rule in RULE_ORDER else (len(RULE_ORDER), rule)


# -- header --------------------------------------------------------------------------------------
def overall(run: Run) -> dict[str, Any]:
    refs = [s for s in run.references if s.verdicts]
    failing_refs = [s for s in refs if not s.passed]
    mutants = run.mutants
    killed = [m for m in mutants if m.killed]
    load_verdict = (run.load.summary or {}).get("verdict") if run.load else None
    ok = (not failing_refs and len(killed) == len(mutants) and load_verdict != "fail"
          and bool(refs or mutants or run.load or run.timeline))
    return {"refs": refs, "failing_refs": failing_refs, "mutants": mutants, "killed": killed,
            "load_verdict": load_verdict, "ok": ok}


def _header(run: Run) -> dict[str, Any]:
    facts = overall(run)
    started, finished = _parse_time(run.started), _parse_time(run.finished)
    rows: list[tuple[str, Any, str]] = [("run", run.run_id, "code"), ("started", run.started or "–", ""),
                                        ("finished", run.finished or "–", "")]
    if started and finished:
        with contextlib.suppress(TypeError):  # one naive, one aware
            rows.append(("duration", f"{(finished - started).total_seconds():.1f} s", ""))
    if run.command:
        rows.append(("command", run.command, "code"))
    sim = run.simulator
    if sim:
        order = ["url", "profile", "scenario", "seed", "time_scale"]
        keys = [k for k in order if k in sim] + sorted(k for k in sim if k not in order)
        rows.append(("simulator", [(k, sim[k]) for k in keys], "simulator"))
    refs, failing = facts["refs"], facts["failing_refs"]
    lines: list[HeaderLine] = []
    if refs:
        if failing:
            lines.append(HeaderLine(badge(False), f"reference subjects: {len(failing)} of {len(refs)} "
                                                  f"fail ({', '.join(s.name for s in failing)})"))
        else:
            checks = sum(len(s.verdicts) for s in refs)
            lines.append(HeaderLine(badge(True),
                                    f"reference subjects: all {len(refs)} pass ({checks} rule checks)"))
    else:
        lines.append(HeaderLine(badge(None), "no reference subject verdicts in this run"))
    mutants, killed = facts["mutants"], facts["killed"]
    if mutants:
        survivors = [m for m in mutants if not m.killed]
        after = f" mutants fail their expected rule ({len(killed) / len(mutants):.0%})"
        if survivors:
            after += f" — not caught: {', '.join(m.name for m in survivors)}"
        lines.append(HeaderLine(badge(not survivors, "KILLED", "SURVIVED"), "mutation score: ",
                                f"{len(killed)}/{len(mutants)}", after))
    if facts["load_verdict"]:
        lv = facts["load_verdict"]
        lines.append(HeaderLine(badge(None if lv == "no thresholds" else lv == "pass"),
                                f"load thresholds: {lv}"))
    return {"ok": facts["ok"], "lines": lines, "facts": rows}


# -- contract matrix -----------------------------------------------------------------------------
def headline(name: str, value: Measure) -> str:
    """``min gap 401 ms``; ``5 attempts`` when the unit already says what is counted."""
    return str(value) if value.unit == name else f"{name.replace('_', ' ')} {value}"


def primary_number(verdict: Verdict) -> str:
    """The one figure a matrix cell shows: the first observed measure (checks list the deciding
    one first), else the start of the observed sentence."""
    for name, value in verdict.observed.measures.items():
        if isinstance(value, Measure):
            return headline(name, value)
    observed = str(verdict.observed)
    return observed if len(observed) <= 36 else observed[:34] + "…"


def worst(verdicts: Iterable[Verdict]) -> Outcome:
    """The outcome a cell of several verdicts shows: FAIL over INCONCLUSIVE over PASS over N/A."""
    order = (Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.PASS, Outcome.NOT_APPLICABLE)
    found = {v.outcome for v in verdicts}
    return next((o for o in order if o in found), Outcome.NOT_APPLICABLE)


def _detail(verdict: Verdict) -> dict[str, Any]:
    statements = [(key, getattr(verdict, key)) for key in ("expected", "observed", "tolerance")
                  if getattr(verdict, key)]
    return {"badge": outcome_badge(verdict.outcome), "label": verdict.label, "summary": verdict.summary,
            "statements": statements, "evidence": [e.text for e in verdict.evidence]}


@dataclass
class _MatrixCell:
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    badge: Cell = field(default_factory=Cell)
    number: str = ""
    title: str = ""
    expected: bool = False


def _matrix(subjects: list[Subject], title: str, mutants: bool = False) -> dict[str, Any]:
    found = {(v.label, v.rule) for s in subjects for v in s.verdicts}
    rows = sorted(found, key=lambda pair: (rule_sort_key(pair[1]), pair[0]))
    groups: list[tuple[str, list[Subject]]] = []
    for kind, label in (("client", "clients"), ("receiver", "receivers")):
        members = [s for s in subjects if s.kind == kind]
        if members:
            groups.append((label, members))
    others = [s for s in subjects if s.kind not in ("client", "receiver")]
    if others:
        groups.append(("other", others))
    ordered = [s for _, members in groups for s in members]
    body, total, passing = [], 0, 0
    for label, rule in rows:
        cells = []
        for subject in ordered:
            verdicts = [v for v in subject.verdicts if v.label == label]
            cell = _MatrixCell(expected=mutants and subject.expected_rule == rule)
            if verdicts:
                outcome = worst(verdicts)
                total += 1
                passing += outcome is Outcome.PASS
                cell.verdicts = [_detail(v) for v in verdicts]
                cell.badge = outcome_badge(outcome)
                cell.number = " · ".join(n for n in (primary_number(v) for v in verdicts) if n)
                cell.title = " / ".join(v.summary for v in verdicts)
            cells.append(cell)
        body.append({"label": label, "cells": cells, "dialects": _dialect_facts(rule, label, ordered)})
    return {"title": title, "mutants": mutants, "rows": body, "passing": passing, "total": total,
            "groups": [(label, len(members)) for label, members in groups],
            "subjects": [{"name": s.name, "profile": s.profile, "mutant": s.mutant,
                          "dialect": s.dialect if s.dialect not in (None, BASELINE) else None}
                         for s in ordered]}


def _dialect_facts(rule: str, label: str, subjects: list[Subject]) -> list[dict[str, Any]]:
    """For a rule judged in a dialect other than the guide's: where that dialect differs from the
    guide in what the rule exercises (``profiles diff``'s rows), and whether the rule's outcome
    differs between the dialects of this run."""
    outcomes: dict[str | None, set[Outcome]] = {}
    for subject in subjects:
        verdicts = [v for v in subject.verdicts if v.label == label]
        if verdicts:
            outcomes.setdefault(subject.dialect, set()).add(worst(verdicts))
    shown = []
    for dialect in outcomes:
        facts = facts_for(rule, dialect)
        if facts is None:
            continue
        others = {o for d, found in outcomes.items() if d != dialect for o in found}
        shown.append({"dialect": dialect, "baseline": BASELINE, "count": facts.count,
                      "problem": facts.problem, "sections": facts.sections,
                      "outcome_differs": bool(others) and others != outcomes[dialect]})
    return shown


def _contract(run: Run) -> dict[str, Any] | None:
    if not run.subjects:
        return None
    out: dict[str, Any] = {"references": _matrix(run.references, "Reference subjects") if run.references
                           else None, "mutants": None}
    mutants = run.mutants
    if mutants:
        rows = []
        for m in sorted(mutants, key=lambda s: (s.kind, s.expected_rule or "", s.name)):
            found = m.verdicts_for(m.expected_rule) if m.expected_rule else []
            summary = "; ".join(v.summary for v in found) or "the expected rule was not run"
            rows.append([text(m.name), text(m.mutant), text(m.kind), code(m.expected_rule or "–"),
                         badge(m.killed, "KILLED", "SURVIVED", "NO VERDICT"), text(summary)])
        out.update(killed=sum(1 for m in mutants if m.killed), mutant_count=len(mutants),
                   mutant_table=Table(["subject", "mutant", "kind", "expected rule", "caught?",
                                       "verdict of that rule"], rows, "mutant-table"),
                   mutants=_matrix(mutants, "Mutants", mutants=True))
    return out


# -- reconnect -----------------------------------------------------------------------------------
def declared_delays(subject: Subject, verdict: Verdict) -> tuple[list[float], float | None, str]:
    """The declared schedule in ms: from the subject's profile, else from the verdict's expected
    measures."""
    if subject.reconnect_delays_ms is not None:
        return ([float(d) for d in subject.reconnect_delays_ms], subject.manual_restart_ms,
                f"profile {subject.profile}")
    delays = verdict.expected.get("delays")
    manual = verdict.expected.get("manual_restart")
    return ([m.to("ms") for m in delays] if isinstance(delays, tuple) else [],
            manual.to("ms") if isinstance(manual, Measure) else None, "the verdict's expected delays")


def observed_gaps(verdict: Verdict) -> list[float]:
    """The observed delay before each attempt, in ms."""
    gaps = verdict.observed.get("gaps")
    return [m.to("ms") for m in gaps] if isinstance(gaps, tuple) else []


def _reconnect(run: Run) -> list[dict[str, Any]]:
    figures = []
    for subject in run.references + run.mutants:
        for verdict in subject.verdicts_for(RECONNECT_RULE):
            delays, manual, source = declared_delays(subject, verdict)
            tolerance = Tolerance.from_statement(verdict.tolerance)
            attempts = charts.reconnect_attempts(delays, observed_gaps(verdict), manual, tolerance)
            rows = []
            for a in attempts:
                allowed = ("–" if a.low_ms is None else
                           f"{fmt(a.low_ms)} – {fmt(a.high_ms) if a.high_ms is not None else '∞'}")
                what = ("manual restart" if a.manual else
                        "beyond the schedule" if a.declared_ms is None else "")
                rows.append([text(str(a.index) + (f" ({what})" if what else "")), ms_cell(a.declared_ms),
                             text(allowed), ms_cell(a.observed_ms),
                             badge(a.ok, "ok", "missing" if a.observed_ms is None else "out", "–")])
            figures.append({
                "svg": Markup(charts.reconnect_chart(subject.name, attempts)),
                "subject": subject.name, "mutant": subject.mutant, "badge": outcome_badge(verdict.outcome),
                "summary": verdict.summary, "source": source, "tolerance": str(verdict.tolerance),
                "table": Table(["attempt", "declared ms", "allowed ms", "observed ms", ""], rows, "compact",
                               (1, 2, 3))})
    return figures


# -- latency -------------------------------------------------------------------------------------
def load_metric_samples(run: Run) -> dict[str, dict[str, Any]]:
    """metric (e.g. ``signalr.latency``) → {"samples": [...], "failures": n, "names": [...]} from
    the load run's samples.json."""
    out: dict[str, dict[str, Any]] = {}
    samples = run.load.samples if run.load else None
    for entry in (samples or {}).get("entries", []) or []:
        if not isinstance(entry, dict) or "type" not in entry or "name" not in entry:
            continue
        metric = metric_of(str(entry["type"]), str(entry["name"]))
        bucket = out.setdefault(metric, {"samples": [], "failures": 0, "names": []})
        bucket["samples"].extend(v for v in entry.get("samples", []) if isinstance(v, int | float))
        bucket["failures"] += int(entry.get("failures", 0) or 0)
        bucket["names"].append(str(entry["name"]))
    return out


def _webhook_attempts(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.timeline or [] if r.get("kind") == "webhook_attempt"]


def _percentile_row(name: str, metric: str, source: str, st: dict[str, Any], failures: Any) -> list[Cell]:
    return [text(name), code(metric), text(source), text(fmt(st["count"])), text(fmt(failures)),
            *(ms_cell(st[f"p{p}"]) for p in PERCENTILES), ms_cell(st["max"])]


def _measure_ms(verdict: Verdict, name: str) -> Cell:
    found = verdict.observed.get(name)
    return ms_cell(found.to("ms")) if isinstance(found, Measure) else Cell("–")


def _count(verdict: Verdict, name: str) -> Cell:
    found = verdict.observed.get(name)
    return text(fmt(found.value)) if isinstance(found, Measure) else Cell("–")


def _latency(run: Run) -> dict[str, Any]:
    metrics = load_metric_samples(run)
    summary_metrics = ((run.load.summary or {}).get("metrics") or {}) if run.load else {}
    figures, rows = [], []
    for channel in CHANNELS:
        name = CHANNEL_NAMES[channel]
        values: list[float] = []
        source = ""
        bucket = metrics.get(f"{channel}.latency")
        if bucket and bucket["samples"]:
            values = bucket["samples"]
            source = "load run: " + ", ".join(bucket["names"])
        elif channel == "webhook":
            values = [float(r["latency_ms"]) for r in _webhook_attempts(run)
                      if isinstance(r.get("latency_ms"), int | float)]
            source = "timeline: the simulator's webhook attempts (POST → answer)" if values else ""
        if values:
            st = _stats(values)
            svg = charts.histogram(f"latency-histogram-{channel}", f"{name} latency histogram", values,
                                   markers=[("p50", st["p50"] or 0), ("p95", st["p95"] or 0)],
                                   y_label="samples")
            figures.append({"svg": Markup(svg), "name": name, "count": len(values),
                            "source": source})
        # Every metric of this channel in the table.
        for metric in sorted(m for m in set(metrics) | set(summary_metrics) if m.startswith(channel + ".")):
            if metric in metrics:
                st = _stats(metrics[metric]["samples"])
                failures = metrics[metric]["failures"]
            else:
                source_stats = summary_metrics[metric]
                st = {k: source_stats.get(k) for k in ("count", "p50", "p90", "p95", "p99", "max")}
                failures = source_stats.get("failures", 0)
            rows.append(_percentile_row(name, metric, "load", st, failures))
        if channel == "webhook":
            attempts = [float(r["latency_ms"]) for r in _webhook_attempts(run)
                        if isinstance(r.get("latency_ms"), int | float)]
            if attempts:
                failures = sum(1 for r in _webhook_attempts(run)
                               if not (isinstance(r.get("status"), int) and 200 <= r["status"] < 300))
                rows.append(_percentile_row(name, "webhook_attempt", "timeline", _stats(attempts), failures))
    contract_rows = []
    for subject in run.references + run.mutants:
        for v in subject.verdicts_for("C-LATENCY"):
            contract_rows.append([text(subject.name), text(v.label), outcome_badge(v.outcome),
                                  *(_measure_ms(v, name) for name in ("p50", "p95", "latency")),
                                  _count(v, "events"), text(str(v.expected) or "–")])
    table = Table(["channel", "metric", "source", "count", "failures", "p50 ms", "p90 ms", "p95 ms",
                   "p99 ms", "max ms"], rows, "percentiles", range(3, 10),
                  "Exact nearest-rank percentiles over every raw sample (failures included)")
    contract = Table(["subject", "check", "verdict", "p50 ms", "p95 ms", "latency ms", "events", "budget"],
                     contract_rows, "compact", (3, 4, 5, 6))
    return {"figures": figures, "table": table if rows else None,
            "contract": contract if contract_rows else None}


# -- load ----------------------------------------------------------------------------------------
def _load(run: Run) -> dict[str, Any] | None:
    load = run.load
    if load is None:
        return None
    summary = load.summary or {}
    info = summary.get("run") or {}
    total = summary.get("total") or {}
    facts = []
    for key in ("host", "scenario", "shape", "users", "spawn_rate", "run_time", "user_classes", "protocol",
                "workers"):
        value = info.get(key)
        if value is not None:
            facts.append((key, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    if isinstance(info.get("duration_s"), int | float):
        facts.append(("duration", f"{info['duration_s']:.1f} s"))
    if total:
        facts.append(("requests", f"{total.get('count', 0)} ({total.get('failures', 0)} failed)"))
        if isinstance(total.get("rps"), int | float):
            facts.append(("mean rate", f"{total['rps']:.1f} requests/s"))
    if summary.get("verdict"):
        facts.append(("threshold verdict", str(summary["verdict"])))
    history = load.history
    storm = summary.get("storm") or (load.samples or {}).get("storm") or None
    over_time = []
    if history:
        t0 = history[0]["Timestamp"] or 0.0
        events = []
        if isinstance(storm, dict) and isinstance(storm.get("drop_at"), int | float):
            events.append(("storm: connections dropped", float(storm["drop_at"]) - t0))

        def series(column: str) -> list[tuple[float, float]]:
            return [((r["Timestamp"] or 0) - t0, r[column]) for r in history
                    if r.get(column) is not None]  # type: ignore[misc]

        rps = charts.line_chart("load-rps", "Requests and failures per second over time", [
            Series("requests/s", series("Requests/s"), BLUE),
            Series("failures/s", series("Failures/s"), VERMILLION, dash="6 3", marker="cross"),
        ], y_label="per second", events=events)
        lat = charts.line_chart("load-latency", "Response time p50 and p95 over time", [
            Series("p50", series("50%"), BLUE),
            Series("p95", series("95%"), ORANGE, dash="6 3", marker="square"),
        ], y_label="response time (ms)", events=events)
        users = charts.line_chart("load-users", "Simulated users over time", [
            Series("users", series("User Count"), PURPLE, step=True, marker="triangle"),
        ], y_label="users", events=events)
        over_time = [
            figure(rps, "Requests/s and failures/s of all requests: Locust's current rate, which trails by a "
                        "few seconds (a very short run shows little)."),
            figure(lat, "Response-time percentiles of every request type together, from Locust's stats "
                        "history: rolling window, rounded to 2 significant digits. Exact per-channel figures "
                        "are in the Latency section."),
            figure(users, "Running users.")]
    thresholds = [t for t in summary.get("thresholds") or [] if isinstance(t, dict)]
    entries = [e for e in summary.get("entries") or [] if isinstance(e, dict)]
    return {
        "facts": facts, "charts": over_time, "has_summary": bool(summary),
        "thresholds": Table(["threshold", "actual", "note", "verdict"], [
            [code(t.get("expression")), text(t.get("actual_text") or "–"), text(t.get("reason") or ""),
             badge(bool(t.get("ok")))] for t in thresholds], "compact", (1,)) if thresholds else None,
        "entries": Table(["type", "name", "count", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms"], [
            [text(e.get("type")), text(e.get("name")), text(fmt(e.get("count"))),
             text(fmt(e.get("failures"))),
             *(ms_cell(e.get(key)) for key in ("p50", "p95", "p99", "max"))]
            for e in entries], "compact", range(2, 8)) if entries else None,
        "storm": _storm(storm) if isinstance(storm, dict) and storm else None,
    }


def _storm(storm: dict[str, Any]) -> dict[str, Any]:
    labels = {"mode": "drop mode", "planned_at_s": "planned at (s)", "dropped": "connections dropped",
              "reconnected": "clients back", "gave_up": "clients that gave up",
              "all_recovered": "all recovered", "recovery_s": "until the last was back (s)",
              "peak_reconnect_rate": "peak reconnects/s",
              "server_peak_negotiate_rate": "server peak negotiates/s",
              "server_negotiates_after_drop": "server negotiates after the drop", "error": "error"}
    rows = []
    for key, label in labels.items():
        if storm.get(key) is not None:
            value = storm[key]
            shown = f"{value:.3f}" if isinstance(value, float) and key == "recovery_s" else (
                fmt(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value))
            rows.append([text(label), text(shown)])
    client = storm.get("client_recovery_ms") or {}
    if isinstance(client, dict) and client.get("count"):
        figures = ", ".join(f"{key} {fmt(client.get(key))} ms" for key in ("p50", "p95", "max"))
        rows.append([text("per-client recovery"), text(figures)])
    ok = storm.get("all_recovered")
    return {"badge": badge(ok if isinstance(ok, bool) else None, "RECOVERED", "NOT RECOVERED"),
            "table": Table(["figure", "value"], rows, "compact")}


# -- webhooks ------------------------------------------------------------------------------------
def webhook_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    attempts = [r for r in records if r.get("kind") == "webhook_attempt"]
    deliveries = [r for r in records if r.get("kind") == "webhook_delivery"]
    statuses: Counter[str] = Counter()
    for r in attempts:
        status = r.get("status")
        error = str(r.get("error") or "error")[:60]
        statuses[str(status) if status is not None else f"no answer ({error})"] += 1
    faults: Counter[str] = Counter(str(r.get("fault")) for r in deliveries if r.get("fault"))
    if not deliveries:
        faults = Counter(str(r.get("fault")) for r in attempts if r.get("fault") and r.get("attempt") == 1)
    hits: Counter[str] = Counter(str(r.get("mode") or r.get("fault")) for r in records
                                 if r.get("kind") == "fault_hit" and r.get("fault") == "webhook")
    latencies = [float(r["latency_ms"]) for r in attempts if isinstance(r.get("latency_ms"), int | float)]
    per_delivery: Counter[int] = Counter(int(r.get("attempts") or 0) for r in deliveries)
    other = Counter(r.get("kind") for r in records if r.get("kind") in (
        "webhook_refused", "webhook_error", "webhook_held", "webhook_released"))
    other.update(f"event_{r['kind'].split('_', 1)[1]}" for r in records
                 if r.get("kind") in ("event_dropped", "event_delayed") and r.get("channel") == "webhook")
    return {"attempts": attempts, "deliveries": deliveries, "outcomes": Counter(str(r.get("outcome"))
                                                                                  for r in deliveries),
            "statuses": statuses, "faults": faults, "fault_hits": hits, "latencies": latencies,
            "per_delivery": per_delivery, "duplicates": sum(1 for r in deliveries if r.get("duplicate")),
            "other": other, "event_types": Counter(str(r.get("event_type")) for r in deliveries)}


def _webhooks(run: Run) -> dict[str, Any]:
    if run.timeline is None:
        return {"missing": "No timeline in this run directory."}
    st = webhook_stats(run.timeline)
    if not st["attempts"] and not st["deliveries"]:
        return {"missing": "The timeline has no webhook deliveries."}
    n_del, n_att = len(st["deliveries"]), len(st["attempts"])
    delivered = st["outcomes"].get("delivered", 0)
    lat = _stats(st["latencies"])
    facts = [("deliveries", str(n_del)), ("HTTP attempts", str(n_att)),
             ("retries", str(max(0, n_att - sum(1 for a in st["attempts"] if a.get("attempt") == 1)))),
             ("delivered", f"{delivered} of {n_del}" + (f" ({delivered / n_del:.0%})" if n_del else "")),
             ("duplicates sent", str(st["duplicates"])),
             ("attempt latency", "p50 {} · p90 {} · p95 {} · p99 {} · max {} ms".format(
                 *(fmt(lat[k]) for k in ("p50", "p90", "p95", "p99", "max"))))]
    svg = charts.histogram("webhook-latency", "Webhook attempt latency histogram", st["latencies"],
                           markers=[("p50", lat["p50"] or 0), ("p95", lat["p95"] or 0)], y_label="attempts",
                           x_label="POST → answer (ms)")
    status_items = sorted(st["statuses"].items(), key=lambda kv: kv[0])
    colours = [charts.GREEN if k.startswith("2") else ORANGE if k.startswith("4") else VERMILLION
               if k.startswith("5") else GREY for k, _ in status_items]
    status_svg = charts.bar_chart("webhook-status", "Webhook attempts by HTTP status", status_items,
                                  x_label="attempts", colours=colours)
    tables = [counts_table("Outcomes", st["outcomes"], "outcome"),
              counts_table("Status codes", st["statuses"], "status"),
              counts_table("Attempts per delivery",
                           Counter({str(k): v for k, v in st["per_delivery"].items()}), "attempts")]
    for key, title, head in (("faults", "Faults applied (deliveries)", "fault"),
                             ("fault_hits", "Fault hits", "mode"), ("event_types", "Event types", "event"),
                             ("other", "Other webhook records", "record")):
        if st[key]:
            tables.append(counts_table(title, st[key], head))
    return {"missing": None, "facts": facts, "counts": tables, "charts": [
        figure(svg, "Time from sending each POST to its answer (every attempt)."),
        figure(status_svg, "Answers by status code (green 2xx, orange 4xx, red 5xx, grey none).")]}


# -- timeline overview ---------------------------------------------------------------------------
def _timeline(run: Run) -> dict[str, Any]:
    records = run.timeline
    if records is None:
        return {"missing": "No timeline in this run directory."}
    walls = [r["wall"] for r in records if isinstance(r.get("wall"), int | float)]
    kinds = Counter(str(r.get("kind")) for r in records)
    polls = Counter(str(r.get("status")) for r in records if r.get("kind") == "poll")
    events = Counter(str(r.get("target") or r.get("event") or "?") for r in records
                     if r.get("kind") == "event")
    tables = [counts_table("Records by kind", kinds, "kind")]
    if polls:
        tables.append(counts_table("Polls by status", polls, "status"))
    if events:
        tables.append(counts_table("SignalR events sent", events, "target"))
    span = f"{max(walls) - min(walls):.1f} s" if walls else "–"
    return {"missing": None, "records": len(records), "span": span,
            "source": run.timeline_path.name if run.timeline_path else None, "counts": tables}
