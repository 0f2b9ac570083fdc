"""One timeline of everything the simulator sees.

Tests, reports and the contract suite read the recorder, never private server state. Each record
carries both clocks: wall-clock time (comparable with clients' own timestamps and the emit-time
header) and monotonic time (for intervals that must not jump). Fields are made JSON-safe and
bounded on the way in (:mod:`simulator.jsonsafe`): whatever a client sent, the timeline stays
valid JSON and one record stays small. The exception is a broadcast's list of recipients (an
:class:`~simulator.jsonsafe.IdList` of the server's own connection ids): it names every recipient,
however many, and is written as the line's last field with one ``join`` (the fan-out benchmark
writes one such record of 1,000 ids, ~26 KB, per event).

How records are kept, and why
-----------------------------
A record is stored as its **JSON line** (``bytes``), the same text ``--record`` writes and
``/_sim/timeline`` answers, and decoded again only when someone reads it. Two reasons:

* **No garbage-collector pauses.** A list of ``Record`` objects (each with a fields dict and its
  lists) puts several tracked objects per record into the old generation; at 1,000 events/s the
  full collections they trigger stopped the event loop for 160-200 ms. ``bytes`` are never
  tracked by the collector, so the timeline adds almost nothing for it to scan however long it
  grows. (``gc.freeze()`` after batches was the other candidate: it hides the records too, but
  also everything else alive at that moment, so cycles among connections that close later
  are never collected; and it does not bound memory.)
* **One form everywhere.** Records in memory and records spilled to disk are the same bytes, so
  a reader gets the same values wherever a record lives: the JSON values (a tuple field reads
  back as a list, bytes as their ``str``). A field named like the record's own keys (``seq``,
  ``kind``, ``wall``, ``mono``) is left out: the record's keys win, as they always did on the wire.

Memory is bounded: at most ``max_records`` records and ``max_bytes`` bytes of JSON are held in
memory (:data:`DEFAULT_MAX_RECORDS`, :data:`DEFAULT_MAX_BYTES`; ``serve --recorder-max-records``
and ``--recorder-max-mib``). Records are kept in segments of up to :data:`SEGMENT_RECORDS`;
past the cap the oldest segment leaves memory for a JSON Lines file: the ``--record`` file when
there is one (it already holds every line, so nothing is written twice), else an unnamed
temporary file the recorder owns (no name on disk, so nothing is left behind even if the process
dies; :meth:`Recorder.close` frees it). Every record stays readable, in order.

Reads stay cheap. In memory, each segment indexes its records by kind, ``key`` and ``task_id``
(the filters the contract suite and the control API use), so a filtered read touches only the
records it returns. A spilled segment keeps a bitmask of its kinds and a Bloom filter of its
keys and task ids, so a read skips the segments that cannot hold what it asks for; in the
segments it must read, ``bytes.find`` picks out the candidate lines before any JSON decoding.
On disk a record takes its JSON line (about 300 bytes for a hub event to one connection, ~25
bytes more per further recipient): an hour at 1,000 such events/s spills about 1.1 GB.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from heapq import merge
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from simulator.jsonsafe import IdList, json_safe, json_safe_fields, short_repr

log = logging.getLogger(__name__)

# In-memory caps. 100,000 records of a load run (events, polls, invocations: 250-450 bytes of
# JSON each) hold about 40-60 MB; a contract-suite rule writes a few thousand, far below.
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Records per segment: the unit that is spilled at once and skipped or read as a whole.
SEGMENT_RECORDS = 4096


class RecordKind(StrEnum):
    """Every kind of record the simulator writes: the timeline's vocabulary, in one place.

    A ``StrEnum``, so a record's ``kind`` is still the plain string in JSON (the control API's
    timeline, ``--record`` files) and compares equal to it; readers may pass either. Writing or
    asking for a kind not listed here is an error, so a typo cannot make a filter silently empty.
    """

    # lifecycle
    SERVER_START = "server_start"
    SERVER_STOP = "server_stop"
    LOOP_STALL = "loop_stall"  # the server's event loop woke late (simulator.loop_watch)
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


# A kind's small number: one byte per record in memory, one bit in a segment's kind mask.
_KINDS: tuple[RecordKind, ...] = tuple(RecordKind)
_VALUES: tuple[str, ...] = tuple(kind.value for kind in _KINDS)
_CODE: dict[str, int] = {value: code for code, value in enumerate(_VALUES)}
_HEADER = frozenset(("seq", "kind", "wall", "mono"))
# Fields indexed in memory and summarised per spilled segment: what readers filter on most.
INDEXED_FIELDS = ("key", "task_id")
# One encoder for every line (json.dumps with arguments builds a new one per call).
_encode = json.JSONEncoder(default=str, allow_nan=False).encode
_decode = json.loads
# The characters the encoder writes as themselves inside a JSON string (printable ASCII but the
# quote and the backslash): an IdList made only of these is written with one join.
_AS_IS = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def _id_list_items(ids: IdList) -> bytes | None:
    """The items of ``ids`` as ``_encode`` writes them inside the brackets (``a", "b`` without the
    outer quotes) by one ``join``; None when an item is not a string or has a character JSON escapes.
    The check runs in C: delete every as-is character from the joined bytes and only the
    separators' quotes may remain. For 1,000 connection ids this costs ~15 µs, where
    ``json_safe`` and the encoder took ~120 µs."""
    try:
        joined = '", "'.join(ids)
    except TypeError:
        return None
    if not joined.isascii():
        return None
    items = joined.encode("ascii")
    if len(items.translate(None, _AS_IS)) != 2 * (len(ids) - 1):
        return None
    return items


def _encode_record(head: dict[str, Any], fields: dict[str, Any],
                   id_list_items: Callable[[IdList], bytes | None] = _id_list_items) -> bytes:
    """A record's JSON line: the header, then the fields. An :class:`IdList` field (a broadcast's
    recipients) is written last, by ``id_list_items``; one that cannot be is made JSON-safe like
    any other list and encoded in its place."""
    if IdList not in map(type, fields.values()):  # in C: most records have none
        return _encode({**head, **fields}).encode()
    rest: dict[str, Any] = {}
    tail: list[bytes] = []
    for name, value in fields.items():
        if type(value) is IdList:
            items = id_list_items(value) if value else None
            if items is not None:
                tail += (b", ", _encode(name).encode(), b': ["', items, b'"]')
                continue
            value = json_safe(list(value), 1)  # empty, or not all plain ids
        rest[name] = value
    head_and_rest = _encode({**head, **rest}).encode()
    return b"".join((head_and_rest[:-1], *tail, b"}"))


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


def _record_from_json(obj: dict[str, Any]) -> Record:
    """A :class:`Record` from one decoded line (``obj`` becomes its fields)."""
    seq = obj.pop("seq")
    kind = _KINDS[_CODE[obj.pop("kind")]]
    wall = obj.pop("wall")
    mono = obj.pop("mono")
    return Record(seq, kind, wall, mono, obj)


@dataclass(frozen=True, slots=True)
class Page:
    """One bounded answer of :meth:`Recorder.page`: JSON lines in seq order and the cursor."""

    lines: list[bytes]
    last_seq: int  # pass as ``since`` to continue: everything up to here was answered or skipped
    more: bool  # the answer stopped at a limit; more may match after last_seq


# -- storage ----------------------------------------------------------------------------------

class _Memory:
    """A segment in memory: consecutive records as JSON lines, indexed by kind, key, task id.

    Positions are offsets from ``first`` (record ``first + pos``); every index is an ``array`` of
    positions in ascending order. Only the newest segment grows; a reader that took a snapshot
    keeps reading a segment even after it was spilled (the object is replaced, not emptied).
    """

    __slots__ = ("first", "offset", "lines", "kinds", "by_kind", "by_value", "nbytes", "kind_mask")

    def __init__(self, first: int, offset: int = 0) -> None:
        self.first = first
        self.offset = offset  # where its first line is (or will be) in the file it is spilled to
        self.lines: list[bytes] = []
        self.kinds = bytearray()
        self.by_kind: dict[int, array[int]] = {}
        self.by_value: tuple[dict[str, array[int]], ...] = tuple({} for _ in INDEXED_FIELDS)
        self.nbytes = 0  # bytes of its lines, a newline each
        self.kind_mask = 0

    def append(self, code: int, line: bytes, fields: dict[str, Any]) -> None:
        pos = len(self.lines)
        self.lines.append(line)
        self.kinds.append(code)
        self.nbytes += len(line) + 1
        self.kind_mask |= 1 << code
        positions = self.by_kind.get(code)
        if positions is None:
            positions = self.by_kind[code] = array("I")
        positions.append(pos)
        key_index, task_index = self.by_value  # INDEXED_FIELDS, spelled out: this is the hot path
        value = fields.get("key")
        if type(value) is str:
            positions = key_index.get(value)
            if positions is None:
                positions = key_index[value] = array("I")
            positions.append(pos)
        value = fields.get("task_id")
        if type(value) is str:
            positions = task_index.get(value)
            if positions is None:
                positions = task_index[value] = array("I")
            positions.append(pos)

    def positions(self, codes: set[int] | None, indexed: dict[str, str], start: int,
                  stop: int) -> Iterable[int]:
        """Positions in ``[start, stop)`` of records of ``codes`` whose indexed fields equal
        ``indexed``: exact, from the indexes alone."""
        lists: list[array[int]] = []
        for name, value in indexed.items():
            found = self.by_value[INDEXED_FIELDS.index(name)].get(value)
            if found is None:
                return ()
            lists.append(found)
        if lists:
            lists.sort(key=len)
            base = lists[0]
            others = [set(other) for other in lists[1:]]  # both key and task_id: rare
            chosen = base[bisect_left(base, start):bisect_left(base, stop)]
            kinds = self.kinds
            return [pos for pos in chosen if (codes is None or kinds[pos] in codes)
                    and all(pos in other for other in others)]
        if codes is not None:
            arrays = [self.by_kind[code] for code in codes if code in self.by_kind]
            if not arrays:
                return ()
            if len(arrays) == 1:
                base = arrays[0]
                return base[bisect_left(base, start):bisect_left(base, stop)]
            merged = list(merge(*arrays))
            return merged[bisect_left(merged, start):bisect_left(merged, stop)]
        return range(start, stop)


class _Bloom:
    """A Bloom filter over (field, value) pairs: "certainly not here" for a spilled segment.

    Ten bits per distinct value and three probes: about 1 % false positives, about a byte per
    distinct key or task id of the segment. Python's string hash is fine: the filter lives and
    dies with this process.
    """

    __slots__ = ("bits", "size")

    def __init__(self, items: Iterable[tuple[str, str]], count: int) -> None:
        self.size = max(64, count * 10)
        bits = bytearray((self.size + 7) // 8)
        for item in items:
            for bit in self._probes(item):
                bits[bit >> 3] |= 1 << (bit & 7)
        self.bits = bytes(bits)

    def _probes(self, item: tuple[str, str]) -> tuple[int, int, int]:
        h = hash(item) & 0xFFFFFFFFFFFFFFFF
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        size = self.size
        return h1 % size, (h1 + h2) % size, (h1 + 2 * h2) % size

    def __contains__(self, item: tuple[str, str]) -> bool:
        bits = self.bits
        return all(bits[bit >> 3] & (1 << (bit & 7)) for bit in self._probes(item))


class _Spilled:
    """A segment that left memory: where its lines are in the spill file, and a summary."""

    __slots__ = ("first", "count", "offset", "nbytes", "kind_mask", "values")

    def __init__(self, segment: _Memory, offset: int) -> None:
        self.first = segment.first
        self.count = len(segment.lines)
        self.offset = offset
        self.nbytes = segment.nbytes
        self.kind_mask = segment.kind_mask
        items = [(name, value) for name, index in zip(INDEXED_FIELDS, segment.by_value, strict=True)
                 for value in index]
        self.values = _Bloom(items, len(items))

    def may_hold(self, indexed: dict[str, str]) -> bool:
        return all((name, value) in self.values for name, value in indexed.items())


class _SpillFile:
    """The JSON Lines file spilled segments are read back from, with positional reads (``pread``)
    so readers in other threads never move the writer's position."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # Held open for the recorder's life (closed by close()), so no context manager.
        if path is not None:
            self._file: BinaryIO = open(path, "w+b", buffering=0)  # noqa: SIM115
        else:  # unnamed: nothing is left on disk whatever happens to this process
            self._file = tempfile.TemporaryFile(prefix="conduit-timeline-", buffering=0)  # noqa: SIM115
        self.size = 0
        self.closed = False

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end; its offset."""
        offset = self.size
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0:]
        self.size += len(data)
        return offset

    def read(self, offset: int, size: int) -> bytes:
        if not self.closed:
            return self._read(self._file.fileno(), offset, size)
        if self.path is None:
            raise RuntimeError("the recorder is closed: records that had left memory are gone")
        with open(self.path, "rb") as file:  # the --record file outlives the recorder
            return self._read(file.fileno(), offset, size)

    @staticmethod
    def _read(fd: int, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                raise RuntimeError(f"timeline spill file ends early at byte {offset}")
            parts.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self.closed = True
        self._file.close()


# -- the recorder -------------------------------------------------------------------------------

class Recorder:
    """Append-only, thread-safe timeline of :class:`Record` with filtered reads.

    Thread-safe because tests read it from another thread than the simulator's event loop; a
    reader holds the lock only to take a snapshot, so a long read never stalls the loop's writes.

    ``sink``: a text stream that also gets every line (tests, the demo). ``path``: a JSON Lines
    file that gets every line and doubles as the spill file (``serve --record``). ``max_records``
    and ``max_bytes``: the in-memory caps (see the module docstring).
    """

    def __init__(self, sink: TextIO | None = None, *, path: str | Path | None = None,
                 max_records: int = DEFAULT_MAX_RECORDS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_records < 1 or max_bytes < 1:
            raise ValueError(f"recorder caps must be at least 1 (max_records={max_records}, "
                             f"max_bytes={max_bytes})")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._segment_records = max(1, min(SEGMENT_RECORDS, max_records // 4))
        self._segment_bytes = max(1, max_bytes // 4)
        self._lock = threading.Lock()
        self._sink = sink
        self._path = Path(path) if path is not None else None
        # With a path every line is written at once; else the spill file is made on first spill.
        self._spill: _SpillFile | None = _SpillFile(self._path) if self._path is not None else None
        self._last_seq = 0
        self._active = _Memory(1)
        self._segments: list[_Memory | _Spilled] = [self._active]
        self._spilled_segments = 0  # the first this many of _segments are _Spilled
        self._memory_records = 0
        self._memory_bytes = 0
        self._spill_failed = False
        self._last_ids: tuple[IdList, bytes | None] | None = None

    # -- writing --------------------------------------------------------------------------------
    def record(self, kind: RecordKind | str, /, **fields: Any) -> Record:
        """Append a record; it is returned with its fields as given (made JSON-safe)."""
        code = _CODE.get(kind)
        if code is None:
            record_kind(kind)  # raises, naming the kinds
        kind, kind_value = _KINDS[code], _VALUES[code]  # type: ignore[index]
        fields = json_safe_fields(fields)
        if not _HEADER.isdisjoint(fields):
            fields = {name: value for name, value in fields.items() if name not in _HEADER}
        with self._lock:
            seq = self._last_seq + 1
            wall, mono = time.time(), time.monotonic()
            try:
                line = _encode_record({"seq": seq, "kind": kind_value, "wall": wall, "mono": mono}, fields,
                                      self._id_list_items)
            except (TypeError, ValueError, RecursionError) as exc:  # e.g. a cycle json_safe kept
                fields = {"unencodable_fields": short_repr(fields), "encode_error": type(exc).__name__}
                line = _encode({"seq": seq, "kind": kind_value, "wall": wall, "mono": mono,
                                **fields}).encode()
            self._last_seq = seq
            active = self._active
            if len(active.lines) >= self._segment_records or active.nbytes >= self._segment_bytes:
                active = self._new_segment()
            active.append(code, line, fields)  # type: ignore[arg-type]
            self._memory_records += 1
            self._memory_bytes += len(line) + 1
            if self._path is not None and self._spill is not None and not self._spill.closed:
                self._spill.append(line + b"\n")
            if self._sink is not None:
                self._sink.write(line.decode() + "\n")
            if self._memory_records > self.max_records or self._memory_bytes > self.max_bytes:
                self._enforce_caps()
        return Record(seq, kind, wall, mono, fields)

    def _id_list_items(self, ids: IdList) -> bytes | None:
        """:func:`_id_list_items`, remembered for the last IdList written (called with the lock):
        a hub names its connections with the same IdList in every broadcast that reaches them all,
        so the join and its check run once per change of membership rather than once per event."""
        last = self._last_ids
        if last is not None and last[0] is ids:
            return last[1]
        items = _id_list_items(ids)
        self._last_ids = (ids, items)
        return items

    def _new_segment(self) -> _Memory:
        """Start the next segment at the newest seq (called with the new record's seq taken and
        before its line is written, so in the --record file the segment starts here)."""
        self._active = _Memory(self._last_seq, self._file_size())
        self._segments.append(self._active)
        return self._active

    def _file_size(self) -> int:
        return self._spill.size if self._path is not None and self._spill is not None else 0

    def _enforce_caps(self) -> None:
        """Spill the oldest in-memory segments until the caps hold (called with the lock)."""
        while ((self._memory_records > self.max_records or self._memory_bytes > self.max_bytes)
               and not self._spill_failed):
            index = self._spilled_segments
            segment = self._segments[index]
            assert isinstance(segment, _Memory)
            if segment is self._active:
                self._active = _Memory(self._last_seq + 1, self._file_size())
                self._segments.append(self._active)
            try:
                self._segments[index] = self._spill_segment(segment)
            except (OSError, ValueError) as exc:  # disk full, or closed: keep them in memory
                self._spill_failed = True
                log.error("timeline: cannot spill records to disk (%s); keeping them in memory", exc)
                return
            self._spilled_segments += 1
            self._memory_records -= len(segment.lines)
            self._memory_bytes -= segment.nbytes

    def _spill_segment(self, segment: _Memory) -> _Spilled:
        if self._spill is not None and self._spill.closed:
            raise ValueError("the recorder is closed")
        if self._path is not None:  # the --record file holds the lines already
            return _Spilled(segment, segment.offset)
        if self._spill is None:
            self._spill = _SpillFile(None)
        offset = self._spill.append(b"\n".join(segment.lines) + b"\n")
        return _Spilled(segment, offset)

    def close(self) -> None:
        """Close the spill file (a temporary one disappears). Every record stays readable except,
        without a ``path``, those that had left memory (reading them is then an error). The
        ``sink`` is the caller's to close."""
        with self._lock:
            if self._spill is not None and not self._spill.closed:
                self._spill.close()

    # -- reading --------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[list[tuple[_Memory | _Spilled, int]], int]:
        with self._lock:
            segments = [(s, s.count if isinstance(s, _Spilled) else len(s.lines)) for s in self._segments]
            return segments, self._last_seq

    def _scan(self, segments: list[tuple[_Memory | _Spilled, int]], codes: set[int] | None,
              indexed: dict[str, str], since: int,
              read_budget: int | None = None) -> Iterator[tuple[int, bytes | None, dict[str, Any] | None]]:
        """``(seq, line, decoded or None)`` of the records after ``since`` that are of ``codes``
        (None: any) and whose indexed fields equal ``indexed``, in seq order. When reading
        spilled segments has used ``read_budget`` bytes, yields ``(seq, None, None)`` instead:
        everything up to ``seq`` was scanned."""
        mask = -1 if codes is None else sum(1 << code for code in codes)
        needles = None
        read = 0
        for segment, count in segments:
            if count == 0 or segment.first + count - 1 <= since or not segment.kind_mask & mask:
                continue
            start = max(0, since - segment.first + 1)
            if isinstance(segment, _Memory):
                lines = segment.lines
                for pos in segment.positions(codes, indexed, start, count):
                    yield segment.first + pos, lines[pos], None
                continue
            if not segment.may_hold(indexed):
                continue
            if read_budget is not None and read >= read_budget:
                yield segment.first - 1, None, None
                return
            assert self._spill is not None
            data = self._spill.read(segment.offset, segment.nbytes)
            read += segment.nbytes
            if needles is None:
                needles = _needles(codes, indexed)
            kinds = None if codes is None else {_VALUES[code] for code in codes}
            for line in _candidate_lines(data, *needles, skip=start, count=count):
                obj = _decode(line)
                if (obj["seq"] > since and (kinds is None or obj.get("kind") in kinds)
                        and all(obj.get(name) == value for name, value in indexed.items())):
                    yield obj["seq"], line, obj

    @staticmethod
    def _filters(kinds: Iterable[RecordKind | str] | None,
                 match: dict[str, Any]) -> tuple[set[int] | None, dict[str, str]]:
        codes = None if kinds is None else {_CODE[record_kind(kind)] for kind in kinds}
        indexed = {name: match[name] for name in INDEXED_FIELDS if type(match.get(name)) is str}
        return codes, indexed

    def records(self, kind: RecordKind | str | Iterable[RecordKind | str] | None = None, *, since: int = 0,
                **match: Any) -> list[Record]:
        """Records after sequence ``since`` of ``kind`` (one kind, several, or any when None) whose
        fields equal ``match``, oldest first, as fresh copies decoded from the timeline's JSON.
        Only the records returned are decoded (a few µs each), so name the kinds you want rather
        than filtering every record afterwards."""
        kinds = None if kind is None else (kind,) if isinstance(kind, str) else tuple(kind)
        codes, indexed = self._filters(kinds, match)
        rest = [(name, value) for name, value in match.items() if name not in indexed]
        segments, _ = self._snapshot()
        out = []
        for _seq, line, obj in self._scan(segments, codes, indexed, since):
            record = _record_from_json(obj if obj is not None else _decode(line))  # type: ignore[arg-type]
            if all(record.fields.get(name) == value for name, value in rest):
                out.append(record)
        return out

    def page(self, *, kinds: Iterable[str] | None = None, key: str | None = None, task_id: str | None = None,
             since: int = 0, limit: int = 1000, max_bytes: int = 8 * 1024 * 1024,
             read_budget: int = 64 * 1024 * 1024) -> Page:
        """At most ``limit`` records (and about ``max_bytes`` of JSON, at least one record) after
        ``since`` as JSON lines, for the control API; unknown kinds match nothing. Reading spilled
        records stops after ``read_budget`` bytes of file, so one page never costs more than that."""
        codes = None
        if kinds is not None:
            codes = {_CODE[kind] for kind in kinds if kind in _CODE}
        indexed = {name: value for name, value in (("key", key), ("task_id", task_id)) if value is not None}
        segments, last_seq = self._snapshot()
        lines: list[bytes] = []
        size = 0
        last = since
        for seq, line, _obj in self._scan(segments, codes, indexed, since, read_budget):
            if line is None:  # the read budget is spent
                return Page(lines, max(last, seq), True)
            if len(lines) >= limit or (lines and size + len(line) > max_bytes):
                return Page(lines, last, True)
            lines.append(line)
            size += len(line) + 2
            last = seq
        return Page(lines, max(last_seq, since), False)

    def stats(self) -> dict[str, Any]:
        """How many records there are and where they live (for benchmarks and diagnostics)."""
        with self._lock:
            return {"records": self._last_seq, "in_memory": self._memory_records,
                    "in_memory_bytes": self._memory_bytes,
                    "spilled": self._last_seq - self._memory_records,
                    "segments": len(self._segments), "spilled_segments": self._spilled_segments,
                    "spill_file": str(self._path) if self._path else ("temporary" if self._spill else None),
                    "max_records": self.max_records, "max_bytes": self.max_bytes}

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def __len__(self) -> int:
        return self._last_seq


def _needles(codes: set[int] | None, indexed: dict[str, str]) -> tuple[list[bytes], list[bytes]]:
    """Substrings a matching line must contain, as this module's encoder writes them: a cheap
    test before decoding a spilled line (a hit is then checked on the decoded record)."""
    kinds = [_encode({"kind": _KINDS[code].value})[1:-1].encode() for code in codes] if codes else []
    values = [_encode({name: value})[1:-1].encode() for name, value in indexed.items()]
    return kinds, values


def _candidate_lines(data: bytes, kind_needles: list[bytes], value_needles: list[bytes], *, skip: int,
                     count: int) -> Iterator[bytes]:
    """Lines of a spilled segment that contain a kind needle (if any) and every value needle, in
    order. With a needle, ``bytes.find`` walks the segment in C and only the lines around its hits
    are cut out (a Python loop over every line cost ~2 µs a line); without, every line from
    ``skip`` on. Hits are candidates only: the caller decodes and checks them."""
    if not kind_needles and not value_needles:
        yield from data.split(b"\n")[skip:count]
        return
    primary = [value_needles[0]] if value_needles else kind_needles
    rest = value_needles[1:] if value_needles else []
    need_kind = bool(kind_needles) and bool(value_needles)
    starts: set[int] = set()
    for needle in primary:
        hit = data.find(needle)
        while hit >= 0:
            start = data.rfind(b"\n", 0, hit) + 1
            starts.add(start)
            end = data.find(b"\n", hit)
            hit = data.find(needle, end if end >= 0 else len(data))
    for start in sorted(starts):
        end = data.find(b"\n", start)
        line = data[start:end if end >= 0 else len(data)]
        if need_kind and not any(needle in line for needle in kind_needles):
            continue
        if all(needle in line for needle in rest):
            yield line
