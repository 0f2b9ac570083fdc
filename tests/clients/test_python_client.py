"""The Python reference client (contract_tests/clients/python_client.py) as the suite runs it: a
subprocess spoken to in JSON Lines, against a real simulator on loopback. What it did on the wire
is read from the simulator's timeline; what it reported, from its observations."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.recorder import Record
from simulator.scenarios import parse_scenario
from simulator.tasks.model import TaskRequest
from tests.support.simulator import OTHER_KEY, TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
MODULE = "contract_tests.clients.python_client"

# Short knobs so every wait is well under a second or two. Keep-alive stays under the test
# server's 3 s client timeout (tests/support/simulator.py FAST_HUB_OPTIONS).
KNOBS = {
    "CONDUIT_RECONNECT_DELAYS_MS": "0,300,600",
    "CONDUIT_MANUAL_RESTART_MS": "700",
    "CONDUIT_POLL_INTERVAL_MS": "200",
    "CONDUIT_POLL_LIMIT": "60",
    "CONDUIT_KEEPALIVE_MS": "500",
    "CONDUIT_SERVER_TIMEOUT_MS": "3000",
}
EARLY = 0.05  # the contract's "early by at most 50 ms" (load never makes a timer early)
LATE = 1.0  # twice the contract's 500 ms: these tests share a small machine with other test runs


def _progress(*steps: tuple[float, int]) -> list[dict[str, Any]]:
    return [{"after": after, "progress": value} for after, value in steps]


# Tasks pick their script by prompt (the task's prompt is the script's name).
SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "quick": _progress((0.4, 10), (0.3, 40), (0.3, 80)) + [{"after": 0.3, "status": "completed"}],
    "fail": _progress((0.4, 20)) + [{"after": 0.3, "status": "failed", "error": "Model overloaded"}],
    "long": _progress(*((0.2, p) for p in range(10, 100, 10))) + [{"after": 0.2, "status": "completed"}],
    "away": _progress((0.4, 10)) + [{"after": 0.8, "status": "completed"}],
    "never": _progress((0.3, 1)) + [{"after": 3600, "status": "completed"}],
}
SCENARIO = parse_scenario(
    {"name": "client-tests", "description": "short scripts chosen by prompt",
     "scripts": {name: {"steps": steps} for name, steps in SCRIPTS.items()},
     "rules": [{"match": {"prompt_contains": name}, "script": name} for name in SCRIPTS if name != "quick"],
     "default": "quick"},
    "tests/clients/test_python_client.py",
)
SUBSCRIBE = {"image": "SubscribeToTask", "video": "SubscribeToRequest"}
UNSUBSCRIBE = {"image": "UnsubscribeFromTask", "video": "UnsubscribeFromRequest"}


# -- the client as a subprocess --------------------------------------------------------------------
class ClientProcess:
    """One reference client process; observations are stamped with wall-clock time on arrival."""

    def __init__(self, url: str, mutant: str | None = None, key: str = TEST_KEY, **env: str) -> None:
        argv = [sys.executable, "-m", MODULE] + (["--mutant", mutant] if mutant else [])
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, text=True, bufsize=1, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "CONDUIT_BASE_URL": url, "CONDUIT_VIRTUAL_KEY": key, **KNOBS, **env},
        )
        self.obs: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self.stderr: list[str] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @property
    def ready(self) -> dict[str, Any]:
        return self.wait("ready", timeout=20)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            wall = time.time()
            try:
                data = json.loads(line)
                assert isinstance(data, dict) and isinstance(data.get("obs"), str)
            except (ValueError, AssertionError):
                self.bad_lines.append(line)
                continue
            with self._arrived:
                self.obs.append({**data, "_wall": wall})
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def send(self, command: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((command if isinstance(command, str) else json.dumps(command)) + "\n")
        self.proc.stdin.flush()

    def track(self, task_id: str, kind: str = "image", via: str = "signalr") -> None:
        self.send({"cmd": "track", "task_id": task_id, "kind": kind, "via": via})

    def seen(self, obs: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self._arrived:
            snapshot = list(self.obs)
        return [o for o in snapshot if (obs is None or o["obs"] == obs)
                and all(o.get(k) == v for k, v in match.items())]

    def wait(self, obs: str, timeout: float = 10.0, after: float = 0.0, **match: Any) -> dict[str, Any]:
        """The first ``obs`` matching ``match`` that arrived after wall time ``after``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for o in self.obs:
                    if o["obs"] == obs and o["_wall"] > after and all(
                            o.get(k) == v for k, v in match.items()):
                        return o
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {obs} {match} within {timeout} s (exit {self.proc.poll()}); "
                                         f"seen: {[o['obs'] for o in self.obs][-15:]}; "
                                         f"stderr: {self.stderr[-8:]}")
                self._arrived.wait(min(remaining, 0.1))

    def terminal(self, task_id: str) -> list[dict[str, Any]]:
        return [o for o in self.seen(task_id=task_id) if o["obs"] in ("completed", "failed", "timeout")]

    def shutdown(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.send({"cmd": "shutdown"})
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"the client did not exit within {timeout} s of shutdown") from None


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=SCENARIO, seed=11)


Start = Callable[..., ClientProcess]


@pytest.fixture
def start_client(sim: BackgroundSimulator) -> Iterator[Start]:
    started: list[ClientProcess] = []

    def start(mutant: str | None = None, *, wait: bool = True, key: str = TEST_KEY, **env: str
              ) -> ClientProcess:
        client = ClientProcess(sim.url, mutant, key, **env)
        started.append(client)
        if wait:
            assert client.ready
        return client

    yield start
    for client in started:
        code = client.shutdown()
        assert code == 0, f"exit code {code}; stderr: {client.stderr[-10:]}"
        assert not client.bad_lines, f"stdout lines that are not observations: {client.bad_lines[:5]}"


# -- helpers ---------------------------------------------------------------------------------------
def create(sim: BackgroundSimulator, script: str = "quick", kind: str = "image", key: str = TEST_KEY) -> str:
    request = TaskRequest(kind=kind, prompt=script, model="test-model", key=key)
    return sim.call(lambda: sim.simulator.tasks.create(request).task_id)


def inject(sim: BackgroundSimulator, kind: str, **params: Any) -> dict[str, Any]:
    return sim.call(lambda: sim.simulator.inject(kind, **params))


def task(sim: BackgroundSimulator, task_id: str) -> Any:
    return sim.call(lambda: sim.simulator.tasks.get(task_id))


def records(sim: BackgroundSimulator, kind: str, **match: Any) -> list[Record]:
    return sim.simulator.recorder.records(kind, **match)


def subscribes(sim: BackgroundSimulator, task_id: str, target: str = "SubscribeToTask") -> list[Record]:
    return [r for r in records(sim, "invocation", target=target) if r.get("arguments") == [task_id]]


def polls(sim: BackgroundSimulator, task_id: str) -> list[Record]:
    return records(sim, "poll", task_id=task_id)


def attempts(sim: BackgroundSimulator, after: float, key: str = TEST_KEY) -> list[Record]:
    """Connection attempts (served or refused negotiates) of ``key`` after wall time ``after``."""
    return [r for r in sim.simulator.recorder if r.wall > after and r.get("key") == key and (
        r.kind == "negotiate" or (r.kind == "connection_refused" and r.get("stage") == "negotiate"))]


def progress_values(client: ClientProcess, task_id: str) -> list[Any]:
    return [o["progress"] for o in client.seen("progress", task_id=task_id)]


def states(client: ClientProcess, after: float = 0.0) -> list[str]:
    return [o["state"] for o in client.seen("state") if o["_wall"] > after]


def assert_reported_once(client: ClientProcess, task_id: str) -> dict[str, Any]:
    time.sleep(0.2)  # room for a duplicate
    outcomes = client.terminal(task_id)
    assert len(outcomes) == 1, outcomes
    values = progress_values(client, task_id)
    assert values == sorted(set(values)), values
    assert all(o["_wall"] <= outcomes[0]["_wall"] for o in client.seen("progress", task_id=task_id))
    return outcomes[0]


# -- the driver protocol ---------------------------------------------------------------------------
def test_ready_errors_and_shutdown(start_client: Start) -> None:
    client = start_client()
    assert client.ready["name"] == "python-reference"
    assert client.ready["roles"] == ["signalr", "polling"]
    client.send({"cmd": "frobnicate"})
    assert "frobnicate" in client.wait("error")["message"]
    client.send("this is not json")
    client.send({"cmd": "track", "task_id": "task_x", "kind": "audio", "via": "signalr"})
    wait_until(lambda: len(client.seen("error")) >= 3)
    client.send({"cmd": "untrack", "task_id": "task_never_tracked"})
    wait_until(lambda: len(client.seen("error")) >= 4)
    started = time.monotonic()
    assert client.shutdown() == 0
    assert time.monotonic() - started < 3


def test_unknown_mutant_exits_2() -> None:
    done = subprocess.run([sys.executable, "-m", MODULE, "--mutant", "no-such-thing"], cwd=ROOT, text=True,
                          capture_output=True, timeout=30, env={
                              **os.environ, "CONDUIT_BASE_URL": "http://127.0.0.1:9",
                              "CONDUIT_VIRTUAL_KEY": TEST_KEY})
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no-such-thing" in done.stderr
    for name in ("no-backoff", "misses-terminal", "connection-per-task", "no-cleanup"):
        assert name in done.stderr


# -- SignalR -------------------------------------------------------------------------------------
def test_signalr_reports_progress_completion_and_failure_on_both_hubs(
        sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client()
    image, video, failing = create(sim, "quick", "image"), create(sim, "quick", "video"), create(sim, "fail")
    client.track(image, "image")
    client.track(video, "video")
    client.track(failing, "image")
    for task_id, kind in ((image, "image"), (video, "video")):
        outcome = client.wait("completed", task_id=task_id, timeout=10)
        assert outcome["result"] == task(sim, task_id).result
        assert assert_reported_once(client, task_id) == outcome
        assert progress_values(client, task_id) == [10, 40, 80]
        assert len(subscribes(sim, task_id, SUBSCRIBE[kind])) == 1
        wait_until(lambda task_id=task_id, kind=kind: subscribes(sim, task_id, UNSUBSCRIBE[kind]), 3)
    outcome = client.wait("failed", task_id=failing)
    assert outcome["error"] == task(sim, failing).error == "Model overloaded"
    assert assert_reported_once(client, failing)["obs"] == "failed"
    wait_until(lambda: subscribes(sim, failing, "UnsubscribeFromTask"), 3)
    # One connection per hub, each authenticated on negotiate and on the WebSocket (C-AUTH).
    started = records(sim, "transport_start")
    assert sorted(r.get("hub") for r in started) == ["/hubs/image-generation", "/hubs/video-generation"]
    assert {(r.get("key"), r.get("transport")) for r in started} == {(TEST_KEY, "WebSockets")}
    assert len(records(sim, "negotiate")) == 2 and not records(sim, "auth_rejected")
    assert {r.get("version") for r in records(sim, "handshake", ok=True)} == {1}
    assert not polls(sim, image) and not polls(sim, video)
    assert states(client)[:2] == ["connecting", "connecting"]


@pytest.mark.parametrize("transport", ["ServerSentEvents", "LongPolling"])
def test_other_transports(sim: BackgroundSimulator, start_client: Start,
                          transport: str) -> None:
    client = start_client(CONDUIT_TRANSPORT=transport)
    task_id = create(sim, "quick")
    client.track(task_id)
    outcome = client.wait("completed", task_id=task_id)
    assert outcome["result"] == task(sim, task_id).result
    assert progress_values(client, task_id) == [10, 40, 80]
    assert {r.get("transport") for r in records(sim, "transport_start")} == {transport}
    assert not records(sim, "auth_rejected")
    wait_until(lambda: subscribes(sim, task_id, "UnsubscribeFromTask"), 3)


# -- polling ---------------------------------------------------------------------------------------
def test_polling_to_completion(sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client()
    task_id = create(sim, "quick")
    client.track(task_id, via="polling")
    outcome = client.wait("completed", task_id=task_id)
    assert outcome["result"] == task(sim, task_id).result
    assert assert_reported_once(client, task_id) == outcome
    time.sleep(0.5)  # would it poll after the terminal status?
    seen = polls(sim, task_id)
    assert [p.get("task_status") for p in seen][-1] == "completed"
    assert sum(p.get("task_status") == "completed" for p in seen) == 1
    gaps = [b.wall - a.wall for a, b in zip(seen, seen[1:], strict=False)]
    assert len(seen) >= 5 and min(gaps) >= 0.2 - EARLY, gaps
    assert progress_values(client, task_id)  # progress learned by polling
    assert not records(sim, "negotiate") and not client.seen("state")


def test_poll_limit_then_timeout(sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client(CONDUIT_POLL_LIMIT="3")
    task_id = create(sim, "never")
    client.track(task_id, via="polling")
    client.wait("timeout", task_id=task_id, timeout=5)
    time.sleep(0.5)
    assert len(polls(sim, task_id)) == 3
    assert assert_reported_once(client, task_id)["obs"] == "timeout"


def test_poll_errors_and_retry_after(sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client()
    inject(sim, "poll_errors", count=1, status=429, retry_after=1)
    inject(sim, "poll_errors", count=1, status=500)
    task_id = create(sim, "quick")
    client.track(task_id, via="polling")
    outcome = client.wait("completed", task_id=task_id, timeout=10)  # failed polls do not end tracking
    assert outcome["result"] == task(sim, task_id).result
    seen = polls(sim, task_id)
    assert [p.get("status") for p in seen[:3]] == [429, 500, 200]
    assert seen[1].wall - seen[0].wall >= 1.0 - EARLY  # Retry-After: 1
    assert 0.2 - EARLY <= seen[2].wall - seen[1].wall < 0.2 + LATE  # a 500 without Retry-After: the interval


# -- auto and the fallback -----------------------------------------------------------------------
# Reference and mutant side by side: the reference client has TEST_KEY, the mutant OTHER_KEY, so
# each one's connections, polls and faults are told apart by key.
def test_auto_falls_back_to_polling_when_the_hub_refuses(sim: BackgroundSimulator, start_client: Start
                                                         ) -> None:
    reference = start_client(wait=False)
    mutant = start_client("no-fallback", key=OTHER_KEY)
    assert reference.ready
    inject(sim, "refuse_reconnects", count=100, how="negotiate_503")
    mine, theirs = create(sim, "quick"), create(sim, "quick", key=OTHER_KEY)
    reference.track(mine, via="auto")
    mutant.track(theirs, via="auto")
    outcome = reference.wait("completed", task_id=mine, timeout=10)
    assert outcome["result"] == task(sim, mine).result
    assert polls(sim, mine)
    assert records(sim, "connection_refused", key=TEST_KEY)
    wait_until(lambda: task(sim, theirs).status == "completed", 5)
    time.sleep(0.5)
    assert not mutant.terminal(theirs) and not polls(sim, theirs)  # no-fallback: never polls
    assert records(sim, "connection_refused", key=OTHER_KEY)
    for client in (reference, mutant):
        assert client.seen("state", state="disconnected")


def test_auto_moves_to_polling_when_the_connection_is_lost_for_good(
        sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client(CONDUIT_RECONNECT_DELAYS_MS="0", CONDUIT_MANUAL_RESTART_MS="300")
    task_id = create(sim, "long")
    client.track(task_id, via="auto")
    client.wait("progress", task_id=task_id)
    inject(sim, "refuse_reconnects", count=100, how="negotiate_503")
    inject(sim, "drop_connections", mode="abort")
    outcome = client.wait("completed", task_id=task_id, timeout=10)
    assert outcome["result"] == task(sim, task_id).result
    assert polls(sim, task_id)
    assert len(attempts(sim, 0)) == 1 + 2  # the first connect, one reconnect, one manual restart
    assert assert_reported_once(client, task_id) == outcome


# -- reconnecting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["abort", "close_reconnect"])
def test_reconnect_resubscribes(sim: BackgroundSimulator, start_client: Start,
                                mode: str) -> None:
    client = start_client()
    task_id = create(sim, "long")
    client.track(task_id)
    client.wait("progress", task_id=task_id)
    dropped = time.time()
    inject(sim, "drop_connections", mode=mode)
    client.wait("state", state="reconnected", after=dropped)
    assert states(client, dropped)[:2] == ["reconnecting", "reconnected"]
    outcome = client.wait("completed", task_id=task_id, timeout=10)
    assert outcome["result"] == task(sim, task_id).result
    assert assert_reported_once(client, task_id) == outcome
    subs = subscribes(sim, task_id)
    assert len(subs) == 2 and subs[0].get("connection_id") != subs[1].get("connection_id")
    assert subs[1].wall - dropped < 0.5 + LATE
    handshakes = records(sim, "handshake", ok=True)
    assert subs[1].get("connection_id") == handshakes[-1].get("connection_id")
    assert len(polls(sim, task_id)) == 1  # one poll after the reconnect


def test_task_ending_while_disconnected_is_reported(sim: BackgroundSimulator, start_client: Start) -> None:
    reference = start_client(wait=False, CONDUIT_RECONNECT_DELAYS_MS="0,1500")
    mutant = start_client("misses-terminal", key=OTHER_KEY, CONDUIT_RECONNECT_DELAYS_MS="0,1500")
    assert reference.ready
    pairs = [(reference, create(sim, "away"), TEST_KEY),
             (mutant, create(sim, "away", key=OTHER_KEY), OTHER_KEY)]
    for client, task_id, _key in pairs:  # progress at 0.4 s, completed at 1.2 s
        client.track(task_id)
    for client, task_id, key in pairs:
        client.wait("progress", task_id=task_id)
        inject(sim, "refuse_reconnects", count=1, how="negotiate_503", key=key)  # away until ~2 s
    dropped = time.time()
    inject(sim, "drop_connections", mode="abort")
    back = {}
    for client, task_id, _key in pairs:
        back[task_id] = client.wait("state", state="reconnected", after=dropped, timeout=5)
        completed = [r for r in records(sim, "event", target="TaskCompleted") if r.get("task_id") == task_id]
        assert len(completed) == 1 and completed[0].get("recipients") == 0  # nobody was listening
        wait_until(lambda task_id=task_id: len(subscribes(sim, task_id)) == 2, 2)
    (_, mine, _), (_, theirs, _) = pairs
    outcome = reference.wait("completed", task_id=mine, timeout=3)
    assert outcome["result"] == task(sim, mine).result
    assert outcome["_wall"] - back[mine]["_wall"] < 0.2 + LATE  # within one poll interval
    assert len(polls(sim, mine)) == 1
    time.sleep(max(0.0, back[theirs]["_wall"] + 0.6 - time.time()))
    assert not mutant.terminal(theirs) and not polls(sim, theirs)  # misses-terminal: never learns


def test_resubscribes_no_catchup_catches_up_only_after_a_manual_restart(
        sim: BackgroundSimulator, start_client: Start) -> None:
    # Back by the automatic schedule (0, then 1.5 s): subscribes again, never polls.
    automatic = start_client("resubscribes-no-catchup", wait=False, CONDUIT_RECONNECT_DELAYS_MS="0,1500")
    # Schedule exhausted at once (one attempt, refused): back by the manual restart, which polls.
    manual = start_client("resubscribes-no-catchup", key=OTHER_KEY, CONDUIT_RECONNECT_DELAYS_MS="0",
                          CONDUIT_MANUAL_RESTART_MS="1500")
    assert automatic.ready
    pairs = [(automatic, create(sim, "away"), TEST_KEY),
             (manual, create(sim, "away", key=OTHER_KEY), OTHER_KEY)]
    for client, task_id, _key in pairs:  # progress at 0.4 s, completed at 1.2 s
        client.track(task_id)
    for client, task_id, key in pairs:
        client.wait("progress", task_id=task_id)
        inject(sim, "refuse_reconnects", count=1, how="negotiate_503", key=key)
    dropped = time.time()
    inject(sim, "drop_connections", mode="abort")
    (_, theirs, _), (_, mine, _) = pairs
    outcome = manual.wait("completed", task_id=mine, timeout=8)
    assert outcome["result"] == task(sim, mine).result and len(polls(sim, mine)) == 1
    back = automatic.wait("state", state="reconnected", after=dropped, timeout=5)
    wait_until(lambda: len(subscribes(sim, theirs)) == 2, 2)  # it did subscribe again
    time.sleep(max(0.0, back["_wall"] + 0.6 - time.time()))
    assert not automatic.terminal(theirs) and not polls(sim, theirs)  # but never caught up


def test_close_without_allow_reconnect_then_one_manual_restart(sim: BackgroundSimulator, start_client: Start
                                                               ) -> None:
    reference = start_client(wait=False)
    mutant = start_client("reconnect-after-close", key=OTHER_KEY)
    assert reference.ready
    mine, theirs = create(sim, "never"), create(sim, "never", key=OTHER_KEY)
    reference.track(mine)
    mutant.track(theirs)
    wait_until(lambda: subscribes(sim, mine) and subscribes(sim, theirs))
    closed = time.time()
    inject(sim, "drop_connections", mode="close")
    wait_until(lambda: attempts(sim, closed) and attempts(sim, closed, OTHER_KEY))
    time.sleep(0.7)  # room for a second attempt, which must not come
    gaps = {}
    for client, key in ((reference, TEST_KEY), (mutant, OTHER_KEY)):
        tries = attempts(sim, closed, key)
        assert len(tries) == 1  # never an automatic reconnect (no "reconnecting")
        assert "reconnecting" not in states(client, closed)
        gaps[key] = tries[0].wall - records(sim, "server_close", key=key)[0].wall
    assert 0.7 - EARLY <= gaps[TEST_KEY] < 0.7 + LATE
    assert states(reference, closed)[:3] == ["disconnected", "connecting", "connected"]
    wait_until(lambda: len(subscribes(sim, mine)) == 2)  # subscribed again after the restart
    assert gaps[OTHER_KEY] < 0.35  # reconnect-after-close: at once


def test_reconnect_attempts_follow_the_declared_delays(sim: BackgroundSimulator, start_client: Start) -> None:
    reference = start_client(wait=False)  # delays 0, 300, 600 ms; manual restart after 700 ms
    mutant = start_client("no-backoff", key=OTHER_KEY)
    assert reference.ready
    mine, theirs = create(sim, "never"), create(sim, "never", key=OTHER_KEY)
    reference.track(mine)
    mutant.track(theirs)
    wait_until(lambda: subscribes(sim, mine) and subscribes(sim, theirs))
    for key in (TEST_KEY, OTHER_KEY):
        inject(sim, "refuse_reconnects", count=10, how="negotiate_503", key=key)
    dropped = time.time()
    inject(sim, "drop_connections", mode="abort")
    wait_until(lambda: len(attempts(sim, dropped)) >= 4 and len(attempts(sim, dropped, OTHER_KEY)) >= 4, 5)
    time.sleep(0.9)  # would either try again?
    gaps = {}
    for key in (TEST_KEY, OTHER_KEY):
        tries = attempts(sim, dropped, key)
        assert len(tries) == 4 and all(r.kind == "connection_refused" for r in tries)
        walls = [records(sim, "server_close", key=key)[0].wall] + [r.wall for r in tries]
        gaps[key] = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    for gap, want in zip(gaps[TEST_KEY], [0.0, 0.3, 0.6, 0.7], strict=True):
        assert want - EARLY <= gap <= want + LATE, gaps
    assert states(reference, dropped) == ["reconnecting", "disconnected", "connecting", "disconnected"]
    assert any("lost for good" in o["message"] for o in reference.seen("error"))
    for gap, want in zip(gaps[OTHER_KEY][1:3], [0.3, 0.6], strict=True):
        assert gap < want - EARLY, gaps  # no-backoff: early, every time
    assert gaps[OTHER_KEY][3] >= 0.7 - EARLY  # only the schedule is broken, not the manual restart


# -- mutants that break the rest -----------------------------------------------------------------
def test_no_resubscribe_mutant(sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client("no-resubscribe")
    task_id = create(sim, "long")
    client.track(task_id)
    client.wait("progress", task_id=task_id)
    dropped = time.time()
    inject(sim, "drop_connections", mode="abort")
    client.wait("state", state="reconnected", after=dropped)
    time.sleep(0.8)
    assert len(subscribes(sim, task_id)) == 1
    assert not [o for o in client.seen("progress", task_id=task_id) if o["_wall"] > dropped + 0.5]


def test_mutants_that_break_poll_interval_outcome_pool_and_cleanup(
        sim: BackgroundSimulator, start_client: Start) -> None:
    often = start_client("polls-too-often", wait=False, CONDUIT_POLL_INTERVAL_MS="500")
    backwards = start_client("progress-backwards", wait=False)
    per_task = start_client("connection-per-task", wait=False)
    no_cleanup = start_client("no-cleanup", wait=False)
    assert no_cleanup.ready["name"] == "python-reference/no-cleanup"
    polled, duplicated, spared = create(sim, "never"), create(sim, "quick"), create(sim, "quick")
    pooled = [create(sim, "quick") for _ in range(3)]
    for client in (often, backwards, per_task):
        assert client.ready
    often.track(polled, via="polling")
    backwards.track(duplicated)
    no_cleanup.track(spared)
    for task_id in pooled:
        per_task.track(task_id)
    for client, task_id in [(backwards, duplicated), (no_cleanup, spared)] + [(per_task, t) for t in pooled]:
        client.wait("completed", task_id=task_id)
    time.sleep(0.3)
    seen = polls(sim, polled)
    assert len(seen) >= 4 and min(b.wall - a.wall for a, b in zip(seen, seen[1:], strict=False)) < 0.25
    assert len(backwards.terminal(duplicated)) == 2
    assert len(records(sim, "transport_start")) == 3 + 2  # one a task, and one each for two other clients
    assert len(subscribes(sim, spared)) == 1 and not subscribes(sim, spared, "UnsubscribeFromTask")
    assert all(subscribes(sim, t, "UnsubscribeFromTask") for t in pooled)


def test_untrack_stops_following(sim: BackgroundSimulator, start_client: Start) -> None:
    client = start_client()
    hub_task, polled = create(sim, "long"), create(sim, "long")
    client.track(hub_task)
    client.track(polled, via="polling")
    client.wait("progress", task_id=hub_task)
    wait_until(lambda: polls(sim, polled))
    client.send({"cmd": "untrack", "task_id": hub_task})
    client.send({"cmd": "untrack", "task_id": polled})
    wait_until(lambda: subscribes(sim, hub_task, "UnsubscribeFromTask"), 3)
    count = len(polls(sim, polled))
    time.sleep(0.5)
    assert len(polls(sim, polled)) == count
    later = time.time()
    time.sleep(0.3)
    assert not [o for o in client.seen() if o.get("task_id") in (hub_task, polled) and o["_wall"] > later]
