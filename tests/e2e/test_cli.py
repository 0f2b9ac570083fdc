"""``conduit-harness serve`` as a real subprocess: what it prints, what it serves, how it stops,
what it records, and how it refuses a bad scenario."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import World, verify, world

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "conduit-harness"
COMMAND = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "harness.cli"]


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


class Served:
    """A running ``serve`` process whose stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*COMMAND, "serve", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def banner(self, timeout: float = 20.0) -> dict[str, str]:
        """The start-up lines, up to and including ``scenario: ...``, parsed."""
        fields: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while "scenario" not in fields:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no banner within {timeout} s: {self.stdout}") from None
            if line is None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"serve exited: {self.proc.poll()}; {self.stdout}; {stderr}")
            name, _, value = line.partition(": ") if ": " in line else line.partition(" on ")
            fields[name.strip()] = value.strip()
        return fields

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def serve_one_task(w: World, served: list[Served], record: Path) -> tuple[str, str, list[dict]]:
    """Serve happy-path with --record, run one task to completion, SIGINT; (url, task id, polls)."""
    process = Served("--port", "0", "--scenario", "happy-path", "--time-scale", "0.1", "--seed", "7",
                     "--record", str(record))
    served.append(process)
    banner = process.banner()
    url = banner["listening"]
    rest = w.rest(url, banner["virtual key"], banner["control token"])
    task_id = rest.create("image")
    polls = rest.poll(task_id, interval=0.02, timeout=15)
    process.proc.send_signal(signal.SIGINT)
    assert process.proc.wait(20) == 0
    return url, task_id, polls


@pytest.fixture
def served() -> Iterator[list[Served]]:
    processes: list[Served] = []
    yield processes
    for process in processes:
        process.stop()


def test_serve_prints_serves_and_stops_on_sigint(served: list[Served], w: World,
                                                       tmp_path: Path) -> None:
    record = tmp_path / "run.jsonl"
    process = Served("--port", "0", "--scenario", "happy-path", "--time-scale", "0.1", "--seed", "7",
                     "--record", str(record))
    served.append(process)
    banner = process.banner()

    url = banner["listening"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), banner
    assert int(url.rsplit(":", 1)[1]) > 0  # --port 0 picked a real port
    key = banner["virtual key"]
    assert re.fullmatch(r"vk_[A-Za-z0-9]+", key), banner
    secret = banner["webhook secret"]
    assert secret, banner
    assert banner["scenario"] == "happy-path (seed 7, time scale 0.1)"

    rest = w.rest(url, key, banner["control token"])
    receiver = w.receiver()
    task_id = rest.create("image", webhook_url=receiver.url)
    assert re.fullmatch(r"task_[0-9a-f]{32}", task_id)
    polls = rest.poll(task_id, interval=0.02, timeout=15)
    assert polls[-1]["status"] == "completed" and polls[-1]["result"]
    progress = [p["progress"] for p in polls]
    assert progress == sorted(progress)
    # The printed secret is the one that signs the webhooks.
    deliveries = receiver.wait_terminal(task_id)
    assert deliveries and all(verify(d.body, d.signature, secret) for d in deliveries)
    info = rest.request("GET", "/_sim/info").json()
    assert (info["seed"], info["time_scale"], info["scenario"], info["keys"]) == (7, 0.1, "happy-path", [key])

    process.proc.send_signal(signal.SIGINT)
    assert process.proc.wait(20) == 0
    stderr = process.proc.stderr.read() if process.proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    wait_stdout = time.monotonic() + 5
    while "stopped" not in process.stdout and time.monotonic() < wait_stdout:
        time.sleep(0.02)
    assert process.stdout[-1] == "stopped", process.stdout

    assert record.exists()  # opened at start; what it holds: test_record_file_holds_the_timeline


def test_record_file_holds_the_timeline(served: list[Served], w: World, tmp_path: Path) -> None:
    record = tmp_path / "run.jsonl"
    url, task_id, polls = serve_one_task(w, served, record)
    assert polls[-1]["status"] == "completed"

    lines = record.read_text(encoding="utf-8").splitlines()
    assert lines, "the record file is empty"
    records = [json.loads(line) for line in lines]  # JSON Lines: every line one JSON object
    assert all(isinstance(r, dict) and {"seq", "kind", "wall", "mono"} <= set(r) for r in records)
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    [start] = [r for r in records if r["kind"] == "server_start"]
    assert (start["seed"], start["scenario"], start["time_scale"], start["url"]) == (
        7, "happy-path", 0.1, url)
    [created] = [r for r in records if r["kind"] == "task_created"]
    assert (created["task_id"], created["task_kind"], created["script"]) == (task_id, "image", "standard")
    events = [r for r in records if r["kind"] == "task_event" and r["task_id"] == task_id]
    assert [(e["event"], e["progress"]) for e in events] == [
        ("progress", 10), ("progress", 50), ("progress", 90), ("completed", 100)]
    assert events[-1]["result"] == polls[-1]["result"]
    assert [r["kind"] for r in records].count("poll") == len(polls)
    assert records[-1]["kind"] == "server_stop"


BAD_YAML = """\
scripts:
  broken:
    steps:
      - {after: 1s, progress: 150}
      - {status: completed}
"""


@pytest.mark.parametrize("case", ["unknown name", "missing file", "invalid file"])
def test_bad_scenario_exits_2_naming_the_problem(tmp_path: Path, case: str) -> None:
    if case == "unknown name":
        scenario, expected = "no-such-scenario", ["no-such-scenario", "no bundled scenario", "happy-path"]
    elif case == "missing file":
        scenario = str(tmp_path / "missing.yaml")
        expected = [scenario, "no such file"]
    else:
        path = tmp_path / "broken.yaml"
        path.write_text(BAD_YAML, encoding="utf-8")
        scenario, expected = str(path), [str(path), "scripts.broken.steps[0].progress", "150"]
    done = subprocess.run([*COMMAND, "serve", "--port", "0", "--scenario", scenario], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "listening on" not in done.stdout
    assert done.stderr.startswith("conduit-harness: error:"), done.stderr
    for text in expected:
        assert text in done.stderr, (text, done.stderr)
    assert "Traceback" not in done.stderr
