"""Drive a client under test through the driver protocol (JSON Lines over stdio).

The suite starts the client's command with the simulator's URL and a key of its own, sends it
commands, and stamps every observation with wall-clock and monotonic time on arrival, so
observations can be joined with the simulator's timeline (which uses the same clocks).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class DriverError(RuntimeError):
    """The client did not keep the driver protocol (no ready line, bad JSON, died early)."""


@dataclass(frozen=True)
class Observation:
    obs: str
    fields: dict[str, Any]
    wall: float
    mono: float

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass
class ClientUnderTest:
    """One running client process."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str | None = None
    observations: list[Observation] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._arrived = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self.ready: Observation | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, ready_timeout: float = 20.0) -> Observation:
        try:
            self.proc = subprocess.Popen(
                list(self.argv), env={**os.environ, **self.env}, cwd=self.cwd, text=True, bufsize=1,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise DriverError(f"cannot start client {' '.join(self.argv)!r}: {exc}") from exc
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            self.ready = self.wait_for("ready", timeout=ready_timeout)
        except TimeoutError as exc:
            self.stop()
            raise DriverError(
                f"client {' '.join(self.argv)!r} sent no ready line within {ready_timeout:.0f} s; "
                f"stderr: {' | '.join(self.stderr_lines[-5:]) or '(empty)'}"
            ) from exc
        return self.ready

    def stop(self, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        try:
            self.send({"cmd": "shutdown"})
            return proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            return proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- I/O ----------------------------------------------------------------------------------
    def send(self, command: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise DriverError("client is not running")
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DriverError(f"client stdin closed: {exc}") from exc

    def track(self, task_id: str, kind: str, via: str) -> None:
        self.send({"cmd": "track", "task_id": task_id, "kind": kind, "via": via})

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            wall, mono = time.time(), time.monotonic()
            text = line.strip()
            if not text:
                continue
            try:
                data = json.loads(text)
                if not isinstance(data, dict) or not isinstance(data.get("obs"), str):
                    raise ValueError("not an object with a string 'obs'")
            except ValueError as exc:
                self.protocol_errors.append(f"bad observation line {text[:200]!r}: {exc}")
                continue
            name = data.pop("obs")
            with self._arrived:
                self.observations.append(Observation(name, data, wall, mono))
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())
            if len(self.stderr_lines) > 2000:
                del self.stderr_lines[:1000]

    # -- queries ------------------------------------------------------------------------------
    def seen(self, obs: str | None = None, **match: Any) -> list[Observation]:
        with self._arrived:
            snapshot = list(self.observations)
        return [o for o in snapshot if (obs is None or o.obs == obs)
                and all(o.fields.get(k) == v for k, v in match.items())]

    def wait_for(self, obs: str, timeout: float, predicate: Callable[[Observation], bool] | None = None,
                 **match: Any) -> Observation:
        """The first observation of ``obs`` matching; raises TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for o in self.observations:
                    if o.obs == obs and all(o.fields.get(k) == v for k, v in match.items()) and (
                            predicate is None or predicate(o)):
                        return o
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {obs!r} {match or ''} within {timeout:.1f} s")
                if self.proc is not None and self.proc.poll() is not None:
                    raise DriverError(f"client exited with {self.proc.returncode} while waiting for {obs!r}; "
                                      f"stderr: {' | '.join(self.stderr_lines[-5:])}")
                self._arrived.wait(min(remaining, 0.2))

    def outcome(self, task_id: str, timeout: float) -> Observation | None:
        """The task's first terminal observation (completed / failed / timeout), or None."""
        try:
            return self._terminal(task_id, timeout)
        except TimeoutError:
            return None

    def _terminal(self, task_id: str, timeout: float) -> Observation:
        deadline = time.monotonic() + timeout
        while True:
            found = [o for o in self.seen() if o.obs in ("completed", "failed", "timeout")
                     and o.get("task_id") == task_id]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(task_id)
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(f"client exited with {self.proc.returncode}")
            time.sleep(0.02)
