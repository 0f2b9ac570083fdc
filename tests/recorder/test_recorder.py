"""The recorder: capped in memory, every record still readable in order, JSON-safe, and nothing
for the garbage collector to scan however long the timeline grows."""

from __future__ import annotations

import gc
import io
import json
import threading
from pathlib import Path

import pytest

from conduit_core.signalr.negotiate import new_connection_id
from simulator.jsonsafe import MAX_ITEMS, MAX_STRING, IdList
from simulator.recorder import Recorder, RecordKind

KINDS = (RecordKind.EVENT, RecordKind.POLL, RecordKind.INVOCATION, RecordKind.TASK_EVENT)


def fill(recorder: Recorder, count: int) -> None:
    for n in range(count):
        recorder.record(KINDS[n % 4], key=f"vk_{n % 7}", task_id=f"task_{n % 50}", n=n)


def expected(count: int, kind: RecordKind | None = None, since: int = 0, **match: object) -> list[int]:
    """Seqs of the records ``fill`` wrote that match (seq = n + 1)."""
    out = []
    for n in range(count):
        fields = {"key": f"vk_{n % 7}", "task_id": f"task_{n % 50}", "n": n}
        if n + 1 > since and (kind is None or KINDS[n % 4] == kind) and all(
                fields[name] == value for name, value in match.items()):
            out.append(n + 1)
    return out


@pytest.mark.parametrize("where", ["temporary", "record-file"])
def test_capped_memory_keeps_every_record_queryable_in_order(where: str, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl" if where == "record-file" else None
    recorder = Recorder(path=path, max_records=300)
    fill(recorder, 5000)
    stats = recorder.stats()
    assert stats["in_memory"] <= 300 and stats["spilled"] == 5000 - stats["in_memory"] > 4000
    assert [r.seq for r in recorder.records()] == list(range(1, 5001))
    assert [r.get("n") for r in recorder] == list(range(5000))
    assert len(recorder) == 5000
    queries: list[tuple[RecordKind | None, int, dict[str, object]]] = [
        (RecordKind.POLL, 0, {}), (None, 0, {"key": "vk_3"}), (RecordKind.EVENT, 0, {"task_id": "task_8"}),
        (RecordKind.TASK_EVENT, 0, {"key": "vk_2", "task_id": "task_3"}), (None, 4800, {}),
        (RecordKind.INVOCATION, 1234, {"key": "vk_5"}), (None, 0, {"n": 4321}),
        (None, 0, {"key": "vk_nobody"}),
    ]
    for kind, since, match in queries:
        got = [r.seq for r in recorder.records(kind, since=since, **match)]
        assert got == expected(5000, kind, since, **match), (kind, since, match)
    if path is not None:  # the --record file holds every line once and serves as the spill
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["seq"] for line in lines] == list(range(1, 5001))
    recorder.close()
    if path is not None:
        assert len(recorder.records(RecordKind.POLL)) == 1250  # read back from the file
    else:
        assert len(recorder.records(since=4900)) == 100  # still in memory
        with pytest.raises(RuntimeError, match="closed"):
            recorder.records()


def test_the_byte_cap_spills_too() -> None:
    recorder = Recorder(max_bytes=20_000)
    for n in range(2000):
        recorder.record(RecordKind.POLL, key="vk_a", task_id="task_a", status=200, body="x" * 100, n=n)
    stats = recorder.stats()
    assert stats["in_memory_bytes"] <= 20_000 and stats["spilled"] > 1500
    assert [r.get("n") for r in recorder.records(RecordKind.POLL, task_id="task_a")] == list(range(2000))


def test_a_record_reads_the_same_from_memory_and_from_disk() -> None:
    recorder = Recorder(max_records=4)
    sent = recorder.record(RecordKind.INVOCATION, target="Send", arguments=("a", 1), blob=b"\x00",
                           nested={"k": [1.5, None]}, wall=1.0)
    fresh = recorder.records(RecordKind.INVOCATION)[0]
    fill(recorder, 40)
    assert recorder.stats()["in_memory"] <= 4
    spilled = recorder.records(RecordKind.INVOCATION, target="Send")[0]
    # The timeline's JSON values, wherever the record lives; the record's own keys win.
    assert fresh == spilled and spilled.seq == sent.seq == 1
    assert spilled.fields == {"target": "Send", "arguments": ["a", 1], "blob": "b'\\x00'",
                              "nested": {"k": [1.5, None]}}


def test_the_sanitiser_still_applies(tmp_path: Path) -> None:
    sink = io.StringIO()
    recorder = Recorder(sink, path=tmp_path / "run.jsonl", max_records=2)
    recorder.record(RecordKind.INVOCATION, target="x" * 50_000, arguments=[float("nan"), {b"\xff": 1}])
    fill(recorder, 10)  # the poisoned record is now on disk only
    record = recorder.records(RecordKind.INVOCATION)[0]
    assert len(record.fields["target"]) < MAX_STRING + 40 and record.fields["target"].endswith("chars]")
    assert record.fields["arguments"] == ["NaN", {"\ufffd": 1}]
    for text in (sink.getvalue(), (tmp_path / "run.jsonl").read_text(encoding="utf-8")):
        for line in text.splitlines():
            json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in the timeline"))


def test_a_broadcast_names_every_recipient_as_the_encoder_would(tmp_path: Path) -> None:
    """An IdList (a broadcast's recipients) is written by one join: the same JSON the encoder
    writes, every id kept even past json_safe's item cap, and nothing else of the record lost."""
    ids = IdList(new_connection_id() for _ in range(MAX_ITEMS + 500))
    sink = io.StringIO()
    recorder = Recorder(sink, path=tmp_path / "run.jsonl", max_records=2)
    kept = recorder.record(RecordKind.EVENT, target="TaskProgress", arguments=["t", 1], to="all",
                           recipients=len(ids), connections=ids, task_id="t", event_seq=3)
    recorder.record(RecordKind.EVENT, target="TaskProgress", to="group:none", connections=IdList())
    fill(recorder, 10)  # both records are now on disk only
    first, empty = recorder.records(RecordKind.EVENT, target="TaskProgress")
    assert first.seq == kept.seq and first.fields == {
        "target": "TaskProgress", "arguments": ["t", 1], "to": "all", "recipients": len(ids),
        "connections": list(ids), "task_id": "t", "event_seq": 3}
    assert empty.fields["connections"] == []
    line = (tmp_path / "run.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert sink.getvalue().splitlines()[0] == line
    # The recipients come last, written exactly as the encoder writes a list.
    assert line.endswith(f', "connections": {json.dumps(list(ids))}}}')
    assert recorder.records(RecordKind.EVENT, task_id="t")[0].seq == kept.seq


@pytest.mark.parametrize("bad", ['quo"te', "back\\slash", "new\nline", "del\x7f", "caf\u00e9",
                                 "\ud800", 7, None])
def test_an_id_list_with_an_item_json_must_escape_stays_valid_json(bad: object, tmp_path: Path) -> None:
    """Only the ids of the server's own connections go into an IdList; if anything else got in,
    the line must still be valid JSON with every item as the encoder would write it."""
    ids = IdList(["a" * 22, bad, "b" * 22])  # type: ignore[list-item]
    recorder = Recorder(path=tmp_path / "run.jsonl", max_records=1)
    recorder.record(RecordKind.EVENT, target="T", connections=ids, recipients=3)
    fill(recorder, 5)
    [record] = recorder.records(RecordKind.EVENT, target="T")
    assert record.fields["recipients"] == 3
    assert record.fields["connections"] == json.loads(json.dumps(["a" * 22, bad, "b" * 22]))
    for line in (tmp_path / "run.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)


def test_records_give_the_collector_nothing_to_scan() -> None:
    recorder = Recorder()
    fill(recorder, 1000)  # warm up: the first segments and index arrays exist
    gc.collect()
    before = len(gc.get_objects())
    fill(recorder, 20_000)
    gc.collect()
    grown = len(gc.get_objects()) - before
    # A list of Record objects adds at least one tracked object per record (20,000 here, more
    # with list or dict fields); the recorder adds index arrays per segment, key and task id.
    assert grown < 2_000, grown


def test_readers_in_other_threads_see_a_consistent_prefix() -> None:
    recorder = Recorder(max_records=500)
    done = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not done.is_set():
            seqs = [r.seq for r in recorder.records()]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"gap or disorder in {len(seqs)} records")
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        fill(recorder, 20_000)
    finally:
        done.set()
        reader.join(30)
    assert not problems


def test_unusable_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Recorder(max_records=0)


def test_pages_are_bounded_and_follow_on() -> None:
    recorder = Recorder(max_records=100)
    fill(recorder, 3000)
    seen: list[bytes] = []
    since = 0
    while True:
        page = recorder.page(kinds={"poll"}, since=since, limit=97)
        assert len(page.lines) <= 97
        seen += page.lines
        since = page.last_seq
        if not page.more:
            break
    assert [json.loads(line)["seq"] for line in seen] == expected(3000, RecordKind.POLL)
    assert since == 3000
    big = recorder.page(limit=10_000, max_bytes=1000)
    assert big.more and len(big.lines) >= 1 and sum(len(line) for line in big.lines[:-1]) < 1000
    # A read budget ends a page early (here after each spilled segment), with a cursor that
    # makes progress and loses nothing.
    seen, since, pages = [], 0, 0
    while True:
        page = recorder.page(kinds={"poll"}, since=since, read_budget=1)
        seen += page.lines
        since, pages = page.last_seq, pages + 1
        if not page.more:
            break
    assert [json.loads(line)["seq"] for line in seen] == expected(3000, RecordKind.POLL) and pages > 20
    nothing = recorder.page(kinds={"no_such_kind"})
    assert nothing.lines == [] and not nothing.more and nothing.last_seq == 3000


def test_serve_refuses_unusable_caps_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import EXIT_USAGE, main

    assert main(["serve", "--recorder-max-records", "0"]) == EXIT_USAGE
    assert "--recorder-max-records" in capsys.readouterr().err


def test_several_kinds_at_once() -> None:
    recorder = Recorder(max_records=50)
    fill(recorder, 400)
    both = recorder.records((RecordKind.POLL, "event"), key="vk_1")
    assert [r.seq for r in both] == sorted(expected(400, RecordKind.POLL, key="vk_1")
                                          + expected(400, RecordKind.EVENT, key="vk_1"))


def test_recording_after_close_keeps_records_in_memory(tmp_path: Path) -> None:
    recorder = Recorder(path=tmp_path / "run.jsonl", max_records=20)
    fill(recorder, 100)
    recorder.close()
    fill(recorder, 50)  # e.g. a late record while stopping: kept, not lost, not written
    assert [r.seq for r in recorder.records()] == list(range(1, 151))
    assert len((tmp_path / "run.jsonl").read_text(encoding="utf-8").splitlines()) == 100
