"""The run report page: one self-contained HTML file (inline CSS and SVG, a few lines of optional
script), nothing fetched from anywhere.

Sections: header (run, times, command, simulator, overall verdict), contract matrix (references,
then mutants with the mutation score), reconnect schedule charts, latency (histograms and
percentiles per channel), load (charts over time, thresholds, reconnect storm), webhooks
(deliveries from the timeline) and a timeline overview. Every text that comes from the run
directory is escaped.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from conduit_core.percentiles import percentile
from contract_tests.timing import Tolerance
from contract_tests.verdict import Measure, Outcome, Verdict
from loadtests.metric_names import metric_of
from reporting import charts
from reporting.charts import BLUE, GREY, ORANGE, PURPLE, VERMILLION, Series, fmt
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


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def build_html(run: Run) -> str:
    charts._ids["n"] = 0
    body = [
        _header(run),
        _contract_section(run),
        _reconnect_section(run),
        _latency_section(run),
        _load_section(run),
        _webhook_section(run),
        _timeline_section(run),
    ]
    nav = "".join(f'<a href="#{key}">{esc(label)}</a>' for key, label in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Run {esc(run.run_id)} · conduit-harness report</title>"
        f"<style>{CSS}</style></head><body>"
        f'<nav class="top" aria-label="sections"><span class="brand">conduit-harness</span>{nav}'
        '<button type="button" id="expand" hidden>Expand all failures</button></nav>'
        f'<main>{"".join(body)}</main>'
        f'<footer>Rendered {esc(datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"))} from '
        f'<code>{esc(run.path.name)}/</code> by <code>python -m reporting</code>.</footer>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


# -- helpers -------------------------------------------------------------------------------------
def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
           numeric: Iterable[int] = (), caption: str = "") -> str:
    """``rows`` hold already escaped HTML; the ``numeric`` columns are right-aligned."""
    right = set(numeric)
    th = "".join(f'<th scope="col"{" class=num" if i in right else ""}>{esc(h)}</th>'
                 for i, h in enumerate(head))
    body = []
    for row in rows:
        body.append("<tr>" + "".join(f'<td{" class=num" if i in right else ""}>{cell}</td>'
                                     for i, cell in enumerate(row)) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="{esc(cls)}">{cap}<thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _badge(ok: bool | None, yes: str = "PASS", no: str = "FAIL", none: str = "—") -> str:
    if ok is None:
        return f'<span class="badge na">{esc(none)}</span>'
    return f'<span class="badge {"pass" if ok else "fail"}">{esc(yes if ok else no)}</span>'


def _ms(value: Any) -> str:
    return esc(fmt(value)) if isinstance(value, int | float) else "–"


def _figure(svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def _section(key: str, title: str, content: str) -> str:
    return (f'<section id="{key}" aria-labelledby="{key}-h"><h2 id="{key}-h">{esc(title)}</h2>'
            f"{content}</section>")


def _missing(text: str) -> str:
    return f'<p class="missing">{esc(text)}</p>'


def _stats(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(v for v in values if isinstance(v, int | float) and math.isfinite(v))
    out: dict[str, float | None] = {"count": float(len(ordered))}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(ordered, p)
    out["max"] = ordered[-1] if ordered else None
    return out


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
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


def _header(run: Run) -> str:
    facts = overall(run)
    started, finished = _parse_time(run.started), _parse_time(run.finished)
    rows = [("run", f"<code>{esc(run.run_id)}</code>"), ("started", esc(run.started or "–")),
            ("finished", esc(run.finished or "–"))]
    if started and finished:
        with contextlib.suppress(TypeError):  # one naive, one aware
            rows.append(("duration", esc(f"{(finished - started).total_seconds():.1f} s")))
    if run.command:
        rows.append(("command", f"<code>{esc(run.command)}</code>"))
    sim = run.simulator
    if sim:
        order = ["url", "profile", "scenario", "seed", "time_scale"]
        keys = [k for k in order if k in sim] + sorted(k for k in sim if k not in order)
        rows.append(("simulator", " · ".join(f"{esc(k)} <code>{esc(sim[k])}</code>" for k in keys)))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)

    refs, failing = facts["refs"], facts["failing_refs"]
    lines = []
    if refs:
        checks = sum(len(s.verdicts) for s in refs)
        if failing:
            lines.append(f'{_badge(False)} reference subjects: {len(failing)} of {len(refs)} fail '
                         f'({esc(", ".join(s.name for s in failing))})')
        else:
            lines.append(f"{_badge(True)} reference subjects: all {len(refs)} pass "
                         f"({checks} rule checks)")
    else:
        lines.append(f"{_badge(None)} no reference subject verdicts in this run")
    mutants, killed = facts["mutants"], facts["killed"]
    if mutants:
        score = len(killed) / len(mutants)
        survivors = [m for m in mutants if not m.killed]
        lines.append(f'{_badge(not survivors, "KILLED", "SURVIVED")} mutation score: '
                     f'<strong>{len(killed)}/{len(mutants)}</strong> mutants fail their expected rule '
                     f'({score:.0%})' + (f' — not caught: {esc(", ".join(m.name for m in survivors))}'
                                         if survivors else ""))
    if facts["load_verdict"]:
        lv = facts["load_verdict"]
        lines.append(f'{_badge(None if lv == "no thresholds" else lv == "pass")} load thresholds: {esc(lv)}')
    verdict = (f'<p class="overall {"ok" if facts["ok"] else "bad"}">'
               f'{"All good" if facts["ok"] else "Needs attention"}: '
               f'{"every reference passes, every mutant is caught" if facts["ok"] else "see below"}</p>')
    problems = ""
    if run.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
        problems = f'<details class="problems"><summary>{len(run.problems)} note(s) on the run directory' \
                   f'</summary><ul>{items}</ul></details>'
    content = (f'<h1>Run <code>{esc(run.run_id)}</code></h1>{verdict}'
               f'<ul class="verdicts">{"".join(f"<li>{line}</li>" for line in lines)}</ul>'
               f'<dl class="facts">{dl}</dl>{problems}')
    return f'<section id="summary" class="head" aria-label="summary">{content}</section>'


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
    text = str(verdict.observed)
    return text if len(text) <= 36 else text[:34] + "…"


def _verdict_detail(verdict: Verdict) -> str:
    rows = []
    for key in ("expected", "observed", "tolerance"):
        statement = getattr(verdict, key)
        if statement:
            rows.append(f"<dt>{key}</dt><dd>{esc(statement)}</dd>")
    evidence = [e.text for e in verdict.evidence]
    ev = ""
    if evidence:
        lines = evidence[:MAX_EVIDENCE]
        more = f"\n… {len(evidence) - MAX_EVIDENCE} more line(s)" if len(evidence) > MAX_EVIDENCE else ""
        plural = "s" if len(evidence) != 1 else ""
        ev = (f'<div class="evidence-h">evidence ({len(evidence)} line{plural})</div>'
              f'<pre class="evidence">{esc(chr(10).join(lines) + more)}</pre>')
    return (f'<div class="verdict">{_outcome_badge(verdict.outcome)} <strong>{esc(verdict.label)}</strong>: '
            f'{esc(verdict.summary)}<dl class="why">{"".join(rows)}</dl>{ev}</div>')


def _outcome_badge(outcome: Outcome) -> str:
    names = {Outcome.PASS: ("pass", "PASS"), Outcome.FAIL: ("fail", "FAIL"),
             Outcome.INCONCLUSIVE: ("inconclusive", "INCONCLUSIVE"), Outcome.NOT_APPLICABLE: ("na", "N/A")}
    cls, text = names[outcome]
    return f'<span class="badge {cls}">{esc(text)}</span>'


def _cell(verdicts: list[Verdict], expected: bool = False) -> str:
    mark = '<span class="star" title="the rule this mutant must fail">★</span> ' if expected else ""
    cls = " expected" if expected else ""
    if not verdicts:
        return f'<td class="na{cls}">{mark}<span aria-label="not run">—</span></td>'
    outcome = worst(verdicts)
    number = " · ".join(n for n in (primary_number(v) for v in verdicts) if n)
    num = f' <span class="num">{esc(number)}</span>' if number else ""
    if outcome is Outcome.PASS:
        title = " / ".join(v.summary for v in verdicts)
        return f'<td class="pass{cls}" title="{esc(title)}">{mark}{_outcome_badge(outcome)}{num}</td>'
    details = "".join(_verdict_detail(v) for v in verdicts)
    return (f'<td class="{outcome.value.lower()}{cls}"><details class="failure"><summary>{mark}'
            f"{_outcome_badge(outcome)}{num}</summary>{details}</details></td>")


def worst(verdicts: Iterable[Verdict]) -> Outcome:
    """The outcome a cell of several verdicts shows: FAIL over INCONCLUSIVE over PASS over N/A."""
    order = (Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.PASS, Outcome.NOT_APPLICABLE)
    found = {v.outcome for v in verdicts}
    return next((o for o in order if o in found), Outcome.NOT_APPLICABLE)


def _rows(subjects: Iterable[Subject]) -> list[tuple[str, str]]:
    """(label, rule) of every verdict, in the contract's rule order."""
    found = {(v.label, v.rule) for s in subjects for v in s.verdicts}
    return sorted(found, key=lambda pair: (rule_sort_key(pair[1]), pair[0]))


def _matrix(subjects: list[Subject], title: str, mark_expected: bool = False) -> str:
    rows = _rows(subjects)
    if not rows:
        return _missing(f"{title}: no verdicts.")
    groups: list[tuple[str, list[Subject]]] = []
    for kind, label in (("client", "clients"), ("receiver", "receivers")):
        members = [s for s in subjects if s.kind == kind]
        if members:
            groups.append((label, members))
    others = [s for s in subjects if s.kind not in ("client", "receiver")]
    if others:
        groups.append(("other", others))
    ordered = [s for _, members in groups for s in members]
    top = '<th scope="col" rowspan="2">rule</th>' + "".join(
        f'<th scope="colgroup" colspan="{len(m)}">{esc(label)}</th>' for label, m in groups)
    names = "".join(
        f'<th scope="col" class="subject" title="{esc(s.profile or "")}">{esc(s.name)}'
        + (f'<div class="sub">{esc(s.mutant)}</div>' if mark_expected and s.mutant else "")
        + "</th>" for s in ordered)
    body = []
    for label, rule in rows:
        cells = "".join(_cell([v for v in s.verdicts if v.label == label],
                              mark_expected and s.expected_rule == rule) for s in ordered)
        body.append(f'<tr><th scope="row" class="rule">{esc(label)}</th>{cells}</tr>')
    filled = [[v for v in s.verdicts if v.label == label] for s in ordered for label, _ in rows]
    total = sum(1 for cell in filled if cell)
    failed = sum(1 for cell in filled if cell and worst(cell) is not Outcome.PASS)
    return (f'<div class="scroll"><table class="matrix{" mutants" if mark_expected else ""}">'
            f'<caption>{esc(title)}: {total - failed} of {total} cells pass</caption>'
            f'<thead><tr>{top}</tr><tr>{names}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _contract_section(run: Run) -> str:
    if not run.subjects:
        return _section("contract", "Contract matrix", _missing("No contract subjects in this run."))
    parts = ['<p class="hint">Rows are rules, columns subjects. A cell shows the verdict and its '
             'deciding number; open a <span class="badge fail">FAIL</span> for expected / observed / '
             'tolerance and the timeline evidence. — means the rule was not run for that subject.</p>']
    refs = run.references
    if refs:
        parts.append("<h3>Reference clients and receivers</h3>")
        parts.append(_matrix(refs, "Reference subjects"))
    mutants = run.mutants
    if mutants:
        killed = sum(1 for m in mutants if m.killed)
        parts.append(f"<h3>Mutants <small>({killed}/{len(mutants)} caught)</small></h3>")
        rows = []
        for m in sorted(mutants, key=lambda s: (s.kind, s.expected_rule or "", s.name)):
            state = m.killed
            caught = _badge(state, "KILLED", "SURVIVED", "NO VERDICT")
            found = m.verdicts_for(m.expected_rule) if m.expected_rule else []
            summary = "; ".join(v.summary for v in found) or "the expected rule was not run"
            rows.append([esc(m.name), esc(m.mutant), esc(m.kind),
                         f"<code>{esc(m.expected_rule or '–')}</code>", caught, esc(summary)])
        parts.append(_table(["subject", "mutant", "kind", "expected rule", "caught?",
                             "verdict of that rule"], rows, "mutant-table"))
        parts.append('<details class="mutant-matrix"><summary>Every verdict of every mutant (★ = the rule '
                     "it must fail, where FAIL is the wanted outcome)</summary>"
                     + _matrix(mutants, "Mutants", mark_expected=True) + "</details>")
    return _section("contract", "Contract matrix", "".join(parts))


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


def _reconnect_section(run: Run) -> str:
    figures = []
    for subject in run.references + run.mutants:
        for verdict in subject.verdicts_for(RECONNECT_RULE):
            delays, manual, source = declared_delays(subject, verdict)
            gaps = observed_gaps(verdict)
            tolerance = Tolerance.from_statement(verdict.tolerance)
            attempts = charts.reconnect_attempts(delays, gaps, manual, tolerance)
            svg = charts.reconnect_chart(subject.name, attempts)
            rows = []
            for a in attempts:
                allowed = ("–" if a.low_ms is None else
                           f"{fmt(a.low_ms)} – {fmt(a.high_ms) if a.high_ms is not None else '∞'}")
                what = ("manual restart" if a.manual else
                        "beyond the schedule" if a.declared_ms is None else "")
                rows.append([str(a.index) + (f" ({what})" if what else ""), _ms(a.declared_ms), esc(allowed),
                             _ms(a.observed_ms),
                             _badge(a.ok, "ok", "missing" if a.observed_ms is None else "out", "–")])
            table = _table(["attempt", "declared ms", "allowed ms", "observed ms", ""], rows, "compact",
                           (1, 2, 3))
            label = f" (mutant {subject.mutant})" if subject.mutant else ""
            caption = (f'<strong>{esc(subject.name)}</strong>{esc(label)} {_outcome_badge(verdict.outcome)} '
                       f'{esc(verdict.summary)}<br><span class="muted">declared delays from '
                       f'{esc(source)}; tolerance: {esc(verdict.tolerance or "defaults")}</span>'
                       f'<details><summary>numbers</summary>{table}</details>')
            figures.append(_figure(svg, caption))
    if not figures:
        content = _missing(f"No {RECONNECT_RULE} verdict in this run.")
    else:
        content = ('<p class="hint">Delay before each reconnect attempt (from the drop, then from the '
                   "previous attempt): the declared schedule as bars, the allowed band (early by at most "
                   "50 ms, late by up to max(500 ms, 20 %), or as the verdict's tolerance says) shaded, the "
                   "observed gap as a point; ✗ marks an attempt outside the band. After the schedule only "
                   "one manual restart (no sooner than declared) is allowed.</p>"
                   '<div class="grid">' + "".join(figures) + "</div>")
    return _section("reconnect", "Reconnect schedule", content)


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


def _latency_section(run: Run) -> str:
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
            figures.append(_figure(svg, f"<strong>{esc(name)}</strong> — {len(values)} samples; "
                                        f'<span class="muted">{esc(source)}</span>'))
        # Every metric of this channel in the table.
        for metric in sorted(m for m in set(metrics) | set(summary_metrics) if m.startswith(channel + ".")):
            if metric in metrics:
                st = _stats(metrics[metric]["samples"])
                failures = metrics[metric]["failures"]
            else:
                source_stats = summary_metrics[metric]
                st = {k: source_stats.get(k) for k in ("count", "p50", "p90", "p95", "p99", "max")}
                failures = source_stats.get("failures", 0)
            rows.append([esc(name), f"<code>{esc(metric)}</code>", "load", esc(fmt(st["count"])),
                         esc(fmt(failures)), *(_ms(st[f"p{p}"]) for p in PERCENTILES), _ms(st["max"])])
        if channel == "webhook":
            attempts = [float(r["latency_ms"]) for r in _webhook_attempts(run)
                        if isinstance(r.get("latency_ms"), int | float)]
            if attempts:
                st = _stats(attempts)
                failures = sum(1 for r in _webhook_attempts(run)
                               if not (isinstance(r.get("status"), int) and 200 <= r["status"] < 300))
                rows.append([esc(name), "<code>webhook_attempt</code>", "timeline", esc(fmt(st["count"])),
                             esc(fmt(failures)), *(_ms(st[f"p{p}"]) for p in PERCENTILES), _ms(st["max"])])
    parts = []
    if figures:
        parts.append('<div class="grid">' + "".join(figures) + "</div>")
    if rows:
        parts.append(_table(["channel", "metric", "source", "count", "failures", "p50 ms", "p90 ms", "p95 ms",
                             "p99 ms", "max ms"], rows, "percentiles", range(3, 10),
                            "Exact nearest-rank percentiles over every raw sample (failures included)"))
    contract_rows = []
    for subject in run.references + run.mutants:
        for v in subject.verdicts_for("C-LATENCY"):
            contract_rows.append([esc(subject.name), esc(v.label), _outcome_badge(v.outcome),
                                  *(_measure_ms(v, name) for name in ("p50", "p95", "latency")),
                                  _count(v, "events"), esc(v.expected or "–")])
    if contract_rows:
        parts.append("<h3>Contract C-LATENCY</h3>")
        parts.append(_table(["subject", "check", "verdict", "p50 ms", "p95 ms", "latency ms", "events",
                             "budget"], contract_rows, "compact", (3, 4, 5, 6)))
    if not parts:
        parts.append(_missing("No latency samples in this run (no load run, no webhook attempts, no "
                              "C-LATENCY verdict)."))
    return _section("latency", "Latency", "".join(parts))


def _measure_ms(verdict: Verdict, name: str) -> str:
    found = verdict.observed.get(name)
    return _ms(found.to("ms")) if isinstance(found, Measure) else "–"


def _count(verdict: Verdict, name: str) -> str:
    found = verdict.observed.get(name)
    return esc(fmt(found.value)) if isinstance(found, Measure) else "–"


# -- load ----------------------------------------------------------------------------------------
def _load_section(run: Run) -> str:
    load = run.load
    if load is None:
        return _section("load", "Load", _missing("No load run in this run directory."))
    summary = load.summary or {}
    parts = []
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
    if facts:
        parts.append('<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
                     + "</dl>")
    history = load.history
    storm = summary.get("storm") or (load.samples or {}).get("storm") or None
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
        parts.append('<div class="grid">'
                     + _figure(rps, "Requests/s and failures/s of all requests: Locust's current rate, "
                                    "which trails by a few seconds (a very short run shows little).")
                     + _figure(lat, "Response-time percentiles of every request type together, from Locust's "
                                    "stats history: rolling window, rounded to 2 significant digits. Exact "
                                    "per-channel figures are in the Latency section.")
                     + _figure(users, "Running users.") + "</div>")
    else:
        parts.append(_missing("No Locust stats history (locust_stats_history.csv): no charts over time."))
    thresholds = summary.get("thresholds") or []
    if thresholds:
        rows = [[f"<code>{esc(t.get('expression'))}</code>", esc(t.get("actual_text") or "–"),
                 esc(t.get("reason") or ""), _badge(bool(t.get("ok")))]
                for t in thresholds if isinstance(t, dict)]
        parts.append("<h3>Thresholds</h3>"
                     + _table(["threshold", "actual", "note", "verdict"], rows, "compact", (1,)))
    elif summary:
        parts.append('<p class="muted">No thresholds were set for this load run.</p>')
    entries = summary.get("entries") or []
    if entries:
        rows = [[esc(e.get("type")), esc(e.get("name")), esc(fmt(e.get("count"))),
                 esc(fmt(e.get("failures"))), _ms(e.get("p50")), _ms(e.get("p95")), _ms(e.get("p99")),
                 _ms(e.get("max"))]
                for e in entries if isinstance(e, dict)]
        parts.append("<details><summary>Every request name</summary>"
                     + _table(["type", "name", "count", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                              rows, "compact", range(2, 8)) + "</details>")
    if isinstance(storm, dict) and storm:
        parts.append(_storm(storm))
    return _section("load", "Load", "".join(parts))


def _storm(storm: dict[str, Any]) -> str:
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
            text = f"{value:.3f}" if isinstance(value, float) and key == "recovery_s" else (
                fmt(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value))
            rows.append([esc(label), esc(text)])
    client = storm.get("client_recovery_ms") or {}
    if isinstance(client, dict) and client.get("count"):
        text = (f"p50 {fmt(client.get('p50'))} ms, p95 {fmt(client.get('p95'))} ms, "
                f"max {fmt(client.get('max'))} ms")
        rows.append(["per-client recovery", esc(text)])
    ok = storm.get("all_recovered")
    badge = _badge(ok if isinstance(ok, bool) else None, "RECOVERED", "NOT RECOVERED")
    head = f"<h3>Reconnect storm {badge}</h3>"
    return head + _table(["figure", "value"], rows, "compact")


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


def _counts_table(title: str, counter: Counter, head: str) -> str:
    rows = [[esc(k), esc(v)] for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return (f'<div class="counts"><h4>{esc(title)}</h4>' + _table([head, "count"], rows, "compact", (1,))
            + "</div>")


def _webhook_section(run: Run) -> str:
    if run.timeline is None:
        return _section("webhooks", "Webhooks", _missing("No timeline in this run directory."))
    st = webhook_stats(run.timeline)
    if not st["attempts"] and not st["deliveries"]:
        return _section("webhooks", "Webhooks", _missing("The timeline has no webhook deliveries."))
    n_del, n_att = len(st["deliveries"]), len(st["attempts"])
    delivered = st["outcomes"].get("delivered", 0)
    lat = _stats(st["latencies"])
    facts = [("deliveries", str(n_del)), ("HTTP attempts", str(n_att)),
             ("retries", str(max(0, n_att - sum(1 for a in st["attempts"] if a.get("attempt") == 1)))),
             ("delivered", f"{delivered} of {n_del}" + (f" ({delivered / n_del:.0%})" if n_del else "")),
             ("duplicates sent", str(st["duplicates"])),
             ("attempt latency", "p50 {} · p90 {} · p95 {} · p99 {} · max {} ms".format(
                 *(fmt(lat[k]) for k in ("p50", "p90", "p95", "p99", "max"))))]
    parts = ['<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
             + "</dl>"]
    svg = charts.histogram("webhook-latency", "Webhook attempt latency histogram", st["latencies"],
                           markers=[("p50", lat["p50"] or 0), ("p95", lat["p95"] or 0)], y_label="attempts",
                           x_label="POST → answer (ms)")
    status_items = sorted(st["statuses"].items(), key=lambda kv: kv[0])
    colours = [charts.GREEN if k.startswith("2") else ORANGE if k.startswith("4") else VERMILLION
               if k.startswith("5") else GREY for k, _ in status_items]
    status_svg = charts.bar_chart("webhook-status", "Webhook attempts by HTTP status", status_items,
                                  x_label="attempts", colours=colours)
    parts.append('<div class="grid">'
                 + _figure(svg, "Time from sending each POST to its answer (every attempt).")
                 + _figure(status_svg, "Answers by status code (green 2xx, orange 4xx, red 5xx, grey none).")
                 + "</div>")
    tables = [_counts_table("Outcomes", st["outcomes"], "outcome"),
              _counts_table("Status codes", st["statuses"], "status"),
              _counts_table("Attempts per delivery",
                            Counter({str(k): v for k, v in st["per_delivery"].items()}), "attempts")]
    if st["faults"]:
        tables.append(_counts_table("Faults applied (deliveries)", st["faults"], "fault"))
    if st["fault_hits"]:
        tables.append(_counts_table("Fault hits", st["fault_hits"], "mode"))
    if st["event_types"]:
        tables.append(_counts_table("Event types", st["event_types"], "event"))
    if st["other"]:
        tables.append(_counts_table("Other webhook records", st["other"], "record"))
    parts.append('<div class="counts-row">' + "".join(tables) + "</div>")
    return _section("webhooks", "Webhooks", "".join(parts))


# -- timeline overview ---------------------------------------------------------------------------
def _timeline_section(run: Run) -> str:
    records = run.timeline
    if records is None:
        return _section("timeline", "Timeline", _missing("No timeline in this run directory."))
    walls = [r["wall"] for r in records if isinstance(r.get("wall"), int | float)]
    span = f"{max(walls) - min(walls):.1f} s" if walls else "–"
    kinds = Counter(str(r.get("kind")) for r in records)
    polls = Counter(str(r.get("status")) for r in records if r.get("kind") == "poll")
    events = Counter(str(r.get("target") or r.get("event") or "?") for r in records
                     if r.get("kind") == "event")
    parts = [f'<p>{len(records)} records over {esc(span)}'
             + (f' from <code>{esc(run.timeline_path.name)}</code>' if run.timeline_path else "") + ".</p>"]
    tables = [_counts_table("Records by kind", kinds, "kind")]
    if polls:
        tables.append(_counts_table("Polls by status", polls, "status"))
    if events:
        tables.append(_counts_table("SignalR events sent", events, "target"))
    parts.append('<div class="counts-row">' + "".join(tables) + "</div>")
    return _section("timeline", "Timeline", "".join(parts))


CSS = """
:root{--ink:#1a1a1a;--muted:#555;--line:#d4d7dc;--bg:#f4f5f7;--pass:#0b6b3a;--pass-bg:#e2f3e8;
--fail:#b3261e;--fail-bg:#fbe6e3;--na:#6b6b6b;--accent:#0072B2}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);background:var(--bg)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:.9em}
nav.top{position:sticky;top:0;z-index:5;display:flex;gap:4px;align-items:center;flex-wrap:wrap;
padding:6px 24px;background:#1f2a36;color:#fff}
nav.top .brand{font-weight:700;margin-right:12px}
nav.top a{color:#dfe9f3;text-decoration:none;padding:3px 8px;border-radius:4px}
nav.top a:hover,nav.top a:focus{background:#33465a;color:#fff}
nav.top button{margin-left:auto;font:inherit;font-size:13px;padding:3px 10px;border-radius:4px;
border:1px solid #8aa;background:#fff;color:var(--ink);cursor:pointer}
main{max-width:1240px;margin:0 auto;padding:8px 24px 32px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 22px 18px;margin:16px 0;
scroll-margin-top:48px}
h1{font-size:24px;margin:4px 0 8px}h2{font-size:20px;margin:0 0 10px;padding-bottom:4px;
border-bottom:2px solid var(--accent)}h3{font-size:16px;margin:18px 0 8px}h4{font-size:14px;margin:0 0 4px}
.overall{font-size:17px;font-weight:700;margin:4px 0 8px;padding:6px 12px;border-radius:6px;
display:inline-block}
.overall.ok{background:var(--pass-bg);color:var(--pass);border:1px solid var(--pass)}
.overall.bad{background:var(--fail-bg);color:var(--fail);border:1px solid var(--fail)}
ul.verdicts{list-style:none;padding:0;margin:6px 0 10px}ul.verdicts li{margin:4px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.facts dt{color:var(--muted);font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;min-width:3.2em;text-align:center;font-size:12px;font-weight:700;letter-spacing:.04em;
padding:1px 6px;border-radius:3px;color:#fff;background:var(--na)}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
caption{text-align:left;color:var(--muted);font-size:13px;padding:2px 0 4px;caption-side:top}
th,td{border:1px solid var(--line);padding:4px 8px;vertical-align:top;text-align:left}
thead th{background:#eef1f5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.matrix th.rule{white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;
background:#f7f8fa}
table.matrix td{min-width:9em}
table.matrix td.pass{background:var(--pass-bg)}table.matrix td.fail{background:var(--fail-bg)}
table.matrix td.na{color:var(--na);text-align:center}
table.matrix td.expected{outline:2px solid #6a3d9a;outline-offset:-3px}
table.matrix .num{font-size:12.5px;color:#333;font-variant-numeric:tabular-nums}
table.matrix th.subject{font-size:13px}table.matrix .sub{font-weight:400;color:var(--muted);font-size:12px}
.star{color:#6a3d9a}
details.failure summary{cursor:pointer}
details.failure[open]{min-width:26em;max-width:46em}
.verdict{margin:8px 0 4px;padding-top:6px;border-top:1px dashed #caa}
dl.why{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0;font-size:13.5px}
dl.why dt{font-weight:600;color:var(--muted)}dl.why dd{margin:0;overflow-wrap:anywhere}
.evidence-h{font-size:12.5px;font-weight:600;color:var(--muted)}
pre.evidence{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;line-height:1.35;max-height:22em;overflow:auto;
background:#fbfbfb;border:1px solid #e2e2e2;border-radius:4px;padding:6px 8px;margin:2px 0 6px}
figure{margin:12px 0;break-inside:avoid;page-break-inside:avoid}
figcaption{font-size:13.5px;margin-top:4px}
svg.chart{display:block;max-width:100%;height:auto;border:1px solid #e6e8eb;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:8px 20px}
.counts-row{display:flex;flex-wrap:wrap;gap:10px 28px;align-items:flex-start}
.hint,.muted,.missing{color:var(--muted)}.hint{font-size:13.5px;margin-top:0}
.missing{font-style:italic}
details.problems{font-size:13.5px;color:var(--muted)}
footer{max-width:1240px;margin:0 auto;padding:0 24px 24px;color:var(--muted);font-size:12.5px}
@media (max-width:700px){main{padding:4px 8px}section{padding:10px}.grid{grid-template-columns:1fr}}
@media print{
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  body{background:#fff;font-size:10.5pt}
  nav.top,#expand{display:none}
  main{max-width:none;padding:0}
  section{border:none;border-radius:0;padding:0;margin:0 0 14pt}
  h2{break-after:avoid}
  .scroll{overflow:visible}
  table{max-width:100%}
  table.matrix{width:100%;font-size:8.5pt}
  table.matrix td{min-width:0}
  details.failure[open]{min-width:0;max-width:none}
  pre.evidence{max-height:none;overflow:visible;font-size:7.5pt}
  tr,figure{break-inside:avoid}
  table.matrix tr{break-inside:auto}
  .grid{display:block}
  svg.chart{border:none;max-width:17cm}
  a{color:inherit;text-decoration:none}
}
"""

SCRIPT = """
(function(){
  var button=document.getElementById('expand');
  var failures=document.querySelectorAll('details.failure');
  if(button&&failures.length){
    button.hidden=false;
    button.addEventListener('click',function(){
      var open=button.getAttribute('data-open')!=='1';
      failures.forEach(function(d){d.open=open;});
      button.setAttribute('data-open',open?'1':'0');
      button.textContent=open?'Collapse all failures':'Expand all failures';
    });
  }
  var closed=[];
  window.addEventListener('beforeprint',function(){
    closed=[];document.querySelectorAll('details:not([open])').forEach(function(d){closed.push(d);d.open=true;});
  });
  window.addEventListener('afterprint',function(){closed.forEach(function(d){d.open=false;});});
})();
"""
