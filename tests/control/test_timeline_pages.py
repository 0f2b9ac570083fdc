"""/_sim/timeline answers in bounded pages, also for records that have left memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from simulator import control
from simulator.background import BackgroundSimulator
from simulator.recorder import Recorder, RecordKind
from tests.support.rest import Http, open_http


@pytest.fixture
def capped(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    background = make_simulator(recorder=Recorder(max_records=200))
    recorder = background.simulator.recorder
    for n in range(2500):  # recorded from this thread: the recorder is thread-safe
        recorder.record(RecordKind.POLL if n % 2 else RecordKind.EVENT, key=f"vk_{n % 3}",
                        task_id=f"task_{n % 10}", n=n)
    assert recorder.stats()["spilled"] > 2000
    return background


@pytest.fixture
async def http(capped: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(capped.url, capped.control_token) as client:
        yield client


async def get(http: Http, path: str) -> dict[str, Any]:
    reply = await http("GET", path, key=None)
    assert reply.status == 200, reply
    return reply.json()


async def follow(http: Http, path: str) -> tuple[list[dict[str, Any]], int]:
    """Every record of a query, following ``next``; (records, pages)."""
    records: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = await get(http, path)
        pages += 1
        records += page["records"]
        if not page["more"]:
            return records, pages
        path = page["next"]


async def test_without_limit_a_page_is_bounded_and_next_gives_the_rest(capped: BackgroundSimulator,
                                                                     http: Http) -> None:
    first = await get(http, "/_sim/timeline")
    assert len(first["records"]) == control.DEFAULT_LIMIT and first["more"] is True
    assert first["last_seq"] == first["records"][-1]["seq"]
    assert "since=" + str(first["last_seq"]) in first["next"]
    everything, pages = await follow(http, "/_sim/timeline")
    expected = [r.seq for r in capped.records()]
    assert [r["seq"] for r in everything] == expected and pages >= 3


async def test_filters_over_spilled_records(capped: BackgroundSimulator, http: Http) -> None:
    polls, _ = await follow(http, "/_sim/timeline?kind=poll&key=vk_1&limit=100")
    assert [r["n"] for r in polls] == [r.get("n") for r in capped.records("poll", key="vk_1")]
    assert polls and all(r["kind"] == "poll" and r["key"] == "vk_1" for r in polls)
    by_task, _ = await follow(http, "/_sim/timeline?task=task_4&kind=event,poll&since=1000")
    assert [r["seq"] for r in by_task] == [r.seq for r in capped.records(task_id="task_4", since=1000)]


async def test_limits_are_enforced(http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    too_many = await http("GET", f"/_sim/timeline?limit={control.MAX_LIMIT + 1}", key=None)
    assert too_many.status == 400 and f"at most {control.MAX_LIMIT}" in too_many.json()["error"]
    huge = await http("GET", "/_sim/timeline?since=" + "9" * 400, key=None)
    assert huge.status == 400 and "since" in huge.json()["error"]
    monkeypatch.setattr(control, "MAX_PAGE_BYTES", 2000)
    small = await get(http, f"/_sim/timeline?limit={control.MAX_LIMIT}")
    assert small["more"] is True and 1 <= len(small["records"]) < 40


def test_the_openapi_document_states_the_bounds() -> None:
    timeline = control.openapi_document()["paths"]["/_sim/timeline"]["get"]
    limit = next(p for p in timeline["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["maximum"], limit["default"]) == (control.MAX_LIMIT, control.DEFAULT_LIMIT)
    answer = timeline["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"records", "last_seq", "more", "next"} <= set(answer["properties"])
