"""The report's parts on small hand-made inputs: loader tolerance, charts, JUnit merging, storm."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from contract_tests.timing import Tolerance
from contract_tests.verdict import Evidence, Measure, Outcome, Statement, Verdict
from loadtests.summary import SAMPLES_FORMAT, build_summary
from reporting import build_html, load_run, merge_junit, render_report
from reporting.charts import Series, fmt, histogram, line_chart, reconnect_attempts, ticks
from reporting.html import declared_delays, observed_gaps, primary_number
from reporting.run_dir import Subject
from tests.reporting import HOSTILE, ms, reconnect_verdict

HISTORY_HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%",
                  "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count",
                  "Total Failure Count", "Total Median Response Time", "Total Average Response Time",
                  "Total Min Response Time", "Total Max Response Time", "Total Average Content Size"]


def test_an_empty_directory_still_renders(tmp_path: Path) -> None:
    page = render_report(tmp_path)
    html = page.read_text(encoding="utf-8")
    assert "No contract subjects in this run." in html and "No load run" in html
    assert "No timeline in this run directory." in html and "no manifest.json" in html
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("tests") == "0" and not root.findall("testsuite")


def test_without_a_manifest_verdict_files_are_the_subjects(tmp_path: Path) -> None:
    (tmp_path / "contract").mkdir()
    verdicts = [reconnect_verdict([1, 301], False).to_json(), Verdict("C-AUTH", Outcome.PASS, "ok").to_json()]
    (tmp_path / "contract" / "my-client.verdicts.json").write_text(json.dumps(verdicts))
    (tmp_path / "timeline.jsonl").write_text('{"kind": "poll", "status": 200, "wall": 1.0}\nnot json\n\n'
                                             '{"kind": "poll", "status": 429, "wall": 2.5}\n')
    run = load_run(tmp_path)
    assert [s.name for s in run.subjects] == ["my-client"] and run.subjects[0].junit_path is None
    assert run.timeline is not None and len(run.timeline) == 2
    assert any("1 unreadable line" in p for p in run.problems)
    html = build_html(run)
    assert 'data-chart="reconnect"' in html and "the verdict&#39;s expected delays" in html
    assert "Polls by status" in html and "<td>429</td>" in html


def test_broken_parts_become_notes(tmp_path: Path) -> None:
    (tmp_path / "bad.verdicts.json").write_text("{not json")
    manifest = {"run": HOSTILE, "subjects": [
        {"name": "a", "verdicts": "bad.verdicts.json", "junit": "missing.xml", "profile": "nowhere.toml"},
        {"name": "b", "verdicts": "gone.verdicts.json"}, "not an object"],
        "load": "no-such-dir", "timeline": "no-timeline.jsonl", "simulator": {"url": HOSTILE}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    run = load_run(tmp_path)
    text = "\n".join(run.problems)
    for piece in ("bad.verdicts.json: invalid JSON", "JUnit file missing.xml is missing",
                  "profile nowhere.toml not found", "verdicts file gone.verdicts.json is missing",
                  "subjects[2] is not an object", "load: no-such-dir: no such directory",
                  "no-timeline.jsonl: cannot read"):
        assert piece in text
    html = build_html(run)
    assert HOSTILE not in html and html.count("&lt;script&gt;") >= 2


def test_verdicts_of_the_first_format_are_read() -> None:
    """verdicts.json files written before verdicts had outcomes and measures stay readable."""
    v = Verdict.from_json({"rule": "C-X", "passed": "yes", "evidence": "one line", "numbers": [1]})
    assert v == Verdict("C-X", Outcome.FAIL, "", evidence=(Evidence("one line"),))
    old = Verdict.from_json({"rule": "C-RECONNECT-SCHEDULE", "passed": True, "summary": "ok",
                             "expected": "delays ['0 ms'] then no automatic attempt",
                             "observed": "2 attempt(s)",
                             "tolerance": "", "evidence": ["attempt 1: 3 ms"],
                             "numbers": {"attempts": 2, "gaps_ms": [3, 305], "note": "x"}})
    assert old.passed and old.label == "C-RECONNECT-SCHEDULE" and str(old.expected).startswith("delays")
    assert observed_gaps(old) == [3.0, 305.0] and old.observed["attempts"] == Measure(2)
    assert old.details == {"note": "x"}


def test_an_entry_that_is_not_a_verdict_is_a_note(tmp_path: Path) -> None:
    good = Verdict("C-AUTH", Outcome.PASS, "ok").to_json()
    bad = {"observed": {"measures": 3}}
    (tmp_path / "a.verdicts.json").write_text(json.dumps([good, "not a verdict", bad]))
    run = load_run(tmp_path)
    assert [v.rule for v in run.subjects[0].verdicts] == ["C-AUTH"]
    assert sum("is not a verdict" in p for p in run.problems) == 2


def test_cell_numbers() -> None:
    def n(observed: Statement) -> str:
        return primary_number(Verdict("R", Outcome.PASS, "", observed=observed))

    assert n(Statement("p95 {p95}, p50 {p50}", p95=ms(4.123), p50=ms(2.0))) == "p95 4.12 ms"
    assert n(Statement("{latency}", latency=ms(380.2))) == "latency 380 ms"
    assert n(Statement("{attempts}", attempts=Measure(5, "attempts"), gaps=[ms(1), ms(2)])) == "5 attempts"
    assert n(Statement("{peak}", peak=Measure(1, "connections"))) == "peak 1 connection"
    long = "a rather long observation that goes on and on"
    assert n(Statement(long)) == "a rather long observation that goe…"


def test_tolerance_and_declared_delays_from_the_verdict() -> None:
    tolerance = Tolerance(late_floor_s=0.4, late_fraction=0.1, early_s=0.02)
    assert Tolerance.from_statement(tolerance.statement()) == tolerance
    assert Tolerance.from_statement(Statement()) == Tolerance()
    assert Tolerance.from_statement(tolerance.early_statement()) == Tolerance(early_s=0.02)
    verdict = reconnect_verdict([0, 2001], True, (0, 2000, 10000), manual_ms=5000)
    delays, manual, source = declared_delays(Subject("x"), verdict)
    assert (delays, manual) == ([0.0, 2000.0, 10000.0], 5000.0) and "expected" in source
    profiled = Subject("y", reconnect_delays_ms=(0, 300), manual_restart_ms=1000, profile="p.toml")
    assert declared_delays(profiled, verdict) == ([0.0, 300.0], 1000, "profile p.toml")


def test_reconnect_bands_follow_the_contract_tolerance() -> None:
    attempts = reconnect_attempts([0, 2000, 10000, 30000], [10, 1940, 12100, 30000, 6000], 5000)
    assert [(a.low_ms, a.high_ms) for a in attempts] == [(0, 500), (1950, 2500), (9950, 12000),
                                                         (29950, 36000), (4950, None)]
    assert [a.ok for a in attempts] == [True, False, False, True, True]
    missing = reconnect_attempts([0, 300], [5], None)
    assert missing[1].observed_ms is None and missing[1].ok is False


def test_chart_scales_and_labels() -> None:
    assert ticks(0, 93) == ([0, 20, 40, 60, 80, 100], 0, 100)
    assert fmt(0.779) == "0.779" and fmt(2033.39) == "2033" and fmt(12.345) == "12.3" and fmt(None) == "–"
    values = [float(v) for v in range(1, 101)] + [5000.0]
    svg = histogram("latency-histogram-x", "t <x>", values, markers=[("p50", 50.0)])
    assert 'data-chart="latency-histogram-x"' in svg and "<title" in svg and "t &lt;x&gt;" in svg
    assert "beyond p99" in svg and "≥" in svg  # the 5 s outlier has its own bin
    empty = line_chart("load-rps", "nothing", [Series("requests/s", [])])
    assert 'data-chart="load-rps"' in empty and "no data points" in empty


def test_junit_edge_cases(tmp_path: Path) -> None:
    bare = tmp_path / "bare.xml"
    bare.write_text('<testsuite name="x" tests="2"><testcase classname="c" name="a" time="1.5"/>'
                    '<testcase name="b" time="oops"><skipped/></testcase></testsuite>')
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testsuite")
    passed = Verdict("C-A", Outcome.PASS, "ok")
    tree = merge_junit([Subject("bare", junit_path=bare), Subject("broken", junit_path=broken),
                        Subject("verdicts", verdicts=[passed])], "r1")
    suites = tree.getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("skipped"), s.get("errors")) for s in suites] == [
        ("bare", "2", "1", "0"), ("broken", "1", "0", "1"), ("verdicts", "1", "0", "0")]
    assert [c.get("classname") for c in suites[0].findall("testcase")] == ["bare.c", "bare"]
    assert suites[0].get("time") == "1.500" and tree.getroot().get("errors") == "1"


def _load_dir(path: Path) -> None:
    """A load report directory in the runner's formats, with a reconnect storm."""
    path.mkdir()
    doc = {"format": SAMPLES_FORMAT, "started": 1000.0, "ended": 1010.0, "workers": None,
           "entries": [{"type": "SignalR", "name": "latency TaskProgress", "samples": [3.0, 4.0, 5.0, 90.0],
                        "failures": 0, "errors": {}},
                       {"type": "SignalR", "name": "reconnect", "samples": [120.0, 180.0], "failures": 0,
                        "errors": {}}],
           "timed": [{"type": "SignalR", "name": "reconnect", "points": [[1004.2, 120.0, 0.0],
                                                                          [1004.5, 180.0, 0.0]]}],
           "storm": {"planned_at_s": 4.0, "mode": "abort", "drop_at": 1004.0, "dropped": 2}}
    (path / "samples.json").write_text(json.dumps(doc))
    (path / "summary.json").write_text(json.dumps(build_summary(doc, {"users": 2}), default=str))
    with (path / "locust_stats_history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_HEADER)
        for i, users in enumerate((0, 2, 2, 2)):
            p50 = "N/A" if i == 0 else "4"
            writer.writerow([1000 + 2 * i, users, "", "Aggregated", f"{i * 1.5:f}", "0.000000", p50]
                            + [p50] * 10 + [i * 3, 0, 4, 5.0, 3.0, 90.0, 0])
            writer.writerow([1000 + 2 * i, users, "SignalR", "latency TaskProgress", "1.0", "0.0"]
                            + ["4"] * 11 + [1, 0, 4, 5.0, 3.0, 90.0, 0])


def test_storm_and_history(tmp_path: Path) -> None:
    _load_dir(tmp_path / "load")
    run = load_run(tmp_path)
    assert run.load is not None and [r["User Count"] for r in run.load.history] == [0, 2, 2, 2]
    assert run.load.history[0]["50%"] is None  # Locust's N/A
    html = build_html(run)
    assert "Reconnect storm" in html and "RECOVERED" in html and "connections dropped" in html
    assert html.count("storm: connections dropped") == 3  # a marker on each chart over time
    assert 'data-chart="latency-histogram-signalr"' in html
