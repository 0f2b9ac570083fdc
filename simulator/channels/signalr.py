"""The SignalR view of the task timeline: each task event becomes hub invocations to groups.

Which hub, group, event name and arguments is the profile's business (``Profile.signalr_events``);
this module only applies faults (drop, delay, duplicate or hold back an event) and sends.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.faults import FaultController
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import Recorder, RecordKind
from simulator.tasks.model import Task, TaskEvent


@dataclass(frozen=True)
class Emission:
    """One hub invocation a task event turns into."""

    hub: str  # hub path
    group: str
    target: str
    arguments: list[Any]


class SignalRChannel:
    def __init__(
        self,
        hubs: dict[str, HubLifetime],
        project: Callable[[Task, TaskEvent], list[Emission]],
        faults: FaultController,
        recorder: Recorder,
    ) -> None:
        self.hubs = hubs
        self.project = project
        self.faults = faults
        self.recorder = recorder

    def __call__(self, task: Task, event: TaskEvent) -> None:
        emissions = self.project(task, event)
        if not emissions:
            # The dialect sends nothing for this event (the as-built server has no hub event for a
            # timed-out task, nor for an unchanged image count), so it overtakes nothing: an event
            # held back to be swapped waits for the task's next event that is sent. Only at the
            # task's end, when none will follow, does it go out, in its turn.
            if event.kind.terminal:
                self.faults.event_sent("signalr", event)
            return
        fate = self.faults.event_fate("signalr", event)
        if fate.drop:
            self.recorder.record(RecordKind.EVENT_DROPPED, channel="signalr", task_id=task.task_id,
                                 event_seq=event.seq, fault_id=fate.fault_id)
            return
        send = functools.partial(self._send, task, event, emissions, fate.duplicate_by)
        if fate.delay > 0:
            self.recorder.record(RecordKind.EVENT_DELAYED, channel="signalr", task_id=task.task_id,
                                 event_seq=event.seq, delay_s=fate.delay, fault_id=fate.fault_id)
            asyncio.get_running_loop().call_later(fate.delay, send)
            return
        if fate.hold_by is not None:
            self.faults.hold(fate, event, send)
            return
        send()

    def _send(self, task: Task, event: TaskEvent, emissions: list[Emission],
              duplicate_by: int | None = None) -> None:
        """Send the event's invocations (twice over, back to back, for a duplicate fault), then
        tell the faults, so an event held back for this one follows it."""
        self._emit(task, event, emissions)
        if duplicate_by is not None:
            recipients = self._emit(task, event, emissions, copy_by=duplicate_by)
            self.recorder.record(RecordKind.EVENT_DUPLICATED, channel="signalr", task_id=task.task_id,
                                 event_seq=event.seq, fault_id=duplicate_by, recipients=recipients)
        self.faults.event_sent("signalr", event)

    def _emit(self, task: Task, event: TaskEvent, emissions: list[Emission],
              copy_by: int | None = None) -> int:
        # A copy's ``event`` records say so (``copy_by``: the duplicate fault), so the timeline
        # tells which delivery was the second.
        extra = {} if copy_by is None else {"copy_by": copy_by}
        sent = 0
        for emission in emissions:
            hub = self.hubs.get(emission.hub)
            if hub is not None:
                sent += hub.send_group(emission.group, emission.target, emission.arguments,
                                       task_id=task.task_id, event_seq=event.seq, **extra)
        return sent
