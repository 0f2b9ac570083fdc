"""S-REST create routes: 202 shapes, headers reach the scenario rules, and validation (400/413,
nothing created)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, IMAGE, VIDEO, Http, open_http
from tests.support.simulator import TEST_KEY

TASK_ID = re.compile(r"task_[0-9a-f]{32}")


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=7)


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url, fast.control_token) as client:
        yield client


def iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_image_create_is_202_with_the_guide_shape(fast: BackgroundSimulator, http: Http) -> None:
    reply = await http("POST", "/v1/images/generations/async", json_body={**IMAGE, "n": 2, "size": "512x512"})
    assert reply.status == 202
    body = reply.json()
    assert set(body) == {"task_id", "status", "check_status_url", "created_at", "estimated_completion_time"}
    assert TASK_ID.fullmatch(body["task_id"])
    assert body["status"] == "queued"
    assert body["check_status_url"] == f"{fast.url}/api/tasks/{body['task_id']}/status"
    # The ok script takes 4 steps of 50 ms.
    eta = (iso(body["estimated_completion_time"]) - iso(body["created_at"])).total_seconds()
    assert eta == pytest.approx(0.2, abs=0.01)
    task = fast.call(fast.simulator.tasks.get, body["task_id"])
    assert (task.kind, task.key, task.request.params) == ("image", TEST_KEY, {"n": 2, "size": "512x512"})
    [created] = fast.simulator.recorder.records("task_created")
    assert created.get("task_id") == body["task_id"]
    [req] = fast.simulator.recorder.records("rest_request")
    assert req.fields == {"method": "POST", "path": "/v1/images/generations/async",
                          "route": "/v1/images/generations/async", "key": TEST_KEY, "status": 202,
                          "task_id": body["task_id"]}


async def test_video_create_is_202_camel_case(fast: BackgroundSimulator, http: Http) -> None:
    reply = await http("POST", "/v1/videos/generations/async",
                       json_body={**VIDEO, "size": "1280x720", "webhook_url": "http://127.0.0.1:9/hook",
                                  "webhook_headers": {"X-Tenant": "acme"}})
    assert reply.status == 202
    body = reply.json()
    assert set(body) == {"taskId", "status", "checkStatusUrl", "createdAt", "estimatedCompletionTime"}
    assert TASK_ID.fullmatch(body["taskId"]) and body["status"] == "pending"
    assert body["checkStatusUrl"] == f"{fast.url}/api/tasks/{body['taskId']}/status"
    iso(body["createdAt"]), iso(body["estimatedCompletionTime"])
    request = fast.call(fast.simulator.tasks.get, body["taskId"]).request
    assert request.kind == "video" and request.params == {"duration": 4, "size": "1280x720"}
    assert request.webhook_url == "http://127.0.0.1:9/hook"
    assert request.webhook_headers == {"X-Tenant": "acme"}


async def test_image_create_accepts_webhook_fields_and_x_api_key(fast: BackgroundSimulator,
                                                                  http: Http) -> None:
    reply = await http("POST", "/v1/images/generations/async", key=None, headers={"X-API-Key": TEST_KEY},
                       json_body={**IMAGE, "webhook_url": "http://localhost:1/h", "webhook_headers": {}})
    assert reply.status == 202
    request = fast.call(fast.simulator.tasks.get, reply.json()["task_id"]).request
    assert request.webhook_url == "http://localhost:1/h"


async def test_request_headers_reach_the_scenario_rules_lower_cased(fast: BackgroundSimulator,
                                                                     http: Http) -> None:
    reply = await http("POST", "/v1/images/generations/async", json_body=IMAGE,
                       headers={"X-Script": "slow", "X-Trace": "Abc"})
    task = fast.call(fast.simulator.tasks.get, reply.json()["task_id"])
    assert task.script == "slow"
    assert task.request.headers["x-trace"] == "Abc"
    # The credential is not copied into what scenarios (and /_sim/tasks) see.
    assert "authorization" not in task.request.headers


INVALID: list[tuple[str, str, Any, str | None, str]] = [
    # (id, kind, body, param, a piece of the message)
    ("not-json", "image", b"{nope", None, "not valid JSON"),
    ("empty", "image", b"", None, "empty"),
    ("nan", "video", b'{"prompt": "p", "model": "m", "duration": NaN}', None, "not valid JSON"),
    ("array", "image", [IMAGE], None, "JSON object"),
    ("string", "video", "prompt", None, "JSON object"),
    ("no-prompt", "image", {"model": "m"}, "prompt", "Prompt is required"),
    ("blank-prompt", "video", {"prompt": "  ", "model": "m"}, "prompt", "Prompt is required"),
    ("prompt-number", "image", {"prompt": 3, "model": "m"}, "prompt", "string"),
    ("no-model", "video", {"prompt": "p"}, "model", "Model is required"),
    ("blank-model", "image", {"prompt": "p", "model": ""}, "model", "Model is required"),
    ("model-list", "image", {"prompt": "p", "model": ["m"]}, "model", "string"),
    ("n-zero", "image", {**IMAGE, "n": 0}, "n", "between 1 and 10"),
    ("n-eleven", "image", {**IMAGE, "n": 11}, "n", "between 1 and 10"),
    ("n-float", "image", {**IMAGE, "n": 1.5}, "n", "integer"),
    ("n-bool", "image", {**IMAGE, "n": True}, "n", "integer"),
    ("n-string", "image", {**IMAGE, "n": "2"}, "n", "integer"),
    ("size-number", "image", {**IMAGE, "size": 512}, "size", "string"),
    ("duration-zero", "video", {**VIDEO, "duration": 0}, "duration", "positive"),
    ("duration-negative", "video", {**VIDEO, "duration": -3}, "duration", "positive"),
    ("duration-string", "video", {**VIDEO, "duration": "5"}, "duration", "positive"),
    ("duration-bool", "video", {**VIDEO, "duration": True}, "duration", "positive"),
    ("webhook-not-url", "video", {**VIDEO, "webhook_url": "not a url"}, "webhook_url", "webhook_url"),
    ("webhook-ftp", "image", {**IMAGE, "webhook_url": "ftp://127.0.0.1/x"}, "webhook_url", "http"),
    ("webhook-remote", "video", {**VIDEO, "webhook_url": "https://example.com/hook"}, "webhook_url",
     "not allowed"),
    ("webhook-number", "video", {**VIDEO, "webhook_url": 5}, "webhook_url", "webhook_url"),
    ("headers-list", "video", {**VIDEO, "webhook_headers": ["a"]}, "webhook_headers", "object"),
    ("headers-value", "image", {**IMAGE, "webhook_headers": {"X-A": 1}}, "webhook_headers", "string"),
    ("headers-name", "video", {**VIDEO, "webhook_headers": {"Bad Name": "v"}}, "webhook_headers",
     "header name"),
    ("headers-crlf", "video", {**VIDEO, "webhook_headers": {"X-A": "v\r\nX-B: w"}}, "webhook_headers",
     "control characters"),
]


@pytest.mark.parametrize(("kind", "body", "param", "message"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
async def test_invalid_create_is_400_and_creates_nothing(
        fast: BackgroundSimulator, http: Http, kind: str, body: Any, param: str | None, message: str) -> None:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json_body": body}
    reply = await http("POST", f"/v1/{kind}s/generations/async", **kwargs)
    assert reply.status == 400, reply
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]
    assert fast.call(lambda: len(fast.simulator.tasks.tasks)) == 0
    assert fast.simulator.recorder.records("task_created") == []
    control = await http("GET", "/_sim/tasks", key=None)
    assert control.json() == {"tasks": []}
    [req] = fast.simulator.recorder.records("rest_request")
    assert (req.get("status"), req.get("task_id")) == (400, None)


async def test_body_over_one_mib_is_413(fast: BackgroundSimulator, http: Http) -> None:
    big = {**IMAGE, "prompt": "x" * (1024 * 1024)}
    reply = await http("POST", "/v1/images/generations/async", json_body=big)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"
    # Streamed without a Content-Length, the limit still holds.

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    reply = await http("POST", "/v1/videos/generations/async", data=chunks())
    assert reply.status == 413
    assert fast.call(lambda: len(fast.simulator.tasks.tasks)) == 0
    # Just under the limit is fine.
    ok = {**IMAGE, "prompt": "y" * (1024 * 1024 - 100)}
    assert (await http("POST", "/v1/images/generations/async", json_body=ok)).status == 202
