"""The ``conduit-2025.08`` profile served for real: REST shapes and codes, hubs, webhooks, the JSON-only
handshake, and scenarios, faults and seeds working as they do on ``documented``."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from conduit_core.signalr import HandshakeRequest
from conduit_core.signalr.handshake import encode_request
from contract_tests.waiting import wait_until
from simulator.background import BackgroundSimulator
from simulator.profiles import load_profile, profile_names
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import OTHER_KEY, TEST_KEY

PROFILE = "conduit-2025.08"
TERMINAL = {"completed", "failed", "cancelled", "timedout"}


@pytest.fixture
def built(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(profile=PROFILE, scenario=FAST, seed=7)


@pytest.fixture
async def http(built: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(built.url) as client:
        yield client


async def _until(http: Http, path: str, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for _ in range(500):
        reply = await http("GET", path)
        assert reply.status == 200, reply
        seen.append(reply.json())
        if done(seen[-1]):
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never finished: {seen[-3:]}")


def test_the_registry_names_both_profiles() -> None:
    assert profile_names() == ["documented", PROFILE]
    assert load_profile(PROFILE).name == PROFILE
    with pytest.raises(ValueError, match="available: conduit-2025.08, documented"):
        load_profile("nope")


# -- REST ---------------------------------------------------------------------------------------
async def test_image_create_and_status_have_the_real_shape(built: BackgroundSimulator, http: Http) -> None:
    reply = await http("POST", "/v1/images/generations/async",
                       json_body={"prompt": "a lighthouse", "model": "dall-e-3", "n": 2,
                                  "webhook_url": "not even a URL"})  # extension data: ignored
    assert reply.status == 202
    created = reply.json()
    assert list(created) == ["task_id", "status", "check_status_url", "created_at",
                             "estimated_completion_time"]
    task_id = created["task_id"]
    assert re.fullmatch(r"task_[0-9a-f]{32}", task_id)
    assert created["status"] == "queued" and created["estimated_completion_time"] is None
    assert created["check_status_url"] == f"{built.url}/v1/images/generations/{task_id}/status"

    seen = await _until(http, f"/v1/images/generations/{task_id}/status",
                        lambda body: body["status"] in TERMINAL)
    for body in seen:
        assert list(body) == ["task_id", "status", "progress", "created_at", "updated_at", "result", "error"]
        # No code updates image progress between start and completion.
        assert body["progress"] == (100 if body["status"] == "completed" else 0)
    assert any(body["status"] == "processing" for body in seen)
    final = seen[-1]
    assert final["status"] == "completed" and final["error"] is None
    images = final["result"]["images"]
    assert len(images) == 2 and set(images[0]) == {"Url", "B64Json", "RevisedPrompt", "Metadata"}
    assert images[0]["Url"].startswith("https://cdn.example.test/")
    assert not built.records("webhook_attempt") and not built.records("webhook_refused")


async def test_video_create_status_and_errors(http: Http) -> None:
    reply = await http("POST", "/v1/videos/generations/async",
                       json_body={"prompt": "waves", "model": "veo-2", "duration": 4})
    assert reply.status == 202
    created = reply.json()
    assert list(created) == ["taskId", "status", "createdAt", "estimatedCompletionTime", "checkStatusUrl"]
    task_id = created["taskId"]
    assert created["status"] == "pending"
    assert created["checkStatusUrl"] == f"/v1/videos/generations/tasks/{task_id}"
    assert created["estimatedCompletionTime"] > created["createdAt"]

    final = (await _until(http, created["checkStatusUrl"], lambda b: b["status"] in TERMINAL))[-1]
    assert final["status"] == "completed"
    stored = json.loads(final["result"])  # a JSON *string*
    assert stored["videoUrl"].startswith("https://cdn.example.test/videos/")
    assert final["videoResponse"]["data"] == []  # the URL is only inside result

    bad = await http("POST", "/v1/videos/generations/async", json_body={"model": "veo-2"})
    assert bad.status == 400
    assert bad.headers["Content-Type"].startswith("application/problem+json")
    assert bad.json()["title"] == "Invalid Request" and bad.json()["status"] == 400
    missing = await http("GET", "/v1/videos/generations/tasks/task_nope")
    assert missing.status == 404 and missing.json()["title"] == "Task Not Found"


async def test_guide_routes_are_absent(http: Http) -> None:
    task_id = await http.create("image")
    assert (await http("GET", f"/api/tasks/{task_id}/status")).status == 404
    assert (await http("GET", "/api/auth/realtime-token")).status == 404
    assert (await http("POST", "/v1/auth/ephemeral-key")).status == 200


async def test_generic_task_route_checks_no_ownership(http: Http) -> None:
    task_id = await http.create("video")
    theirs = await http("GET", f"/v1/tasks/{task_id}", key=OTHER_KEY)
    assert theirs.status == 200  # as built: any key reads any task ...
    body = theirs.json()
    assert body["metadata"]["VirtualKey"] == TEST_KEY  # ... including the owner's raw key
    assert isinstance(body["state"], int) and "status" not in body
    assert (await http("GET", "/v1/tasks/task_unknown")).status == 204
    # The media routes do check ownership.
    assert (await http("GET", f"/v1/videos/generations/tasks/{task_id}", key=OTHER_KEY)).status == 404


async def test_cancel_codes(http: Http) -> None:
    image = await http.create("image", prompt="slow please")
    reply = await http("DELETE", f"/v1/images/generations/{image}")
    assert reply.status == 200
    assert reply.json() == {"message": "Task cancellation requested", "task_id": image}
    again = await http("DELETE", f"/v1/images/generations/{image}")
    assert again.status == 400 and again.json()["error"]["code"] == "invalid_operation"
    video = await http.create("video", prompt="slow please")
    assert (await http("DELETE", f"/v1/videos/generations/{video}")).status == 204
    assert (await http("DELETE", f"/v1/videos/generations/{video}")).status == 204  # not blocked


# -- hubs ---------------------------------------------------------------------------------------
async def test_hub_table(built: BackgroundSimulator) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_KEY}"}) as session:
        for path, status in (("/hubs/tasks", 200), ("/hubs/image-generation", 200),
                             ("/hubs/video-generation", 200), ("/hubs/navigation-state", 404)):
            async with session.post(f"{built.url}{path}/negotiate?negotiateVersion=1") as resp:
                assert resp.status == status, path


async def test_hubs_take_virtual_keys_only(built: BackgroundSimulator, http: Http) -> None:
    token = (await http("POST", "/v1/auth/ephemeral-key")).json()["ephemeralKey"]
    async with aiohttp.ClientSession() as session:
        for credential, status in ((token, 401), (TEST_KEY, 200)):
            async with session.post(f"{built.url}/hubs/image-generation/negotiate?negotiateVersion=1",
                                    headers={"Authorization": f"Bearer {credential}"}) as resp:
                assert resp.status == status
    # The image REST routes do take the ephemeral key (X-Ephemeral-Key).
    reply = await http("POST", "/v1/images/generations/async", key=None,
                       headers={"X-Ephemeral-Key": token}, json_body={"prompt": "p", "model": "m"})
    assert reply.status == 202


async def _handshake(url: str, protocol: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("http", "ws", 1) + f"/hubs/image-generation?access_token={TEST_KEY}") as ws:
        await ws.send_bytes(encode_request(HandshakeRequest(protocol, 1)))
        message = await ws.receive(timeout=5)
        text = message.data if isinstance(message.data, str) else message.data.decode()
        return json.loads(text.rstrip("\x1e"))


async def test_json_only_a_messagepack_handshake_fails(built: BackgroundSimulator) -> None:
    assert await _handshake(built.url, "json") == {}
    refused = await _handshake(built.url, "messagepack")
    assert "messagepack" in refused["error"]


def test_timings_are_the_servers_and_overridable(make_simulator) -> None:
    profile = load_profile(PROFILE)
    assert (profile.hub_options.keep_alive_interval, profile.hub_options.client_timeout) == (30.0, 60.0)
    sim = make_simulator(profile=PROFILE)  # conftest shrinks them, as Simulator(hub_options=) allows
    assert sim.simulator.hub_options.keep_alive_interval == 0.5
    assert sim.simulator.hub_options.protocols == ("json",)


# -- webhooks -----------------------------------------------------------------------------------
async def test_video_webhook_is_unsigned_with_the_real_headers_and_body(
        make_simulator: Callable[..., BackgroundSimulator]) -> None:
    received: list[tuple[Any, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers, await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        sim = make_simulator(profile=PROFILE, scenario=FAST, seed=3)
        async with open_http(sim.url) as http:
            task_id = await http.create("video", prompt="caf\u00e9 <ok> & 'fine'",
                                        webhook_url=f"http://127.0.0.1:{port}/hook",
                                        webhook_headers={"X-Tenant": "t1", "Content-Type": "text/plain"})
            await asyncio.to_thread(wait_until, lambda: sim.records("webhook_delivery"), 10)
    finally:
        await runner.cleanup()
    assert len(received) == 1  # progress webhooks are never sent for video
    headers, raw = received[0]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["User-Agent"] == "Conduit-LLM/1.0"
    assert headers["X-Webhook-Type"] == "completion" and headers["X-Tenant"] == "t1"
    assert headers["X-Webhook-Timestamp"].isdigit()
    assert not any(name.lower().endswith("signature") for name in headers)
    text = raw.decode("ascii")  # everything else is \u-escaped
    assert "caf\\u00E9 \\u003Cok\\u003E \\u0026 \\u0027fine\\u0027" in text
    body = json.loads(text)
    assert list(body) == ["webhookType", "video_url", "error", "generation_duration_seconds", "model",
                          "prompt", "task_id", "status", "timestamp", "webhook_type"]
    assert body["webhookType"] == body["webhook_type"] == "video_generation_completed"
    assert body["task_id"] == task_id and body["status"] == "completed" and body["error"] is None
    [delivery] = sim.records("webhook_delivery")
    assert delivery.get("event_type") == "video_generation_completed"


# -- scenarios, faults and seeds are the profile's too -------------------------------------------
def _ids(sim: BackgroundSimulator) -> list[str]:
    return [r.get("task_id") for r in sim.records("task_created")]


async def test_seeds_and_faults_work_unchanged(make_simulator: Callable[..., BackgroundSimulator]) -> None:
    runs = []
    for _ in range(2):
        sim = make_simulator(profile=PROFILE, scenario=FAST, seed=42)
        sim.inject("drop_event", nth=2, channel="signalr")
        async with open_http(sim.url) as http:
            for _ in range(2):
                await http.create("image")
        runs.append(sim)
    assert _ids(runs[0]) == _ids(runs[1])
    for sim in runs:
        await asyncio.to_thread(wait_until, lambda s=sim: s.records("event_dropped"), 5)
        assert sim.records("event_dropped")[0].get("channel") == "signalr"


# -- the CLI ------------------------------------------------------------------------------------
def test_serve_profile_from_the_command_line() -> None:
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "harness.cli", "serve", "--profile", PROFILE, "--port", "0",
               "--virtual-key", TEST_KEY]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = {}
        while "scenario" not in banner:
            line = proc.stdout.readline()
            assert line, f"serve exited: {proc.poll()}"
            name, _, value = line.rstrip("\n").partition(": ") if ": " in line else line.partition(" on ")
            banner[name.strip()] = value.strip()
        assert banner["profile"] == PROFILE and "webhook secret" not in banner
        assert banner["webhooks"].startswith("not signed")
        request = urllib.request.Request(f"{banner['listening']}/hubs/tasks/negotiate?negotiateVersion=1",
                                         method="POST", headers={"Authorization": f"Bearer {TEST_KEY}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["negotiateVersion"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def _all_ended(sim: BackgroundSimulator, count: int) -> bool:
    return len([r for r in sim.records("task_event") if r.get("event") != "progress"]) == count


@pytest.mark.parametrize("scenario", ["happy-path", "flaky", "reconnect-storm", "webhook-chaos"])
async def test_bundled_scenarios_run_on_either_profile(make_simulator: Callable[..., BackgroundSimulator],
                                                       scenario: str) -> None:
    """The same scenario and seed on both profiles: the same tasks, outcomes and faults; only the
    projections (hub events, webhook bodies) differ."""
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    timelines = {}
    try:
        for profile in ("documented", PROFILE):
            sim = make_simulator(profile=profile, scenario=scenario, seed=99, time_scale=0.05)
            ids = [sim.create_task(kind=kind, webhook_url=url) for kind in ("image", "video", "image")]
            await asyncio.to_thread(wait_until, partial(_all_ended, sim, len(ids)), 20)
            await asyncio.sleep(0.3)
            assert not sim.records("webhook_error")
            outcomes = sorted((r.get("task_id"), r.get("event")) for r in sim.records("task_event")
                              if r.get("event") != "progress")
            faults = sorted(str(r.get("fault")) for r in sim.records("fault"))
            timelines[profile] = (ids, outcomes, faults)
    finally:
        await runner.cleanup()
    assert timelines["documented"] == timelines[PROFILE]
