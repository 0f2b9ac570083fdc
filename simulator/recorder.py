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
from typing import Any, TextIO

from simulator.jsonsafe import json_safe_fields


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    kind: str
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

    def record(self, kind: str, /, **fields: Any) -> Record:
        fields = json_safe_fields(fields)
        with self._lock:
            rec = Record(next(self._seq), kind, time.time(), time.monotonic(), fields)
            self._records.append(rec)
            if self._sink is not None:
                self._sink.write(json.dumps(rec.to_json(), default=str) + "\n")
        return rec

    def records(self, kind: str | None = None, *, since: int = 0, **match: Any) -> list[Record]:
        """Records after sequence ``since`` of ``kind`` (any when None) whose fields equal ``match``."""
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
