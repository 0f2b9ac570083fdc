"""The run report end to end: a run directory with a real load run and a real simulator timeline,
rendered, parsed, merged JUnit checked, and the page opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as harness_main
from reporting import load_run, render_report
from reporting.__main__ import main as reporting_main
from tests.reporting import HOSTILE, write_contract, write_timeline

CHROMIUM = Path("/usr/bin/chromium")
PROFILES = Path(__file__).resolve().parents[2] / "contract_tests" / "client_profiles"
SECTIONS = ("summary", "contract", "reconnect", "latency", "load", "webhooks", "timeline")
CHARTS = ("reconnect", "latency-histogram-signalr", "latency-histogram-poll", "latency-histogram-rest",
          "latency-histogram-webhook", "load-rps", "load-latency", "load-users", "webhook-latency")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report") / "20260101-120000"
    root.mkdir()
    # A real, tiny load run on loopback: one threshold that holds, one that cannot.
    code = harness_main(["load", "-u", "3", "-r", "3", "-t", "4s", "--time-scale", "0.5", "--report-dir",
                         str(root / "load"), "-q", "--threshold", "requests>=1", "rest.latency.max<0.0001ms"])
    assert code == 1, "the impossible threshold should be breached"
    write_timeline(root / "timeline.jsonl")
    subjects = write_contract(root)
    manifest = {
        "run": "20260101-120000", "started": "2026-01-01T12:00:00+00:00",
        "finished": "2026-01-01T12:04:30+00:00",
        "command": f"conduit-harness demo --report {HOSTILE}",
        "simulator": {"url": "http://127.0.0.1:5000", "profile": "documented", "scenario": "webhook-chaos",
                      "seed": 7, "time_scale": 0.2},
        "subjects": subjects, "load": "load", "timeline": "timeline.jsonl",
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    page = render_report(root)
    assert page == root / "index.html"
    return root


class Page(HTMLParser):
    """Every start tag with its attributes, the text inside <title> of each svg, section ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.svgs: list[dict[str, Any]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "svg":
            self.svgs.append({"attrs": attributes, "title": None, "texts": []})
        if tag not in ("meta", "br", "link", "input", "img", "hr", "wbr"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if "svg" in self.stack and self.svgs:
            svg = self.svgs[-1]
            if self.stack[-1] == "title" and self.stack[-2] == "svg" and svg["title"] is None:
                svg["title"] = data
            elif self.stack[-1] == "text":
                svg["texts"].append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def html(run_dir: Path) -> str:
    return (run_dir / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    return parse(html)


def test_every_section_and_chart_is_there(page: Page) -> None:
    ids = {a.get("id") for _, a in page.tags}
    assert set(SECTIONS) <= ids
    charts = [svg["attrs"].get("data-chart") for svg in page.svgs]
    assert set(CHARTS) <= set(charts), charts
    assert charts.count("reconnect") == 3  # two references and the no-backoff mutant
    for svg in page.svgs:
        assert svg["title"], f"{svg['attrs'].get('data-chart')} has no <title>"
        assert svg["attrs"].get("role") == "img"
        assert svg["texts"], "a chart without axis labels or numbers"
    load_rps = next(s for s in page.svgs if s["attrs"]["data-chart"] == "load-rps")
    assert "time since start (s)" in load_rps["texts"] and "per second" in load_rps["texts"]


def test_header_says_what_ran_and_the_verdict(page: Page) -> None:
    text = " ".join(page.text)
    assert "20260101-120000" in text and "conduit-harness demo --report" in text
    assert "webhook-chaos" in text and "time_scale" in text
    assert "reference subjects: 1 of 3 fail (node-reference)" in text
    assert re.search(r"mutation score:\s*3/4\s*mutants fail their expected rule \(75%\)", text)
    assert "not caught: python/no-cleanup" in text
    assert "load thresholds: fail" in text


def test_matrix_cells_and_failure_evidence(html: str, page: Page) -> None:
    matrix = html.split('<table class="matrix">', 1)[1].split("</table>", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<th scope="row" class="rule">([^<]+)</th>.*?</tr>',
                                                         matrix, re.S)}
    assert set(rows) == {"C-POLL-INTERVAL", "C-RECONNECT-SCHEDULE", "C-LATENCY", "C-AUTH", "W-ACCEPT",
                         "W-REJECT"}
    assert rows["C-LATENCY"].count("PASS") == 2 and "p95 4.1 ms · latency 380 ms" in rows["C-LATENCY"]
    assert rows["C-POLL-INTERVAL"].count("min gap 401 ms") == 2
    auth = rows["C-AUTH"]
    assert auth.count('class="badge fail"') >= 1 and '<details class="failure">' in auth
    for piece in ("every negotiate and connection request carries the key", "2 negotiate(s), 2 connection(s)",
                  "+120 ms auth_rejected", "evidence (2 lines)"):
        assert piece in auth
    assert rows["W-ACCEPT"].count("—") == 2  # clients do not get W-* rules
    # Mutants: the table says which were caught; the mutant matrix marks the expected rule.
    mutant_table = html.split('<table class="mutant-table">', 1)[1].split("</table>", 1)[0]
    caught = dict(re.findall(r"<tr><td>([^<]+)</td>.*?badge (?:pass|fail)\">(KILLED|SURVIVED)<",
                             mutant_table))
    assert caught == {"python/no-backoff": "KILLED", "python/no-poll-limit": "KILLED",
                      "python/no-cleanup": "SURVIVED", "receiver/no-verification": "KILLED"}
    assert html.count('class="star"') == 4
    assert "wrong secret → 200" in html  # the receiver mutant's evidence


def test_reconnect_chart_pairs_declared_and_observed(run_dir: Path, html: str) -> None:
    mutant = re.search(r'<figure><svg class="chart" data-chart="reconnect" '
                       r'data-subject="python/no-backoff".*?</figure>', html, re.S)
    assert mutant is not None
    figure = mutant.group(0)
    # Declared from the profile (fast: 0, 300, 800, 1500 then a manual restart after 1000 ms).
    rows = re.findall(r"<tr><td>(\d+)[^<]*</td><td class=num>([^<]*)</td><td class=num>([^<]*)</td>"
                      r"<td class=num>([^<]*)</td><td><span class=\"badge (\w+)", figure)
    assert rows[:6] == [("1", "0", "0 – 500", "2", "pass"), ("2", "300", "250 – 800", "12", "fail"),
                        ("3", "800", "750 – 1300", "9", "fail"), ("4", "1500", "1450 – 2000", "11", "fail"),
                        ("5", "1000", "950 – ∞", "10", "fail"), ("6", "–", "–", "13", "fail")]
    assert "profile contract_tests/client_profiles/python-reference-fast.toml" in figure
    assert figure.count("✗") >= 5


def test_latency_percentiles_are_the_exact_ones(run_dir: Path, html: str) -> None:
    summary = json.loads((run_dir / "load" / "summary.json").read_text(encoding="utf-8"))
    from reporting.charts import fmt

    for metric in ("rest.latency", "poll.latency", "signalr.latency"):
        stats = summary["metrics"].get(metric)
        if not stats or not stats["count"]:
            continue
        row = re.search(rf"<code>{re.escape(metric)}</code></td><td>load</td>(.*?)</tr>", html)
        assert row is not None, metric
        cells = re.findall(r"<td class=num>([^<]*)</td>", row.group(1))
        assert cells == [fmt(stats["count"]), fmt(stats["failures"]), fmt(stats["p50"]), fmt(stats["p90"]),
                         fmt(stats["p95"]), fmt(stats["p99"]), fmt(stats["max"])]
    assert "Contract C-LATENCY" in html and "p95 &lt; 100 ms" in html


def test_load_thresholds_and_webhook_figures(run_dir: Path, html: str) -> None:
    load = html.split('<section id="load"', 1)[1].split("</section>", 1)[0]
    assert "<code>requests&gt;=1</code>" in load and "<code>rest.latency.max&lt;0.0001ms</code>" in load
    assert load.count('class="badge pass">PASS') == 1 and load.count('class="badge fail">FAIL') == 1
    records = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines()]
    deliveries = [r for r in records if r["kind"] == "webhook_delivery"]
    attempts = [r for r in records if r["kind"] == "webhook_attempt"]
    assert deliveries and len(attempts) > len(deliveries)  # the 500 and the 503 were retried
    hooks = html.split('<section id="webhooks"', 1)[1].split("</section>", 1)[0]
    assert f"<dt>deliveries</dt><dd>{len(deliveries)}</dd>" in hooks
    assert f"<dt>HTTP attempts</dt><dd>{len(attempts)}</dd>" in hooks
    for status in ("500", "503", "400", "200"):
        assert f"<td>{status}</td>" in hooks
    for fault in ("bad_signature", "duplicate", "wrong_secret"):
        assert f"<td>{fault}</td>" in hooks
    assert "<td>rejected</td>" in hooks and "<td>delivered</td>" in hooks


def test_text_from_the_run_is_escaped(html: str, page: Page) -> None:
    assert HOSTILE not in html and '<script>alert("x")' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    scripts = [a for tag, a in page.tags if tag == "script"]
    assert scripts == [{}]  # only our own inline script
    assert not [a for tag, a in page.tags if tag == "img"]


def test_nothing_is_fetched_from_the_network(html: str, page: Page) -> None:
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset"):
            value = attrs.get(name, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value)
        assert tag not in ("link", "iframe", "object", "embed")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html) and "@import" not in html


def test_merged_junit_has_one_suite_per_subject(run_dir: Path) -> None:
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["python-reference", "node-reference", "python-receiver", "python/no-backoff",
                            "python/no-poll-limit", "python/no-cleanup", "receiver/no-verification"]
    counts = {name: (int(s.get("tests")), int(s.get("failures"))) for name, s in suites.items()}
    assert counts == {"python-reference": (5, 0), "node-reference": (5, 1), "python-receiver": (2, 0),
                      "python/no-backoff": (1, 1), "python/no-poll-limit": (1, 1),
                      "python/no-cleanup": (1, 0), "receiver/no-verification": (2, 1)}
    assert int(root.get("tests")) == 17 and int(root.get("failures")) == 4
    node = suites["node-reference"]
    classes = {c.get("classname") for c in node.findall("testcase")}
    assert classes == {"node-reference.test_client_rules"}
    assert node.find("testcase/failure") is not None
    props = {p.get("name"): p.get("value")
             for p in suites["python/no-backoff"].findall("properties/property")}
    assert props["mutant"] == "no-backoff" and props["expected_rule"] == "C-RECONNECT-SCHEDULE"
    # No JUnit file for this one: a test case per verdict, the failure carrying the explanation.
    [case] = suites["python/no-poll-limit"].findall("testcase")
    assert case.get("name") == "C-POLL-LIMIT" and "9 polls" in case.find("failure").text


def test_loader_reads_every_part(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.problems == []
    assert [s.name for s in run.references] == ["python-reference", "node-reference", "python-receiver"]
    python = run.subjects[0]
    assert python.reconnect_delays_ms == (0, 300, 800, 1500) and python.manual_restart_ms == 1000
    assert run.load is not None and run.load.summary and run.load.samples and len(run.load.history) >= 2
    assert run.timeline and any(r["kind"] == "webhook_attempt" for r in run.timeline)


def test_command_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "index.html").unlink()
    assert reporting_main([str(copy)]) == 0
    assert (copy / "index.html").exists() and str(copy / "index.html") in capsys.readouterr().out
    assert reporting_main([str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_rendering_a_check_report_keeps_its_failures(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``check --report DIR`` then ``python -m reporting DIR``: the failure stays a failure in the
    JUnit the check wrote (untouched), in the merged JUnit and on the page."""
    report = tmp_path / "check"
    code = harness_main(["check", "--client-profile", str(PROFILES / "python-reference-fast.toml"),
                         "--client", f"{sys.executable} -m contract_tests.clients.python_client "
                                     "--mutant polls-too-often",
                         "--rules", "C-POLL-INTERVAL", "--report", str(report)])
    assert code == 1
    written = (report / "junit.xml").read_bytes()
    assert int(ET.fromstring(written).find(".//testsuite").get("failures")) >= 1
    capsys.readouterr()
    assert reporting_main([str(report)]) == 0
    out = capsys.readouterr().out
    assert (report / "junit.xml").read_bytes() == written  # an input: never rewritten
    merged = ET.parse(report / "merged-junit.xml").getroot()
    assert str(report / "merged-junit.xml") in out
    assert int(merged.get("failures")) >= 1 and int(merged.get("tests")) >= 1
    [suite] = merged.findall("testsuite")
    assert suite.get("name") == "check"
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "No contract subjects" not in html and "All good" not in html
    assert "reference subjects: 1 of 1 fail (check)" in " ".join(parse(html).text)
    assert reporting_main([str(report)]) == 0  # and again: still the same inputs
    assert (report / "junit.xml").read_bytes() == written


# -- headless Chromium -----------------------------------------------------------------------------
def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=90, check=False)


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: install Debian's chromium "
                                                  "(apt-get install -y chromium; .ci/setup does)")
def test_chromium_renders_the_charts(run_dir: Path, tmp_path: Path) -> None:
    url = (run_dir / "index.html").resolve().as_uri()
    dumped = chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = parse(dumped.stdout)
    charts = {svg["attrs"].get("data-chart") for svg in dom.svgs}
    assert set(CHARTS) <= charts
    assert any(tag == "rect" for tag, _ in dom.tags) and any(tag == "polyline" for tag, _ in dom.tags)
    # The script ran: the "expand all failures" button is no longer hidden.
    button = next(a for tag, a in dom.tags if tag == "button")
    assert "hidden" not in button

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    width, height, distinct = png_facts(shot)
    assert (width, height) == (1280, 2000)
    assert shot.stat().st_size > 30_000 and distinct > 100  # a page with content, not a blank one
