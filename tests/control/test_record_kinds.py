"""Timeline record kinds are one enum: JSON keeps the plain strings, unknown kinds are refused."""

from __future__ import annotations

import io
import json

import pytest

from simulator.recorder import Recorder, RecordKind


def test_kinds_are_plain_strings_on_the_wire() -> None:
    sink = io.StringIO()
    recorder = Recorder(sink)
    record = recorder.record(RecordKind.TASK_EVENT, task_id="t1")
    assert record.kind == "task_event" and record.to_json()["kind"] == "task_event"
    assert json.loads(sink.getvalue())["kind"] == "task_event"
    # Readers may ask with the enum or the string.
    assert recorder.records("task_event") == recorder.records(RecordKind.TASK_EVENT) == [record]


def test_unknown_kinds_are_refused_naming_the_kinds() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"unknown record kind 'task_events'; kinds: .*task_event"):
        recorder.records("task_events")
    with pytest.raises(ValueError, match="unknown record kind 'made_up'"):
        recorder.record("made_up")  # type: ignore[arg-type]
