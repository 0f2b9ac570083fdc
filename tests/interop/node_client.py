"""Drive the real @microsoft/signalr client under Node through tests/interop/node/signalr_driver.mjs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).parent / "node" / "signalr_driver.mjs"
ROOT = Path(__file__).resolve().parents[2]


class NodeSignalRClient:
    """A @microsoft/signalr HubConnection in a Node subprocess, commanded in JSON Lines."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.events: list[dict[str, Any]] = []
        self._consumed: set[int] = set()
        self._arrived = threading.Condition()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._seq = 0
        self.ready = self.wait("ready")

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                with self._arrived:
                    self.events.append(json.loads(line))
                    self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def command(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def wait(self, *names: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first event among ``names`` with fields equal to ``match`` not yet returned by
        ``wait``; events that do not match stay available to later waits."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index, event in enumerate(self.events):
                    if (index not in self._consumed and event["ev"] in names
                            and all(event.get(k) == v for k, v in match.items())):
                        self._consumed.add(index)
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {names} {match} within {timeout} s; events: {self.events[-10:]}; "
                        f"stderr: {self.stderr[-10:]}"
                    )
                self._arrived.wait(remaining)

    def seen(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["ev"] == name]

    def start(self, **options: Any) -> dict[str, Any]:
        self.command("start", **options)
        return self.wait("started", "start_failed", timeout=20)

    def invoke(self, method: str, *args: Any, timeout: float = 10.0) -> dict[str, Any]:
        self._seq += 1
        call_id = str(self._seq)
        self.command("invoke", id=call_id, method=method, args=list(args))
        return self.wait("invoke_result", "invoke_error", timeout=timeout, id=call_id)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("stop")
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(5)
