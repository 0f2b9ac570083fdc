"""``POST /v1/videos/generations/tasks/{id}/retry`` in the ``conduit-2025.08`` profile: the real
server's rules and answers (conduit-as-built.md §1.8), and a real retry — the task's script runs
again as a new attempt, with its events in the as-built shapes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from simulator.background import BackgroundSimulator
from simulator.profiles import load_profile
from simulator.profiles.diff import diff
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import OTHER_KEY

PROFILE = "conduit-2025.08"


@pytest.fixture
def built(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(profile=PROFILE, scenario=FAST, seed=7)


@pytest.fixture
async def http(built: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(built.url) as client:
        yield client


def _retry(task_id: str) -> str:
    return f"/v1/videos/generations/tasks/{task_id}/retry"


async def _status(http: Http, task_id: str, want: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(500):
        reply = await http("GET", f"/v1/videos/generations/tasks/{task_id}")
        assert reply.status == 200, reply
        body = reply.json()
        if body["status"] == want:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"{task_id} never reached {want}: {body}")


async def test_a_failed_task_runs_again_until_its_retries_are_spent(http: Http) -> None:
    task_id = await http.create("video", prompt="please fail")
    await _status(http, task_id, "failed")
    for attempt in (1, 2, 3):
        reply = await http("POST", _retry(task_id))
        assert reply.status == 200, reply.body
        body = reply.json()
        assert list(body) == ["taskId", "status", "progress", "createdAt", "updatedAt", "completedAt",
                              "error", "result", "videoResponse"]
        assert body["taskId"] == task_id and body["status"] == "pending"
        assert body["error"] == f"Retry {attempt}/3 scheduled"
        assert body["completedAt"] is None and body["result"] is None
        pending = await http("GET", f"/v1/tasks/{task_id}")
        assert pending.json()["retryCount"] == attempt
        # The script really runs again: progress, then its failure.
        await _status(http, task_id, "processing")
        failed = await _status(http, task_id, "failed")
        assert failed["error"] == "provider exploded"
    spent = await http("POST", _retry(task_id))
    assert spent.status == 400
    assert spent.headers["Content-Type"].startswith("application/problem+json")
    assert spent.json() == {"title": "Max Retries Exceeded", "status": 400,
                            "detail": "Task has already been retried 3 times (max: 3)"}


async def test_only_a_failed_task_of_the_caller_can_be_retried(http: Http) -> None:
    done = await http.create("video")
    await _status(http, done, "completed")
    reply = await http("POST", _retry(done))
    assert reply.status == 400
    assert reply.json() == {"title": "Invalid Task State", "status": 400,
                            "detail": "Only failed tasks can be retried. Current state: Completed"}
    running = await http.create("video", prompt="slow please")
    await _status(http, running, "processing")
    assert (await http("POST", _retry(running))).json()["detail"].endswith("Current state: Processing")
    failed = await http.create("video", prompt="please fail")
    await _status(http, failed, "failed")
    theirs = await http("POST", _retry(failed), key=OTHER_KEY)
    assert theirs.status == 404 and theirs.json()["title"] == "Task Not Found"
    assert (await http("POST", _retry("task_unknown"))).status == 404
    assert (await http("POST", _retry(failed), key=None)).status == 401
    assert (await _status(http, failed, "failed"))["status"] == "failed"  # none of these retried it


def _events(task: Task, *kinds: EventKind) -> list[TaskEvent]:
    status = {EventKind.PROGRESS: TaskStatus.PROCESSING, EventKind.FAILED: TaskStatus.FAILED}
    for seq, kind in enumerate(kinds, start=1):
        task.events.append(TaskEvent(task.task_id, kind, seq, status[kind], 50, float(seq),
                                     error="boom" if kind is EventKind.FAILED else None))
    return task.events


def test_a_retried_attempt_starts_again_on_the_hub() -> None:
    profile = load_profile(PROFILE)
    request = TaskRequest(kind="video", prompt="p", model="m", key="k", params={"duration": 4})
    task = Task(task_id="task_" + "1" * 32, request=request, script="fail", retries=1)
    first, failed, again = _events(task, EventKind.PROGRESS, EventKind.FAILED, EventKind.PROGRESS)
    targets = [[e.target for e in profile.signalr_events(task, event)] for event in (first, failed, again)]
    assert targets[0] == targets[2] == ["VideoGenerationStarted", "VideoGenerationProgress"]
    [emission] = profile.signalr_events(task, failed)
    assert emission.arguments[0]["retryCount"] == 1


def test_the_retry_route_is_in_the_profile_diff() -> None:
    routes = next(s for s in diff(load_profile("documented"), load_profile(PROFILE), only=["routes"]))
    row = next(r for r in routes.rows if r.key == "POST /v1/videos/generations/tasks/{task_id}/retry")
    assert row.left == "-" and row.right == "200/400/401/404"
