"""Thresholds, exact percentiles and the runner's argument checks (no Locust run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit_core.percentiles import nearest_rank, percentile
from loadtests import runner
from loadtests.metric_names import metric_of
from loadtests.summary import build_summary, peak_rate, storm_summary
from loadtests.thresholds import ThresholdError, evaluate, parse, parse_all, split_expressions


def doc(*entries: tuple[str, str, list[float], int], started: float = 100.0, ended: float = 110.0,
        **extra: Any) -> dict[str, Any]:
    return {"started": started, "ended": ended,
            "entries": [{"type": t, "name": n, "samples": s, "failures": f} for t, n, s, f in entries],
            **extra}


SAMPLE_DOC = doc(
    ("SignalR", "latency TaskProgress", [float(i) for i in range(1, 101)], 0),  # 1..100 ms
    ("SignalR", "latency TaskCompleted", [5.0, 7.0], 0),
    ("SignalR", "negotiate", [10.0, 12.0, 30.0], 1),
    ("Poll", "GET /api/tasks/{id}/status", [100.0, 200.0, 1500.0, 2500.0], 0),
    ("Poll", "e2e image completed", [3000.0], 0),
    ("REST", "POST /v1/images/generations/async", [4.0] * 10, 0),
)


def summary_of(*expressions: str, source: dict[str, Any] = SAMPLE_DOC) -> dict[str, Any]:
    return build_summary(source, {}, parse_all(expressions))


# -- percentiles and metrics ----------------------------------------------------------------------

def test_nearest_rank_percentiles_are_measured_values() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert [percentile(values, p) for p in (50, 90, 95, 99, 100)] == [50.0, 90.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    # 123.4 stays 123.4 (Locust's buckets would report 120)
    assert percentile(sorted([1.0, 123.4, 2.0]), 99) == 123.4


@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=300),
       st.one_of(st.integers(0, 100), st.decimals(0, 100, places=3).map(float)))
def test_nearest_rank_is_the_smallest_sample_with_p_percent_at_or_below(samples: list[int], p: float) -> None:
    """The definition, checked with exact arithmetic: at least p % of the samples are at or below
    the answer, and fewer than p % are strictly below it (so no smaller sample would do)."""
    ordered = sorted(samples)
    found = percentile(ordered, p)
    n, share = len(ordered), Fraction(str(p)) / 100
    assert found in ordered
    assert Fraction(sum(1 for s in ordered if s <= found), n) >= share
    below = [s for s in ordered if s < found]
    assert not below or Fraction(len(below), n) < share
    assert 1 <= nearest_rank(n, p) <= n


def test_nearest_rank_has_no_float_rounding() -> None:
    ordered = list(range(1, 101))
    assert percentile(ordered, 7) == 7.0  # math.ceil(7 / 100 * 100) is 8
    assert percentile(list(range(1, 1001)), 99.9) == 999.0
    with pytest.raises(ValueError):
        nearest_rank(10, 100.5)


def test_metric_names() -> None:
    assert metric_of("Poll", "GET /api/tasks/{id}/status") == "poll.latency"
    assert metric_of("SignalR", "latency TaskProgress") == "signalr.latency"
    assert metric_of("SignalR", "handshake messagepack") == "signalr.handshake"
    assert metric_of("Webhook", "POST task.completed") == "webhook.latency"
    assert metric_of("Poll", "e2e image completed") == "poll.e2e"
    assert metric_of("Poll", "delay completed") == "poll.delay"


def test_summary_groups_and_totals() -> None:
    summary = summary_of()
    latency = summary["metrics"]["signalr.latency"]
    assert latency["count"] == 102 and latency["failures"] == 0
    assert latency["names"] == ["latency TaskCompleted", "latency TaskProgress"]
    assert summary["metrics"]["signalr"]["count"] == 105
    assert summary["total"]["count"] == 120 and summary["total"]["failures"] == 1
    entry = next(e for e in summary["entries"] if e["name"] == "latency TaskProgress")
    assert (entry["p50"], entry["p95"], entry["p99"], entry["rps"]) == (50.0, 95.0, 99.0, 10.0)
    assert summary["verdict"] == "no thresholds"


# -- parsing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, target, op, limit, unit", [
    ("signalr.latency.p95<100ms", "signalr.latency.p95", "<", 100.0, "ms"),
    ("poll.latency.p99<=2s", "poll.latency.p99", "<=", 2000.0, "ms"),
    ("failures<1%", "failures", "<", 0.01, "ratio"),
    ("requests>=10", "requests", ">=", 10.0, "count"),
    (" SignalR.Latency.P99.9 < 1.5 s ", "signalr.latency.p99.9", "<", 1500.0, "ms"),
    ("signalr.e2e[image completed].p50<5s", "signalr.e2e[image completed].p50", "<", 5000.0, "ms"),
    ("rest.failures==0", "rest.failures", "==", 0.0, "count"),
    ("signalr.reconnect.count>=1", "signalr.reconnect.count", ">=", 1.0, "count"),
    ("poll.rps>2/s", "poll.rps", ">", 2.0, "rate"),
    ("signalr.invoke.avg<50", "signalr.invoke.mean", "<", 50.0, "ms"),
    ("storm.recovery<10s", "storm.recovery", "<", 10_000.0, "ms"),
    ("storm.peak_rate>=5/s", "storm.peak_rate", ">=", 5.0, "rate"),
    ("all.p99<1m", "all.p99", "<", 60_000.0, "ms"),
])
def test_good_expressions(text: str, target: str, op: str, limit: float, unit: str) -> None:
    threshold = parse(text)
    assert (threshold.target, threshold.op, threshold.unit) == (target, op, unit)
    assert threshold.limit == pytest.approx(limit)


@pytest.mark.parametrize("text, message", [
    ("", "empty threshold"),
    ("signalr.latency.p95", "OPERATOR"),
    ("signalr.latency.p95<", "value after the operator is missing"),
    ("signalr.latency.p95<fast", "not a number"),
    ("signalr.latency.p95<10%", "a time takes ms"),
    ("signalr.latency.p95<<10", "more than one comparison"),
    ("grpc.latency.p95<10ms", "unknown request type 'grpc'"),
    ("signalr.latencyy.p95<10ms", "unknown metric 'latencyy' for signalr"),
    ("poll.handshake.p95<10ms", "unknown metric 'handshake' for poll"),
    ("signalr.latency.p0<10ms", "above p0"),
    ("signalr.latency.p101<10ms", "at most p100"),
    ("signalr.latency.median<10ms", "unknown statistic 'median'"),
    ("requests>=10ms", "a count takes no unit"),
    ("failures<1s", "failures take %"),
    ("storm.speed<1", "unknown storm figure"),
    ("latency<10ms", "cannot read 'latency'"),
])
def test_bad_expressions_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse(text)
    assert message in str(info.value)
    assert "e.g. signalr.latency.p95<100ms" in str(info.value)


def test_several_expressions_in_one_string() -> None:
    assert split_expressions("a<1; b>2, signalr.e2e[x, y].p50<1s") == [
        "a<1", "b>2", "signalr.e2e[x, y].p50<1s"]
    assert [t.target for t in parse_all(["failures<1%;requests>=10", "poll.latency.p99<=2s"])] == [
        "failures", "requests", "poll.latency.p99"]


# -- evaluation -----------------------------------------------------------------------------------

def verdicts(*expressions: str, source: dict[str, Any] = SAMPLE_DOC) -> dict[str, dict[str, Any]]:
    return {v["expression"]: v for v in summary_of(*expressions, source=source)["thresholds"]}


def test_evaluation_against_the_summary() -> None:
    results = verdicts("signalr.latency.p95<100ms", "signalr.latency[TaskProgress].p99<=99",
                       "signalr.latency[TaskProgress].p99<99", "poll.latency.p99<=2s", "failures<1%",
                       "signalr.negotiate.failures<=1", "signalr.failures<1%", "requests>=10",
                       "requests>=1000", "poll.e2e.max<3s", "rest.rps>=1/s")
    ok = {expression: v["ok"] for expression, v in results.items()}
    assert ok == {
        "signalr.latency.p95<100ms": True,  # 95.0 over both latency names (102 samples)
        "signalr.latency[TaskProgress].p99<=99": True,
        "signalr.latency[TaskProgress].p99<99": False,
        "poll.latency.p99<=2s": False,  # 2500 ms
        "failures<1%": True,  # 1 of 120
        "signalr.negotiate.failures<=1": True,
        "signalr.failures<1%": True,  # 1 of 105
        "requests>=10": True,
        "requests>=1000": False,
        "poll.e2e.max<3s": False,  # exactly 3000
        "rest.rps>=1/s": True,  # 10 in 10 s
    }
    assert results["poll.latency.p99<=2s"]["actual_text"] == "2500 ms"
    assert results["failures<1%"]["actual_text"] == "0.833%"


def test_no_samples_is_a_breach_but_zero_counts_are_values() -> None:
    results = verdicts("webhook.latency.p95<1s", "webhook.requests>=1", "webhook.failures<1%",
                       "storm.recovery<10s")
    assert results["webhook.latency.p95<1s"]["ok"] is False
    assert results["webhook.latency.p95<1s"]["reason"] == "no samples"
    assert results["webhook.requests>=1"]["ok"] is False and results["webhook.requests>=1"]["actual"] == 0
    assert results["webhook.failures<1%"]["ok"] is True
    assert results["storm.recovery<10s"]["reason"] == "no reconnect storm in this run"
    summary = summary_of("webhook.latency.p95<1s", "requests>=10")
    assert summary["verdict"] == "fail"


def test_storm_figures() -> None:
    drop = 1000.0
    source = doc(("SignalR", "reconnect", [80.0, 90.0, 1500.0], 0), started=990.0, ended=1010.0,
                 storm={"drop_at": drop, "dropped": 3, "server_negotiates": [995.0, 1000.1, 1000.2, 1001.6]},
                 timed=[{"type": "SignalR", "name": "reconnect",
                         "points": [[1000.08, 80.0, 0], [1000.09, 90.0, 0], [1001.5, 1500.0, 0]]}])
    storm = storm_summary(source)
    assert storm is not None
    assert (storm["reconnected"], storm["all_recovered"], storm["peak_reconnect_rate"]) == (3, True, 2.0)
    assert storm["recovery_s"] == pytest.approx(1.5)
    assert storm["server_peak_negotiate_rate"] == 2.0 and storm["server_negotiates_after_drop"] == 3
    assert storm["client_recovery_ms"]["p50"] == 90.0
    results = verdicts("storm.recovery<2s", "storm.recovery<1s", "storm.peak_rate>=2", "storm.reconnected==3",
                       source=source)
    assert [v["ok"] for v in results.values()] == [True, False, True, True]
    assert peak_rate([0.0, 0.5, 0.99, 1.0, 5.0]) == 3.0


def test_evaluate_single_threshold_directly() -> None:
    summary = summary_of()
    verdict = evaluate(parse("signalr.handshake.p95<1s"), summary)
    assert verdict["ok"] is False and verdict["reason"] == "no samples"


# -- runner arguments (exit 2 before anything starts) ---------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"thresholds": ["signalr.latency.p95<fast"]}, "not a number"),
    ({"run_time": "soon"}, "not a time span"),
    ({"run_time": "0s"}, "must be above 0"),
    ({"users": 0}, "at least 1"),
    ({"spawn_rate": 0}, "spawn rate"),
    ({"user_classes": ["NoSuchUser"]}, "unknown user class 'NoSuchUser'"),
    ({"user_classes": ["WebhookSenderUser"]}, "needs --host"),
    ({"user_classes": ["WebhookSenderUser", "SignalRUser"], "host": "http://127.0.0.1:9"}, "separately"),
    ({"shape": "sawtooth"}, "unknown shape"),
    ({"protocol": "xml"}, "unknown protocol"),
    ({"scenario": "no-such-scenario"}, "scenario"),
])
def test_runner_usage_errors_exit_2(kwargs: dict[str, Any], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.run_load(report_dir=tmp_path, quiet=True, **kwargs) == 2
    assert message in capsys.readouterr().err


def test_cli_parser_and_bad_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = runner.build_parser().parse_args(
        ["--users", "3", "-r", "2", "-t", "10s", "--threshold", "failures<1%", "requests>=1",
         "--threshold", "poll.latency.p99<=2s", "--user-class", "SignalRUser", "--shape", "spike",
         "--", "--loglevel", "WARNING"])
    assert (args.users, args.spawn_rate, args.run_time, args.shape) == (3, 2.0, "10s", "spike")
    assert args.threshold == ["failures<1%", "requests>=1", "poll.latency.p99<=2s"]
    assert args.user_classes == ["SignalRUser"] and args.locust_args == ["--loglevel", "WARNING"]
    assert args.run is runner.run_command
    assert runner.main(["--threshold", "p95<", "--report-dir", str(tmp_path)]) == 2
    assert "threshold 'p95<'" in capsys.readouterr().err
    assert runner.parse_timespan("1h2m3s") == 3723 and runner.parse_timespan("90") == 90


def test_command_line_of_a_run(tmp_path: Path) -> None:
    cmd = runner.locust_command(tmp_path, "http://127.0.0.1:1", 5, 2.5, 8, ["SignalRUser"],
                                ["--loglevel", "WARNING"], "messagepack", webhook=False, quiet=True)
    joined = " ".join(cmd)
    assert "loadtests/locustfile.py --headless -u 5 -r 2.5 -t 8s --host http://127.0.0.1:1" in joined
    assert f"--csv {tmp_path}/locust --html {tmp_path}/locust.html" in joined
    assert cmd[-4:] == ["messagepack", "--loglevel", "WARNING", "SignalRUser"]


def test_runner_imports_neither_locust_nor_gevent() -> None:
    code = ("import sys, loadtests.runner, loadtests.thresholds, loadtests.summary; "
            "print(json.dumps(sorted(m for m in ('locust', 'gevent') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True, cwd=Path(runner.__file__).parent.parent)
    assert json.loads(out.stdout) == []
