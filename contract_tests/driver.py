"""Drive a client under test through the driver protocol (JSON Lines over stdio).

The suite starts the client's command with the simulator's URL and a key of its own, sends it
commands, and stamps every observation with wall-clock and monotonic time on arrival, so
observations can be joined with the simulator's timeline (which uses the same clocks).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

# Limits on what a client's output may cost the harness (a client writing stderr without newlines
# grew it to 3.8 GB in 18 s; a 1 GiB stdout line to 2.6 GB). An observation is a short JSON
# object: 1 MiB is far beyond any honest line (Node's readline has no limit; Go's bufio.Scanner
# stops at 64 KiB). The stderr tail is what a report shows of a failing client.
MAX_LINE_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 64 * 1024
MAX_PROTOCOL_ERRORS = 100
# How long a client may take to print its ready line (Node with @microsoft/signalr and the Python
# reference client start in well under a second; the rest is room for a loaded machine).
READY_TIMEOUT_S = 15.0


class DriverError(RuntimeError):
    """The client did not keep the driver protocol (no ready line, bad JSON, died early); ``str()``
    is one line that says what happened."""


def read_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, int]]:
    """Lines of ``stream`` as ``(line, length)``: a line longer than ``limit`` bytes is cut to its
    first ``limit`` bytes, the rest is read and dropped, and ``length`` says how long it was."""
    while True:
        line = stream.readline(limit)
        if not line:
            return
        if line.endswith(b"\n") or len(line) < limit:
            yield line, len(line)
            continue
        length = len(line)
        while True:  # skip to the end of the over-long line without keeping it
            rest = stream.readline(limit)
            length += len(rest)
            if not rest or rest.endswith(b"\n"):
                break
        yield line, length


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
    """One running client process.

    Its output is read as bytes, decoded leniently (a stray non-UTF-8 byte becomes U+FFFD instead
    of killing the reader), with a line limit (:data:`MAX_LINE_BYTES`) on stdout and a bounded tail
    (:data:`STDERR_TAIL_BYTES`) of stderr. Its exit wakes every waiter at once, so a client that
    crashes is reported within moments, not after a rule's whole budget.
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str | None = None
    observations: list[Observation] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._arrived = threading.Condition()
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self.stderr_dropped = 0   # bytes of stderr no longer kept (only the tail is)
        self.protocol_error_count = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: Observation | None = None
        self._stdout_done = threading.Event()
        self._gone = threading.Event()

    @property
    def command(self) -> str:
        text = " ".join(self.argv)
        return text if len(text) <= 120 else text[:117] + "..."

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, ready_timeout: float = READY_TIMEOUT_S) -> Observation:
        """Start the client and wait for its ``ready`` line; :class:`DriverError` (one line) when
        it cannot start, exits first, or stays silent past ``ready_timeout``."""
        try:
            self.proc = subprocess.Popen(
                list(self.argv), env={**os.environ, **self.env}, cwd=self.cwd,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise DriverError(f"cannot start client {self.command!r}: {exc.strerror or exc}") from None
        threading.Thread(target=self._read_stdout, name="client-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="client-stderr", daemon=True).start()
        threading.Thread(target=self._watch_exit, name="client-exit", daemon=True).start()
        try:
            self.ready = self.wait_for("ready", timeout=ready_timeout)
        except TimeoutError:
            self.stop(timeout=2)
            raise DriverError(f"client {self.command!r} sent no ready line within {ready_timeout:g} s"
                              f"{self._stderr_hint()}") from None
        except DriverError:
            self.stop(timeout=2)
            raise DriverError(f"client {self.command!r} {self.exit_cause()} before its ready line"
                              f"{self._stderr_hint()}") from None
        return self.ready

    def stop(self, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        try:
            self.send({"cmd": "shutdown"})
            # End of input too: a client (or a wrapper script) that reads until EOF stops as well.
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]
            return proc.wait(timeout)
        except (DriverError, OSError, subprocess.TimeoutExpired):
            proc.kill()
            return proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def gone(self) -> bool:
        """True once the process has ended (whatever the harness asked of it)."""
        return self.proc is not None and self.proc.poll() is not None

    def crash_report(self, while_doing: str) -> str:
        """One line for a client that ended on its own: how, while doing what, and its last
        stderr lines (``client exited with code 1 during C-POOL; stderr: ...``)."""
        return f"client {self.exit_cause()} {while_doing}{self._stderr_hint()}"

    def exit_cause(self) -> str:
        """``exited with code 3`` / ``was killed by signal 9`` / ``is running``."""
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "is running"
        if code < 0:
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    # -- output -------------------------------------------------------------------------------
    @property
    def stderr_tail(self) -> str:
        """The last :data:`STDERR_TAIL_BYTES` of stderr, decoded leniently (for reports)."""
        with self._stderr_lock:
            raw = bytes(self._stderr)
        return raw.decode("utf-8", errors="replace")

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr_tail.splitlines()

    def _stderr_hint(self, lines: int = 3, limit: int = 300) -> str:
        tail = " | ".join(line.strip() for line in self.stderr_lines[-lines:] if line.strip())
        if not tail:
            return "; stderr: (empty)"
        return "; stderr: " + (tail if len(tail) <= limit else "..." + tail[-limit:])

    # -- I/O ----------------------------------------------------------------------------------
    def send(self, command: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise DriverError("client is not running")
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise DriverError(f"client stdin closed ({self.exit_cause()}): {exc}") from exc

    def track(self, task_id: str, kind: str, via: str) -> None:
        self.send({"cmd": "track", "task_id": task_id, "kind": kind, "via": via})

    def _protocol_error(self, message: str) -> None:
        self.protocol_error_count += 1
        if len(self.protocol_errors) < MAX_PROTOCOL_ERRORS:
            self.protocol_errors.append(message)

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for raw, length in read_lines(self.proc.stdout):
                wall, mono = time.time(), time.monotonic()
                text = raw.decode("utf-8", errors="replace").strip()
                if length > MAX_LINE_BYTES:
                    self._protocol_error(f"stdout line of {length:,} bytes is over the "
                                         f"{MAX_LINE_BYTES:,}-byte limit; cut and not read: "
                                         f"{text[:100]!r}...")
                    continue
                if not text:
                    continue
                try:
                    data = json.loads(text)
                    if not isinstance(data, dict) or not isinstance(data.get("obs"), str):
                        raise ValueError("not an object with a string 'obs'")
                except (ValueError, RecursionError) as exc:
                    self._protocol_error(f"bad observation line {text[:200]!r}: {str(exc)[:200]}")
                    continue
                name = data.pop("obs")
                with self._arrived:
                    self.observations.append(Observation(name, data, wall, mono))
                    self._arrived.notify_all()
        finally:
            self._stdout_done.set()
            with self._arrived:
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        while chunk := stream.read1(64 * 1024):  # type: ignore[attr-defined]
            with self._stderr_lock:
                self._stderr += chunk
                excess = len(self._stderr) - STDERR_TAIL_BYTES
                if excess > 0:
                    del self._stderr[:excess]
                    self.stderr_dropped += excess

    def _watch_exit(self) -> None:
        """Wake every waiter when the process ends (its last lines are read first)."""
        assert self.proc is not None
        self.proc.wait()
        # Observations printed just before exiting still count; a grandchild that keeps the pipe
        # open (a shell wrapper's child) must not hide the exit for longer than this.
        self._stdout_done.wait(2)
        self._gone.set()
        with self._arrived:
            self._arrived.notify_all()

    def _exited(self) -> bool:
        """True once the process has ended and its last output has been read."""
        return self._gone.is_set()

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
                if self._exited():
                    raise DriverError(f"client {self.exit_cause()} while waiting for {obs!r}"
                                      f"{self._stderr_hint()}")
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
            if self._exited():
                raise DriverError(f"client {self.exit_cause()} while waiting for {task_id}'s outcome"
                                  f"{self._stderr_hint()}")
            with self._arrived:
                self._arrived.wait(0.05)
