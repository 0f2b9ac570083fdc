"""Faults on demand: what is armed, and the questions each channel asks before it acts.

Faults come from a scenario's schedule, from the control API (``/_sim/faults``) and from Python.
Each is a :class:`~simulator.scenarios.model.FaultSpec`; arming one records a ``fault`` on the
timeline, and every time a fault changes what a channel does, the channel records that too.

Channels ask rather than being told: negotiate asks :meth:`FaultController.refusal`, the heartbeat
asks :meth:`pings_stopped`, the SignalR projection and the webhook dispatcher ask
:meth:`event_fate`, the polling routes ask :meth:`poll_error`, the dispatcher asks
:meth:`webhook_fault`.

An event a ``reorder_events`` fault holds back is kept here (:meth:`hold`) with the send that
releases it: the SignalR projection reports each event it sent (:meth:`event_sent`) and the
polling routes each status they served (:meth:`polled`), and whichever the held event waits for
sends it. Clearing the faults sends what is still held, so no event is lost by clearing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from simulator.hubs.connection import CloseMode
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import Recorder, RecordKind
from simulator.tasks.model import TaskEvent

# drop_connections modes → how the hub ends each connection.
DROP_MODES: dict[str, dict[str, Any]] = {
    "abort": {"mode": CloseMode.ABORT, "close_message": False},
    "clean": {"mode": CloseMode.GRACEFUL, "close_message": False},
    "close": {"mode": CloseMode.GRACEFUL, "close_message": True, "allow_reconnect": None},
    "close_reconnect": {"mode": CloseMode.GRACEFUL, "close_message": True, "allow_reconnect": True},
}


@dataclass
class ArmedFault:
    """A fault in force: its spec plus what it has used up."""

    fault_id: int
    kind: str
    params: dict[str, Any]
    armed_at: float
    # For Nth-event faults: the run-wide event number it hits.
    target_seq: int | None = None
    remaining: int | None = None
    seen: int = 0
    expires_at: float | None = None
    hits: int = 0
    spent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id, "kind": self.kind, **self.params, "hits": self.hits,
            "remaining": self.remaining, "target_event": self.target_seq, "spent": self.spent,
        }


@dataclass(frozen=True)
class EventFate:
    """What a channel does with one task event: drop it, or delay it (``fault_id`` is the drop
    or delay fault's); send it twice (``duplicate_by``); hold it until the task's next sent event
    or next poll (``hold_by``, ``hold_until``)."""

    drop: bool = False
    delay: float = 0.0
    fault_id: int | None = None
    duplicate_by: int | None = None
    hold_by: int | None = None
    hold_until: str | None = None  # "event" | "poll"


@dataclass(eq=False)  # each held event is itself, however alike two are
class HeldEvent:
    """A SignalR event a reorder fault holds back, and the send that releases it."""

    fault_id: int
    event: TaskEvent
    until: str  # "event" | "poll"
    release: Callable[[], None]


@dataclass(frozen=True)
class WebhookFault:
    mode: str
    delay: float
    fault_id: int


@dataclass
class FaultController:
    recorder: Recorder
    hubs: Iterable[HubLifetime] = ()
    # How many task events have been published so far (the engine's counter).
    events_published: Callable[[], int] = lambda: 0
    time_scale: float = 1.0
    armed: list[ArmedFault] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)
    # task id -> the events reorder faults hold back for it
    held: dict[str, list[HeldEvent]] = field(default_factory=dict)

    # -- arming -------------------------------------------------------------------------------
    def schedule(self, specs: Iterable[Any], source: str = "scenario") -> None:
        """Arm faults, each at its ``at`` after now (scaled by the time scale), or now."""
        loop = asyncio.get_running_loop()
        # Faults due at the same moment share one timer and arm in the order given: asyncio does
        # not order timers that fall due together (refuse_reconnects must precede the drop).
        due: dict[float, list[Any]] = {}
        for spec in specs:
            if spec.at:
                due.setdefault(spec.at, []).append(spec)
                self.recorder.record(RecordKind.FAULT_SCHEDULED, source=source, fault=spec.kind, at=spec.at,
                                     **spec.params)
            else:
                self.apply(spec, source)
        for at, group in due.items():
            self._timers.append(loop.call_later(at * self.time_scale, self._apply_all, group, source))

    def _apply_all(self, specs: list[Any], source: str) -> None:
        for spec in specs:
            self.apply(spec, source)

    def apply(self, spec: Any, source: str = "api") -> dict[str, Any]:
        """Arm (or, for drop_connections, perform) one fault; returns what was done."""
        params = dict(spec.params)
        fault = ArmedFault(next(self._ids), spec.kind, params, time.monotonic())
        if spec.kind == "drop_connections":
            fault.hits = self._drop(params)
            fault.spent = True
        elif spec.kind in ("delay_event", "drop_event"):
            fault.target_seq = self.events_published() + int(params["nth"])
        elif spec.kind in ("refuse_reconnects", "poll_errors", "webhook", "reorder_events"):
            fault.remaining = int(params.get("count", 1))
        elif spec.kind == "stop_pings" and params.get("duration") is not None:
            fault.expires_at = fault.armed_at + float(params["duration"]) * self.time_scale
        self.armed.append(fault)
        described = fault.to_json()
        self.recorder.record(RecordKind.FAULT, source=source, fault=described.pop("kind"), **described)
        return fault.to_json()

    def clear(self) -> int:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        live = [f for f in self.armed if not f.spent]
        for fault in live:
            fault.spent = True
        self.recorder.record(RecordKind.FAULT_CLEARED, count=len(live))
        for task_id in list(self.held):
            for held in self.held.pop(task_id):
                self._release(held, after="clear")
        return len(live)

    def active(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.armed if not self._is_spent(f)]

    def _is_spent(self, fault: ArmedFault) -> bool:
        if not fault.spent and fault.expires_at is not None and time.monotonic() >= fault.expires_at:
            fault.spent = True
        return fault.spent

    def _live(self, kind: str) -> list[ArmedFault]:
        return [f for f in self.armed if f.kind == kind and not self._is_spent(f)]

    def _hit(self, fault: ArmedFault, **fields: Any) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                fault.spent = True
        self.recorder.record(RecordKind.FAULT_HIT, fault_id=fault.fault_id, fault=fault.kind, **fields)

    # -- actions ------------------------------------------------------------------------------
    def _drop(self, params: dict[str, Any]) -> int:
        how = DROP_MODES[params.get("mode", "abort")]
        hub_filter = params.get("hub")
        key = params.get("key")
        dropped = 0
        for hub in self.hubs:
            if hub_filter and hub_filter not in (hub.path, hub.definition.name):
                continue
            for conn in hub.connections(key):
                if conn.closing is not None:
                    continue
                hub.close_connection(conn, error=params.get("error"), reason="fault: drop_connections",
                                     **how)
                dropped += 1
        return dropped

    # -- questions channels ask ---------------------------------------------------------------
    def refusal(self, stage: str, key: str) -> bool:
        """Should this connection attempt be refused? ``stage`` is "negotiate" or "upgrade"."""
        how = "negotiate_503" if stage == "negotiate" else "upgrade_refused"
        for fault in self._live("refuse_reconnects"):
            if fault.params.get("how", "negotiate_503") == how and fault.params.get("key") in (None, key):
                self._hit(fault, stage=stage, key=key)
                return True
        return False

    def pings_stopped(self) -> bool:
        return bool(self._live("stop_pings"))

    def event_fate(self, channel: str, event: TaskEvent) -> EventFate:
        for kind in ("drop_event", "delay_event"):
            for fault in self._live(kind):
                if fault.params.get("channel", "signalr") not in (channel, "all"):
                    continue
                if event.global_seq == fault.target_seq:
                    fault.hits += 1
                    self.recorder.record(RecordKind.FAULT_HIT, fault_id=fault.fault_id, fault=kind,
                                         channel=channel,
                                         task_id=event.task_id, event_seq=event.seq,
                                         global_seq=event.global_seq)
                    if kind == "drop_event":
                        return EventFate(drop=True, fault_id=fault.fault_id)
                    delay = float(fault.params.get("delay") or 0.0) * self.time_scale
                    duplicate_by = (self._signalr_fate(event, delayed=True)[0] if channel == "signalr"
                                    else None)
                    return EventFate(delay=delay, fault_id=fault.fault_id, duplicate_by=duplicate_by)
        # Once the run is past an Nth-event fault's target, it is spent.
        published = self.events_published()
        for kind in ("drop_event", "delay_event"):
            for fault in self._live(kind):
                if fault.target_seq is not None and published > fault.target_seq:
                    fault.spent = True
        if channel != "signalr":
            return EventFate()
        duplicate_by, reorder = self._signalr_fate(event, delayed=False)
        if reorder is None:
            return EventFate(duplicate_by=duplicate_by)
        return EventFate(duplicate_by=duplicate_by, hold_by=reorder.fault_id,
                         hold_until=reorder.params["after"])

    def _signalr_fate(self, event: TaskEvent, *, delayed: bool) -> tuple[int | None, ArmedFault | None]:
        """The duplicate fault (its id) and the reorder fault that take this SignalR event."""
        duplicate_by = None
        for fault in self._live("duplicate_event"):
            if not _matches(fault, event):
                continue
            nth = fault.params.get("nth")
            fault.seen += 1
            if nth is None or fault.seen == int(nth):
                if nth is not None:
                    fault.spent = True
                self._hit(fault, channel="signalr", task_id=event.task_id, event_seq=event.seq,
                          global_seq=event.global_seq, action="duplicated")
                duplicate_by = fault.fault_id
                break
        if delayed or self.held.get(event.task_id):
            return duplicate_by, None  # a task's next event releases what is held; it is not held
        for fault in self._live("reorder_events"):
            if not _matches(fault, event) or (event.kind.terminal and fault.params["after"] == "event"):
                continue
            fault.seen += 1
            if fault.seen >= int(fault.params["nth"]):
                self._hit(fault, channel="signalr", task_id=event.task_id, event_seq=event.seq,
                          global_seq=event.global_seq, action="held", until=fault.params["after"])
                return duplicate_by, fault
        return duplicate_by, None

    def hold(self, fate: EventFate, event: TaskEvent, release: Callable[[], None]) -> None:
        """Keep ``event`` back until what ``fate`` names (the task's next sent event, or its
        next poll) happens; then ``release`` sends it."""
        assert fate.hold_by is not None and fate.hold_until is not None
        self.held.setdefault(event.task_id, []).append(HeldEvent(fate.hold_by, event, fate.hold_until,
                                                                 release))

    def event_sent(self, channel: str, event: TaskEvent) -> None:
        """The SignalR projection sent ``event``, or ended the task without sending anything: what
        waited for the task's next event follows it (an end with nothing sent overtakes nothing,
        so what it releases goes out in its turn)."""
        if channel != "signalr":
            return
        waiting = self.held.get(event.task_id, [])
        due = [h for h in waiting if h.until == "event" and h.event is not event]
        self._release_due(event.task_id, due, after="event", after_event_seq=event.seq)

    def polled(self, task_id: str, task_status: str | None) -> None:
        """A poll of ``task_id`` is being answered: what waited for it is sent alongside."""
        due = [h for h in self.held.get(task_id, []) if h.until == "poll"]
        self._release_due(task_id, due, after="poll", task_status=task_status)

    def _release_due(self, task_id: str, due: list[HeldEvent], **how: Any) -> None:
        if not due:
            return
        left = [h for h in self.held.get(task_id, []) if h not in due]
        if left:
            self.held[task_id] = left
        else:
            self.held.pop(task_id, None)
        for held in due:
            self._release(held, **how)

    def _release(self, held: HeldEvent, **how: Any) -> None:
        self.recorder.record(RecordKind.EVENTS_REORDERED, channel="signalr", task_id=held.event.task_id,
                             event_seq=held.event.seq, fault_id=held.fault_id, **how)
        held.release()

    def poll_error(self, key: str) -> tuple[int, int | None] | None:
        for fault in self._live("poll_errors"):
            if fault.params.get("key") in (None, key):
                self._hit(fault, key=key)
                return int(fault.params.get("status", 503)), fault.params.get("retry_after")
        return None

    def webhook_fault(self) -> WebhookFault | None:
        """Called once per new delivery (not per retry)."""
        # Every armed webhook fault counts every delivery, so each one's ``nth`` means the same thing
        # however many are armed; the first that fires applies.
        firing: WebhookFault | None = None
        for fault in self._live("webhook"):
            fault.seen += 1
            if firing is None and fault.seen >= int(fault.params.get("nth") or 1):
                self._hit(fault, mode=fault.params["mode"])
                delay = float(fault.params.get("delay") or 5.0) * self.time_scale
                firing = WebhookFault(fault.params["mode"], delay, fault.fault_id)
        return firing


def _matches(fault: ArmedFault, event: TaskEvent) -> bool:
    """Does a duplicate or reorder fault's task and event filter take ``event``?"""
    task_id = fault.params.get("task_id")
    if task_id is not None and task_id != event.task_id:
        return False
    events = fault.params.get("events", "any")
    return events == "any" or (events == "terminal") == event.kind.terminal
