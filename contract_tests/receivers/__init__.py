"""Reference webhook receivers (Python and Node) and their mutants, plus a driver-protocol runner.

Both receivers implement the guide's webhook contract correctly and pass every W-* rule::

    python -m contract_tests.receivers.python_receiver [--mutant NAME]
    node <package folder>/contract_tests/receivers/node_receiver.mjs [--mutant NAME]

(the Node receiver uses Node's standard library only, so it runs where the package is installed;
:func:`node_receiver_command` gives its full command).

They read ``CONDUIT_WEBHOOK_SECRET`` and ``CONDUIT_WEBHOOK_PORT`` (0 = choose), listen on
127.0.0.1, print ``{"obs": "ready", ..., "webhook_url": ...}`` and then one ``webhook`` observation
per delivery (``accepted`` true when processed, false when refused; a duplicate is acknowledged
but not reported again). ``{"cmd": "shutdown"}`` on stdin (or stdin closing) stops them.

:class:`ReceiverProcess` starts any such command and collects its observations.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NODE_RECEIVER = Path(__file__).with_name("node_receiver.mjs")
WEBHOOK_PATH = "/webhooks/conduit"
# The guide's example reads process.env.WEBHOOK_SECRET; a copy-pasted receiver ends up with a
# literal like this one (the hardcoded-secret mutant).
PLACEHOLDER_SECRET = "your-webhook-secret"
# The accepts-placeholder-secret mutant's bug: key-rotation code that also accepts the "previous"
# secret, read from a variable that is unset and so falls back to this default.
PREVIOUS_SECRET_VARIABLE = "CONDUIT_WEBHOOK_PREVIOUS_SECRET"
PREVIOUS_SECRET_DEFAULT = "changeme"
SLOW_ACK_SECONDS = 6.0
MAX_BODY_BYTES = 2 * 1024 * 1024  # Conduit never sends more than 1 MiB (as built, 2.2)

# docs/reference-clients.md, "Receiver mutants": mutant -> the rule it must fail.
RECEIVER_MUTANTS: dict[str, str] = {
    "no-verification": "W-REJECT",
    "reserialised": "W-RAW-BODY",
    "bytes-eq": "W-ACCEPT",
    "prefix-compare": "W-REJECT",
    "crash-on-length": "W-NO-CRASH",
    "accepts-missing-header": "W-REJECT",
    "hardcoded-secret": "W-ACCEPT",
    "slow-ack": "W-FAST-ACK",
    "processes-duplicates": "W-DUPLICATE",
    "crash-on-get": "W-METHOD",
    "accepts-placeholder-secret": "W-REJECT",
    "parses-before-verifying": "W-NO-CRASH",
}
MUTANT_DESCRIPTIONS: dict[str, str] = {
    "no-verification": "accepts anything",
    "reserialised": "verifies over the re-serialised body (json.dumps compact / JSON.stringify)",
    "bytes-eq": "compares the digest bytes with == against the header string: never equal",
    "prefix-compare": "accepts when the header is a prefix of the expected signature",
    "crash-on-length": "timingSafeEqual-style compare that throws on a wrong-length header -> 500",
    "accepts-missing-header": "skips verification when the header is absent",
    "hardcoded-secret": "verifies with the guide's placeholder secret instead of the configured one",
    "slow-ack": f"processes before answering and takes {SLOW_ACK_SECONDS:g} s",
    "processes-duplicates": "processes a duplicate delivery a second time",
    "crash-on-get": "a GET (or a non-JSON body) raises -> 500",
    "accepts-placeholder-secret": f"also accepts the 'previous' secret of a key rotation, whose unset "
                                  f"{PREVIOUS_SECRET_VARIABLE} falls back to {PREVIOUS_SECRET_DEFAULT!r}",
    "parses-before-verifying": "parses the JSON body before checking the signature and lets the parse "
                               "error escape: an unsigned malformed body -> 500",
}


def python_receiver_command(mutant: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "contract_tests.receivers.python_receiver"]
    return command + (["--mutant", mutant] if mutant else [])


def node_receiver_command(mutant: str | None = None) -> list[str]:
    command = ["node", str(NODE_RECEIVER.resolve())]
    return command + (["--mutant", mutant] if mutant else [])


RECEIVER_COMMANDS = {"python": python_receiver_command, "node": node_receiver_command}


class ReceiverProcess:
    """A receiver command run under the driver protocol: wait for ``ready``, collect observations.

    ``observations`` grows as lines arrive (a reader thread appends to it), so it can be handed
    to :func:`contract_tests.webhook_rules.check_receiver` as the observation source.
    """

    def __init__(self, command: Sequence[str], *, secret: str, port: int = 0,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> None:
        self.command = list(command)
        self.secret = secret
        self.port = port
        self.extra_env = dict(env or {})
        self.cwd = cwd  # None: the current folder, where a relative command given by the user points
        self.observations: list[dict[str, Any]] = []
        self.stderr: deque[str] = deque(maxlen=200)
        self.ready: dict[str, Any] | None = None
        self.proc: subprocess.Popen[str] | None = None
        self._arrived = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> ReceiverProcess:
        env = dict(os.environ)
        env.update({"CONDUIT_WEBHOOK_SECRET": self.secret, "CONDUIT_WEBHOOK_PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            self.command, cwd=self.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        for target in (self._read_stdout, self._read_stderr):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        ready = self.wait_for(lambda o: o.get("obs") == "ready", timeout)
        if ready is None:
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(f"{self.command} sent no ready line within {timeout} s "
                               f"(exit code {code}); stderr: {self.stderr_text()[-2000:]}")
        self.ready = ready
        return self

    @property
    def webhook_url(self) -> str:
        if not self.ready or not self.ready.get("webhook_url"):
            raise RuntimeError("the receiver is not ready or reported no webhook_url")
        return str(self.ready["webhook_url"])

    def command_line(self, cmd: str, **fields: Any) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("not started")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 5.0) -> int | None:
        """``shutdown`` (then terminate, then kill); the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self.command_line("shutdown")
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(2.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        for thread in self._threads:
            thread.join(1.0)
        return proc.returncode

    def __enter__(self) -> ReceiverProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observations ------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    observation = json.loads(line)
                except ValueError:
                    observation = {"obs": "unparsed", "line": line}
                if not isinstance(observation, dict):
                    observation = {"obs": "unparsed", "line": line}
                observation.setdefault("at", time.monotonic())
                with self._arrived:
                    self.observations.append(observation)
                    self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self.proc.stderr:
                self.stderr.append(line.rstrip("\n"))

    def stderr_text(self) -> str:
        return "\n".join(self.stderr)

    def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any] | None:
        """The first observation matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for observation in self.observations:
                    if predicate(observation):
                        return observation
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc is not None and self.proc.poll() is not None
                                      and not self._threads[0].is_alive()):
                    return None
                self._arrived.wait(min(remaining, 0.1))

    def webhook_observations(self) -> list[dict[str, Any]]:
        with self._arrived:
            return [o for o in self.observations if o.get("obs") == "webhook"]
