"""Real, short Locust runs (subprocesses) against a real simulator on 127.0.0.1.

Each run is bounded (at most 8 users, at most 9 s of load); assertions are on what Locust wrote
(its CSV) and on our summary, and stay tolerant of a busy machine: they check that things were
measured and ended well, not how fast.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from loadtests import runner
from simulator.app import Simulator
from simulator.background import BackgroundSimulator
from simulator.channels.webhooks import SIGNATURE_HEADER, sign

KEY = "vk_loadtest0123456789"
LOCUSTFILE = str(runner.LOCUSTFILE)
Stats = dict[tuple[str, str], tuple[int, int]]


def read_stats(directory: Path) -> Stats:
    """Locust's aggregated CSV: (type, name) → (requests, failures)."""
    with (directory / "locust_stats.csv").open(encoding="utf-8") as handle:
        return {(row["Type"], row["Name"]): (int(row["Request Count"]), int(row["Failure Count"]))
                for row in csv.DictReader(handle) if row["Name"] != "Aggregated"}


def read_summary(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "summary.json").read_text(encoding="utf-8"))


def run(tmp_path: Path, **kwargs: Any) -> tuple[int, Stats, dict[str, Any]]:
    kwargs.setdefault("time_scale", 0.5)  # happy-path tasks take 1.5 s
    code = runner.run_load(report_dir=tmp_path, quiet=True, **kwargs)
    assert (tmp_path / "locust.html").exists() or code == 2
    return code, read_stats(tmp_path), read_summary(tmp_path)


def assert_matches_csv(stats: Stats, summary: dict[str, Any]) -> None:
    """Our exact-percentile summary saw exactly the requests Locust counted."""
    ours = {(e["type"], e["name"]): (e["count"], e["failures"]) for e in summary["entries"]}
    assert ours == stats


@pytest.fixture
def simulator() -> Iterator[BackgroundSimulator]:
    background = BackgroundSimulator(Simulator(keys=[KEY], time_scale=0.5))
    background.start()
    yield background
    background.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SignalRUser ----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_signalr_user_receives_events_of_its_tasks(protocol: str, tmp_path: Path) -> None:
    code, stats, summary = run(tmp_path, users=5, spawn_rate=5, run_time="7s", user_classes=["SignalRUser"],
                               protocol=protocol, thresholds=["signalr.latency.count>=5", "rest.failures==0"])
    assert code == 0, summary["thresholds"]
    for name in ("negotiate", "connect", f"handshake {protocol}", "invoke SubscribeToTask",
                 "invoke UnsubscribeFromTask", "latency TaskProgress", "latency TaskCompleted",
                 "e2e image completed"):
        count, failures = stats[("SignalR", name)]
        assert count > 0 and failures == 0, (name, stats)
    assert stats[("SignalR", "negotiate")][0] == 5  # one connection per user, kept for the run
    assert stats[("REST", "POST /v1/images/generations/async")][1] == 0
    # e2e needs at least the task script (1.5 s); latencies are measured from the emit header
    e2e = next(e for e in summary["entries"] if e["name"] == "e2e image completed")
    assert e2e["min"] >= 1400
    assert summary["metrics"]["signalr.latency"]["p50"] < 1000
    assert not any(name.startswith("gap ") for _, name in stats)  # the simulator sends the header
    assert_matches_csv(stats, summary)
    assert (tmp_path / "summary.md").read_text().count("| SignalR |") >= 8


def test_listening_signalr_users_connect_once_and_stop_promptly(tmp_path: Path) -> None:
    """``listen`` users wait on their connection (not a sleep loop) and Locust still stops them."""
    started = time.monotonic()
    code, stats, summary = run(tmp_path, users=3, spawn_rate=3, run_time="3s", user_classes=["SignalRUser"],
                               extra_args=["--conduit-signalr-mode", "listen"])
    assert code == 0
    assert stats[("SignalR", "negotiate")] == (3, 0)
    assert stats[("SignalR", "handshake json")] == (3, 0)
    assert not any(kind == "REST" for kind, _ in stats)  # a listener creates no task
    assert time.monotonic() - started < 30
    assert_matches_csv(stats, summary)


# -- PollingUser, AutoUser ------------------------------------------------------------------------

def test_polling_user_and_an_impossible_threshold_exit_1(tmp_path: Path) -> None:
    code, stats, summary = run(tmp_path, users=3, spawn_rate=3, run_time="5s", user_classes=["PollingUser"],
                               thresholds=["poll.latency.p50<0.001ms", "requests>=3", "failures<1%"],
                               extra_args=["--conduit-poll-interval", "0.3"])
    assert code == 1
    assert stats[("REST", "POST /v1/images/generations/async")][0] >= 3
    polls, failures = stats[("Poll", "GET /api/tasks/{id}/status")]
    assert polls >= 6 and failures == 0
    assert stats[("Poll", "e2e image completed")][0] >= 1
    # the polling channel's event latency: new state seen at most about one interval late
    assert stats[("Poll", "delay completed")][0] >= 1
    delay = summary["metrics"]["poll.delay"]
    assert delay["count"] >= 2 and delay["max"] < 3000
    assert [(v["expression"], v["ok"]) for v in summary["thresholds"]] == [
        ("poll.latency.p50<0.001ms", False), ("requests>=3", True), ("failures<1%", True)]
    assert summary["verdict"] == "fail" and summary["run"]["simulator"] is True
    assert_matches_csv(stats, summary)


def test_auto_user_falls_back_to_polling_when_signalr_is_refused(simulator: BackgroundSimulator,
                                                                   tmp_path: Path) -> None:
    simulator.call(simulator.simulator.inject, "refuse_reconnects", count=10_000, how="negotiate_503")
    code, stats, summary = run(tmp_path, users=3, spawn_rate=3, run_time="5s", user_classes=["AutoUser"],
                               host=simulator.url, key=KEY, extra_args=["--conduit-poll-interval", "0.3"])
    assert code == 0
    negotiates, refused = stats[("SignalR", "negotiate")]
    assert negotiates == refused == 3  # one attempt each; the next only after 10 s
    assert stats[("REST", "POST /v1/images/generations/async")][0] >= 3
    assert stats[("Poll", "GET /api/tasks/{id}/status")][0] >= 6
    assert stats[("Poll", "e2e image completed")][0] >= 2
    assert ("SignalR", "e2e image completed") not in stats
    assert any("503" in text for e in summary["entries"] for text in e.get("errors", {}))


# -- WebhookSenderUser ----------------------------------------------------------------------------

class Receiver:
    """A webhook receiver under test: checks X-Conduit-Signature against the exact body."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []
        self.rejected = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given, sign(body, self.secret)):
            self.rejected += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.accepted.append(json.loads(body))
        return web.json_response({"received": True})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/conduit", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/webhooks/conduit"

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_webhook_sender_user_signs_every_delivery(tmp_path: Path) -> None:
    secret = "whsec_loadtest_secret"
    with Receiver(secret) as receiver:
        code, stats, summary = run(tmp_path, users=3, spawn_rate=3, run_time="5s",
                                   user_classes=["WebhookSenderUser"], host=receiver.url,
                                   webhook_secret=secret,
                                   thresholds=["webhook.failures==0", "webhook.count>=8"])
    assert code == 0, summary["thresholds"]
    assert receiver.rejected == 0
    sent = sum(count for (kind, _), (count, _) in stats.items() if kind == "Webhook")
    # A delivery in flight when Locust stops reaches the receiver but is never recorded: at most
    # one per user.
    assert sent >= 8
    assert sent <= len(receiver.accepted) <= sent + 3
    assert stats[("Webhook", "POST task.progress")][0] >= 6
    event_types = {body["event_type"] for body in receiver.accepted}
    assert "task.progress" in event_types
    assert event_types <= {"task.progress", "task.completed", "task.failed"}
    first = receiver.accepted[0]
    assert set(first) == {"event_type", "task_id", "status", "result", "error", "timestamp"}
    assert_matches_csv(stats, summary)


# -- reconnect storm ------------------------------------------------------------------------------

def test_reconnect_storm_reports_recovery_and_peak_rate(tmp_path: Path) -> None:
    code, stats, summary = run(tmp_path, users=6, spawn_rate=6, run_time="8s", user_classes=["SignalRUser"],
                               shape="reconnect-storm", extra_args=["--conduit-storm-at", "3.5"],
                               thresholds=["storm.recovery<6s", "storm.reconnected>=6"])
    assert code == 0, summary.get("storm")
    storm = summary["storm"]
    assert storm["dropped"] == 6 and storm["mode"] == "abort"
    assert storm["reconnected"] == 6 and storm["all_recovered"] is True
    assert 0 < storm["recovery_s"] < 6
    assert storm["peak_reconnect_rate"] >= 1
    assert storm["server_peak_negotiate_rate"] >= 1 and storm["server_negotiates_after_drop"] >= 6
    assert storm["client_recovery_ms"]["count"] == 6
    assert stats[("SignalR", "reconnect")] == (6, 0)
    assert stats[("SignalR", "negotiate")][0] == 12
    assert "## Reconnect storm" in (tmp_path / "summary.md").read_text()


# -- distributed ----------------------------------------------------------------------------------

def test_master_and_two_workers_aggregate_both_workers(simulator: BackgroundSimulator,
                                                        tmp_path: Path) -> None:
    port = free_port()
    paths = (str(runner.PROJECT_ROOT), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "CONDUIT_VIRTUAL_KEY": KEY, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.pop("CONDUIT_LOAD_SHAPE", None)
    base = [sys.executable, "-m", "locust", "-f", LOCUSTFILE]
    master_cmd = base + ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                         "--expect-workers", "2", "--expect-workers-max-wait", "30", "--headless",
                         "-u", "6", "-r", "6", "-t", "7s", "--host", simulator.url,
                         "--csv", str(tmp_path / "locust"), "--only-summary", "--exit-code-on-error", "0",
                         "--conduit-report-dir", str(tmp_path), "--conduit-poll-interval", "0.3"]
    worker_cmd = base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    logs = [open(tmp_path / f"{role}.log", "w") for role in ("master", "worker1", "worker2")]  # noqa: SIM115
    processes = [subprocess.Popen(master_cmd, cwd=runner.PROJECT_ROOT, env=env, stdout=logs[0],
                                  stderr=subprocess.STDOUT)]
    processes += [subprocess.Popen(worker_cmd, cwd=runner.PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT) for log in logs[1:]]
    try:
        assert processes[0].wait(timeout=60) == 0, (tmp_path / "master.log").read_text()[-3000:]
        for worker in processes[1:]:
            worker.wait(timeout=20)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    stats = read_stats(tmp_path)
    workers = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("worker-*.json"))]
    assert sorted(w["worker_index"] for w in workers) == [0, 1]
    per_worker = [{(t["type"], t["name"]): t["count"] for t in w["totals"]} for w in workers]
    for totals in per_worker:  # both workers' users made requests
        assert totals.get(("REST", "POST /v1/images/generations/async"), 0) > 0, per_worker
    combined: dict[tuple[str, str], int] = {}
    for totals in per_worker:
        for key, count in totals.items():
            combined[key] = combined.get(key, 0) + count
    assert {key: count for key, (count, _) in stats.items()} == combined
    summary = read_summary(tmp_path)
    assert summary["run"]["workers"] == 2
    assert_matches_csv(stats, summary)  # raw samples travelled from the workers to the master


# -- Locust's own UI ------------------------------------------------------------------------------

def test_locustfile_still_starts_locusts_web_ui(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "ui.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--web-host", "127.0.0.1",
             "--web-port", str(port), "--host", "http://127.0.0.1:9"],
            cwd=runner.PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            page = ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not page:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                        assert response.status == 200
                        page = response.read().decode()
                except OSError:
                    time.sleep(0.2)
            assert "Locust" in page, (tmp_path / "ui.log").read_text()
            assert "conduit_protocol" in page  # our options are in the UI's form
        finally:
            process.terminate()
            process.wait(15)


# -- shapes (ticks computed in a subprocess: importing Locust monkey-patches the process) ---------

SHAPE_PROBE = """
import json, types
from loadtests.shapes import SHAPES, selected_shape
options = types.SimpleNamespace(num_users=10, spawn_rate=2.0, run_time=100)
out = {}
for name in ("steady", "ramp", "spike"):
    shape = SHAPES[name]()
    shape.runner = types.SimpleNamespace(environment=types.SimpleNamespace(parsed_options=options))
    ticks = []
    for t in (0, 10, 40, 50, 70, 79, 99, 100):
        shape.get_run_time = lambda t=t: t
        ticks.append(shape.tick())
    out[name] = ticks
out["selected"] = selected_shape("Reconnect-Storm").__name__
print(json.dumps(out))
"""


def test_shape_ticks() -> None:
    result = subprocess.run([sys.executable, "-c", SHAPE_PROBE], capture_output=True, text=True, timeout=60,
                            cwd=runner.PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    ticks = json.loads(result.stdout.strip().splitlines()[-1])
    assert ticks["steady"] == [[10, 2.0]] * 7 + [None]
    assert [t[0] if t else None for t in ticks["ramp"]] == [1, 2, 5, 7, 9, 10, 10, None]
    assert [t[0] if t else None for t in ticks["spike"]] == [2, 2, 10, 10, 2, 2, 2, None]
    assert ticks["selected"] == "ReconnectStormShape"
