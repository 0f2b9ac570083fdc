"""Tests of the run report (``reporting``): builders of run directories.

Verdicts come from real :class:`contract_tests.verdict.Verdict` objects (``to_json()``), the
timeline from a real simulator run (webhook-chaos scenario, deliveries to a loopback receiver),
the load directory from a real ``conduit-harness load`` run (built in the test module's fixture).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from contract_tests.timing import Tolerance
from contract_tests.verdict import Measure, Outcome, Statement, Verdict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<script>alert("x")</script> & <img src=http://evil.example/x.png>'


def ms(value: float) -> Measure:
    return Measure(value, "ms")


def reconnect_verdict(gaps_ms: list[int], passed: bool,
                      declared: tuple[int, ...] = (0, 300, 800, 1500),
                      manual_ms: int | None = None) -> Verdict:
    evidence = []
    for i, gap in enumerate(gaps_ms):
        if i < len(declared):
            evidence.append(f"attempt {i + 1}: {gap} ms after the previous (declared {declared[i]} ms) ok")
        else:
            evidence.append(f"attempt {i + 1}: {gap} ms after the previous: beyond the schedule")
    expected = (Statement("delays {delays} then no automatic attempt", delays=[ms(d) for d in declared])
                if manual_ms is None else
                Statement("delays {delays} then a manual restart after {manual_restart}",
                          delays=[ms(d) for d in declared], manual_restart=ms(manual_ms)))
    return Verdict(
        "C-RECONNECT-SCHEDULE", Outcome.judge(passed),
        "attempts followed the declared delays, then stopped" if passed
        else "attempt 2 early: 12 ms vs 300 ms",
        expected=expected,
        observed=Statement("{attempts}, {gaps} apart", attempts=Measure(len(gaps_ms), "attempts"),
                           gaps=[ms(g) for g in gaps_ms]),
        tolerance=Tolerance().statement(), evidence=tuple(evidence))


def reference_verdicts(subject: str) -> list[dict[str, Any]]:
    verdicts = [
        Verdict("C-POLL-INTERVAL", Outcome.PASS, "5 gaps, none shorter than the declared interval",
                expected=Statement("successive polls ≥ {interval} apart", interval=ms(400)),
                observed=Statement("shortest gap {min_gap} of {gaps}", min_gap=ms(401.3),
                                   gaps=Measure(5, "gaps")),
                tolerance=Tolerance().early_statement()),
        reconnect_verdict([3, 305, 811, 1502, 1010], True),
        Verdict("C-LATENCY", Outcome.PASS, "SignalR emit → report p95 4.1 ms over 12 events",
                expected=Statement("p95 < {budget}", budget=ms(100)),
                observed=Statement("p50 {p50}, p95 {p95}, max {max} over {events}", p95=ms(4.1), p50=ms(2.0),
                                   max=ms(5.0), events=Measure(12, "events"))),
        Verdict("C-LATENCY", Outcome.PASS, "polling: completion reported 380 ms after it happened",
                expected=Statement("< interval + {slack} = {budget}", slack=ms(1000), budget=ms(1400)),
                observed=Statement("reported {latency} after the completion", latency=ms(380.2))),
        Verdict("C-AUTH", Outcome.PASS, "the key was sent on negotiate and on the connection"),
    ]
    if subject == "node-reference":
        # A failing reference, with hostile text in its evidence (it must be escaped).
        verdicts[-1] = Verdict("C-AUTH", Outcome.FAIL, "1 request(s) without a valid key",
                               expected=Statement("every negotiate and connection request carries the key"),
                               observed=Statement("2 negotiate(s), 2 connection(s), 1 rejected"),
                               evidence=(f"negotiate: missing key {HOSTILE}", "+120 ms auth_rejected"))
    return [v.to_json() for v in verdicts]


def receiver_verdicts(passed: bool = True) -> list[dict[str, Any]]:
    return [v.to_json() for v in (
        Verdict("W-ACCEPT", Outcome.PASS, "25 of 25 answered 2xx", expected=Statement("2xx"),
                observed=Statement("25 × 200")),
        Verdict("W-REJECT", Outcome.judge(passed),
                "all forged deliveries rejected" if passed else "3 forged deliveries got 200",
                expected=Statement("401 or 403"),
                observed=Statement("401 ×12" if passed else "200 ×3, 401 ×9"),
                evidence=() if passed else ("wrong secret → 200", "missing header → 200",
                                            "empty header → 200")),
    )]


def junit_xml(subject: str, verdicts: list[dict[str, Any]]) -> str:
    """A pytest-style JUnit file for these verdicts (as ``conduit-harness check --junitxml`` writes)."""
    cases = []
    for v in verdicts:
        name = f"test_client_rule[{v['label']}]"
        failure = "" if v["passed"] else (
            f'<failure message="AssertionError: {v["rule"]}: FAIL">{_xml(v["summary"])}</failure>')
        cases.append(f'<testcase classname="test_client_rules" name="{_xml(name)}" time="0.5">'
                     f'<properties><property name="observed" value="{_xml(v["observed"]["text"])}"/>'
                     f'</properties>{failure}</testcase>')
    failures = sum(1 for v in verdicts if not v["passed"])
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
            f'<testsuite name="pytest" errors="0" failures="{failures}" skipped="0" tests="{len(verdicts)}" '
            f'time="{0.5 * len(verdicts)}" timestamp="2026-01-01T12:00:00" hostname="ci">{"".join(cases)}'
            f"</testsuite></testsuites>")


def _xml(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text, {'"': "&quot;"})


def write_contract(run_dir: Path) -> list[dict[str, Any]]:
    """Verdict and JUnit files for two reference clients, one receiver and four mutants; returns
    the manifest's ``subjects``."""
    contract = run_dir / "contract"
    contract.mkdir(parents=True, exist_ok=True)
    subjects: list[dict[str, Any]] = []

    def add(name: str, kind: str, verdicts: list[dict[str, Any]], *, profile: str | None = None,
            mutant: str | None = None, expected_rule: str | None = None, junit: bool = True) -> None:
        stem = name.replace("/", "--")
        (contract / f"{stem}.verdicts.json").write_text(json.dumps(verdicts, indent=2), encoding="utf-8")
        entry: dict[str, Any] = {"name": name, "kind": kind, "profile": profile, "mutant": mutant,
                                 "expected_rule": expected_rule, "verdicts": f"contract/{stem}.verdicts.json",
                                 "junit": None}
        if junit:
            (contract / f"{stem}.junit.xml").write_text(junit_xml(name, verdicts), encoding="utf-8")
            entry["junit"] = f"contract/{stem}.junit.xml"
        subjects.append(entry)

    add("python-reference", "client", reference_verdicts("python-reference"),
        profile="contract_tests/client_profiles/python-reference-fast.toml")
    add("node-reference", "client", reference_verdicts("node-reference"),
        profile="contract_tests/client_profiles/node-reference-fast.toml")
    add("python-receiver", "receiver", receiver_verdicts())
    add("python/no-backoff", "client", [reconnect_verdict([2, 12, 9, 11, 10, 13], False).to_json()],
        profile="contract_tests/client_profiles/python-reference-fast.toml", mutant="no-backoff",
        expected_rule="C-RECONNECT-SCHEDULE")
    add("python/no-poll-limit", "client", [Verdict(
        "C-POLL-LIMIT", Outcome.FAIL, "9 polls, over the limit of 6",
        expected=Statement("at most {limit}, then a timeout observation", limit=Measure(6, "polls")),
        observed=Statement("{polls}; timeout not reported", polls=Measure(9, "polls"))).to_json()],
        profile="contract_tests/client_profiles/python-reference-fast.toml", mutant="no-poll-limit",
        expected_rule="C-POLL-LIMIT", junit=False)
    # A surviving mutant: its rule passed.
    add("python/no-cleanup", "client", [Verdict("C-CLEANUP", Outcome.PASS,
                                                 "every finished task was unsubscribed",
                                                 observed=Statement("all unsubscribed")).to_json()],
        profile="contract_tests/client_profiles/python-reference-fast.toml", mutant="no-cleanup",
        expected_rule="C-CLEANUP")
    add("receiver/no-verification", "receiver", receiver_verdicts(passed=False), mutant="no-verification",
        expected_rule="W-REJECT")
    return subjects


# -- a real simulator timeline with webhook deliveries --------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    statuses: list[int] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def write_timeline(path: Path, tasks: int = 3, timeout: float = 10.0) -> None:
    """Run the simulator (webhook-chaos, time scale 0.2) with ``tasks`` tasks whose webhooks go to
    a loopback receiver answering 500, 503, 400 first and 200 after, and record the timeline."""
    from simulator.app import Simulator
    from simulator.background import BackgroundSimulator
    from simulator.recorder import Recorder

    handler = type("Receiver", (_Receiver,), {"statuses": [500, 503, 400]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with path.open("w", encoding="utf-8") as sink:
        simulator = Simulator(scenario="webhook-chaos", time_scale=0.2, seed=7, recorder=Recorder(sink),
                              webhook_options={"retry_delays": (1.0, 1.0), "timeout": 5.0})
        background = BackgroundSimulator(simulator)
        background.start()
        try:
            ids = [background.create_task(webhook_url=url) for _ in range(tasks)]
            deadline = time.monotonic() + timeout

            def settled() -> bool:
                done = background.records("task_event")
                finished = {r.get("task_id") for r in done if r.get("event") in ("completed", "failed")}
                if not set(ids) <= finished:
                    return False
                events = [r for r in done if r.get("task_id") in ids]
                return len(background.records("webhook_delivery")) >= len(events)

            while time.monotonic() < deadline and not settled():
                time.sleep(0.1)
        finally:
            background.stop()
            server.shutdown()
            server.server_close()
