"""S-REST status routes and S-AUTH on every REST route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import OTHER_KEY, TEST_KEY

TERMINAL = {"completed", "failed", "cancelled", "timedout"}


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=7)


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url) as client:
        yield client


@pytest.mark.parametrize("kind", ["image", "video"])
async def test_polling_the_guide_route_to_completion(fast: BackgroundSimulator, http: Http,
                                                     kind: str) -> None:
    task_id = await http.create(kind)
    seen = await http.until(task_id, TERMINAL)
    for body in seen:
        assert set(body) == {"task_id", "status", "progress", "result", "error", "created_at", "updated_at"}
        assert body["task_id"] == task_id and body["error"] is None
        assert body["status"] in {"pending", "processing", "completed"}
        assert (body["result"] is not None) == (body["status"] == "completed")
    progress = [body["progress"] for body in seen]
    assert progress == sorted(progress), progress
    assert seen[0]["status"] == "pending" and seen[0]["progress"] == 0
    assert set(progress) <= {0, 10, 50, 90, 100}
    assert any(body["status"] == "processing" for body in seen)  # 10 ms polls, 50 ms steps
    final = seen[-1]
    assert final["status"] == "completed" and final["progress"] == 100
    assert final["result"] == fast.call(fast.simulator.tasks.get, task_id).result
    assert final["updated_at"] > final["created_at"]
    # Every poll is on the timeline, with what it answered.
    polls = fast.simulator.recorder.records("poll", task_id=task_id)
    assert [p.get("task_status") for p in polls] == [body["status"] for body in seen]
    assert {(p.get("key"), p.get("status"), p.get("route"), p.get("fault")) for p in polls} == {
        (TEST_KEY, 200, "/api/tasks/{task_id}/status", False)}


async def test_a_failing_script_gives_failed_with_the_error(http: Http) -> None:
    task_id = await http.create("image", prompt="this one will fail")
    final = (await http.until(task_id, TERMINAL))[-1]
    assert final["status"] == "failed"
    assert final["error"] == "provider exploded"
    assert final["result"] is None
    assert final["progress"] == 20


async def test_real_route_shapes(fast: BackgroundSimulator, http: Http) -> None:
    image_id = await http.create("image")
    video_id = await http.create("video")
    failed_id = await http.create("image", prompt="fail please")
    for task_id in (image_id, video_id, failed_id):
        await http.until(task_id, TERMINAL)

    image = (await http("GET", f"/v1/images/generations/{image_id}/status")).json()
    assert list(image) == ["task_id", "status", "progress", "created_at", "updated_at", "result", "error"]
    assert image["status"] == "completed" and image["progress"] == 100 and image["result"]["images"]
    failed = (await http("GET", f"/v1/images/generations/{failed_id}/status")).json()
    assert (failed["status"], failed["result"], failed["error"]) == ("failed", None, "provider exploded")

    video = (await http("GET", f"/v1/videos/generations/tasks/{video_id}")).json()
    assert set(video) == {"taskId", "status", "progress", "createdAt", "updatedAt", "completedAt", "error",
                          "result", "videoResponse"}
    assert isinstance(video["result"], str)  # as built: the stored result serialised to a string
    stored = fast.call(fast.simulator.tasks.get, video_id).result
    assert json.loads(video["result"]) == stored
    assert video["videoResponse"]["data"] == [] and video["videoResponse"]["model"] == "veo-2"
    assert video["completedAt"] == video["updatedAt"]

    internal = (await http("GET", f"/v1/tasks/{video_id}")).json()
    assert internal["taskId"] == video_id and internal["taskType"] == "video_generation"
    assert internal["state"] == 2 and internal["result"] == stored
    assert internal["metadata"]["model"] == "veo-2" and internal["maxRetries"] == 3
    failed_internal = (await http("GET", f"/v1/tasks/{failed_id}")).json()
    assert (failed_internal["state"], failed_internal["error"]) == (3, "provider exploded")
    assert failed_internal["taskType"] == "image_generation"

    # /v1/tasks/{id}: an unknown id is 204 (as built: Ok(null)).
    unknown = await http("GET", "/v1/tasks/task_00000000000000000000000000000000")
    assert (unknown.status, unknown.body) == (204, b"")


async def test_processing_shapes_before_the_end(http: Http) -> None:
    task_id = await http.create("video", prompt="slow one")
    await http.until(task_id, {"processing"})
    video = (await http("GET", f"/v1/videos/generations/tasks/{task_id}")).json()
    assert (video["status"], video["progress"], video["result"], video["videoResponse"],
            video["completedAt"]) == ("processing", 5, None, None, None)
    internal = (await http("GET", f"/v1/tasks/{task_id}")).json()
    assert (internal["state"], internal["completedAt"]) == (1, None)


async def test_long_poll_returns_at_the_terminal_state(http: Http) -> None:
    task_id = await http.create("image")
    reply = await http("GET", f"/v1/tasks/{task_id}/poll?timeout=5&interval=1")
    assert reply.status == 200 and reply.json()["state"] == 2
    slow_id = await http.create("image", prompt="slow")
    reply = await http("GET", f"/v1/tasks/{slow_id}/poll?timeout=0")  # clamped to 1 s
    assert reply.status == 200 and reply.json()["state"] in (0, 1)
    bad = await http("GET", f"/v1/tasks/{task_id}/poll?timeout=soon")
    assert bad.status == 400 and bad.headers["Content-Type"].startswith("application/problem+json")


async def test_another_keys_task_is_404_on_every_route(fast: BackgroundSimulator, http: Http) -> None:
    task_id = await http.create("image", prompt="slow")
    checks = [
        ("GET", f"/api/tasks/{task_id}/status", "openai"),
        ("GET", f"/v1/images/generations/{task_id}/status", "openai"),
        ("GET", f"/v1/videos/generations/tasks/{task_id}", "problem"),
        ("GET", f"/v1/tasks/{task_id}", "dto"),
        ("GET", f"/v1/tasks/{task_id}/poll?timeout=1", "dto"),
        ("POST", f"/v1/tasks/{task_id}/cancel", "dto"),
        ("DELETE", f"/v1/images/generations/{task_id}", "openai"),
        ("DELETE", f"/v1/videos/generations/{task_id}", "problem"),
    ]
    for method, path, shape in checks:
        reply = await http(method, path, key=OTHER_KEY)
        assert reply.status == 404, (method, path, reply)
        body = reply.json()
        if shape == "openai":
            assert body == {"error": {"message": "Task not found", "type": "invalid_request_error",
                                      "param": "task_id", "code": "not_found"}}
        elif shape == "problem":
            assert body["title"] == "Task Not Found" and body["status"] == 404
            assert reply.headers["Content-Type"].startswith("application/problem+json")
        else:
            assert body == {"error": {"message": f"Task {task_id} not found", "type": "not_found"},
                            "details": None, "code": None}
    # Nothing the other key did touched the task.
    assert (await http.status(task_id))["status"] in ("pending", "processing")
    polls = fast.simulator.recorder.records("poll", key=OTHER_KEY)
    assert len(polls) == 5 and {p.get("status") for p in polls} == {404}


ROUTES = [
    ("POST", "/v1/images/generations/async", True),
    ("POST", "/v1/videos/generations/async", False),
    ("GET", "/api/tasks/task_x/status", False),
    ("GET", "/v1/images/generations/task_x/status", True),
    ("GET", "/v1/videos/generations/tasks/task_x", False),
    ("GET", "/v1/tasks/task_x", False),
    ("GET", "/v1/tasks/task_x/poll", False),
    ("POST", "/v1/tasks/task_x/cancel", False),
    ("DELETE", "/v1/images/generations/task_x", True),
    ("DELETE", "/v1/videos/generations/task_x", False),
    ("GET", "/api/auth/realtime-token", False),
    ("POST", "/v1/auth/ephemeral-key", False),
]


async def test_missing_or_unknown_key_is_401_with_an_empty_body(fast: BackgroundSimulator,
                                                                 http: Http) -> None:
    credentials = [{}, {"Authorization": "Bearer vk_unknown123"}, {"X-API-Key": "vk_unknown123"},
                   {"Authorization": "Basic " + TEST_KEY}]
    for method, path, challenge in ROUTES:
        for headers in credentials:
            reply = await http(method, path, key=None, headers=headers,
                               json_body={"prompt": "p", "model": "m"})
            assert reply.status == 401, (method, path, headers)
            assert reply.body == b""
            assert reply.headers.get("WWW-Authenticate") == ("EphemeralKey" if challenge else None)
        # The REST routes never read the key from the query string.
        reply = await http(method, f"{path}?access_token={TEST_KEY}&api_key={TEST_KEY}", key=None)
        assert reply.status == 401
    rejected = fast.simulator.recorder.records("auth_rejected", stage="rest")
    assert len(rejected) == len(ROUTES) * (len(credentials) + 1)
    assert {r.get("reason") for r in rejected} == {"missing key", "unknown key"}
    assert {r.get("status") for r in fast.simulator.recorder.records("rest_request")} == {401}
    assert fast.call(lambda: len(fast.simulator.tasks.tasks)) == 0
