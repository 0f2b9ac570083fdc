"""The Node.js reference client (contract_tests/clients/node_client.mjs) against a real simulator.

The client is driven as the contract suite drives it: a subprocess, JSON Lines commands on stdin,
observations on stdout. What it did on the wire is read from the simulator's recorder. Knobs are
shrunk so the whole file runs in well under a minute; timing checks allow for a busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.scenarios import parse_scenario
from simulator.tasks.model import TaskRequest
from tests.support.simulator import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "contract_tests" / "clients" / "node_client.mjs"
IMAGE_HUB = "/hubs/image-generation"
VIDEO_HUB = "/hubs/video-generation"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (ROOT / "node_modules" / "@microsoft" / "signalr").exists(),
                       reason="run `npm ci` first"),
]

# Tasks pick their script by prompt; every script is short.
SCENARIO = parse_scenario({
    "name": "node-client",
    "scripts": {
        "quick": {"steps": [
            {"after": "100ms", "progress": 10},
            {"after": "100ms", "progress": 60},
            {"after": "150ms", "status": "completed", "result": {"images": [{"url": "https://x/1.png"}]}},
        ]},
        "fails": {"steps": [
            {"after": "100ms", "progress": 20},
            {"after": "150ms", "status": "failed", "error": "content policy violation"},
        ]},
        # Ends ~0.6 s after it starts: while a client that was just dropped is still away.
        "soon": {"steps": [
            {"after": "100ms", "progress": 10},
            {"after": "500ms", "status": "completed", "result": {"images": [{"url": "https://x/s.png"}]}},
        ]},
        # Long enough to drop the connection in the middle and see it through.
        "medium": {"steps": [
            {"after": "200ms", "progress": 10},
            {"after": "1.6s", "progress": 80},
            {"after": "400ms", "status": "completed", "result": {"images": [{"url": "https://x/m.png"}]}},
        ]},
        "idle": {"steps": [{"after": 3600, "status": "completed"}]},
    },
    "rules": [
        {"match": {"prompt_contains": "fail"}, "script": "fails"},
        {"match": {"prompt_contains": "medium"}, "script": "medium"},
        {"match": {"prompt_contains": "soon"}, "script": "soon"},
        {"match": {"prompt_contains": "idle"}, "script": "idle"},
    ],
    "default": "quick",
}, "tests/clients/test_node_client.py")

# Fast SignalR timings on the client too: the test simulator's client timeout is 3 s, so the
# client must ping well within it.
FAST_KNOBS = {
    "CONDUIT_KEEPALIVE_MS": "500",
    "CONDUIT_SERVER_TIMEOUT_MS": "3000",
    "CONDUIT_POLL_INTERVAL_MS": "200",
    "CONDUIT_MANUAL_RESTART_MS": "500",
    "CONDUIT_RECONNECT_DELAYS_MS": "0,300,600",
}

# Timing tolerance: early by at most 50 ms; late is allowed generously (2 shared cores).
EARLY_S = 0.05


class NodeReferenceClient:
    """node_client.mjs in a subprocess: commands in, observations out (with arrival times)."""

    def __init__(self, sim: BackgroundSimulator, mutant: str | None = None, **knobs: str) -> None:
        env = {**os.environ, "CONDUIT_BASE_URL": sim.url, "CONDUIT_VIRTUAL_KEY": TEST_KEY,
               **FAST_KNOBS, **knobs}
        args = ["node", str(CLIENT)] + (["--mutant", mutant] if mutant else [])
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.observations: list[dict[str, Any]] = []
        self.stdout_junk: list[str] = []
        self.stderr: list[str] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.ready = self.wait("ready")

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obs = json.loads(line)
            except ValueError:
                self.stdout_junk.append(line)
                continue
            obs["_mono"] = time.monotonic()
            with self._arrived:
                self.observations.append(obs)
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def track(self, task_id: str, via: str, kind: str = "image") -> None:
        self.send("track", task_id=task_id, kind=kind, via=via)

    def seen(self, obs: str, **match: Any) -> list[dict[str, Any]]:
        with self._arrived:
            return [o for o in self.observations
                    if o["obs"] == obs and all(o.get(k) == v for k, v in match.items())]

    def wait(self, obs: str, timeout: float = 10.0, count: int = 1, **match: Any) -> dict[str, Any]:
        """The ``count``-th observation ``obs`` whose fields equal ``match``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [o for o in self.observations
                         if o["obs"] == obs and all(o.get(k) == v for k, v in match.items())]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {obs} {match} (#{count}) within {timeout} s; "
                        f"observations: {self.observations[-12:]}; stderr: {self.stderr[-12:]}")
                self._arrived.wait(remaining)

    def states(self) -> list[str]:
        return [o["state"] for o in self.seen("state")]

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send("shutdown")
                self.proc.wait(10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        assert not self.stdout_junk, f"stdout carried non-observation lines: {self.stdout_junk}"
        return self.proc.returncode


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=SCENARIO)


@pytest.fixture
def launch(sim: BackgroundSimulator) -> Iterator[Callable[..., NodeReferenceClient]]:
    clients: list[NodeReferenceClient] = []

    def start(mutant: str | None = None, **knobs: str) -> NodeReferenceClient:
        client = NodeReferenceClient(sim, mutant, **knobs)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


def new_task(sim: BackgroundSimulator, prompt: str = "a cat", kind: str = "image") -> str:
    request = TaskRequest(kind=kind, prompt=prompt, model="m", key=TEST_KEY)
    return sim.call(lambda: sim.simulator.tasks.create(request).task_id)


def inject(sim: BackgroundSimulator, kind: str, **params: Any) -> None:
    sim.call(lambda: sim.simulator.inject(kind, **params))


def task_of(sim: BackgroundSimulator, task_id: str) -> Any:
    return sim.simulator.tasks.tasks[task_id]


def records(sim: BackgroundSimulator, kind: str, **match: Any) -> list[Any]:
    return sim.simulator.recorder.records(kind, **match)


def subscribes(sim: BackgroundSimulator, task_id: str, target: str = "SubscribeToTask") -> list[Any]:
    return [r for r in records(sim, "invocation", target=target, error=None)
            if r.get("arguments") == [task_id]]


def negotiate_attempts(sim: BackgroundSimulator, hub: str = IMAGE_HUB) -> list[float]:
    """Monotonic times of every negotiate, refused or not."""
    refused = records(sim, "connection_refused", hub=hub, stage="negotiate")
    served = records(sim, "negotiate", hub=hub)
    return sorted(r.mono for r in refused + served)


def outcome_count(client: NodeReferenceClient, task_id: str) -> int:
    return len(client.seen("completed", task_id=task_id)) + len(client.seen("failed", task_id=task_id))


def assert_progress_monotonic(client: NodeReferenceClient, task_id: str) -> None:
    values = [o["progress"] for o in client.seen("progress", task_id=task_id)]
    assert values == sorted(set(values)), values


# ---------------------------------------------------------------------------------------------
# Start-up and the driver protocol


def test_unknown_mutant_exits_2_listing_the_mutants():
    env = {**os.environ, "CONDUIT_BASE_URL": "http://127.0.0.1:9", "CONDUIT_VIRTUAL_KEY": "vk_x"}
    done = subprocess.run(["node", str(CLIENT), "--mutant", "nonsense"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert done.stdout == ""
    for mutant in ("no-backoff", "no-resubscribe", "misses-terminal", "connection-per-task", "no-cleanup"):
        assert mutant in done.stderr


def test_ready_unknown_command_and_exit_on_eof(launch):
    client = launch()
    ready = {k: v for k, v in client.ready.items() if k != "_mono"}
    assert ready == {"obs": "ready", "name": "node-reference", "roles": ["signalr", "polling"]}
    client.send("frobnicate")
    assert "frobnicate" in client.wait("error")["message"]
    assert client.proc.stdin is not None
    client.proc.stdin.close()
    assert client.proc.wait(10) == 0
    assert launch(mutant="no-cleanup").ready["name"] == "node-reference/no-cleanup"


# ---------------------------------------------------------------------------------------------
# SignalR


def warm_up(sim: BackgroundSimulator, client: NodeReferenceClient, kind: str = "image") -> str:
    """Connect the kind's hub (by tracking an idle task) before the tasks under test start."""
    task_id = new_task(sim, "idle", kind)
    client.track(task_id, "signalr", kind)
    method = "SubscribeToTask" if kind == "image" else "SubscribeToRequest"
    wait_until(lambda: subscribes(sim, task_id, method))
    return task_id


def test_signalr_reports_progress_completion_and_failure_then_unsubscribes(sim, launch):
    client = launch()
    warm_up(sim, client, "image")
    warm_up(sim, client, "video")
    ok, bad, video = new_task(sim), new_task(sim, "please fail"), new_task(sim, kind="video")
    client.track(ok, "signalr")
    client.track(bad, "signalr")
    client.track(video, "signalr", kind="video")

    completed = client.wait("completed", task_id=ok)
    assert completed["result"] == task_of(sim, ok).result == {"images": [{"url": "https://x/1.png"}]}
    assert client.wait("failed", task_id=bad)["error"] == "content policy violation"
    assert client.wait("completed", task_id=video)["result"] == task_of(sim, video).result
    for task_id in (ok, bad, video):
        assert outcome_count(client, task_id) == 1
    assert [o["progress"] for o in client.seen("progress", task_id=ok)] == [10, 60]
    assert [o["progress"] for o in client.seen("progress", task_id=bad)] == [20]
    assert [o["progress"] for o in client.seen("progress", task_id=video)] == [10, 60]

    # One connection per hub, the key on negotiate and on the WebSocket, every task cleaned up.
    assert client.states()[:2] == ["connecting", "connected"]
    assert len(records(sim, "negotiate", hub=IMAGE_HUB)) == 1
    assert len(records(sim, "negotiate", hub=VIDEO_HUB)) == 1
    assert {r.get("key") for r in records(sim, "handshake", ok=True)} == {TEST_KEY}
    assert {r.get("transport") for r in records(sim, "handshake", ok=True)} == {"WebSockets"}
    assert len(subscribes(sim, video, "SubscribeToRequest")) == 1
    wait_until(lambda: sorted(r.get("arguments")[0] for r in records(
        sim, "invocation", target="UnsubscribeFromTask")) == sorted([ok, bad]), timeout=5)
    wait_until(lambda: [r.get("arguments") for r in records(
        sim, "invocation", target="UnsubscribeFromRequest")] == [[video]], timeout=5)
    assert not records(sim, "poll")


def test_refused_subscription_is_an_error_observation(sim, launch):
    client = launch()
    client.track("task_" + "0" * 32, "signalr")
    assert "Unauthorized access to task" in client.wait("error")["message"]


# ---------------------------------------------------------------------------------------------
# Polling


def test_polling_reaches_the_terminal_status_and_stops(sim, launch):
    client = launch()
    task_id = new_task(sim)
    client.track(task_id, "polling")
    assert client.wait("completed", task_id=task_id)["result"] == task_of(sim, task_id).result
    assert_progress_monotonic(client, task_id)
    polls = records(sim, "poll", task_id=task_id)
    assert polls[-1].get("task_status") == "completed"
    gaps = [b.mono - a.mono for a, b in zip(polls, polls[1:], strict=False)]
    assert gaps and min(gaps) >= 0.2 - EARLY_S, gaps
    time.sleep(0.6)  # three intervals: no poll after the terminal one
    assert len(records(sim, "poll", task_id=task_id)) == len(polls)
    assert not records(sim, "negotiate")


def test_polling_gives_up_after_the_poll_limit(sim, launch):
    client = launch(CONDUIT_POLL_LIMIT="3", CONDUIT_POLL_INTERVAL_MS="100")
    task_id = new_task(sim, "idle")
    client.track(task_id, "polling")
    client.wait("timeout", task_id=task_id)
    assert len(records(sim, "poll", task_id=task_id)) == 3
    assert not client.seen("completed")


def test_polling_survives_errors_and_honours_retry_after(sim, launch):
    inject(sim, "poll_errors", count=2, status=503, retry_after=1)
    client = launch()
    task_id = new_task(sim)
    client.track(task_id, "polling")
    client.wait("completed", task_id=task_id)
    polls = records(sim, "poll", task_id=task_id)
    assert [p.get("status") for p in polls[:2]] == [503, 503]
    assert polls[1].mono - polls[0].mono >= 1.0 - EARLY_S
    assert polls[2].mono - polls[1].mono >= 1.0 - EARLY_S


# ---------------------------------------------------------------------------------------------
# Fallback


@pytest.mark.parametrize("mutant", [None, "no-fallback"])
def test_auto_falls_back_to_polling_when_negotiate_is_refused(sim, launch, mutant):
    inject(sim, "refuse_reconnects", count=100)
    client = launch(mutant)
    task_id = new_task(sim)
    client.track(task_id, "auto")
    client.wait("state", state="disconnected")
    assert records(sim, "connection_refused", stage="negotiate")
    if mutant is None:
        assert client.wait("completed", task_id=task_id)["result"] == task_of(sim, task_id).result
        assert records(sim, "poll", task_id=task_id)
    else:
        wait_until(lambda: task_of(sim, task_id).status == "completed", timeout=5)
        time.sleep(0.5)
        assert not client.seen("completed")
        assert not records(sim, "poll", task_id=task_id)


# ---------------------------------------------------------------------------------------------
# Reconnects


def drop(sim: BackgroundSimulator, mode: str) -> None:
    inject(sim, "drop_connections", mode=mode)


def assert_ended_unheard(sim: BackgroundSimulator, task_id: str) -> None:
    """The task's completion went out while the client was disconnected: nobody received it."""
    sent = records(sim, "event", target="TaskCompleted", task_id=task_id)
    assert sent and sent[0].get("recipients") == 0, sent


def test_abort_reconnects_resubscribes_and_reports_what_ended_meanwhile(sim, launch):
    client = launch(CONDUIT_RECONNECT_DELAYS_MS="0,1500")
    warm_up(sim, client)
    live = new_task(sim, "medium")
    client.track(live, "signalr")
    client.wait("progress", task_id=live, progress=10)
    quick = new_task(sim, "soon")
    client.track(quick, "signalr")
    wait_until(lambda: subscribes(sim, quick))
    # The first reconnect attempt is refused, so the client is away ~1.5 s: `quick` ends meanwhile.
    inject(sim, "refuse_reconnects", count=1)
    drop(sim, "abort")
    client.wait("state", state="reconnecting")
    client.wait("state", state="reconnected", timeout=10)
    assert_ended_unheard(sim, quick)

    assert client.wait("completed", task_id=quick)["result"] == task_of(sim, quick).result
    assert client.wait("completed", task_id=live, timeout=10)["result"] == task_of(sim, live).result
    assert len(subscribes(sim, live)) == 2  # again after the reconnect
    assert records(sim, "poll", task_id=quick)  # learnt by the one poll after the reconnect
    for task_id in (live, quick):
        assert outcome_count(client, task_id) == 1
        assert_progress_monotonic(client, task_id)
    assert client.states() == ["connecting", "connected", "reconnecting", "reconnected"]


def test_close_without_allow_reconnect_waits_for_the_manual_restart(sim, launch):
    client = launch(CONDUIT_MANUAL_RESTART_MS="800")
    warm_up(sim, client)
    task_id = new_task(sim, "medium")
    client.track(task_id, "signalr")
    client.wait("progress", task_id=task_id, progress=10)
    drop(sim, "close")
    client.wait("state", state="disconnected")
    client.wait("state", state="connected", count=2, timeout=10)
    attempts = negotiate_attempts(sim)
    close_record = records(sim, "server_close")[0]
    assert len(attempts) == 2
    assert attempts[1] - close_record.mono >= 0.8 - EARLY_S
    assert "reconnecting" not in client.states()
    client.wait("completed", task_id=task_id, timeout=10)
    assert len(subscribes(sim, task_id)) == 2


def test_reconnect_attempts_follow_the_declared_delays_then_stop(sim, launch):
    client = launch(CONDUIT_RECONNECT_DELAYS_MS="0,300,600", CONDUIT_MANUAL_RESTART_MS="700")
    task_id = new_task(sim, "idle")
    client.track(task_id, "signalr")
    wait_until(lambda: subscribes(sim, task_id))
    inject(sim, "refuse_reconnects", count=4)  # the schedule and the restart
    drop(sim, "abort")
    client.wait("state", state="disconnected")  # schedule exhausted
    client.wait("state", state="disconnected", count=2, timeout=10)  # the manual restart failed too
    time.sleep(1.0)  # nothing more
    dropped_at = records(sim, "disconnect")[0].mono
    attempts = [t - dropped_at for t in negotiate_attempts(sim)[1:]]
    assert len(attempts) == 4, attempts
    gaps = [attempts[0]] + [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    for gap, declared in zip(gaps, (0.0, 0.3, 0.6, 0.7), strict=True):
        assert declared - EARLY_S <= gap <= declared + max(0.5, declared * 0.2), (gaps, declared)
    assert client.states() == ["connecting", "connected", "reconnecting", "disconnected", "connecting",
                               "disconnected"]
    assert "cannot connect" in client.wait("error")["message"]


# ---------------------------------------------------------------------------------------------
# Mutants: each visibly breaks its rule


def test_mutant_no_resubscribe_subscribes_only_once(sim, launch):
    client = launch("no-resubscribe")
    warm_up(sim, client)
    task_id = new_task(sim, "medium")
    client.track(task_id, "signalr")
    client.wait("progress", task_id=task_id, progress=10)
    drop(sim, "abort")
    client.wait("state", state="reconnected")
    client.wait("completed", task_id=task_id, timeout=10)  # it still learns the outcome, by polling
    assert len(subscribes(sim, task_id)) == 1


def test_mutant_misses_terminal_never_reports_a_task_that_ended_while_away(sim, launch):
    client = launch("misses-terminal", CONDUIT_RECONNECT_DELAYS_MS="0,1000")
    warm_up(sim, client)
    task_id = new_task(sim, "soon")
    client.track(task_id, "signalr")
    wait_until(lambda: subscribes(sim, task_id))
    inject(sim, "refuse_reconnects", count=1)
    drop(sim, "abort")
    client.wait("state", state="reconnected", timeout=10)
    assert_ended_unheard(sim, task_id)
    wait_until(lambda: len(subscribes(sim, task_id)) == 2)
    time.sleep(0.5)
    assert not client.seen("completed")
    assert not records(sim, "poll")


def test_mutant_polls_too_often(sim, launch):
    client = launch("polls-too-often", CONDUIT_POLL_INTERVAL_MS="500")
    task_id = new_task(sim, "idle")
    client.track(task_id, "polling")
    wait_until(lambda: len(records(sim, "poll", task_id=task_id)) >= 4, timeout=5)
    polls = records(sim, "poll", task_id=task_id)
    assert polls[3].mono - polls[0].mono < 3 * 0.5 - EARLY_S


def test_mutant_no_cleanup_and_duplicated_completion(sim, launch):
    lazy = launch("no-cleanup")
    warm_up(sim, lazy)
    task_id = new_task(sim)
    lazy.track(task_id, "signalr")
    lazy.wait("completed", task_id=task_id)
    time.sleep(0.3)
    assert not records(sim, "invocation", target="UnsubscribeFromTask")

    doubled = launch("progress-backwards")
    warm_up(sim, doubled)
    task_id = new_task(sim)
    doubled.track(task_id, "signalr")
    doubled.wait("completed", task_id=task_id, count=2)
