"""One timeline of everything the simulator sees.

Tests, reports and the contract suite read the recorder, never private server state. Each record
carries both clocks: wall-clock time (comparable with clients' own timestamps and the emit-time
header) and monotonic time (for intervals that must not jump). Fields are made JSON-safe and
bounded on the way in (:mod:`simulator.jsonsafe`): whatever a client sent, the timeline stays
valid JSON and one record stays small.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from simulator.jsonsafe import json_safe_fields


class RecordKind(StrEnum):
    """Every kind of record the simulator writes: the timeline's vocabulary, in one place.

    A ``StrEnum``, so a record's ``kind`` is still the plain string in JSON (the control API's
    timeline, ``--record`` files) and compares equal to it; readers may pass either. Writing or
    asking for a kind not listed here is an error, so a typo cannot make a filter silently empty.
    """

    # lifecycle
    SERVER_START = "server_start"
    SERVER_STOP = "server_stop"
    KEY_ADDED = "key_added"  # a virtual key added through the control API
    # REST and polling
    REST_REQUEST = "rest_request"
    POLL = "poll"
    AUTH_REJECTED = "auth_rejected"  # a REST call or hub connection without a known key
    TOKEN_ISSUED = "token_issued"
    TASK_CREATED = "task_created"
    TASK_EVENT = "task_event"  # a task's progress or end, before any channel sends it
    CLIENT_DELETE = "client_delete"  # the client cancelled a task
    TASK_RETRIED = "task_retried"  # a failed task's script runs again, as a new attempt
    # SignalR connections
    NEGOTIATE = "negotiate"
    SKIP_NEGOTIATION = "skip_negotiation"
    CONNECTION_REFUSED = "connection_refused"
    TRANSPORT_START = "transport_start"
    HANDSHAKE = "handshake"
    INVOCATION = "invocation"  # a hub method the client invoked
    EVENT = "event"  # a hub message sent to clients
    EVENT_DELAYED = "event_delayed"
    EVENT_DROPPED = "event_dropped"
    EVENT_DUPLICATED = "event_duplicated"  # sent a second time, right after the first (a fault)
    EVENTS_REORDERED = "events_reordered"  # a held-back event sent after the next event / a poll
    PROTOCOL_ERROR = "protocol_error"
    CLIENT_CLOSE = "client_close"
    SERVER_CLOSE = "server_close"
    DISCONNECT = "disconnect"
    # webhooks
    WEBHOOK_ATTEMPT = "webhook_attempt"
    WEBHOOK_DELIVERY = "webhook_delivery"
    WEBHOOK_ERROR = "webhook_error"
    WEBHOOK_HELD = "webhook_held"
    WEBHOOK_RELEASED = "webhook_released"
    WEBHOOK_REFUSED = "webhook_refused"
    # faults
    FAULT = "fault"  # armed (or, for drop_connections, performed)
    FAULT_SCHEDULED = "fault_scheduled"
    FAULT_HIT = "fault_hit"  # a fault changed what a channel did
    FAULT_CLEARED = "fault_cleared"


def record_kind(kind: str) -> RecordKind:
    """``kind`` as a :class:`RecordKind`; a ``ValueError`` listing the kinds when there is none."""
    try:
        return RecordKind(kind)
    except ValueError:
        raise ValueError(f"unknown record kind {kind!r}; kinds: {', '.join(RecordKind)}") from None


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    kind: RecordKind
    wall: float
    mono: float
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def to_json(self) -> dict[str, Any]:
        # The record's own keys win over same-named fields.
        return {**self.fields, "seq": self.seq, "kind": self.kind, "wall": self.wall, "mono": self.mono}


class Recorder:
    """Append-only, thread-safe list of :class:`Record` with simple filters.

    Thread-safe because tests read it from another thread than the simulator's event loop.
    """

    def __init__(self, sink: TextIO | None = None) -> None:
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._sink = sink

    def record(self, kind: RecordKind, /, **fields: Any) -> Record:
        kind = record_kind(kind)
        fields = json_safe_fields(fields)
        with self._lock:
            rec = Record(next(self._seq), kind, time.time(), time.monotonic(), fields)
            self._records.append(rec)
            if self._sink is not None:
                self._sink.write(json.dumps(rec.to_json(), default=str) + "\n")
        return rec

    def records(self, kind: RecordKind | str | None = None, *, since: int = 0, **match: Any) -> list[Record]:
        """Records after sequence ``since`` of ``kind`` (any when None) whose fields equal ``match``."""
        if kind is not None:
            kind = record_kind(kind)
        with self._lock:
            snapshot = list(self._records)
        return [
            r for r in snapshot
            if r.seq > since
            and (kind is None or r.kind == kind)
            and all(r.fields.get(k) == v for k, v in match.items())
        ]

    def __iter__(self) -> Iterator[Record]:
        with self._lock:
            return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)
