"""A null client that only polls: whatever ``via`` says, it follows a task by polling the status
route every ``CONDUIT_POLL_INTERVAL_MS`` (at most ``CONDUIT_POLL_LIMIT`` polls, honouring
``Retry-After``) and never opens a SignalR connection.

It may pass the polling rules; every rule about SignalR must come out INCONCLUSIVE or FAIL.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

BASE = os.environ["CONDUIT_BASE_URL"].rstrip("/")
KEY = os.environ["CONDUIT_VIRTUAL_KEY"]
INTERVAL = float(os.environ.get("CONDUIT_POLL_INTERVAL_MS", "5000")) / 1000
LIMIT = int(os.environ.get("CONDUIT_POLL_LIMIT", "60"))
TERMINAL_FAILURES = ("failed", "cancelled", "timedout")
lock = threading.Lock()
stopping = threading.Event()


def emit(obs: str, **fields: object) -> None:
    with lock:
        print(json.dumps({"obs": obs, **fields}), flush=True)


def poll(task_id: str) -> tuple[int | None, dict | None, float | None]:
    request = urllib.request.Request(f"{BASE}/api/tasks/{task_id}/status",
                                     headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), None
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After")
        return exc.code, None, float(retry_after) if retry_after and retry_after.isdigit() else None
    except OSError:
        return None, None, None


def follow(task_id: str) -> None:
    progress = None
    for _ in range(LIMIT):
        status, body, retry_after = poll(task_id)
        if body is not None:
            state = body.get("status")
            if state == "completed":
                emit("completed", task_id=task_id, result=body.get("result"))
                return
            if state in TERMINAL_FAILURES:
                emit("failed", task_id=task_id, error=body.get("error") or state)
                return
            value = body.get("progress")
            if isinstance(value, int | float) and value > 0 and (progress is None or value > progress):
                progress = value
                emit("progress", task_id=task_id, progress=value)
        if stopping.wait(max(INTERVAL, retry_after or 0.0)):
            return
    emit("timeout", task_id=task_id)


def main() -> int:
    emit("ready", name="null-poll-only", roles=["signalr", "polling"])
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("cmd") == "shutdown":
            break
        if command.get("cmd") == "track":
            threading.Thread(target=follow, args=(command["task_id"],), daemon=True).start()
    stopping.set()
    time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
