"""Tasks and their state changes, as plain values.

A task's script produces each :class:`TaskEvent` exactly once; the SignalR groups, the webhook
dispatcher and the polled state are projections of that one event stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

TaskKind = Literal["image", "video"]


class TaskStatus(StrEnum):
    # Conduit's REST spellings (TaskStateConstants); "queued" only on the image create response.
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEDOUT = "timedout"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED,
                      TaskStatus.TIMEDOUT})


class EventKind(StrEnum):
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEDOUT = "timedout"

    @property
    def terminal(self) -> bool:
        return self is not EventKind.PROGRESS


@dataclass(frozen=True)
class TaskRequest:
    """What a create call asked for; scenario rules choose a script from it."""

    kind: TaskKind
    prompt: str
    model: str
    key: str
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    params: dict[str, Any] = field(default_factory=dict)  # n, size, duration, ...
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def utc_iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Task:
    """The polled state of one task; the engine updates it before publishing each event."""

    task_id: str
    request: TaskRequest
    script: str
    status: TaskStatus = TaskStatus.PENDING
    progress: int = 0
    result: Any = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    events: list[TaskEvent] = field(default_factory=list)
    # Attempts after the first: a retried task (the as-built manual retry) runs its script again.
    retries: int = 0

    @property
    def key(self) -> str:
        return self.request.key

    @property
    def kind(self) -> TaskKind:
        return self.request.kind


@dataclass(frozen=True)
class TaskEvent:
    """One state change of one task. ``seq`` numbers a task's events from 1."""

    task_id: str
    kind: EventKind
    seq: int
    status: TaskStatus
    progress: int
    wall: float
    result: Any = None
    error: str | None = None
    # The run-wide order of events, from 1: "the Nth event" for faults counts this.
    global_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "event": self.kind.value, "event_seq": self.seq,
            "status": self.status.value, "progress": self.progress, "wall": self.wall,
            "result": self.result, "error": self.error, "global_seq": self.global_seq,
        }
