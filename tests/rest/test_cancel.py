"""S-REST cancel routes: images 200/400, videos 204/409, /v1/tasks/{id}/cancel 204."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, STEP, Http, open_http

TERMINAL = {"completed", "failed", "cancelled", "timedout"}


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=7)


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url) as client:
        yield client


async def test_image_cancel_then_cancel_again(fast: BackgroundSimulator, http: Http) -> None:
    task_id = await http.create("image", prompt="slow")
    await http.until(task_id, {"processing"})
    reply = await http("DELETE", f"/v1/images/generations/{task_id}")
    assert reply.status == 200
    assert reply.json() == {"message": "Task cancellation requested", "task_id": task_id}
    status = await http.status(task_id)
    assert (status["status"], status["result"]) == ("cancelled", None)
    assert status["error"]  # the guide route shows why a task ended without a result
    again = await http("DELETE", f"/v1/images/generations/{task_id}")
    assert again.status == 400
    assert again.json()["error"]["code"] == "invalid_operation"
    events = [r.get("event") for r in fast.simulator.recorder.records("task_event", task_id=task_id)]
    assert events == ["progress", "cancelled"]


@pytest.mark.parametrize("prompt", ["done", "fail"])
async def test_image_cancel_after_the_end_is_400(http: Http, prompt: str) -> None:
    task_id = await http.create("image", prompt=prompt)
    final = (await http.until(task_id, TERMINAL))[-1]
    reply = await http("DELETE", f"/v1/images/generations/{task_id}")
    assert reply.status == 400
    assert reply.json() == {"error": {"message": "Task has already completed",
                                      "type": "invalid_request_error", "param": "task_id",
                                      "code": "invalid_operation"}}
    assert await http.status(task_id) == final


async def test_video_cancel_is_204_and_repeatable(fast: BackgroundSimulator, http: Http) -> None:
    task_id = await http.create("video", prompt="slow")
    reply = await http("DELETE", f"/v1/videos/generations/{task_id}")
    assert (reply.status, reply.body) == (204, b"")
    cancelled = await http.status(task_id)
    assert cancelled["status"] == "cancelled"
    # As built, a cancelled task is not blocked: cancelling it again is another 204, and no new event.
    assert (await http("DELETE", f"/v1/videos/generations/{task_id}")).status == 204
    assert len(fast.simulator.recorder.records("task_event", task_id=task_id, event="cancelled")) == 1
    # The script stopped: nothing changes after the cancel.
    await asyncio.sleep(3 * STEP)
    assert await http.status(task_id) == cancelled


@pytest.mark.parametrize(("prompt", "status"), [("done", "completed"), ("fail", "failed")])
async def test_video_cancel_after_completion_or_failure_is_409(http: Http, prompt: str, status: str) -> None:
    task_id = await http.create("video", prompt=prompt)
    await http.until(task_id, TERMINAL)
    reply = await http("DELETE", f"/v1/videos/generations/{task_id}")
    assert reply.status == 409
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body = reply.json()
    assert body["title"] == "Cannot Cancel Task" and body["status"] == 409 and status in body["detail"]
    assert (await http.status(task_id))["status"] == status


async def test_generic_cancel_route(http: Http) -> None:
    task_id = await http.create("image", prompt="slow")
    assert (await http("POST", f"/v1/tasks/{task_id}/cancel")).status == 204
    assert (await http("GET", f"/v1/tasks/{task_id}")).json()["state"] == 4
    done_id = await http.create("video")
    await http.until(done_id, TERMINAL)
    # No state check as built: 204; the finished task keeps its outcome.
    assert (await http("POST", f"/v1/tasks/{done_id}/cancel")).status == 204
    assert (await http.status(done_id))["status"] == "completed"
    unknown = await http("POST", "/v1/tasks/task_nope/cancel")
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "not_found"


async def test_unknown_task_cancel_is_404(http: Http) -> None:
    assert (await http("DELETE", "/v1/images/generations/task_nope")).status == 404
    assert (await http("DELETE", "/v1/videos/generations/task_nope")).json()["title"] == "Task Not Found"
