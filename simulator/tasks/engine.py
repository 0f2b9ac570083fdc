"""The task engine: runs each task's script and publishes every state change once.

Listeners (the SignalR projection, the webhook dispatcher) receive ``(task, event)`` after the
task's polled state has been updated, so all three channels agree by construction. Every event is
recorded on the timeline as ``task_event`` before any channel sees it.

A finished task is kept for :data:`DEFAULT_TASK_RETENTION` seconds (``retention``; the serve
flag ``--task-retention``) and then forgotten, so a long run's memory does not grow with the
number of tasks it has seen; polling a forgotten task answers as for an unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from simulator.recorder import Recorder, RecordKind
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus

log = logging.getLogger(__name__)

Listener = Callable[[Task, TaskEvent], None]

_STATUS_OF = {
    EventKind.COMPLETED: TaskStatus.COMPLETED,
    EventKind.FAILED: TaskStatus.FAILED,
    EventKind.CANCELLED: TaskStatus.CANCELLED,
    EventKind.TIMEDOUT: TaskStatus.TIMEDOUT,
}


# How long a finished task stays pollable: far longer than any client polls a task it has seen
# finish, short enough that a load run of hours keeps only minutes of tasks.
DEFAULT_TASK_RETENTION = 600.0


class TaskAlreadyFinished(Exception):
    """Cancel of a task that has already reached a terminal status."""


class TaskEngine:
    def __init__(self, scenario: Any, payloads: Any, recorder: Recorder, *, time_scale: float = 1.0,
                 retention: float = DEFAULT_TASK_RETENTION) -> None:
        if not 0 <= retention < float("inf"):
            raise ValueError(f"task retention must be a finite number of seconds >= 0, not {retention}")
        self.scenario = scenario
        self.retention = retention
        # Finished tasks in the order they finished: (monotonic time, task id).
        self._finished: deque[tuple[float, str]] = deque()
        self.payloads = payloads
        self.recorder = recorder
        self.time_scale = time_scale
        self.tasks: dict[str, Task] = {}
        self._listeners: list[Listener] = []
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._index = itertools.count()
        self._global_seq = 0
        # Scripts added at run time (the contract suite's generated timelines, tests).
        self.extra_scripts: dict[str, Any] = {}

    @property
    def events_published(self) -> int:
        """How many task events the run has published (the Nth-event faults count these)."""
        return self._global_seq

    def register_script(self, name: str, script: Any) -> None:
        """Make a script available to ``create(..., script=name)`` for the rest of the run."""
        self.extra_scripts[name] = script

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- queries ------------------------------------------------------------------------------
    def get(self, task_id: str, key: str | None = None) -> Task | None:
        """The task, or None when unknown or (with ``key``) owned by another key."""
        task = self.tasks.get(task_id)
        if task is None or (key is not None and task.key != key):
            return None
        return task

    def owner(self, task_id: str) -> str | None:
        task = self.tasks.get(task_id)
        return task.key if task else None

    # -- commands -----------------------------------------------------------------------------
    def create(self, request: TaskRequest, *, task_id: str | None = None, script: str | None = None) -> Task:
        """Create a task and start its script. Pure bookkeeping until the first delay ends.

        ``task_id`` and ``script`` override the seeded id and the scenario's rules, for tests that
        need a known task (the pytest plugin, protocol-level tests).
        """
        self.evict_finished()
        payloads = self.payloads.for_task(next(self._index))
        if script is not None:
            chosen = self.extra_scripts.get(script) or self.scenario.scripts[script]
        else:
            chosen = self.scenario.choose_script(request, payloads.rng)
        generated = payloads.task_id()
        task_id = task_id or generated
        if task_id in self.tasks:
            raise ValueError(f"task {task_id} exists already")
        task = Task(task_id=task_id, request=request, script=chosen.name)
        script = chosen
        self.tasks[task.task_id] = task
        self.recorder.record(
            RecordKind.TASK_CREATED, task_id=task.task_id, key=request.key, task_kind=request.kind,
            model=request.model, prompt=request.prompt, script=script.name,
            webhook_url=request.webhook_url,
        )
        self._runners[task.task_id] = asyncio.get_running_loop().create_task(
            self._run(task, script, payloads), name=f"task {task.task_id}")
        return task

    def cancel(self, task_id: str) -> Task:
        task = self.tasks[task_id]
        if task.status.terminal:
            raise TaskAlreadyFinished(task_id)
        runner = self._runners.pop(task_id, None)
        if runner is not None:
            runner.cancel()
        self._publish(task, EventKind.CANCELLED, error="Task cancelled")
        return task

    def retry(self, task_id: str, error: str | None = None) -> Task:
        """Run a failed task's script again, as a new attempt: the task is pending (with ``error``,
        the server's note on the retry) until the script's first step, and counts one more retry.

        The attempt draws fresh payloads (results, error texts) from the seeded sequence, so a
        script that failed fails again and one that completes completes; whether a task may be
        retried at all is the REST layer's rule, not the engine's.
        """
        task = self.tasks[task_id]
        if task.status is not TaskStatus.FAILED:
            raise ValueError(f"task {task_id} is {task.status.value}, only a failed task runs again")
        script = self.extra_scripts.get(task.script) or self.scenario.scripts[task.script]
        task.status, task.error, task.retries = TaskStatus.PENDING, error, task.retries + 1
        task.updated_at = time.time()
        self.recorder.record(RecordKind.TASK_RETRIED, task_id=task.task_id, key=task.key,
                             attempt=task.retries + 1, script=script.name)
        payloads = self.payloads.for_task(next(self._index))
        self._runners[task.task_id] = asyncio.get_running_loop().create_task(
            self._run(task, script, payloads), name=f"task {task.task_id} attempt {task.retries + 1}")
        return task

    def evict_finished(self, now: float | None = None) -> int:
        """Forget tasks that finished more than ``retention`` seconds ago; returns how many."""
        now = time.monotonic() if now is None else now
        evicted = 0
        while self._finished and now - self._finished[0][0] >= self.retention:
            _, task_id = self._finished.popleft()
            task = self.tasks.get(task_id)
            if task is not None and task.status.terminal:
                del self.tasks[task_id]
                evicted += 1
        return evicted

    async def stop(self) -> None:
        runners = list(self._runners.values())
        self._runners.clear()
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # -- running scripts ----------------------------------------------------------------------
    async def _run(self, task: Task, script: Any, payloads: Any) -> None:
        try:
            for step in script.steps:
                await asyncio.sleep(step.after * self.time_scale)
                if task.status.terminal:
                    return
                if step.progress is not None:
                    self._publish(task, EventKind.PROGRESS, progress=step.progress, message=step.message)
                elif step.status is TaskStatus.COMPLETED:
                    result = step.result if step.result is not None else (
                        payloads.image_result(task.request) if task.kind == "image"
                        else payloads.video_result(task.request))
                    self._publish(task, EventKind.COMPLETED, progress=100, result=result)
                elif step.status is TaskStatus.FAILED:
                    self._publish(task, EventKind.FAILED, error=step.error or payloads.error(task.kind))
                elif step.status is TaskStatus.TIMEDOUT:
                    self._publish(task, EventKind.TIMEDOUT, error="Task timed out")
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken script must not take the server down
            log.exception("script %s of task %s failed", script.name, task.task_id)
        finally:
            self._runners.pop(task.task_id, None)

    def _publish(
        self, task: Task, kind: EventKind, *, progress: int | None = None, result: Any = None,
        error: str | None = None, message: str | None = None,
    ) -> TaskEvent:
        wall = time.time()
        task.status = _STATUS_OF.get(kind, TaskStatus.PROCESSING)
        if progress is not None:
            task.progress = progress
        if kind is EventKind.COMPLETED:
            task.result = result
            task.error = None  # a retried task that completes keeps no note of its retry
        if kind.terminal and kind is not EventKind.COMPLETED:
            task.error = error
        task.updated_at = wall
        self._global_seq += 1
        event = TaskEvent(
            task_id=task.task_id, kind=kind, seq=len(task.events) + 1, status=task.status,
            progress=task.progress, wall=wall, result=task.result if kind is EventKind.COMPLETED else None,
            error=error if kind.terminal else None, global_seq=self._global_seq,
        )
        task.events.append(event)
        if kind.terminal:
            self._finished.append((time.monotonic(), task.task_id))
        self.recorder.record(RecordKind.TASK_EVENT, key=task.key, message=message, **event.to_json())
        for listener in self._listeners:
            try:
                listener(task, event)
            except Exception:  # one broken channel must not starve the others
                log.exception("listener %r failed on %s", listener, event)
        return event
