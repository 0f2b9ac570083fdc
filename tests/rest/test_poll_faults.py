"""S-FAULT poll_errors through the control API: the next polls answer 503/429 with Retry-After,
then polling recovers; every poll (faulted or not) is on the timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import OTHER_KEY, TEST_KEY


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=7)


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url, fast.control_token) as client:
        yield client


async def test_poll_errors_then_recovery(fast: BackgroundSimulator, http: Http) -> None:
    task_id = await http.create("image", prompt="slow")
    armed = await http("POST", "/_sim/faults", key=None, json_body={"faults": [
        {"kind": "poll_errors", "count": 2, "status": 503, "retry_after": 2},
        {"kind": "poll_errors", "count": 1, "status": 429, "retry_after": 1},
    ]})
    assert armed.status == 200
    assert [f["kind"] for f in armed.json()["applied"]] == ["poll_errors", "poll_errors"]

    routes = [f"/api/tasks/{task_id}/status", f"/v1/images/generations/{task_id}/status",
              f"/v1/videos/generations/tasks/{task_id}", f"/v1/tasks/{task_id}"]
    replies = [await http("GET", path) for path in routes]
    assert [r.status for r in replies] == [503, 503, 429, 200]
    assert [r.headers.get("Retry-After") for r in replies] == ["2", "2", "1", None]
    assert replies[0].json()["error"]["type"] == "server_error"
    assert replies[2].json() == {"error": f"Rate limit exceeded for path {routes[2]}", "code": 429}
    assert (await http.status(task_id))["task_id"] == task_id  # recovered

    polls = fast.simulator.recorder.records("poll", task_id=task_id)
    assert [(p.get("status"), p.get("fault"), p.get("retry_after")) for p in polls] == [
        (503, True, 2), (503, True, 2), (429, True, 1), (200, False, None), (200, False, None)]
    assert [p.get("route") for p in polls][:4] == [
        "/api/tasks/{task_id}/status", "/v1/images/generations/{task_id}/status",
        "/v1/videos/generations/tasks/{task_id}", "/v1/tasks/{task_id}"]
    assert [p.get("task_status") for p in polls][:3] == [None, None, None]
    # The same polls, through the control API's timeline.
    timeline = (await http("GET", f"/_sim/timeline?kind=poll&task={task_id}", key=None)).json()
    assert [r["status"] for r in timeline["records"]] == [503, 503, 429, 200, 200]
    assert len(fast.simulator.recorder.records("fault_hit", fault="poll_errors")) == 3
    assert (await http("GET", "/_sim/faults", key=None)).json() == {"faults": []}


async def test_poll_errors_for_one_key_spare_the_others(fast: BackgroundSimulator, http: Http) -> None:
    mine = await http.create("image", prompt="slow")
    theirs = await http.create("image", prompt="slow", key=OTHER_KEY)
    fault = {"kind": "poll_errors", "count": 1, "status": 500, "key": OTHER_KEY}
    assert (await http("POST", "/_sim/faults", key=None, json_body=fault)).status == 200
    assert (await http("GET", f"/api/tasks/{mine}/status")).status == 200
    reply = await http("GET", f"/api/tasks/{theirs}/status", key=OTHER_KEY)
    assert reply.status == 500 and "Retry-After" not in reply.headers
    assert (await http("GET", f"/api/tasks/{theirs}/status", key=OTHER_KEY)).status == 200
    # Create and cancel routes are not polls: the fault never touches them.
    assert (await http("POST", "/_sim/faults", key=None,
                       json_body={"kind": "poll_errors", "count": 5})).status == 200
    await http.create("video")
    assert (await http("DELETE", f"/v1/images/generations/{mine}")).status == 200
    assert {p.get("key") for p in fast.simulator.recorder.records("poll", fault=True)} == {OTHER_KEY}
    assert fast.simulator.recorder.records("poll", key=TEST_KEY, fault=True) == []
