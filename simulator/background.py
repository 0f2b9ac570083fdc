"""Run a :class:`Simulator` on its own event loop in a thread.

Tests drive it with clients of every kind: asyncio ones in the test's loop (pysignalr),
thread-based ones (signalrcore) and subprocesses (Node). ``call`` runs a function on the
simulator's loop, which is where hub state may be touched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from simulator.app import Simulator
from simulator.recorder import Record

T = TypeVar("T")


class BackgroundSimulator:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator",
                                        daemon=True)

    def __enter__(self) -> BackgroundSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(30)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return self.simulator.url

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the simulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the simulator's loop and return its result."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    # -- conveniences for tests (the pytest plugin's conduit_simulator fixture) ------------------
    @property
    def key(self) -> str:
        """A virtual key the simulator accepts."""
        return self.simulator.default_key

    @property
    def control_token(self) -> str:
        """The token ``/_sim/`` requires (see :mod:`simulator.security`)."""
        return self.simulator.control_token

    @property
    def control_headers(self) -> dict[str, str]:
        """Headers that authorise a request to ``/_sim/``."""
        from simulator.security import control_headers

        return control_headers(self.simulator.control_token)

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Arm or perform a fault, e.g. ``inject("drop_connections", mode="abort")``."""
        return self.call(self.simulator.inject, kind, **params)

    def records(self, kind: str | Iterable[str] | None = None, *, since: int = 0,
                **match: Any) -> list[Record]:
        """The timeline, filtered: ``records("webhook_attempt", task_id=...)``; every record, also
        those that had left memory (see :mod:`simulator.recorder`). Read straight from this
        thread: the recorder is thread-safe, and reading never waits for the simulator's loop."""
        return self.simulator.recorder.records(kind, since=since, **match)

    def create_task(self, *, key: str | None = None, kind: str = "image", prompt: str = "test prompt",
                    model: str = "test-model", script: str | None = None, task_id: str | None = None,
                    webhook_url: str | None = None) -> str:
        """Create a task directly in the engine (no HTTP) and return its id; ``script`` names one
        of the scenario's scripts to bypass its rules."""
        from simulator.tasks.model import TaskRequest

        request = TaskRequest(kind=kind, prompt=prompt, model=model, key=key or self.key,
                              webhook_url=webhook_url)
        return self.call(lambda: self.simulator.tasks.create(request, task_id=task_id, script=script).task_id)
